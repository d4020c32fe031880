// Package exporter turns build results into images: it writes the config
// and manifest of a result into the store (the store is the cache, so a
// tag costs one manifest write). Its sub-packages carry out `kiln build -o`
// (output, local) and make the compressed copies of layers that leave the
// machine (compression); tarballs and registries are transport/'s.
package exporter

import (
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/store/content"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image writes an image made of layers (bottom first; their blobs are in
// the store, uncompressed) with config img, and returns its manifest
// descriptor. created fixes the creation time (SOURCE_DATE_EPOCH); zero
// means now.
func Image(store *content.Store, img dockerspec.DockerOCIImage, layers []record.Layer, created time.Time) (ocispec.Descriptor, error) {
	if created.IsZero() {
		created = time.Now().UTC()
	}
	img.Created = &created
	img.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: make([]digest.Digest, len(layers))}
	descs := make([]ocispec.Descriptor, len(layers))
	for i, l := range layers {
		img.RootFS.DiffIDs[i] = l.DiffID
		descs[i] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.DiffID, Size: l.Size}
	}
	for i := range img.History {
		if img.History[i].Created == nil {
			img.History[i].Created = &created
		}
	}
	return store.WriteImage(img, descs)
}
