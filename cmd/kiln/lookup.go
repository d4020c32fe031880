package main

import (
	"fmt"
	"strings"

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
	rows, err := listImages(store)
	if err != nil {
		return nil, err
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) >= 4 {
		var found *content.StoredImage
		for _, r := range rows {
			if strings.HasPrefix(strings.TrimPrefix(r.id, "sha256:"), hex) ||
				strings.TrimPrefix(string(r.image.ManifestDesc.Digest), "sha256:") == hex {
				if found != nil && found.ID() != r.image.ID() {
					return nil, fmt.Errorf("image ID prefix %q is ambiguous", ref)
				}
				found = r.image
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("no such image: %s", ref)
}
