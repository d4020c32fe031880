package main

import (
	"errors"
	"fmt"

	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/store/content"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func commitCmd() *cobra.Command {
	var o container.CommitOptions
	var changes []string
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Long: `Make an image of a container: its image's layers with the container's
writable layer as one more layer on top, and the container's config
(command, entrypoint, env, user, workdir, labels) with the --change
instructions applied. Without a REPOSITORY the image is untagged
(<none>:<none>, dangling). Prints the new image's ID.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				n, err := content.NormalizeTag(args[1])
				if errors.Is(err, content.ErrDigestName) {
					return fmt.Errorf("refusing to create a tag with a digest reference: %s", args[1])
				} else if err != nil {
					return err
				}
				o.Name = n
			}
			if len(changes) > 0 {
				o.Edit = func(img *dockerspec.DockerOCIImage) error { return dockerfile.ApplyChanges(img, changes) }
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := st.LookupContainer(args[0])
			if err != nil {
				return err
			}
			si, err := container.New(st).Commit(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			fmt.Println(si.ID())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Message, "message", "m", "", "commit message (the new layer's history comment)")
	f.StringVarP(&o.Author, "author", "a", "", `author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	f.StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)")
	f.BoolVarP(&o.Pause, "pause", "p", true, "pause the container while committing")
	return cmd
}
