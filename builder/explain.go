package builder

import (
	"sync"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/store"
	digest "github.com/opencontainers/go-digest"
)

// Every step that runs is explained — whether or not --explain asked to
// hear it — so that any recorded build can be explained afterwards. The
// earlier journals are read once, on the first step that runs; a cache hit
// does nothing here. Keeping the trees is paid on every context digest,
// hit or miss: contenthash writes each tree's text to memory beside the
// hashing (a line per file of the digested path), then stats its file in
// trees/ and writes it if the digest is new.

// keepTrees makes every context hasher of the build keep its digests'
// trees, so that explain can name the files that changed.
func keepTrees(st *store.Store, main *contenthash.Hasher, named map[string]dockerfile.NamedContext) {
	main.KeepTrees(st.TreesDir())
	for _, nc := range named {
		if nc.Dir != nil {
			nc.Dir.KeepTrees(st.TreesDir())
		}
	}
}

// explainer passes events on to next and then, for a step that started,
// records in the journal why it ran and tells opts.Explained.
func (jr *journal) explainer(st *store.Store, opts Options, next func(solver.Event)) func(solver.Event) {
	var once sync.Once
	var h *explain.History
	history := func() *explain.History {
		once.Do(func() {
			js, _ := Journals(st.BuildsDir()) // no history is "no earlier build"
			h = historyOf(st, js)
		})
		return h
	}
	return func(e solver.Event) {
		if next != nil {
			next(e)
		}
		if e.State != solver.StateStarted {
			return
		}
		jr.mu.Lock()
		cur := explainBuild(&jr.j)
		s := explainStep(jr.step(e.Vertex))
		s.NoCache = noCacheReason(e.Vertex, opts.NoCache)
		jr.mu.Unlock()
		why := history().Explain(cur, s)
		jr.mu.Lock()
		jr.step(e.Vertex).Why = why
		jr.mu.Unlock()
		if opts.Explained != nil {
			opts.Explained(e.Vertex, why)
		}
	}
}

// explainBuild is what the comparison needs of a journal.
func explainBuild(j *Journal) *explain.Build {
	b := &explain.Build{ID: j.ID, Context: j.Context, Dockerfile: j.Dockerfile, Steps: make([]explain.Step, len(j.Steps))}
	for i, s := range j.Steps {
		b.Steps[i] = explainStep(s)
	}
	return b
}

func explainStep(s *StepRecord) explain.Step {
	return explain.Step{Num: s.Num, Name: s.Name, State: string(s.State), Key: s.Key, Components: s.Components, Why: s.Why}
}

// noCacheReason says why v had to run whatever the cache held, if it had:
// the vertex or one it depends on is marked NoCache (--no-cache, or
// --no-cache-filter for its stage).
func noCacheReason(v *solver.Vertex, all bool) string {
	seen := map[*solver.Vertex]bool{}
	var marked func(v *solver.Vertex) bool
	marked = func(v *solver.Vertex) bool {
		if v.NoCache {
			return true
		}
		for _, in := range v.Inputs {
			if !seen[in] {
				seen[in] = true
				if marked(in) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case !marked(v):
		return ""
	case all:
		return "--no-cache"
	case v.NoCache:
		return "--no-cache-filter"
	}
	return "--no-cache-filter (on a stage it depends on)"
}

// historyOf is the comparison's view of journals (newest first).
func historyOf(st *store.Store, js []*Journal) *explain.History {
	h := &explain.History{Tree: func(d string) ([]contenthash.Entry, error) {
		return contenthash.ReadTree(st.TreesDir(), digest.Digest(d))
	}}
	for _, j := range js {
		h.Builds = append(h.Builds, explainBuild(j))
	}
	return h
}

// Explain returns the recorded build named by ref (FindJournal: "" is the
// newest) with why each step that ran did. A journal that lacks a step's
// reasons (written before kiln recorded them) is explained now, against
// the builds before it.
func Explain(st *store.Store, ref string) (*Journal, error) {
	j, err := FindJournal(st.BuildsDir(), ref)
	if err != nil {
		return nil, err
	}
	var h *explain.History
	cur := explainBuild(j)
	for i, s := range j.Steps {
		if !ran(s.State) || len(s.Why) > 0 {
			continue
		}
		if h == nil {
			js, err := Journals(st.BuildsDir())
			if err != nil {
				return nil, err
			}
			for k, o := range js {
				if o.ID == j.ID {
					js = js[k+1:] // the older ones
					break
				}
			}
			h = historyOf(st, js)
		}
		s.Why = h.Explain(cur, cur.Steps[i])
	}
	return j, nil
}

// ran reports whether a step of that state did the work.
func ran(s solver.State) bool {
	return s == solver.StateRan || s == solver.StateFailed || s == solver.StateStarted
}

// DiffBuilds compares two recorded builds (FindJournal refs) step by
// step: which steps changed state or key, and why.
func DiffBuilds(st *store.Store, refA, refB string) (a, b *Journal, diffs []explain.StepDiff, err error) {
	if a, err = FindJournal(st.BuildsDir(), refA); err != nil {
		return nil, nil, nil, err
	}
	if b, err = FindJournal(st.BuildsDir(), refB); err != nil {
		return nil, nil, nil, err
	}
	h := historyOf(st, nil)
	return a, b, h.DiffBuilds(explainBuild(a), explainBuild(b)), nil
}
