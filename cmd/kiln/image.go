package main

import "github.com/spf13/cobra"

// imageCmd groups docker's "image" management verbs: kiln image prune, and
// ls / rm as the docker spellings of kiln images / kiln rmi.
func imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
		Args:  cobra.NoArgs,
	}
	ls := imagesCmd()
	ls.Use = "ls [OPTIONS] [REPOSITORY[:TAG]]"
	ls.Aliases = []string{"list"}
	rm := rmiCmd()
	rm.Use = "rm [OPTIONS] IMAGE [IMAGE...]"
	rm.Aliases = nil
	cmd.AddCommand(imagePruneCmd(), ls, rm)
	return cmd
}
