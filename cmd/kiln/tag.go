package main

import (
	"github.com/kiln-build/kiln/store/content"
	"github.com/spf13/cobra"
)

func tagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE TARGET_IMAGE",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			im, err := st.LookupImage(args[0])
			if err != nil {
				return err
			}
			name, err := content.NormalizeTag(args[1])
			if err != nil {
				return err
			}
			return st.Content.Tag(name, im.ManifestDesc)
		},
	}
}
