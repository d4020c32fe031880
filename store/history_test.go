package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// historyImage has layers l0..l(n-1) of size 100*(i+1) and history entries
// named after their CreatedBy; an entry ending in " (empty)" is
// empty_layer.
func historyImage(layers int, entries ...string) *content.StoredImage {
	si := &content.StoredImage{}
	for i := range layers {
		si.Manifest.Layers = append(si.Manifest.Layers, ocispec.Descriptor{Digest: digest.FromString(fmt.Sprint("l", i)), Size: int64(100 * (i + 1))})
	}
	for _, e := range entries {
		si.Config.History = append(si.Config.History, ocispec.History{CreatedBy: e, EmptyLayer: strings.HasSuffix(e, " (empty)")})
	}
	return si
}

// historyText is each entry as "CREATEDBY=LAYER/SIZE", LAYER the index of
// the layer it made or "-".
func historyText(si *content.StoredImage, entries []HistoryEntry) string {
	var out []string
	for _, e := range entries {
		l := "-"
		for i := range si.Manifest.Layers {
			if e.Layer == &si.Manifest.Layers[i] {
				l = fmt.Sprint("l", i)
			}
		}
		out = append(out, fmt.Sprintf("%s=%s/%d", e.CreatedBy, l, e.Size))
	}
	return strings.Join(out, " ")
}

func TestHistoryOfPairsEntriesWithLayers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		layers  int
		entries []string
		want    string
	}{
		{"each entry made one layer, newest first", 2, []string{"ADD", "RUN"}, "RUN=l1/200 ADD=l0/100"},
		{"empty_layer entries make none", 2, []string{"ADD", "ENV (empty)", "RUN", "CMD (empty)"},
			"CMD (empty)=-/0 RUN=l1/200 ENV (empty)=-/0 ADD=l0/100"},
		{"entries beyond the layers get none, the oldest first", 1, []string{"ADD", "COPY", "RUN"}, "RUN=l0/100 COPY=-/0 ADD=-/0"},
		{"layers beyond the entries are not shown", 3, []string{"RUN"}, "RUN=l2/300"},
		{"no history shows nothing", 1, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si := historyImage(tc.layers, tc.entries...)
			size := func(d ocispec.Descriptor) int64 { return d.Size }
			if got := historyText(si, HistoryOf(si, size)); got != tc.want {
				t.Errorf("HistoryOf = %s\nwant      %s", got, tc.want)
			}
		})
	}
}

func TestHistoryLooksUpTheImageAndMeasuresLayers(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "app:1", "a")
	if _, _, err := s.History("nothere:1"); err == nil {
		t.Errorf("History of a missing image found one")
	}
	si, entries, err := s.History("app:1")
	must(t, err)
	if si.ID() != a.config {
		t.Errorf("History found %s, want %s", si.ID(), a.config)
	}
	if len(entries) != 0 {
		t.Errorf("an image without history has %d entries", len(entries))
	}
	si.Config.History = []ocispec.History{{CreatedBy: "ADD"}}
	sized := HistoryOf(si, s.NewLayerSizes().Of)
	if len(sized) != 1 || sized[0].Size == 0 || sized[0].Size != s.NewLayerSizes().Image(si) {
		t.Errorf("HistoryOf with the store's sizes = %+v", sized)
	}
}
