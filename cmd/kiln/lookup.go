package main

import (
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// findImage resolves what a user typed — a name, a full or short image ID
// (config digest), or a manifest digest — to a stored image.
func findImage(st *store.Store, ref string) (*content.StoredImage, error) {
	if name, err := content.NormalizeName(ref); err == nil {
		if desc, err := st.Content.Resolve(name); err == nil {
			return st.Content.ReadImage(desc)
		}
	}
	imgs, err := loadImages(st, nil)
	if err != nil {
		return nil, err
	}
	im, err := lookupImage(imgs, ref)
	if err != nil {
		return nil, err
	}
	return im.Image, nil
}

// layerSizes measures layers as docker's SIZE columns do (see
// content.Store.LayerContentSize), each layer once per command.
type layerSizes struct {
	st   *store.Store
	memo map[digest.Digest]int64
}

func newLayerSizes(st *store.Store) *layerSizes {
	return &layerSizes{st: st, memo: map[digest.Digest]int64{}}
}

// of is layer's content size; a layer that cannot be read counts its
// blob size, so a damaged layer still shows something.
func (ls *layerSizes) of(layer ocispec.Descriptor) int64 {
	if n, ok := ls.memo[layer.Digest]; ok {
		return n
	}
	n, err := ls.st.Content.LayerContentSize(layer.Digest)
	if err != nil {
		n = layer.Size
	}
	ls.memo[layer.Digest] = n
	return n
}

// image is the content size of all of si's layers.
func (ls *layerSizes) image(si *content.StoredImage) int64 {
	var n int64
	for _, l := range si.Manifest.Layers {
		n += ls.of(l)
	}
	return n
}
