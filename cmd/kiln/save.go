package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cache/atomicfile"
	"github.com/kiln-build/kiln/cache/content"
	"github.com/kiln-build/kiln/exporter/archive"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

func saveCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save -o FILE IMAGE [IMAGE...]",
		Short: "Save images to a tar (OCI layout + docker manifest.json) that docker load, kiln load, skopeo and umoci read",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			var images []archive.SaveImage
			for _, ref := range args {
				si, err := findImage(store, ref)
				if err != nil {
					return err
				}
				img := archive.SaveImage{Manifest: si.ManifestDesc}
				if name, err := content.NormalizeName(ref); err == nil {
					if d, err := store.Content.Resolve(name); err == nil && d.Digest == si.ManifestDesc.Digest {
						img.Names = []string{name}
					}
				}
				images = append(images, img)
			}
			if output == "" {
				if stdoutIsTerminal() {
					return errors.New("refusing to write a tar to a terminal: use -o FILE or redirect stdout")
				}
				w := bufio.NewWriterSize(os.Stdout, 1<<20)
				if err := archive.Save(cmd.Context(), w, store.Content, images); err != nil {
					return err
				}
				return w.Flush()
			}
			// Atomic: a killed save leaves no half-written FILE.
			return atomicfile.Write(output, 0o644, func(w io.Writer) error {
				return archive.Save(cmd.Context(), w, store.Content, images)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

func loadCmd() *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a tar (OCI layout or docker save format)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			var r io.Reader = os.Stdin
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			before, err := store.Content.Blobs()
			if err != nil {
				return err
			}
			loaded, err := archive.Load(cmd.Context(), bufio.NewReaderSize(r, 1<<20), store.Content)
			// Load stores every file of the archive as it streams by; what
			// no image uses (all of it, for a broken archive) goes again.
			removeNewBlobs(store, before)
			if err != nil {
				return err
			}
			for _, l := range loaded {
				if len(l.Names) == 0 {
					fmt.Println("Loaded image ID:", l.ID)
				}
				for _, n := range l.Names {
					fmt.Println("Loaded image:", content.FamiliarName(n))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from FILE instead of stdin")
	return cmd
}

func importCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|- [REPOSITORY[:TAG]]",
		Short: "Create a one-layer image from a rootfs tarball (like docker import)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			var r io.Reader = os.Stdin
			if args[0] != "-" {
				f, err := os.Open(filepath.Clean(args[0]))
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			created := time.Now().UTC()
			if epoch, err := sourceDateEpoch(nil); err != nil {
				return err
			} else if epoch != nil {
				created = *epoch
			}
			desc, err := archive.Import(cmd.Context(), bufio.NewReaderSize(r, 1<<20), store.Content, created)
			if err != nil {
				return err
			}
			if len(args) == 2 {
				name, err := content.NormalizeName(args[1])
				if err != nil {
					return err
				}
				if err := store.Content.Tag(name, desc); err != nil {
					return err
				}
			} else if err := store.Content.AddUntagged(desc); err != nil {
				return err
			}
			si, err := store.Content.ReadImage(desc)
			if err != nil {
				return err
			}
			fmt.Println(si.ID())
			return nil
		},
	}
}

// removeNewBlobs removes the blobs that are in the store now but were not
// in before, unless something refers to them (see
// cache.Store.RemoveUnreferencedBlobs, which does nothing while other kiln
// processes are running; prune collects them then).
func removeNewBlobs(store *cache.Store, before []digest.Digest) {
	after, err := store.Content.Blobs()
	if err != nil {
		return
	}
	had := make(map[digest.Digest]bool, len(before))
	for _, d := range before {
		had[d] = true
	}
	var added []digest.Digest
	for _, d := range after {
		if !had[d] {
			added = append(added, d)
		}
	}
	store.RemoveUnreferencedBlobs(added)
}
