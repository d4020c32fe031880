package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func rmiCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rmi [OPTIONS] IMAGE [IMAGE...]",
		Aliases: []string{"image-rm"},
		Short:   "Remove images (by name: untag; by ID: delete)",
		Long: `Remove images like docker rmi. A name is untagged, and the image is
deleted when that was its last name. An ID (or any unambiguous prefix of
one) deletes the image with all its names, but only with -f when several
names refer to it. An image a container was made from keeps its last name
unless -f is given (and is never deleted while such a container runs):
docker's conflicts. Layers and cache stay until prune or GC collects them;
a container's image layers stay as long as the container does.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			var failed []string
			for _, ref := range args {
				lines, err := st.RemoveImage(ref, force)
				for _, l := range lines {
					fmt.Println(l)
				}
				if err != nil {
					failed = append(failed, err.Error())
				}
			}
			if len(failed) > 0 {
				return errors.New(strings.Join(failed, "\n"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image even if several names refer to it or a stopped container uses it")
	return cmd
}
