package analyze

import (
	"io"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// StoredLayers are the layers of the stored image ref names (see
// store.LookupImage), bottom first.
func StoredLayers(st *store.Store, ref string) ([]Layer, error) {
	si, err := st.LookupImage(ref)
	if err != nil {
		return nil, err
	}
	return ImageLayers(st, si), nil
}

// ImageLayers are si's layers, bottom first, each with the history line
// that made it (store.HistoryOf pairs them) and opening its blob: locally
// every layer blob is an uncompressed tar.
func ImageLayers(st *store.Store, si *content.StoredImage) []Layer {
	layers := make([]Layer, len(si.Manifest.Layers))
	for i, d := range si.Manifest.Layers {
		layers[i] = Layer{DiffID: d.Digest, Open: func() (io.ReadSeekCloser, error) { return st.Content.Open(d.Digest) }}
	}
	// HistoryOf is newest first: its k-th entry with a layer made the
	// k-th layer from the top.
	k := 0
	for _, h := range store.HistoryOf(si, func(ocispec.Descriptor) int64 { return 0 }) {
		if h.Layer != nil {
			layers[len(layers)-1-k].CreatedBy = h.CreatedBy
			k++
		}
	}
	return layers
}
