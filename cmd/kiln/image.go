package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// imageCmd is docker's "image" management group: every subcommand of
// docker's that kiln has a top-level verb for, built by the same
// constructor, so "kiln image history" is "kiln history". ls and rm are the
// docker spellings of kiln images and kiln rmi.
func imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
		Args:  noSubcommandArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	ls := imagesCmd()
	ls.Use = "ls [OPTIONS] [REPOSITORY[:TAG]]"
	ls.Aliases = []string{"list"}
	rm := rmiCmd()
	rm.Use = "rm [OPTIONS] IMAGE [IMAGE...]"
	rm.Aliases = []string{"rmi", "remove"}
	cmd.AddCommand(
		buildCmd(),
		historyCmd(),
		importCmd(),
		inspectCmd(),
		loadCmd(),
		ls,
		imagePruneCmd(),
		pullCmd(),
		pushCmd(),
		rm,
		saveCmd(),
		tagCmd(),
	)
	return cmd
}

// noSubcommandArgs rejects what a command group does not know as a
// subcommand, like docker ("docker: unknown command: docker image rmm"),
// instead of cobra's default of printing the help and exiting 0.
func noSubcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	path := cmd.CommandPath()
	sub := strings.TrimPrefix(path, cmd.Root().Name()+" ") + " " + args[0]
	msg := fmt.Sprintf("%s: '%s' is not a %s command.", cmd.Root().Name(), sub, cmd.Root().Name())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, set only when it suggests itself
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	msg += fmt.Sprintf("\n\nUsage:  %s COMMAND\n\nRun '%s --help' for more information", path, path)
	return errors.New(msg)
}
