package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

// docker's default formats (docker/cli cli/command/formatter/image.go).
const (
	imagesTableFormat           = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	imagesTableFormatWithDigest = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	imagesRawFormat             = "repository: {{ .Repository }}\ntag: {{.Tag}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n"
	imagesRawFormatWithDigest   = "repository: {{ .Repository }}\ntag: {{.Tag}}\ndigest: {{.Digest}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n"
)

func imagesCmd() *cobra.Command {
	var (
		all, quiet, noTrunc, digests bool
		filters                      []string
		format                       string
	)
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Long: `List images like docker images: one row per name, newest image first;
an image without a name (its tag moved to a newer build) is <none>:<none>.

Filters (-f, repeatable; different keys must all match, the same key
repeated matches any of its values, except label which must all match):
  dangling=true|false   only images without / with a name
  reference=PATTERN     names matching PATTERN (path.Match on "repo:tag" and "repo")
  before=IMAGE          images created before IMAGE
  since=IMAGE           images created after IMAGE
  label=KEY[=VALUE]     images with that label

--format takes a Go template over .ID .Repository .Tag .Digest .CreatedSince
.CreatedAt .Size .VirtualSize .SharedSize .UniqueSize .Containers, "table
TEMPLATE" for columns with headers, or "json" for one JSON object per line.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				filters = append(filters, "reference="+args[0])
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			format = imagesFormat(format, quiet, digests)
			opts := store.SelectOptions{All: all, DigestColumn: digests || strings.Contains(format, "{{.Digest}}"), DigestRows: digests}
			rows, err := st.ListImages(filters, opts, func(msg string) { fmt.Fprintln(os.Stderr, "WARNING:", msg) })
			if err != nil {
				return err
			}
			return writeImages(os.Stdout, format, imageContexts(rows, !noTrunc))
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "show all images (kiln keeps no intermediate images: the same as without -a)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	fl.BoolVar(&digests, "digests", false, "show the registry digest of pulled images")
	fl.StringArrayVarP(&filters, "filter", "f", nil, "filter output based on conditions provided")
	fl.StringVar(&format, "format", "", `format output: "table", "table TEMPLATE", "json" or a Go TEMPLATE`)
	return cmd
}

// imagesFormat picks the template like docker's NewImageFormat.
func imagesFormat(format string, quiet, digests bool) string {
	switch format {
	case "", "table":
		switch {
		case quiet:
			return "{{.ID}}"
		case digests:
			return imagesTableFormatWithDigest
		}
		return imagesTableFormat
	case "raw":
		switch {
		case quiet:
			return "image_id: {{.ID}}"
		case digests:
			return imagesRawFormatWithDigest
		}
		return imagesRawFormat
	}
	if strings.HasPrefix(format, "table") && digests && !strings.Contains(format, "{{.Digest}}") {
		format += "\t{{.Digest}}"
	}
	return format
}

// imageContext is one row; its methods are the template fields, named and
// computed as docker's (cli/command/formatter/image.go).
type imageContext struct {
	row   store.ImageRow
	trunc bool
}

func imageContexts(rows []store.ImageRow, trunc bool) []*imageContext {
	out := make([]*imageContext, len(rows))
	for i, r := range rows {
		out[i] = &imageContext{row: r, trunc: trunc}
	}
	return out
}

func (c *imageContext) ID() string {
	if c.trunc {
		return shortID(string(c.row.Image.ID))
	}
	return string(c.row.Image.ID)
}
func (c *imageContext) Repository() string { return c.row.Repository }
func (c *imageContext) Tag() string        { return c.row.Tag }
func (c *imageContext) Digest() string     { return c.row.Digest }
func (c *imageContext) CreatedSince() string {
	if !c.row.Image.HasCreated {
		return ""
	}
	return ago(c.row.Image.Created)
}
func (c *imageContext) CreatedAt() string {
	if !c.row.Image.HasCreated {
		return time.Unix(0, 0).String()
	}
	return time.Unix(c.row.Image.Created.Unix(), 0).String()
}
func (c *imageContext) Size() string        { return humanSize(c.row.Image.Size) }
func (c *imageContext) VirtualSize() string { return units.HumanSize(float64(c.row.Image.Size)) }
func (c *imageContext) SharedSize() string  { return "N/A" }
func (c *imageContext) UniqueSize() string  { return "N/A" }
func (c *imageContext) Containers() string  { return "N/A" }

// MarshalJSON is what {{json .}} and --format json print: every field, as
// docker does (keys sorted, "<" escaped as \u003c).
func (c *imageContext) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"ID": c.ID(), "Repository": c.Repository(), "Tag": c.Tag(), "Digest": c.Digest(),
		"CreatedSince": c.CreatedSince(), "CreatedAt": c.CreatedAt(), "Size": c.Size(),
		"VirtualSize": c.VirtualSize(), "SharedSize": c.SharedSize(), "UniqueSize": c.UniqueSize(),
		"Containers": c.Containers(),
	})
}

var imageHeaders = map[string]string{
	"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
	"CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "SIZE",
	"SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS",
}

// writeImages renders rows with format like docker's formatter.
func writeImages(w io.Writer, format string, rows []*imageContext) error {
	return writeFormatted(w, format, rows, imageHeaders)
}
