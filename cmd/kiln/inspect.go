package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/cache/content"
	"github.com/spf13/cobra"
)

// inspectOutput has the main fields of `docker image inspect`.
type inspectOutput struct {
	ID           string            `json:"Id"`
	RepoTags     []string          `json:"RepoTags"`
	RepoDigests  []string          `json:"RepoDigests"`
	Created      *time.Time        `json:"Created,omitempty"`
	Author       string            `json:"Author,omitempty"`
	Architecture string            `json:"Architecture"`
	Os           string            `json:"Os"`
	Size         int64             `json:"Size"`
	Config       any               `json:"Config"`
	RootFS       any               `json:"RootFS"`
	Manifest     string            `json:"ManifestDigest"`
	Labels       map[string]string `json:"-"`
}

func inspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE [IMAGE...]",
		Short: "Show image details as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			imgs, err := store.Content.Images()
			if err != nil {
				return err
			}
			var out []inspectOutput
			for _, ref := range args {
				si, err := findImage(store, ref)
				if err != nil {
					return err
				}
				o := inspectOutput{
					ID: string(si.ID()), RepoTags: []string{}, RepoDigests: []string{},
					Created: si.Config.Created, Author: si.Config.Author,
					Architecture: si.Config.Architecture, Os: si.Config.OS,
					Config: si.Config.Config, RootFS: si.Config.RootFS, Manifest: string(si.ManifestDesc.Digest),
				}
				for _, l := range si.Manifest.Layers {
					o.Size += l.Size
				}
				for _, im := range imgs {
					if im.Descriptor.Digest != si.ManifestDesc.Digest {
						continue
					}
					if im.Name != "" && !strings.Contains(im.Name, "@") {
						o.RepoTags = append(o.RepoTags, content.FamiliarName(im.Name))
					}
					if rd := im.Descriptor.Annotations[content.AnnotationRepoDigest]; rd != "" && !slices.Contains(o.RepoDigests, content.FamiliarName(rd)) {
						o.RepoDigests = append(o.RepoDigests, content.FamiliarName(rd))
					}
				}
				out = append(out, o)
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "    ")
			return enc.Encode(out)
		},
	}
}
