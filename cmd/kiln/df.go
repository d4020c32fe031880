package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/distribution/reference"
	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

func dfCmd() *cobra.Command {
	var (
		verbose bool
		format  string
	)
	cmd := &cobra.Command{
		Use:   "df [OPTIONS]",
		Short: "Show the store's disk usage",
		Long: `Show disk usage like docker system df: images, build cache, cache mounts
and build history, with what kiln prune / kiln image prune could reclaim.

Sizes are what things take on disk: a layer counts its blob, its unpacked
snapshot and any compressed copies, once however many images share it.
Apart from Containers (their writable layers, under containers/), the
rows add up to the store's size (du -sb), metadata aside. Containers:
ACTIVE are the running ones, RECLAIMABLE the stopped ones' writable layers
(kiln container prune).
Images: ACTIVE are those with a name; RECLAIMABLE is what removing the
untagged ones frees. Build Cache: layers only cache records use, the
records, the trees explain keeps for them, and data nothing refers to.
Cache Mounts: ACTIVE are those a running build holds. Build History: the
journals of the builds on record (kiln builds) and the trees their keys
name, ACTIVE those without a record yet (running, or left by a killed
kiln: kiln doctor reports those); RECLAIMABLE is their step logs, which
kiln prune removes (kiln prune -a removes the whole journals).

--format json prints one JSON object per row (with SizeBytes and
ReclaimableBytes); a Go template gets .Type .TotalCount .Active .Size
.Reclaimable .SizeBytes .ReclaimableBytes ("table TEMPLATE" adds headers).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			st.CacheMountIDs = ops.CacheMountIDs
			u, err := st.DiskUsage(cmd.Context())
			if err != nil {
				return err
			}
			ctrs, err := containerUsage(st)
			if err != nil {
				return err
			}
			if verbose {
				limit, err := cacheMax("")
				if err != nil {
					return err
				}
				if limit == 0 {
					limit = store.DefaultBudget(st.Root)
				}
				if format == "json" {
					return writeDFVerboseJSON(os.Stdout, u, ctrs, limit)
				}
				return writeDFVerbose(os.Stdout, u, ctrs, limit)
			}
			return writeDF(os.Stdout, format, dfRows(u, ctrs))
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show images, cache records and cache mounts one by one")
	cmd.Flags().StringVar(&format, "format", "", `"table" (default), "json" or a Go template`)
	return cmd
}

// dfRow is one TYPE line; its fields are the template's.
type dfRow struct {
	Type             string
	TotalCount       int
	Active           int
	SizeBytes        int64
	ReclaimableBytes int64
}

func (r dfRow) Size() string { return units.HumanSize(float64(r.SizeBytes)) }

// Reclaimable is docker's "SIZE (PCT%)".
func (r dfRow) Reclaimable() string {
	pct := 0
	if r.SizeBytes > 0 {
		pct = int(100 * r.ReclaimableBytes / r.SizeBytes)
	}
	return fmt.Sprintf("%s (%d%%)", units.HumanSize(float64(r.ReclaimableBytes)), pct)
}

func (r dfRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"Type": r.Type, "TotalCount": fmt.Sprint(r.TotalCount), "Active": fmt.Sprint(r.Active),
		"Size": r.Size(), "Reclaimable": r.Reclaimable(),
		"SizeBytes": r.SizeBytes, "ReclaimableBytes": r.ReclaimableBytes,
	})
}

// containerUsage is every container with its writable layer's size.
func containerUsage(st *store.Store) ([]*containerContext, error) {
	m := container.New(st)
	list, err := m.List(container.ListOptions{All: true})
	if err != nil {
		return nil, err
	}
	out := make([]*containerContext, len(list))
	for i, l := range list {
		out[i] = &containerContext{l: l, image: imageName(st, l.Container), trunc: true}
		out[i].sizeRw, _ = m.SizeRw(l.Container)
	}
	return out, nil
}

// containersRow is docker's Containers line: ACTIVE are the running ones,
// RECLAIMABLE the writable layers of the others (container prune).
func containersRow(ctrs []*containerContext) dfRow {
	r := dfRow{Type: "Containers", TotalCount: len(ctrs)}
	for _, c := range ctrs {
		r.SizeBytes += c.sizeRw
		if c.l.State.Status == store.StatusRunning {
			r.Active++
		} else {
			r.ReclaimableBytes += c.sizeRw
		}
	}
	return r
}

func dfRows(u *store.Usage, ctrs []*containerContext) []dfRow {
	return []dfRow{
		{Type: "Images", TotalCount: len(u.Images), Active: u.ActiveImages, SizeBytes: u.ImagesSize, ReclaimableBytes: u.ImagesReclaimable},
		containersRow(ctrs),
		{Type: "Build Cache", TotalCount: len(u.Records), SizeBytes: u.CacheSize, ReclaimableBytes: u.CacheSize},
		{Type: "Cache Mounts", TotalCount: len(u.Mounts), Active: u.ActiveMounts, SizeBytes: u.MountsSize, ReclaimableBytes: u.MountsReclaimable},
		{Type: "Build History", TotalCount: len(u.Builds), Active: u.ActiveBuilds, SizeBytes: u.HistorySize, ReclaimableBytes: u.HistoryReclaimable},
	}
}

const dfTableFormat = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"

var dfHeaders = map[string]string{
	"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE",
	"SizeBytes": "SIZE BYTES", "ReclaimableBytes": "RECLAIMABLE BYTES",
}

// writeDF prints the TYPE rows with the formatter every listing uses
// (format.go): the default table, json, or the user's template.
func writeDF(w io.Writer, format string, rows []dfRow) error {
	if format == "" || format == "table" {
		format = dfTableFormat
	}
	return writeFormatted(w, format, rows, dfHeaders)
}

func writeDFVerbose(w io.Writer, u *store.Usage, ctrs []*containerContext, limit int64) error {
	fmt.Fprintln(w, "Images space usage:")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE")
	for _, im := range u.Images {
		created := "N/A"
		if !im.Created.IsZero() {
			created = ago(im.Created)
		}
		for _, rt := range repoTags(im.Names) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rt[0], rt[1], shortID(string(im.ID)), created,
				units.HumanSize(float64(im.Size)), units.HumanSize(float64(im.SharedSize)), units.HumanSize(float64(im.UniqueSize)))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Containers space usage:")
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES")
	for _, c := range ctrs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID(), c.Image(), c.Command(), c.LocalVolumes(),
			units.HumanSize(float64(c.sizeRw)), c.RunningFor(), c.Status(), c.Names())
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Build cache usage: %s\n", units.HumanSize(float64(u.CacheSize)))
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTEP\tSIZE\tCREATED\tLAST USED\tSHARED")
	for _, r := range u.Records {
		created := "N/A"
		if !r.Created.IsZero() {
			created = ago(r.Created)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\n", r.Key.Encoded()[:12], stepOf(r.Components), units.HumanSize(float64(r.Size)),
			created, ago(r.LastUsed), r.Shared)
	}
	tw.Flush()
	if u.Unreferenced > 0 {
		fmt.Fprintf(w, "(%s of it referenced by nothing: kiln prune removes it)\n", units.HumanSize(float64(u.Unreferenced)))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Cache mounts space usage: %s\n", units.HumanSize(float64(u.MountsSize)))
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tSIZE\tLAST USED\tIN USE")
	for _, m := range u.Mounts {
		id := m.CacheID
		if id == "" {
			id = m.Dir
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", id, units.HumanSize(float64(m.Size)), ago(m.LastUsed), m.InUse)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Build history space usage: %s\n", units.HumanSize(float64(u.HistorySize)))
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "BUILD ID\tFINISHED\tSIZE\tLOGS")
	for _, b := range u.Builds {
		finished := "running"
		if !b.Running {
			finished = ago(b.Finished)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.ID, finished, units.HumanSize(float64(b.Size)), units.HumanSize(float64(b.LogsSize)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	limitText := "no limit (KILN_CACHE_MAX=off)"
	if limit > 0 {
		limitText = units.HumanSize(float64(limit))
	}
	_, err := fmt.Fprintf(w, "Build cache budget: %s used of %s (all but the data of images with a name counts)\n",
		units.HumanSize(float64(u.Budgeted)), limitText)
	return err
}

func writeDFVerboseJSON(w io.Writer, u *store.Usage, ctrs []*containerContext, limit int64) error {
	type rec struct {
		store.RecordUsage
		Step string
	}
	type budget struct{ UsedBytes, LimitBytes int64 }
	out := struct {
		Summary     []dfRow
		Images      []store.ImageUsage
		Containers  []*containerContext
		BuildCache  []rec
		CacheMounts []store.MountUsage
		Builds      []store.BuildUsage
		Budget      budget
	}{
		Summary:     dfRows(u, ctrs),
		Images:      append([]store.ImageUsage{}, u.Images...),
		Containers:  append([]*containerContext{}, ctrs...),
		BuildCache:  []rec{},
		CacheMounts: append([]store.MountUsage{}, u.Mounts...),
		Builds:      append([]store.BuildUsage{}, u.Builds...),
		Budget:      budget{u.Budgeted, limit},
	}
	for _, r := range u.Records {
		out.BuildCache = append(out.BuildCache, rec{r, stepOf(r.Components)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// repoTags turns an image's names into REPOSITORY/TAG pairs, like docker
// images: <none> for what is missing.
func repoTags(names []string) [][2]string {
	var out [][2]string
	for _, n := range names {
		ref, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		tag := "<none>"
		if t, ok := ref.(reference.NamedTagged); ok {
			tag = t.Tag()
		}
		out = append(out, [2]string{reference.FamiliarName(ref), tag})
	}
	if len(out) == 0 {
		out = append(out, [2]string{"<none>", "<none>"})
	}
	return out
}

// stepOf describes a cache record by the step it cached, in a column of
// at most 40 characters.
func stepOf(comps []record.Component) string {
	s := ops.Describe(comps)
	if r := []rune(s); len(r) > 40 {
		s = string(r[:39]) + "…"
	}
	return s
}
