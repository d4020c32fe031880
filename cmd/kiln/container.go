package main

import "github.com/spf13/cobra"

// containerCmd is docker's "container" management group: every verb on
// containers, built by the same constructors as the top-level ones, so
// "kiln container stop" is "kiln stop"; ls is kiln ps.
func containerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container",
		Short: "Manage containers",
		Args:  noSubcommandArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	ls := psCmd()
	ls.Use = "ls [OPTIONS]"
	ls.Aliases = []string{"list", "ps"}
	rm := rmCmd()
	rm.Aliases = []string{"remove"}
	cmd.AddCommand(
		commitCmd(),
		createCmd(),
		diffCmd(),
		execCmd(),
		containerInspectCmd(),
		killCmd(),
		logsCmd(),
		ls,
		containerPruneCmd(),
		restartCmd(),
		rm,
		runCmd(),
		startCmd(),
		stopCmd(),
		waitCmd(),
	)
	return cmd
}
