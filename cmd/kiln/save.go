package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/transport/archive"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func saveCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save -o FILE IMAGE [IMAGE...]",
		Short: "Save images to a tar (OCI layout + docker manifest.json) that docker load, kiln load, skopeo and umoci read",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			var images []archive.SaveImage
			for _, ref := range args {
				si, names, err := st.LookupImageNamed(ref)
				if err != nil {
					return err
				}
				images = append(images, archive.SaveImage{Manifest: si.ManifestDesc, Names: names})
			}
			if output == "" {
				if stdoutIsTerminal() {
					return errors.New("refusing to write a tar to a terminal: use -o FILE or redirect stdout")
				}
				w := bufio.NewWriterSize(os.Stdout, 1<<20)
				if err := archive.Save(cmd.Context(), w, st.Content, images); err != nil {
					return err
				}
				return w.Flush()
			}
			// Atomic: a killed save leaves no half-written FILE.
			return atomicfile.Write(output, 0o644, func(w io.Writer) error {
				return archive.Save(cmd.Context(), w, st.Content, images)
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
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			var r io.Reader = os.Stdin
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			loaded, err := archive.LoadInto(cmd.Context(), bufio.NewReaderSize(r, 1<<20), st)
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
	// docker load -q hides the progress bars; kiln load has none to hide,
	// so the flag is accepted for scripts that pass it
	cmd.Flags().BoolP("quiet", "q", false, "suppress the load output (kiln prints only the loaded names)")
	return cmd
}

func importCmd() *cobra.Command {
	var changes []string
	var message string
	cmd := &cobra.Command{
		Use:   "import FILE|- [REPOSITORY[:TAG]]",
		Short: "Create a one-layer image from a rootfs tarball (like docker import)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var name string
			if len(args) == 2 {
				n, err := content.NormalizeTag(args[1])
				if errors.Is(err, content.ErrDigestName) {
					return fmt.Errorf("cannot import to %s: name the image with a tag, not a digest", args[1])
				} else if err != nil {
					return err
				}
				name = n
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
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
			si, err := archive.ImportInto(cmd.Context(), bufio.NewReaderSize(r, 1<<20), st, name, archive.ImportOptions{
				Created: created, Message: message,
				Edit: func(img *dockerspec.DockerOCIImage) error { return dockerfile.ApplyChanges(img, changes) },
			})
			if err != nil {
				return err
			}
			fmt.Println(si.ID())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)")
	f.StringVarP(&message, "message", "m", "", "comment of the imported layer's history entry")
	return cmd
}
