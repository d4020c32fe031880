package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

func doctorCmd() *cobra.Command {
	var opts store.CheckOptions
	var verbose bool
	cmd := &cobra.Command{
		Use:     "doctor [--repair] [--deep]",
		Aliases: []string{"fsck"},
		Short:   "Check the store: every blob's digest, every image, cache record and snapshot",
		Long: `Check the store: every blob against its digest, every image in
content/index.json down to its manifest, config and layers, every cache
record's layers, every snapshot against its layer's entry (with --deep,
file by file against the layer itself), every build journal. It waits for other kiln commands
using the store to finish, and removes what killed ones left (mounts,
containers, temp files), as every kiln command does on an idle store.

--repair fixes what can be fixed: corrupt blobs and broken snapshots are
removed (a layer is unpacked again when needed), images whose manifest,
config or layers are missing or corrupt are dropped from index.json (they
must be built or pulled again: each is named), stale cache records,
snapshots and entries, crashed and damaged build journals are removed.

Exit status 0 when the store is consistent (after --repair: when everything
found was repaired), 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			opts.Waiting = func() {
				fmt.Fprintf(os.Stderr, "waiting for the other kiln commands using %s to finish...\n", st.Root)
			}
			rep, err := store.Check(cmd.Context(), st, opts)
			if err != nil {
				return err
			}
			if n := printReport(rep, st.Root, opts.Repair, verbose); n > 0 {
				return fmt.Errorf("%s: %d problems left", st.Root, n)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.Repair, "repair", false, "fix what can be fixed, and say what was fixed")
	fl.BoolVar(&opts.Deep, "deep", false, "also compare every snapshot, file by file, with its layer")
	fl.BoolVarP(&verbose, "verbose", "v", false, "list stale entries one by one")
	return cmd
}

// printReport prints what Check found and returns the number of problems
// left unrepaired.
func printReport(rep *store.Report, root string, repair, verbose bool) int {
	problems, unrepaired := 0, 0
	stale := map[string]int{}
	staleRepaired := 0
	for _, f := range rep.Findings {
		switch f.Severity {
		case store.Leftover:
			fmt.Printf("cleaned up after a killed kiln: %s\n", f.Repaired)
		case store.Problem:
			problems++
			fmt.Printf("PROBLEM: %s %s: %s\n", f.Kind, f.Subject, f.Problem)
			if f.Repaired != "" {
				fmt.Printf("  repaired: %s\n", f.Repaired)
			} else {
				unrepaired++
			}
		case store.Stale:
			stale[f.Kind]++
			if f.Repaired != "" {
				staleRepaired++
			}
			if verbose {
				line := fmt.Sprintf("stale: %s %s: %s", f.Kind, f.Subject, f.Problem)
				if f.Repaired != "" {
					line += " (" + f.Repaired + ")"
				}
				fmt.Println(line)
			}
		}
	}
	if len(stale) > 0 && !verbose {
		var kinds []string
		for k, n := range stale {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(kinds)
		what := "kiln ignores them"
		if staleRepaired > 0 {
			what = "removed"
		} else if !repair {
			what += "; --repair removes them, -v lists them"
		}
		fmt.Printf("stale entries: %s (%s)\n", strings.Join(kinds, ", "), what)
	}
	fmt.Printf("checked %s: %d blobs, %d images, %d cache records, %d snapshots\n", root, rep.Blobs, rep.Images, rep.Records, rep.Snapshots)
	if rep.Unreferenced > 0 {
		fmt.Printf("%d blobs (%s) are not used by any image or cache record: kiln prune removes them\n", rep.Unreferenced, humanSize(rep.UnreferencedSize))
	}
	switch {
	case problems == 0:
		fmt.Println("the store is consistent")
	case unrepaired == 0:
		fmt.Printf("%d problems, all repaired: the store is consistent\n", problems)
	case repair:
		fmt.Printf("%d problems, %d could not be repaired\n", problems, unrepaired)
	default:
		fmt.Printf("%d problems: kiln doctor --repair fixes what can be fixed\n", problems)
	}
	return unrepaired
}
