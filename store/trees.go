package store

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/cache/record"
)

// TreesDir holds the trees of context digests (package contenthash): the
// entry list each src:/bind: key component was hashed from, one file per
// digest, so that explain can name the files that changed.
func (s *Store) TreesDir() string { return filepath.Join(s.Root, "trees") }

// sweepTrees removes the trees that no cache record and no build journal
// refers to. It runs after the collection removed records: a tree is an
// explanation of a key, worth keeping as long as something names the key.
func (s *Store) sweepTrees(rep *GCReport) error {
	ents, err := os.ReadDir(s.TreesDir())
	if err != nil || len(ents) == 0 {
		return nil // no trees kept yet
	}
	used := map[string]bool{}
	note := func(comps []record.Component) {
		for _, c := range comps {
			if strings.HasPrefix(c.Name, "src:") || strings.HasPrefix(c.Name, "bind:") {
				_, hex, _ := strings.Cut(c.Value, ":")
				used[hex] = true
			}
		}
	}
	recs, err := s.Records.All()
	if err != nil {
		return err
	}
	for _, r := range recs {
		note(r.Components)
	}
	journals, _ := filepath.Glob(filepath.Join(s.BuildsDir(), "*", BuildRecordFile))
	for _, p := range journals {
		var j struct {
			Steps []struct {
				Components []record.Component `json:"components"`
			} `json:"steps"`
		}
		if ReadBuildRecord(filepath.Dir(p), &j) != nil {
			continue
		}
		for _, st := range j.Steps {
			note(st.Components)
		}
	}
	for _, e := range ents {
		if used[e.Name()] {
			continue
		}
		// counted as an object, not in Reclaimed: usage (df) does not
		// measure trees either, and what prune reclaims is what df said
		if os.Remove(filepath.Join(s.TreesDir(), e.Name())) == nil {
			rep.Objects++
		}
	}
	return nil
}
