package main

import (
	"fmt"
	"strings"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cache/content"
	"github.com/spf13/cobra"
)

func rmiCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rmi IMAGE [IMAGE...]",
		Aliases: []string{"image-rm"},
		Short:   "Remove images (by name: untag; by ID: delete)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			var failed []string
			for _, ref := range args {
				if err := removeImage(store, ref, force); err != nil {
					failed = append(failed, err.Error())
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%s", strings.Join(failed, "\n"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image ID even if several names refer to it")
	return cmd
}

// removeImage follows docker: a name is untagged, and the image is deleted
// when that was its last name; an ID deletes the image, but only with -f if
// several names still refer to it.
func removeImage(store *cache.Store, ref string, force bool) error {
	cs := store.Content
	imgs, err := cs.Images()
	if err != nil {
		return err
	}
	if name, err := content.NormalizeName(ref); err == nil {
		for _, im := range imgs {
			if im.Name != name {
				continue
			}
			if err := cs.Untag(name, false); err != nil {
				return err
			}
			fmt.Println("Untagged:", content.FamiliarName(name))
			for _, other := range imgs {
				if other.Name != name && other.Descriptor.Digest == im.Descriptor.Digest {
					return nil
				}
			}
			fmt.Println("Deleted:", im.Descriptor.Digest)
			return nil
		}
	}
	si, err := findImage(store, ref)
	if err != nil {
		return err
	}
	var names []string
	for _, im := range imgs {
		if im.Descriptor.Digest == si.ManifestDesc.Digest && im.Name != "" {
			names = append(names, content.FamiliarName(im.Name))
		}
	}
	if len(names) > 1 && !force {
		return fmt.Errorf("unable to delete %s (must be forced) - image is referenced in multiple repositories: %s", shortID(string(si.ID())), strings.Join(names, ", "))
	}
	for _, n := range names {
		fmt.Println("Untagged:", n)
	}
	if err := cs.RemoveImage(si.ManifestDesc.Digest); err != nil {
		return err
	}
	fmt.Println("Deleted:", si.ID())
	return nil
}
