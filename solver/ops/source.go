package ops

import (
	"context"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/store/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a base image from the local store, keyed by its manifest digest.
type Image struct {
	Ref      string
	Manifest ocispec.Descriptor
}

func (i *Image) CacheKey(context.Context) ([]record.Component, error) {
	return []record.Component{component("op", "image"), component("manifest", string(i.Manifest.Digest))}, nil
}

func (i *Image) run(ctx context.Context, w *Worker, _ []solver.Result, _ solver.Logger) (solver.Result, error) {
	im, err := w.Store.Content.ReadImage(i.Manifest)
	if err != nil {
		return solver.Result{}, errorf("image %s: %w", i.Ref, err)
	}
	return solver.Result{Layers: ImageLayers(im)}, nil
}

// ImageLayers lists a stored image's layers, bottom first.
func ImageLayers(im *content.StoredImage) []record.Layer {
	out := make([]record.Layer, len(im.Config.RootFS.DiffIDs))
	for j, d := range im.Config.RootFS.DiffIDs {
		out[j] = record.Layer{DiffID: d, Size: im.Manifest.Layers[j].Size}
	}
	return out
}

// Scratch is the empty filesystem.
type Scratch struct{}

func (Scratch) CacheKey(context.Context) ([]record.Component, error) {
	return []record.Component{component("op", "scratch")}, nil
}

func (Scratch) run(context.Context, *Worker, []solver.Result, solver.Logger) (solver.Result, error) {
	return solver.Result{}, nil
}
