// Package ops holds the solver's ops: base image and scratch sources, RUN
// (exec in a runc container) and file ops (COPY/ADD, WORKDIR's mkdir). A
// frontend builds their definitions (Exec, Copy, ...: plain data with
// their key components); Worker.Bind gives one the worker it runs with.
// Every op that changes the filesystem works on an overlay of its input
// layers with a fresh upper dir; the upper dir becomes the new layer, so no
// op ever walks or compares a whole rootfs.
package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/runc"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/snapshot"
	digest "github.com/opencontainers/go-digest"
)

// Worker is what ops run with.
type Worker struct {
	Store   *store.Store
	Runtime *runc.Runtime
	// Clamp, if set (SOURCE_DATE_EPOCH), caps every timestamp in new layers.
	Clamp time.Time
	// Secrets provides RUN --mount=type=secret|ssh values; nil = none given.
	Secrets Secrets
	// Fetchers provide layers of imported cache records (--cache-from).
	Fetchers []LayerFetcher
}

// NewWorker returns a worker on store using runtime binary bin ("" = runc).
func NewWorker(st *store.Store, bin string) *Worker {
	return &Worker{Store: st, Runtime: &runc.Runtime{Binary: bin, StateDir: filepath.Join(st.RunDir(), "runc")}}
}

// DefaultPath is the PATH an image without one gets, and what a container
// runs with when its image sets none.
const DefaultPath = runc.DefaultPath

// definition is what every op definition here is: its key components and
// its run with a worker.
type definition interface {
	CacheKey(ctx context.Context) ([]record.Component, error)
	run(ctx context.Context, w *Worker, inputs []solver.Result, log solver.Logger) (solver.Result, error)
}

// bound is a definition with the worker it runs with.
type bound struct {
	definition
	w *Worker
}

func (b bound) Run(ctx context.Context, inputs []solver.Result, log solver.Logger) (solver.Result, error) {
	return b.definition.run(ctx, b.w, inputs, log)
}

// Bind returns the solver op that keys and runs def, one of this package's
// op definitions, with w. It is the solver's Bind: call it once per vertex
// (a bound Download fetches once, for its key and its run).
func (w *Worker) Bind(def any) (solver.Op, error) {
	switch d := def.(type) {
	case *Download:
		return &download{Download: d, w: w}, nil
	case definition:
		return bound{d, w}, nil
	}
	return nil, fmt.Errorf("op %T: not an op definition", def)
}

func component(name string, v any) record.Component {
	s, ok := v.(string)
	if !ok {
		b, _ := json.Marshal(v)
		s = string(b)
	}
	return record.Component{Name: name, Value: s}
}

// scratchDir makes a private directory under run/ for one step; the caller
// removes it.
func (w *Worker) scratchDir() (string, error) {
	b := make([]byte, 6)
	rand.Read(b)
	dir := filepath.Join(w.Store.RunDir(), hex.EncodeToString(b))
	return dir, os.MkdirAll(dir, 0o700)
}

// mutate mounts base's layers with a fresh upper dir at a private rootfs,
// calls fn with the rootfs path, unmounts, lets cleanup tidy the upper dir
// and commits it as a new layer on top of base. A step that changed nothing
// still adds an (empty) layer, like docker's classic builder, so that every
// layer-making instruction maps to exactly one layer and its history
// entry. On any error nothing is left behind.
func (w *Worker) mutate(ctx context.Context, base solver.Result, fn func(rootfs, scratch string) error, cleanup func(upper string) error) (solver.Result, error) {
	lowers, err := w.Store.SnapshotStack(ctx, base.Layers)
	if err != nil {
		return solver.Result{}, err
	}
	upper, err := w.Store.Snapshots.New()
	if err != nil {
		return solver.Result{}, err
	}
	committed := false
	defer func() {
		if !committed {
			w.Store.Snapshots.Remove(upper)
		}
	}()
	scratch, err := w.scratchDir()
	if err != nil {
		return solver.Result{}, err
	}
	defer os.RemoveAll(scratch)
	rootfs := filepath.Join(scratch, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return solver.Result{}, err
	}
	if err := w.Store.Snapshots.Mount(rootfs, lowers, upper); err != nil {
		return solver.Result{}, err
	}
	runErr := fn(rootfs, scratch)
	if err := snapshot.Unmount(rootfs); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return solver.Result{}, runErr
	}
	if cleanup != nil {
		if err := cleanup(w.Store.Snapshots.FS(upper)); err != nil {
			return solver.Result{}, err
		}
	}
	l, _, err := w.Store.CommitSnapshot(ctx, upper, w.Clamp)
	if err != nil {
		return solver.Result{}, err
	}
	committed = true
	layers := append(append([]record.Layer(nil), base.Layers...), l)
	return solver.Result{Layers: layers}, nil
}

// withReadOnly mounts layers read-only at a private dir for fn.
func (w *Worker) withReadOnly(ctx context.Context, layers []record.Layer, fn func(root string) error) error {
	lowers, err := w.Store.SnapshotStack(ctx, layers)
	if err != nil {
		return err
	}
	scratch, err := w.scratchDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	root := filepath.Join(scratch, "src")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if err := w.Store.Snapshots.Mount(root, lowers, ""); err != nil {
		return err
	}
	defer snapshot.Unmount(root)
	return fn(root)
}

// LayerFetcher can bring a layer blob into the store, e.g. from an
// imported build cache (--cache-from).
type LayerFetcher interface {
	Has(diffID digest.Digest) bool
	Fetch(ctx context.Context, st *store.Store, diffID digest.Digest) error
}

// LayersPresent reports whether every layer's blob is in the store, or can
// be fetched from a cache source: a cache record is only a hit if its
// layers can be exported.
func (w *Worker) LayersPresent(ctx context.Context, layers []record.Layer) bool {
	for _, l := range layers {
		if _, ok := w.Store.Content.Has(l.DiffID); ok {
			continue
		}
		fetched := false
		for _, f := range w.Fetchers {
			if f.Has(l.DiffID) && f.Fetch(ctx, w.Store, l.DiffID) == nil {
				fetched = true
				break
			}
		}
		if !fetched {
			return false
		}
	}
	return true
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
