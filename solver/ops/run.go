package ops

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver/runc"
	"github.com/kiln-build/kiln/store/snapshot"
)

// RunContainer runs one process in an ephemeral container on layers (for
// `kiln run --rm`): its writable layer is thrown away afterwards.
func (w *Worker) RunContainer(ctx context.Context, layers []record.Layer, args, env []string, cwd, user, network string, out io.Writer) error {
	lowers, err := w.Store.SnapshotStack(ctx, layers)
	if err != nil {
		return err
	}
	upper, err := w.Store.Snapshots.New()
	if err != nil {
		return err
	}
	defer w.Store.Snapshots.Remove(upper)
	scratch, err := w.scratchDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	rootfs := filepath.Join(scratch, "rootfs")
	bundle := filepath.Join(scratch, "bundle")
	for _, d := range []string{rootfs, bundle} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := w.Store.Snapshots.Mount(rootfs, lowers, upper); err != nil {
		return err
	}
	defer snapshot.Unmount(rootfs)
	uid, gid, extra, err := runc.ResolveUser(rootfs, user)
	if err != nil {
		return err
	}
	if cwd == "" {
		cwd = "/"
	}
	p := runc.Process{Args: args, Env: runc.WithDefaultPath(env), Cwd: cwd, UID: uid, GID: gid, AdditionalGids: extra, Network: network}
	return w.Runtime.Run(ctx, "kiln-run-"+filepath.Base(scratch), bundle, rootfs, p, out)
}
