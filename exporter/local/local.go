// Package local exports an image's final root filesystem: into a plain
// directory (-o type=local,dest=DIR) or as one tar (-o type=tar).
//
// Both read the image through a read-only overlay mount of its layer
// snapshots, the same mount a build step uses. overlayfs has already
// applied every whiteout and opaque directory there, so the merged tree
// is exactly the rootfs a container sees, with owners, modes, xattrs,
// symlinks and hardlinks intact, and nothing has to be re-applied layer by
// layer.
package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver/filecopy"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/layer"
	"github.com/kiln-build/kiln/store/snapshot"
)

// WithRootfs mounts the layers (bottom first) read-only at a private
// directory under the store's run/ and calls fn with its path. The mount
// and the directory are gone when WithRootfs returns; after a crash the
// next kiln command removes them (run/ is crash-cleaned).
func WithRootfs(ctx context.Context, st *store.Store, layers []record.Layer, fn func(root string) error) (err error) {
	lowers, err := st.SnapshotStack(ctx, layers)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(st.RunDir(), "export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	root := filepath.Join(scratch, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if err := st.Snapshots.Mount(root, lowers, ""); err != nil {
		return err
	}
	defer func() {
		if uerr := snapshot.Unmount(root); uerr != nil && err == nil {
			err = uerr
		}
	}()
	return fn(root)
}

// WriteDir writes the rootfs of layers into dest, creating dest if it is
// missing. As with BuildKit's local exporter, what dest already holds is
// kept unless the image has an entry of the same name, which replaces it
// (directories merge). Owners are kept as they are in the image, so
// writing files owned by other users needs root.
func WriteDir(ctx context.Context, st *store.Store, layers []record.Layer, dest string) error {
	dest, err := filepath.Abs(dest)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(dest); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dest)
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	return WithRootfs(ctx, st, layers, func(root string) error {
		return filecopy.Copy(ctx, root, []string{"."}, dest, "/", filecopy.Options{})
	})
}

// WriteTar writes the rootfs of layers to w as one tar: entries depth
// first in byte order of their names, relative names without "./",
// directories with a trailing "/", hardlinks as link entries, xattrs
// (user.*, security.capability) as PAX records. Timestamps are the files'
// own mtimes, so the same image gives the same bytes.
func WriteTar(ctx context.Context, st *store.Store, layers []record.Layer, w io.Writer) error {
	return WithRootfs(ctx, st, layers, func(root string) error {
		// layer.WriteTar converts overlay whiteouts into ".wh." entries;
		// a merged mount shows none (they have been applied), so what it
		// writes here is the plain rootfs.
		_, _, err := layer.WriteTar(ctx, root, w, layer.WriteOptions{})
		return err
	})
}
