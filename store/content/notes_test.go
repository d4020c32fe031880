package content

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestLayerNotesRoundTripAndList(t *testing.T) {
	s := openStore(t)
	layer := digest.FromString("layer")
	gz := digest.FromString("gzipped")
	if _, err := s.Compressed(layer, "gzip-6"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Compressed before any note = %v, want ErrNotExist", err)
	}
	must(t, s.RememberCompressed(layer, "gzip-6", gz))
	must(t, s.WriteNote(NoteSources, layer, []byte(`[]`)))
	got, err := s.Compressed(layer, "gzip-6")
	must(t, err)
	if got != gz {
		t.Errorf("Compressed = %s, want %s", got, gz)
	}
	if b, err := s.ReadNote(NoteSources, layer); err != nil || string(b) != "[]" {
		t.Errorf("ReadNote = %q, %v", b, err)
	}
	// The layout other tools and older kilns know.
	if _, err := os.Stat(filepath.Join(s.Dir(), "compressed", "gzip-6", layer.Encoded())); err != nil {
		t.Error(err)
	}
	must(t, os.WriteFile(filepath.Join(s.Dir(), "sources", "junk"), nil, 0o644))

	notes, err := s.Notes()
	must(t, err)
	var kinds []string
	for _, n := range notes {
		switch {
		case n.DiffID == "":
			kinds = append(kinds, "junk")
		case n.Kind == NoteSources:
			kinds = append(kinds, "sources")
		default:
			d, err := n.CompressedTarget()
			must(t, err)
			if d != gz {
				t.Errorf("CompressedTarget = %s, want %s", d, gz)
			}
			kinds = append(kinds, n.Kind)
		}
	}
	slices.Sort(kinds)
	if want := []string{"compressed/gzip-6", "junk", "sources"}; !slices.Equal(kinds, want) {
		t.Errorf("Notes kinds = %q, want %q", kinds, want)
	}
}
