package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/cache/content"
)

// FuzzLoad: any bytes either load as images or fail cleanly; a failed load
// writes no tag, and nothing lands outside the store.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/fuzz-seeds/*")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		s, err := content.Open(filepath.Join(dir, "store"))
		if err != nil {
			t.Fatal(err)
		}
		loaded, err := Load(context.Background(), bytes.NewReader(data), s)
		imgs, ierr := s.Images()
		if ierr != nil {
			t.Fatalf("index.json unreadable after a load: %v", ierr)
		}
		if err != nil && len(imgs) != 0 {
			t.Fatalf("failed load left %d index entries", len(imgs))
		}
		if err == nil && len(loaded) != len(uniqueManifests(imgs)) {
			t.Logf("loaded %d images, index has %d manifests", len(loaded), len(uniqueManifests(imgs)))
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Fatalf("load created %v next to the store", ents)
		}
	})
}

func uniqueManifests(imgs []content.Image) map[string]bool {
	out := map[string]bool{}
	for _, im := range imgs {
		out[string(im.Descriptor.Digest)] = true
	}
	return out
}
