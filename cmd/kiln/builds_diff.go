package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/explain"
	"github.com/spf13/cobra"
)

const buildsDiffTableFormat = "table {{.Step}}\t{{.A}}\t{{.B}}\t{{.Why}}"

var buildsDiffHeaders = map[string]string{"Step": "STEP", "A": "A", "B": "B", "Why": "WHY"}

func buildsDiffCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "diff [OPTIONS] A B",
		Short: "Show which steps of two recorded builds changed state, and why",
		Long: `Compare two recorded builds step by step (A and B are build IDs or
prefixes, as kiln builds lists them): each step whose state (ran, cached,
...) or cache key differs, with what changed between the two keys. A step
that only one build has shows "-" for the other.

--format takes "table" (the default), "table TEMPLATE" or a Go template over
.Step .A .B .Why, or "json" for one object per line with the reasons in full.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			a, b, diffs, err := builder.DiffBuilds(st, args[0], args[1])
			if err != nil {
				return err
			}
			return writeBuildsDiff(os.Stdout, format, a, b, diffs)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", `format output: "table", "table TEMPLATE", "json" or a Go TEMPLATE`)
	return cmd
}

func writeBuildsDiff(w io.Writer, format string, a, b *builder.Journal, diffs []explain.StepDiff) error {
	if format == "" || format == "table" {
		format = buildsDiffTableFormat
		if len(diffs) == 0 {
			fmt.Fprintf(w, "builds %s and %s ran the same steps with the same keys\n", a.ID, b.ID)
			return nil
		}
	}
	rows := make([]buildsDiffRow, len(diffs))
	for i, d := range diffs {
		rows[i] = buildsDiffRow{d}
	}
	return writeFormatted(w, format, rows, buildsDiffHeaders)
}

// buildsDiffRow is one step of kiln builds diff; its methods are the
// template fields.
type buildsDiffRow struct{ d explain.StepDiff }

func (r buildsDiffRow) Step() string { return stepColumn(r.d.Name) }
func (r buildsDiffRow) A() string    { return orDash(r.d.OldState) }
func (r buildsDiffRow) B() string    { return orDash(r.d.NewState) }
func (r buildsDiffRow) Why() string  { return explain.Summary(r.d.Why) }

// MarshalJSON is what --format json prints: the step with its reasons.
func (r buildsDiffRow) MarshalJSON() ([]byte, error) { return json.Marshal(r.d) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
