package main

import (
	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cache/content"
)

// findImage resolves what a user typed — a name, a full or short image ID
// (config digest), or a manifest digest — to a stored image.
func findImage(store *cache.Store, ref string) (*content.StoredImage, error) {
	if name, err := content.NormalizeName(ref); err == nil {
		if desc, err := store.Content.Resolve(name); err == nil {
			return store.Content.ReadImage(desc)
		}
	}
	imgs, err := loadImages(store, nil)
	if err != nil {
		return nil, err
	}
	im, err := lookupImage(imgs, ref)
	if err != nil {
		return nil, err
	}
	return im.Image, nil
}
