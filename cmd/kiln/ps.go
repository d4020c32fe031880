package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// docker's default formats (docker/cli cli/command/formatter/container.go).
const (
	psTableFormat = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
	psRawFormat   = "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\nstate: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\nlabels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n"
)

func psCmd() *cobra.Command {
	var (
		o                            container.ListOptions
		quiet, size, noTrunc, latest bool
		format                       string
	)
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Long: `List containers like docker ps: running ones, or with -a all of them,
newest first. STATUS is "Up 5 minutes", "Exited (0) 5 seconds ago" or
"Created"; -s adds SIZE, the writable layer's size and, in brackets, the
image's plus it ("6B (virtual 1.98MB)").

Filters (-f, repeatable; different keys must all match, the same key
repeated matches any of its values, except label which must all match):
  status=created|running|exited  (implies -a)
  exited=CODE                    exited with CODE (implies -a)
  name=REGEXP, id=REGEXP         matched against the name, the full ID
  ancestor=IMAGE                 made from IMAGE or an image built on it
                                 (whose layers start with IMAGE's)
  before=CONTAINER, since=CONTAINER   created before / after it
  label=KEY[=VALUE], network=host|none

--format takes a Go template over .ID .Image .Command .CreatedAt
.RunningFor .Ports .State .Status .Size .Names .Labels .Label .Mounts
.Networks .LocalVolumes, "table TEMPLATE" for columns with headers, or
"json" for one JSON object per line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if latest {
				o.Last = 1
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			m := container.New(st)
			list, err := m.List(o)
			if err != nil {
				return err
			}
			format = psFormat(format, quiet, size)
			rows := make([]*containerContext, len(list))
			sizes := st.NewLayerSizes()
			for i, l := range list {
				rows[i] = &containerContext{l: l, image: imageName(st, l.Container), trunc: !noTrunc}
				if strings.Contains(format, ".Size") {
					rows[i].sizeRw, _ = m.SizeRw(l.Container)
					rows[i].sizeRootFs = rows[i].sizeRw + imageSize(sizes, l.Container)
				}
			}
			return writeFormatted(os.Stdout, format, rows, containerHeaders)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.All, "all", "a", false, "show all containers (default shows just running)")
	f.BoolVarP(&quiet, "quiet", "q", false, "only display container IDs")
	f.BoolVarP(&size, "size", "s", false, "display total file sizes")
	f.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	f.IntVarP(&o.Last, "last", "n", -1, "show n last created containers (includes all states)")
	f.BoolVarP(&latest, "latest", "l", false, "show the latest created container (includes all states)")
	f.StringArrayVarP(&o.Filters, "filter", "f", nil, "filter output based on conditions provided")
	f.StringVar(&format, "format", "", `format output: "table", "table TEMPLATE", "json" or a Go TEMPLATE`)
	return cmd
}

// psFormat picks the template like docker's NewContainerFormat.
func psFormat(format string, quiet, size bool) string {
	switch format {
	case "", "table":
		if quiet {
			return "{{.ID}}"
		}
		if size {
			return psTableFormat + "\t{{.Size}}"
		}
		return psTableFormat
	case "raw":
		if quiet {
			return "container_id: {{.ID}}"
		}
		if size {
			return psRawFormat + "size: {{.Size}}\n"
		}
		return psRawFormat
	}
	return format
}

// imageSize is the content size of c's image layers, as the images list
// measures them.
func imageSize(sizes *store.LayerSizes, c *store.Container) int64 {
	var n int64
	for _, l := range c.Layers {
		n += sizes.Of(ocispec.Descriptor{Digest: l.DiffID, Size: l.Size})
	}
	return n
}

var containerHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
	"RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
	"Names": "NAMES", "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS", "Networks": "NETWORKS",
	"LocalVolumes": "LOCAL VOLUMES",
}

// containerContext is one row; its methods are the template fields, named
// and computed as docker's (cli/command/formatter/container.go).
type containerContext struct {
	l                  container.Listed
	image              string // imageName
	trunc              bool
	sizeRw, sizeRootFs int64
}

func (c *containerContext) ID() string {
	if c.trunc {
		return c.l.ShortID()
	}
	return c.l.ID
}

// Image is the image as the user named it; its short ID when that is how
// it was named, or when the name now means another image.
func (c *containerContext) Image() string {
	image := c.image
	if image == "" {
		return "<no image>"
	}
	if !c.trunc {
		return image
	}
	if store.ShortID(image) == store.ShortID(string(c.l.ImageID)) {
		return store.ShortID(image)
	}
	if ref, err := reference.ParseNormalizedNamed(image); err == nil {
		named := reference.TrimNamed(ref)
		if t, ok := ref.(reference.Tagged); ok {
			if nt, err := reference.WithTag(named, t.Tag()); err == nil {
				return reference.FamiliarString(nt)
			}
		}
		return reference.FamiliarString(named)
	}
	return image
}

// imageName is what docker's IMAGE column starts from: the name the
// container was made with while it still names the same image, else the
// image's ID.
func imageName(st *store.Store, c *store.Container) string {
	if c.Image == "" || c.Image == string(c.ImageID) {
		return c.Image
	}
	if si, err := st.LookupImage(c.Image); err == nil && si.ID() == c.ImageID {
		return c.Image
	}
	return string(c.ImageID)
}

// Command is docker's: the path and its arguments, those with a space in
// quotes, cut to 20 characters, the whole quoted.
func (c *containerContext) Command() string {
	cmd := c.l.Path
	for _, a := range c.l.Args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		cmd += " " + a
	}
	if c.trunc {
		cmd = ellipsis(cmd, 20)
	}
	return strconv.Quote(cmd)
}

// ellipsis cuts s to n runes, its last one "…" when cut.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func (c *containerContext) CreatedAt() string {
	return time.Unix(c.l.Created.Unix(), 0).String()
}
func (c *containerContext) RunningFor() string { return ago(c.l.Created) }
func (c *containerContext) Ports() string      { return "" }
func (c *containerContext) State() string      { return c.l.State.Status }
func (c *containerContext) Names() string      { return c.l.Name }
func (c *containerContext) Networks() string   { return c.l.Network }
func (c *containerContext) LocalVolumes() string {
	return "0"
}

// Status is docker's State.String().
func (c *containerContext) Status() string {
	st := c.l.State
	since := func(t time.Time) string { return units.HumanDuration(time.Now().UTC().Sub(t)) }
	switch {
	case st.Status == store.StatusRunning:
		return "Up " + since(st.StartedAt)
	case st.StartedAt.IsZero():
		return "Created"
	case st.FinishedAt.IsZero():
		return ""
	}
	return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, since(st.FinishedAt))
}

// Size is "writable (virtual writable+image)", docker's SIZE column.
func (c *containerContext) Size() string {
	rw := units.HumanSizeWithPrecision(float64(c.sizeRw), 3)
	if c.sizeRootFs > 0 {
		return fmt.Sprintf("%s (virtual %s)", rw, units.HumanSizeWithPrecision(float64(c.sizeRootFs), 3))
	}
	return rw
}

// Labels are KEY=VALUE pairs, comma separated, sorted.
func (c *containerContext) Labels() string {
	var out []string
	for k, v := range c.l.Labels {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// Label is one label's value ({{.Label "KEY"}}).
func (c *containerContext) Label(name string) string { return c.l.Labels[name] }

// Mounts are the bind mounts' host paths, comma separated (cut to 15
// characters each, as docker's, unless --no-trunc).
func (c *containerContext) Mounts() string {
	var out []string
	for _, b := range c.l.Binds {
		src, _, _ := strings.Cut(b, ":")
		if c.trunc {
			src = ellipsis(src, 15)
		}
		out = append(out, src)
	}
	return strings.Join(out, ",")
}

// MarshalJSON is what {{json .}} and --format json print: every field,
// as docker does.
func (c *containerContext) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"ID": c.ID(), "Image": c.Image(), "Command": c.Command(), "CreatedAt": c.CreatedAt(),
		"RunningFor": c.RunningFor(), "Ports": c.Ports(), "State": c.State(), "Status": c.Status(),
		"Size": c.Size(), "Names": c.Names(), "Labels": c.Labels(), "Mounts": c.Mounts(),
		"Networks": c.Networks(), "LocalVolumes": c.LocalVolumes(),
	})
}
