package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store/content"
)

// FuzzLoad: any bytes either load as images or fail cleanly; a failed load
// writes no tag, and nothing lands outside the store.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/fuzz-seeds/*.tar")
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
		inIndex := uniqueManifests(imgs)
		for _, l := range loaded {
			if !inIndex[string(l.Manifest.Digest)] {
				t.Fatalf("loaded image %s is not in index.json", l.Manifest.Digest)
			}
			if _, err := s.ReadImage(l.Manifest); err != nil {
				t.Fatalf("loaded image %s cannot be read back: %v", l.Manifest.Digest, err)
			}
		}
		// whatever happened, no temp file is left behind
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && atomicfile.IsTemp(p) {
				t.Fatalf("load left a temp file: %s", p)
			}
			return nil
		})
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
