package store

import (
	"github.com/kiln-build/kiln/store/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// HistoryEntry is one entry of an image config's history with the layer it
// made, as docker history shows it.
type HistoryEntry struct {
	ocispec.History
	// Layer is the manifest layer this entry made; nil for an entry
	// marked empty_layer, and for one left without a layer when the config
	// lists more non-empty entries than the manifest has layers.
	Layer *ocispec.Descriptor
	// Size is Layer's content size (see LayerSizes), 0 without a layer.
	Size int64
}

// HistoryOf pairs si's history with its layers, newest entry first: walking
// back from the newest entry, each entry not marked empty_layer made the
// newest layer not yet taken. size measures a layer.
func HistoryOf(si *content.StoredImage, size func(ocispec.Descriptor) int64) []HistoryEntry {
	hist := si.Config.History
	layers := si.Manifest.Layers
	out := make([]HistoryEntry, 0, len(hist))
	layer := len(layers) - 1
	for i := len(hist) - 1; i >= 0; i-- {
		e := HistoryEntry{History: hist[i]}
		if !e.EmptyLayer && layer >= 0 {
			e.Layer = &layers[layer]
			e.Size = size(layers[layer])
			layer--
		}
		out = append(out, e)
	}
	return out
}

// History is `history`: the image ref names (see LookupImage) and its
// history entries with the layers they made and their sizes, newest first.
func (s *Store) History(ref string) (*content.StoredImage, []HistoryEntry, error) {
	si, err := s.LookupImage(ref)
	if err != nil {
		return nil, nil, err
	}
	return si, HistoryOf(si, s.NewLayerSizes().Of), nil
}
