package store

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/atomicfile"
)

// TreesDir holds the trees of context digests (package contenthash): the
// entry list each src:/bind: key component was hashed from, one file per
// digest, so that explain can name the files that changed.
func (s *Store) TreesDir() string { return filepath.Join(s.Root, "trees") }

// scanTrees adds the trees to the reference walk, each held by the cache
// records and the finished builds' records whose key components name it:
// a tree is an explanation of a key, worth keeping as long as something
// names the key. So usage measures trees, the budget counts them, and a
// collection removes those nothing names any more. It runs after the
// records and the builds are scanned.
func (s *Store) scanTrees(g *graph) error {
	ents, err := os.ReadDir(s.TreesDir())
	if err != nil || len(ents) == 0 {
		return nil // no trees kept yet
	}
	trees := map[string]*object{}
	for _, e := range ents {
		if e.IsDir() || atomicfile.IsTemp(e.Name()) {
			continue // repair removes temp files
		}
		fi, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		trees[e.Name()] = g.add(&object{kind: objTree, path: filepath.Join(s.TreesDir(), e.Name()), size: fi.Size(), rank: 5})
	}
	note := func(h *holder, comps []record.Component) {
		for _, c := range comps {
			if strings.HasPrefix(c.Name, "src:") || strings.HasPrefix(c.Name, "bind:") {
				_, hex, _ := strings.Cut(c.Value, ":")
				h.hold(trees[hex])
			}
		}
	}
	for _, h := range g.holders {
		switch h.kind {
		case holdRecord:
			note(h, h.rec.Components)
		case holdBuildRecord:
			var j struct {
				Steps []struct {
					Components []record.Component `json:"components"`
				} `json:"steps"`
			}
			if ReadBuildRecord(filepath.Join(s.BuildsDir(), h.build), &j) != nil {
				continue // damaged: kiln doctor reports it
			}
			for _, st := range j.Steps {
				note(h, st.Components)
			}
		}
	}
	return nil
}

// heldByBuild says whether a finished build's record holds o: a tree a
// journal names is build history (kiln prune -a removes it), not cache.
func heldByBuild(o *object) bool {
	for _, h := range o.holders {
		if h.kind == holdBuildRecord {
			return true
		}
	}
	return false
}
