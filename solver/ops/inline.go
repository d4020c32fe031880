package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
)

// InlineFile is a file whose content is in the Dockerfile (COPY <<EOF).
type InlineFile struct {
	Path string `json:"path"`
	Data string `json:"-"`
}

// WriteFiles writes inline files into its input (COPY/ADD heredocs).
type WriteFiles struct {
	Files []InlineFile
	Chown string
	Chmod string
}

func (o *WriteFiles) CacheKey(context.Context) ([]record.Component, error) {
	comps := []record.Component{component("op", "mkfile"), component("chown", o.Chown), component("chmod", o.Chmod)}
	for _, f := range o.Files {
		sum := sha256.Sum256([]byte(f.Data))
		comps = append(comps, component("file:"+f.Path, hex.EncodeToString(sum[:])))
	}
	return comps, nil
}

func (o *WriteFiles) run(ctx context.Context, w *Worker, inputs []solver.Result, _ solver.Logger) (solver.Result, error) {
	mode, err := parseChmod(o.Chmod)
	if err != nil {
		return solver.Result{}, err
	}
	return w.mutate(ctx, inputs[0], func(rootfs, _ string) error {
		uid, gid := 0, 0
		if o.Chown != "" {
			own, err := resolveChown(rootfs, o.Chown)
			if err != nil {
				return err
			}
			uid, gid = own.UID, own.GID
		}
		for _, f := range o.Files {
			if err := mkdirAll(rootfs, path.Dir(path.Clean(f.Path)), uid, gid); err != nil {
				return err
			}
			p, err := securejoin.SecureJoin(rootfs, f.Path)
			if err != nil {
				return err
			}
			perm := os.FileMode(0o644)
			if mode != nil {
				perm = *mode
			}
			os.Remove(p)
			if err := os.WriteFile(p, []byte(f.Data), perm); err != nil {
				return err
			}
			if err := os.Chmod(p, perm); err != nil {
				return err
			}
			if err := os.Lchown(p, uid, gid); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}
