package analyze

import (
	"context"
	"path"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// LayersOptions tune Layers.
type LayersOptions struct {
	// Top is how many of each layer's largest files and directories to
	// list (5 when 0).
	Top int
}

// Report is what Layers finds in an image.
type Report struct {
	Layers []LayerReport `json:"layers"`
	// Size is the sum of the layers' sizes (as docker's SIZE counts them).
	Size int64 `json:"size"`
	// WastedBytes is what the layers carry that a later layer deletes or
	// overwrites, so the final filesystem never shows it.
	WastedBytes int64 `json:"wasted_bytes"`
	// Efficiency is 100 × (1 − WastedBytes/Size), in percent; 100 for an
	// empty image.
	Efficiency float64 `json:"efficiency"`
	// Wasted lists the wasted bytes, largest first: one row per path a
	// later layer named and the layer the bytes came from.
	Wasted []Waste `json:"wasted"`
}

// LayerReport is one layer.
type LayerReport struct {
	Index     int           `json:"index"` // 1 for the bottom layer
	DiffID    digest.Digest `json:"diff_id"`
	CreatedBy string        `json:"created_by"`
	Size      int64         `json:"size"`
	Files     int           `json:"files"` // entries in the layer tar, whiteouts not counted
	// Wasted is how much of Size a later layer deletes or overwrites.
	Wasted int64 `json:"wasted"`
	// Largest are the layer's largest files and directories (a
	// directory's size is what this layer puts below it), largest first.
	Largest []PathSize `json:"largest"`
}

// PathSize is a file or directory of a layer and its size.
type PathSize struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	Dir  bool   `json:"dir,omitempty"`
}

// Waste is bytes that layer AddedBy put under Path and layer RemovedBy
// deleted or overwrote there.
type Waste struct {
	// Path is the path RemovedBy named: the deleted or overwritten path,
	// or the opaque directory whose lower contents it hid.
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Files int    `json:"files"` // how many of AddedBy's entries went
	// How is "deleted" (a whiteout or an opaque directory) or
	// "overwritten" (a later entry at the same path, or a non-directory
	// put where a directory was).
	How           string `json:"how"`
	AddedBy       int    `json:"added_by"` // layer index, 1 for the bottom
	AddedByLine   string `json:"added_by_line"`
	RemovedBy     int    `json:"removed_by"`
	RemovedByLine string `json:"removed_by_line"`
}

// Layers analyses the layers of an image, bottom first.
func Layers(ctx context.Context, layers []Layer, opts LayersOptions) (*Report, error) {
	top := opts.Top
	if top <= 0 {
		top = 5
	}
	rep := &Report{Layers: make([]LayerReport, len(layers)), Wasted: []Waste{}}
	w := newWasteBook()
	t := &tree{lost: w.lost}
	for i, l := range layers {
		p, err := parse(ctx, l, i)
		if err != nil {
			return nil, err
		}
		t.apply(p)
		rep.Layers[i] = LayerReport{Index: i + 1, DiffID: l.DiffID, CreatedBy: l.CreatedBy,
			Size: p.bytes, Files: countEntries(p), Largest: largest(p, top)}
		rep.Size += p.bytes
	}
	for _, wr := range w.rows() {
		wr.AddedByLine = layers[wr.AddedBy-1].CreatedBy
		wr.RemovedByLine = layers[wr.RemovedBy-1].CreatedBy
		rep.Layers[wr.AddedBy-1].Wasted += wr.Size
		rep.WastedBytes += wr.Size
		rep.Wasted = append(rep.Wasted, wr)
	}
	rep.Efficiency = 100
	if rep.Size > 0 {
		rep.Efficiency = 100 * (1 - float64(rep.WastedBytes)/float64(rep.Size))
	}
	return rep, nil
}

func countEntries(p *parsed) int {
	n := 0
	for _, r := range p.records {
		if r.kind == addEntry {
			n++
		}
	}
	return n
}

// largest is the top n files and directories of layer p by size; a
// directory counts the bytes of p's entries below it. The root is left
// out: it is the layer's size.
func largest(p *parsed, n int) []PathSize {
	var all []PathSize
	dirs := map[string]int64{}
	for _, r := range p.records {
		if r.kind != addEntry || r.e.bytes == 0 {
			continue
		}
		all = append(all, PathSize{Path: r.path, Size: r.e.bytes})
		for d := path.Dir(r.path); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] += r.e.bytes
		}
	}
	for d, size := range dirs {
		all = append(all, PathSize{Path: d, Size: size, Dir: true})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Size != all[j].Size {
			return all[i].Size > all[j].Size
		}
		return all[i].Path < all[j].Path
	})
	if len(all) > n {
		all = all[:n]
	}
	for i := range all {
		all[i].Path = "/" + all[i].Path
	}
	return all
}

// wasteBook adds up what the tree reports lost, by the path the removing
// layer named and the layer that added the bytes. A lost file that still
// has a live hard link in its layer is not wasted: its bytes move to the
// link.
type wasteBook struct {
	byKey map[wasteKey]*Waste
	keys  []wasteKey
	dead  map[*entry]bool
	carry map[*entry]int64 // bytes moved to a hard link from its lost target
}

type wasteKey struct {
	at             string
	added, removed int
	how            string
}

func newWasteBook() *wasteBook {
	return &wasteBook{byKey: map[wasteKey]*Waste{}, dead: map[*entry]bool{}, carry: map[*entry]int64{}}
}

func (w *wasteBook) lost(at string, e *entry, by *parsed, how string) {
	w.dead[e] = true
	b, moved := w.carry[e]
	if !moved && e.target == nil {
		b = e.bytes
	}
	if b == 0 {
		return
	}
	group := e
	if e.target != nil {
		group = e.target
	}
	for _, m := range append([]*entry{group}, group.links...) {
		if !w.dead[m] {
			w.carry[m] = b
			return
		}
	}
	k := wasteKey{at: at, added: e.src.pos + 1, removed: by.pos + 1, how: how}
	row := w.byKey[k]
	if row == nil {
		row = &Waste{Path: "/" + strings.TrimPrefix(at, "/"), How: how, AddedBy: k.added, RemovedBy: k.removed}
		w.byKey[k] = row
		w.keys = append(w.keys, k)
	}
	row.Size += b
	row.Files++
}

// rows are the wasted bytes, largest first.
func (w *wasteBook) rows() []Waste {
	out := make([]Waste, 0, len(w.keys))
	for _, k := range w.keys {
		out = append(out, *w.byKey[k])
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Size != b.Size {
			return a.Size > b.Size
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.AddedBy != b.AddedBy {
			return a.AddedBy < b.AddedBy
		}
		return a.RemovedBy < b.RemovedBy
	})
	return out
}
