package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/analyze"
	"github.com/kiln-build/kiln/internal/cells"
	"github.com/spf13/cobra"
)

func layersCmd() *cobra.Command {
	var asJSON, noTrunc bool
	var top int
	cmd := &cobra.Command{
		Use:   "layers [OPTIONS] IMAGE",
		Short: "Show why an image is big: each layer's size, largest paths and wasted bytes",
		Long: `Show an image's layers bottom first: the Dockerfile line that made each,
its size, its largest files and directories (--top of each), and the bytes
it carries that a later layer deletes or overwrites ("wasted": the final
filesystem never shows them), each with the line that added it and the
line that removed it. Efficiency is 100% less the wasted share of the
image's size, as dive reports it. Only layer tar headers are read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if top < 1 {
				return fmt.Errorf("--top %d: must be at least 1", top)
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			layers, err := analyze.StoredLayers(st, args[0])
			if err != nil {
				return err
			}
			rep, err := analyze.Layers(cmd.Context(), layers, analyze.LayersOptions{Top: top})
			if err != nil {
				return fmt.Errorf("layers of %s: %w", args[0], err)
			}
			if asJSON {
				return writeJSON(os.Stdout, rep)
			}
			return writeLayers(os.Stdout, rep, !noTrunc)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fl.BoolVar(&noTrunc, "no-trunc", false, "don't truncate the Dockerfile lines")
	fl.IntVar(&top, "top", 5, "how many of each layer's largest files and directories to list")
	return cmd
}

type layerRow struct{ Layer, DiffID, CreatedBy, Size, Wasted string }
type largestRow struct{ Layer, Size, Path string }
type wasteRow struct{ Wasted, Files, Path, How, AddedBy, RemovedBy string }

const (
	layersTableFormat  = "table {{.Layer}}\t{{.DiffID}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Wasted}}"
	largestTableFormat = "table {{.Layer}}\t{{.Size}}\t{{.Path}}"
	wasteTableFormat   = "table {{.Wasted}}\t{{.Files}}\t{{.Path}}\t{{.How}}\t{{.AddedBy}}\t{{.RemovedBy}}"
)

// writeLayers prints a report as three docker-style tables: the layers,
// their largest paths, and the wasted bytes.
func writeLayers(w io.Writer, rep *analyze.Report, trunc bool) error {
	line := func(s string) string { return shortLine(s, trunc) }
	var layers []layerRow
	var big []largestRow
	for _, l := range rep.Layers {
		n := strconv.Itoa(l.Index)
		layers = append(layers, layerRow{n, shortID(string(l.DiffID)), line(l.CreatedBy), humanSize(l.Size), humanSize(l.Wasted)})
		for _, p := range l.Largest {
			if p.Dir {
				p.Path += "/"
			}
			big = append(big, largestRow{n, humanSize(p.Size), p.Path})
		}
	}
	if err := writeFormatted(w, layersTableFormat, layers, layerRow{"LAYER", "DIFF ID", "CREATED BY", "SIZE", "WASTED"}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nTotal size: %s   Wasted: %s   Efficiency: %.2f%%\n", humanSize(rep.Size), humanSize(rep.WastedBytes), rep.Efficiency)
	if len(big) > 0 {
		fmt.Fprintln(w)
		if err := writeFormatted(w, largestTableFormat, big, largestRow{"LAYER", "SIZE", "LARGEST PATHS"}); err != nil {
			return err
		}
	}
	if len(rep.Wasted) == 0 {
		return nil
	}
	var waste []wasteRow
	shown := rep.Wasted[:min(len(rep.Wasted), maxWasteRows)]
	for _, x := range shown {
		waste = append(waste, wasteRow{humanSize(x.Size), strconv.Itoa(x.Files), x.Path, x.How,
			strconv.Itoa(x.AddedBy) + ": " + line(x.AddedByLine), strconv.Itoa(x.RemovedBy) + ": " + line(x.RemovedByLine)})
	}
	fmt.Fprintln(w)
	if err := writeFormatted(w, wasteTableFormat, waste, wasteRow{"WASTED", "FILES", "PATH", "HOW", "ADDED BY", "REMOVED BY"}); err != nil {
		return err
	}
	if rest := rep.Wasted[len(shown):]; len(rest) > 0 {
		var n int64
		for _, x := range rest {
			n += x.Size
		}
		_, err := fmt.Fprintf(w, "… and %d more rows (%s); --json lists them all\n", len(rest), humanSize(n))
		return err
	}
	return nil
}

// maxWasteRows is how many wasted rows the table shows, the largest: an
// upgrade of many packages overwrites hundreds of files one by one.
const maxWasteRows = 20

// shortLine is a history line as docker history shows it (tabs as
// spaces, cut to 45 characters), less BuildKit's " # buildkit" marker.
func shortLine(s string, trunc bool) string {
	s = strings.ReplaceAll(strings.TrimSuffix(s, " # buildkit"), "\t", " ")
	if trunc {
		return cells.Ellipsis(s, 45)
	}
	return s
}
