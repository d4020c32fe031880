package main

import (
	"github.com/kiln-build/kiln/cache/content"
	"github.com/spf13/cobra"
)

func tagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE TARGET_IMAGE",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			im, err := findImage(store, args[0])
			if err != nil {
				return err
			}
			name, err := content.NormalizeTag(args[1])
			if err != nil {
				return err
			}
			return store.Content.Tag(name, im.ManifestDesc)
		},
	}
}
