package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/transport/registry"
	"github.com/spf13/cobra"
)

func pushCmd() *cobra.Command {
	var (
		quiet     bool
		algorithm string
		level     int
	)
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] IMAGE [DEST]",
		Short: "Upload an image from the store to a registry",
		Long: `Upload an image from the store to a registry.

DEST (REGISTRY/REPO[:TAG], docker's reference rules) defaults to IMAGE's own name.
Layers are compressed — gzip in parallel by default, or --compression zstd|uncompressed —
once: the compressed copy is kept in the store for later pushes. The manifest names
the compressed layers with OCI media types; the config is sent unchanged, so the image
ID stays. Blobs the repository has are not uploaded again; blobs kiln pushed to another
repository of the same registry are mounted from there. Credentials come from
$DOCKER_CONFIG/config.json or ~/.docker/config.json (auths and credential helpers);
plain HTTP only for localhost/127.0.0.1/::1 and --insecure-registry hosts.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			lvl := ""
			if cmd.Flags().Changed("compression-level") {
				lvl = strconv.Itoa(level)
			}
			comp, err := compression.Parse(algorithm, lvl)
			if err != nil {
				return fmt.Errorf("--compression: %w", err)
			}
			dest := args[0]
			if len(args) == 2 {
				dest = args[1]
			}
			if _, err := content.NormalizeTag(dest); errors.Is(err, content.ErrDigestName) {
				return fmt.Errorf("cannot push to %s: push to a tag, not a digest", dest)
			} else if err != nil && len(args) == 1 {
				return fmt.Errorf("%q is not a name to push to; give DEST (kiln push IMAGE REGISTRY/REPO:TAG)", dest)
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			im, err := st.LookupImage(args[0])
			if err != nil {
				if len(args) == 1 {
					// docker's wording for a name that is not in the store
					return fmt.Errorf("an image does not exist locally with the tag: %s", args[0])
				}
				return err
			}
			var progress io.Writer = os.Stderr
			if quiet {
				progress = nil
			}
			res, err := registry.Push(cmd.Context(), st.Content, im.ManifestDesc, dest, registry.PushOptions{
				Registry:    registryConfig(),
				Compression: comp,
				Progress:    progress,
			})
			if err != nil {
				return err
			}
			if len(args) == 2 {
				// the local name pushed under another name records where
				// it now is too (inspect's RepoDigests), like dest does
				_ = st.Content.RecordRepoDigest(args[0], im.ManifestDesc.Digest, res.RepoDigest)
			}
			fmt.Printf("%s: digest: %s size: %d\n", res.Tag, res.Digest, res.Size)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress; print only the final digest line")
	f.StringVar(&algorithm, "compression", compression.Gzip, "layer compression: gzip, zstd or uncompressed")
	f.IntVar(&level, "compression-level", 0, "compression level (gzip 0-9, default 6; zstd 1-22, default 3)")
	return cmd
}
