package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kiln-build/kiln/analyze"
	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

func diffCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff [OPTIONS] CONTAINER | IMAGE IMAGE",
		Short: "Show a container's changes to its image's files, or the changes between two images",
		Long: `With one argument, show what a container changed in its image's
filesystem, as docker diff does: one line per path, A added, C changed,
D deleted, a directory's line before those of what is in it.

With two, show how the second image's filesystem differs from the first's,
in the same form. A changed line says what changed: type, mode, owner,
size, link target, and for a regular file whose content differs its
sha256 in both images. Modification times are not compared. No output
means no differences.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 || len(args) == 2 {
				return nil
			}
			return fmt.Errorf(`"kiln diff" needs a container or two images, got %d arguments: kiln diff CONTAINER | kiln diff IMAGE IMAGE`, len(args))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			if len(args) == 1 {
				return containerDiff(cmd.Context(), st, args[0], asJSON)
			}
			var layers [2][]analyze.Layer
			for i, ref := range args {
				if layers[i], err = analyze.StoredLayers(st, ref); err != nil {
					return err
				}
			}
			changes, err := analyze.Diff(cmd.Context(), layers[0], layers[1])
			if err != nil {
				return fmt.Errorf("diff %s %s: %w", args[0], args[1], err)
			}
			if asJSON {
				return writeJSON(os.Stdout, changes)
			}
			return writeChanges(os.Stdout, changes)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the changes as JSON")
	return cmd
}

// containerDiff prints docker diff's lines for the container ref names.
func containerDiff(ctx context.Context, st *store.Store, ref string, asJSON bool) error {
	c, err := st.LookupContainer(ref)
	if errors.Is(err, store.ErrNoSuchContainer) {
		if _, ierr := st.LookupImage(ref); ierr == nil {
			return fmt.Errorf("%w (%s is an image: kiln diff IMAGE IMAGE compares two)", err, ref)
		}
	}
	if err != nil {
		return err
	}
	changes, err := container.Changes(ctx, st, c)
	if err != nil {
		return err
	}
	if asJSON {
		if changes == nil {
			changes = []container.Change{}
		}
		return writeJSON(os.Stdout, changes)
	}
	w := bufio.NewWriter(os.Stdout)
	for _, ch := range changes {
		fmt.Fprintln(w, ch)
	}
	return w.Flush()
}

// writeChanges prints one line per change: "C /etc/passwd (size 1.2kB →
// 1.3kB, sha256:ab12… → sha256:cd34…)".
func writeChanges(w io.Writer, changes []analyze.Change) error {
	for _, c := range changes {
		var details []string
		switch c.Kind {
		case "A":
			if c.After.Type != "dir" {
				details = append(details, describe(c.After))
			}
		case "C":
			details = changeDetails(c)
		}
		line := c.Kind + " " + c.Path
		if len(details) > 0 {
			line += " (" + strings.Join(details, ", ") + ")"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// describe is an added path's type and size ("1.3kB", "symlink → busybox").
func describe(f *analyze.FileInfo) string {
	switch f.Type {
	case "file":
		return humanSize(f.Size)
	case "symlink", "hardlink":
		return f.Type + " → " + f.Linkname
	}
	return f.Type
}

func changeDetails(c analyze.Change) []string {
	a, b := c.Before, c.After
	var out []string
	for _, what := range c.What {
		switch what {
		case "type":
			out = append(out, "type "+a.Type+" → "+b.Type)
		case "mode":
			out = append(out, "mode "+a.Mode+" → "+b.Mode)
		case "owner":
			out = append(out, fmt.Sprintf("owner %d:%d → %d:%d", a.UID, a.GID, b.UID, b.GID))
		case "size":
			out = append(out, "size "+humanSize(a.Size)+" → "+humanSize(b.Size))
		case "link":
			out = append(out, "link "+a.Linkname+" → "+b.Linkname)
		case "content":
			out = append(out, shortDigest(string(a.Digest))+" → "+shortDigest(string(b.Digest)))
		}
	}
	return out
}

// shortDigest is "sha256:" and the first 12 hex digits of d, then "…".
func shortDigest(d string) string { return "sha256:" + store.ShortID(d) + "…" }
