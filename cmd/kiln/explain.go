package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/solver"
	"github.com/spf13/cobra"
)

func explainCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain [OPTIONS] [BUILD]",
		Short: "Say why each step of a recorded build ran instead of hitting the cache",
		Long: `Say why each step of a build ran instead of hitting the cache: the files
that changed (with their old and new digests), the build arg or ENV (a
secret's value never), the base image, the instruction or a flag, --no-cache,
no earlier build of the step, or a pruned cache record.

BUILD is a build ID, or an unambiguous prefix of it or of its short form
(kiln builds lists them), or "last"; without it, the newest build. --json prints every step with its state and reasons.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			ref := ""
			if len(args) == 1 {
				ref = args[0]
			}
			j, err := builder.Explain(st, ref)
			if err != nil {
				return err
			}
			if asJSON {
				return writeExplainJSON(os.Stdout, j)
			}
			writeExplain(os.Stdout, j)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the steps and their reasons as JSON")
	return cmd
}

// explainedStep is one step of kiln explain --json.
type explainedStep struct {
	Name     string           `json:"name"`
	Location string           `json:"location,omitempty"`
	State    solver.State     `json:"state"`
	Why      []explain.Change `json:"why,omitempty"`
}

func writeExplainJSON(w io.Writer, j *builder.Journal) error {
	out := struct {
		ID    string          `json:"id"`
		Steps []explainedStep `json:"steps"`
	}{ID: j.ID, Steps: []explainedStep{}}
	for _, s := range j.Steps {
		out.Steps = append(out.Steps, explainedStep{Name: s.Name, Location: s.Location, State: s.State, Why: s.Why})
	}
	return writeJSON(w, out)
}

// writeExplain prints one block per step that ran, its reasons indented
// below it, and the other steps summed up by state on one line each.
func writeExplain(w io.Writer, j *builder.Journal) {
	fmt.Fprintf(w, "build %s (%s)\n", j.ID, j.Dockerfile)
	others := map[solver.State][]string{}
	var order []solver.State
	for _, s := range j.Steps {
		if s.State != solver.StateRan && s.State != solver.StateFailed {
			if others[s.State] == nil {
				order = append(order, s.State)
			}
			others[s.State] = append(others[s.State], s.Name)
			continue
		}
		where := ""
		if s.Location != "" {
			where = "  (" + s.Location + ")"
		}
		state := ""
		if s.State == solver.StateFailed {
			state = " FAILED"
		}
		fmt.Fprintf(w, "\n%s%s%s\n", s.Name, state, where)
		if len(s.Why) == 0 {
			fmt.Fprintln(w, "  - no reason recorded")
		}
		for _, c := range s.Why {
			fmt.Fprintf(w, "  - %s\n", c.Text)
		}
	}
	if len(order) > 0 {
		fmt.Fprintln(w)
	}
	for _, state := range order {
		names := others[state]
		fmt.Fprintf(w, "%s (%d): %s\n", state, len(names), strings.Join(names, ", "))
	}
}
