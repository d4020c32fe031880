package main

import (
	"os"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/container"
	"github.com/spf13/cobra"
)

func logsCmd() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [-f] CONTAINER | BUILD [STEP]",
		Short: "Print a container's output, or the whole output of a build's steps",
		Long: `With a container's name or ID: print its output (stdout and stderr, as
written), and with -f keep printing what it writes until it stops.

Otherwise print the output of a build on record, as its steps wrote it: never clipped,
streamed from the store (kiln prune removes build logs; kiln builds still
lists the build).

BUILD is a build ID or an unambiguous prefix of it or of its short form
(kiln builds), or "last" for the newest build. STEP is the step's number
as the progress showed it (3 or #3), or a part of its name that only one
step has ("RUN make"). Without STEP, every step that wrote output, in
order, each after a line "#N NAME".`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			if len(args) == 1 {
				if c, err := st.LookupContainer(args[0]); err == nil {
					return container.CopyLog(cmd.Context(), container.New(st), c, os.Stdout, follow)
				}
			}
			j, err := builder.FindJournal(st.BuildsDir(), args[0])
			if err != nil {
				return err
			}
			if len(args) == 1 {
				return builder.CopyLogs(os.Stdout, st.BuildsDir(), j)
			}
			s, err := j.FindStep(args[1])
			if err != nil {
				return err
			}
			return builder.CopyLog(os.Stdout, st.BuildsDir(), j, s)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow a container's output until it stops")
	return cmd
}
