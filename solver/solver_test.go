package solver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	digest "github.com/opencontainers/go-digest"
)

// fakeOp is an op whose whole definition is def. Run counts itself, calls
// hook (if any) and returns its inputs' layers plus one layer named by def.
type fakeOp struct {
	def     string
	runs    atomic.Int32
	hook    func(ctx context.Context) error
	keyErr  error
	gotIn   []solver.Result
	gotInMu sync.Mutex
}

func (o *fakeOp) CacheKey(context.Context) ([]record.Component, error) {
	if o.keyErr != nil {
		return nil, o.keyErr
	}
	return []record.Component{{Name: "op", Value: "fake"}, {Name: "def", Value: o.def}}, nil
}

func (o *fakeOp) Run(ctx context.Context, inputs []solver.Result, _ solver.Logger) (solver.Result, error) {
	o.runs.Add(1)
	o.gotInMu.Lock()
	o.gotIn = inputs
	o.gotInMu.Unlock()
	if o.hook != nil {
		if err := o.hook(ctx); err != nil {
			return solver.Result{}, err
		}
	}
	var layers []record.Layer
	for _, in := range inputs {
		layers = append(layers, in.Layers...)
	}
	layers = append(layers, record.Layer{DiffID: digest.FromString(o.def), Size: int64(len(o.def))})
	return solver.Result{Layers: layers}, nil
}

func vertex(name, def string, inputs ...*solver.Vertex) *solver.Vertex {
	return &solver.Vertex{Name: name, Location: "Dockerfile:1", Op: &fakeOp{def: def}, Inputs: inputs}
}

func source(name, def string) *solver.Vertex {
	v := vertex(name, def)
	v.Source = true
	return v
}

func op(v *solver.Vertex) *fakeOp { return v.Op.(*fakeOp) }

// totalRuns sums the Run calls of every vertex reachable from vs.
func totalRuns(vs ...*solver.Vertex) int {
	n := 0
	for _, v := range reachable(vs...) {
		n += int(op(v).runs.Load())
	}
	return n
}

// reachable lists vs and all their inputs, each once.
func reachable(vs ...*solver.Vertex) []*solver.Vertex {
	seen := map[*solver.Vertex]bool{}
	var out []*solver.Vertex
	var walk func(v *solver.Vertex)
	walk = func(v *solver.Vertex) {
		if seen[v] {
			return
		}
		seen[v] = true
		for _, in := range v.Inputs {
			walk(in)
		}
		out = append(out, v)
	}
	for _, v := range vs {
		walk(v)
	}
	return out
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []solver.Event
}

func (r *recorder) add(e solver.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// finals returns every final (non-started) event per vertex name.
func (r *recorder) finals() map[string][]solver.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]solver.Event{}
	for _, e := range r.events {
		if e.State != solver.StateStarted {
			out[e.Vertex.Name] = append(out[e.Vertex.Name], e)
		}
	}
	return out
}

// final returns the final state per vertex name; it fails the test when a
// vertex has more than one.
func (r *recorder) final(t *testing.T) map[string]solver.State {
	t.Helper()
	out := map[string]solver.State{}
	for name, evs := range r.finals() {
		if len(evs) != 1 {
			t.Errorf("%s: %d final events, want 1: %v", name, len(evs), states(evs))
		}
		out[name] = evs[len(evs)-1].State
	}
	return out
}

// keys returns each vertex's key (from its final event) by name.
func (r *recorder) keys(t *testing.T) map[string]record.Key {
	t.Helper()
	out := map[string]record.Key{}
	for name, evs := range r.finals() {
		out[name] = evs[len(evs)-1].Key
	}
	return out
}

func states(evs []solver.Event) []solver.State {
	var out []solver.State
	for _, e := range evs {
		out = append(out, e.State)
	}
	return out
}

func newRecords(t *testing.T) *record.Store {
	t.Helper()
	rs, err := record.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func newSolver(t *testing.T, rs *record.Store, parallel int) (*solver.Solver, *recorder) {
	t.Helper()
	rec := &recorder{}
	return &solver.Solver{Records: rs, Parallel: parallel, Events: rec.add}, rec
}

// solve runs one Solve of target and fails the test on error.
func solve(t *testing.T, s *solver.Solver, targets ...*solver.Vertex) []solver.Result {
	t.Helper()
	res, err := s.Solve(context.Background(), targets...)
	if err != nil {
		t.Fatalf("Solve: %v", err)
	}
	return res
}

// checkOneFinalEach fails unless every vertex reachable from targets got
// exactly one final event and nothing else did.
func checkOneFinalEach(t *testing.T, rec *recorder, targets ...*solver.Vertex) {
	t.Helper()
	finals := rec.finals()
	for _, v := range reachable(targets...) {
		if n := len(finals[v.Name]); n != 1 {
			t.Errorf("%s: %d final events %v, want exactly 1", v.Name, n, states(finals[v.Name]))
		}
	}
	if len(finals) != len(reachable(targets...)) {
		t.Errorf("final events for %d vertices, graph has %d", len(finals), len(reachable(targets...)))
	}
}

// keyGraph is leaf → mid → top ← other; top's inputs are (mid, other), or
// (other, mid) when swap is set.
type keyGraph struct {
	leaf, mid, other, top string
	swap                  bool
}

func (g keyGraph) build() *solver.Vertex {
	leaf := vertex("leaf", g.leaf)
	mid := vertex("mid", g.mid, leaf)
	other := vertex("other", g.other)
	if g.swap {
		return vertex("top", g.top, other, mid)
	}
	return vertex("top", g.top, mid, other)
}

// keysOf solves g in a fresh store and returns each vertex's key.
func keysOf(t *testing.T, g keyGraph) map[string]record.Key {
	t.Helper()
	s, rec := newSolver(t, newRecords(t), 1)
	solve(t, s, g.build())
	return rec.keys(t)
}

func TestKeyChangesExactlyDownstreamOfAChangedOp(t *testing.T) {
	base := keyGraph{leaf: "leaf", mid: "mid", other: "other", top: "top"}
	cases := []struct {
		name    string
		change  func(g *keyGraph)
		changed []string // vertices whose key must differ; the rest must not
	}{
		{"identical graph built twice", func(*keyGraph) {}, nil},
		{"leaf op changed", func(g *keyGraph) { g.leaf = "leaf2" }, []string{"leaf", "mid", "top"}},
		{"middle op changed", func(g *keyGraph) { g.mid = "mid2" }, []string{"mid", "top"}},
		{"independent input changed", func(g *keyGraph) { g.other = "other2" }, []string{"other", "top"}},
		{"target op changed", func(g *keyGraph) { g.top = "top2" }, []string{"top"}},
		{"inputs reordered", func(g *keyGraph) { g.swap = true }, []string{"top"}},
	}
	want := keysOf(t, base)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := base
			tc.change(&g)
			got := keysOf(t, g)
			changed := map[string]bool{}
			for _, n := range tc.changed {
				changed[n] = true
			}
			for _, name := range []string{"leaf", "mid", "other", "top"} {
				if got[name].Digest == "" || want[name].Digest == "" {
					t.Fatalf("%s: no key in events", name)
				}
				if differs := got[name].Digest != want[name].Digest; differs != changed[name] {
					t.Errorf("%s: key changed = %v, want %v", name, differs, changed[name])
				}
			}
		})
	}
}

func TestKeyIsOpComponentsFollowedByInputKeys(t *testing.T) {
	s, rec := newSolver(t, newRecords(t), 1)
	solve(t, s, keyGraph{leaf: "l", mid: "m", other: "o", top: "t"}.build())
	keys := rec.keys(t)

	comps := func(def string, inputs ...string) []record.Component {
		c := []record.Component{{Name: "op", Value: "fake"}, {Name: "def", Value: def}}
		for i, in := range inputs {
			c = append(c, record.Component{Name: fmt.Sprintf("input:%d", i), Value: string(keys[in].Digest)})
		}
		return c
	}
	want := map[string]record.Key{
		"leaf":  record.NewKey(comps("l")),
		"other": record.NewKey(comps("o")),
		"mid":   record.NewKey(comps("m", "leaf")),
		"top":   record.NewKey(comps("t", "mid", "other")),
	}
	for name, w := range want {
		if keys[name].Digest != w.Digest {
			t.Errorf("%s: key %s, want %s (components %v)", name, keys[name].Digest, w.Digest, keys[name].Components)
		}
	}
}

// cacheGraph is src (a source) → a → b → top.
func cacheGraph() (top *solver.Vertex, all map[string]*solver.Vertex) {
	src := source("src", "src")
	a := vertex("a", "a", src)
	b := vertex("b", "b", a)
	top = vertex("top", "top", b)
	return top, map[string]*solver.Vertex{"src": src, "a": a, "b": b, "top": top}
}

func TestSecondSolve(t *testing.T) {
	cases := []struct {
		name     string
		tweak    func(s *solver.Solver, vs map[string]*solver.Vertex)
		wantRuns int
		want     map[string]solver.State
	}{
		{
			name:     "of the same graph runs nothing and reports every vertex cached",
			tweak:    func(*solver.Solver, map[string]*solver.Vertex) {},
			wantRuns: 0,
			want:     map[string]solver.State{"src": solver.StateCached, "a": solver.StateCached, "b": solver.StateCached, "top": solver.StateCached},
		},
		{
			name: "with NoCache on every vertex runs everything",
			tweak: func(_ *solver.Solver, vs map[string]*solver.Vertex) {
				for _, v := range vs {
					v.NoCache = true
				}
			},
			wantRuns: 4,
			// a source that ran is reported cached: it did no build work
			want: map[string]solver.State{"src": solver.StateCached, "a": solver.StateRan, "b": solver.StateRan, "top": solver.StateRan},
		},
		{
			name:     "with NoCache on the target runs only the target",
			tweak:    func(_ *solver.Solver, vs map[string]*solver.Vertex) { vs["top"].NoCache = true },
			wantRuns: 1,
			want:     map[string]solver.State{"src": solver.StateCached, "a": solver.StateCached, "b": solver.StateCached, "top": solver.StateRan},
		},
		{
			name: "whose layers are gone turns every hit into a run",
			tweak: func(s *solver.Solver, _ map[string]*solver.Vertex) {
				s.LayersPresent = func(context.Context, []record.Layer) bool { return false }
			},
			wantRuns: 4,
			want:     map[string]solver.State{"src": solver.StateCached, "a": solver.StateRan, "b": solver.StateRan, "top": solver.StateRan},
		},
		{
			name: "with layers present keeps the hits",
			tweak: func(s *solver.Solver, _ map[string]*solver.Vertex) {
				s.LayersPresent = func(context.Context, []record.Layer) bool { return true }
			},
			wantRuns: 0,
			want:     map[string]solver.State{"src": solver.StateCached, "a": solver.StateCached, "b": solver.StateCached, "top": solver.StateCached},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRecords(t)
			s1, rec1 := newSolver(t, rs, 2)
			top1, _ := cacheGraph()
			solve(t, s1, top1)
			if n := totalRuns(top1); n != 4 {
				t.Fatalf("first solve ran %d ops, want 4", n)
			}
			for name, st := range rec1.final(t) {
				if want := map[bool]solver.State{true: solver.StateCached, false: solver.StateRan}[name == "src"]; st != want {
					t.Errorf("first solve: %s %s, want %s", name, st, want)
				}
			}

			// a new graph with the same definitions, as a rebuild makes
			s2, rec2 := newSolver(t, rs, 2)
			top2, vs := cacheGraph()
			tc.tweak(s2, vs)
			res := solve(t, s2, top2)
			if n := totalRuns(top2); n != tc.wantRuns {
				t.Errorf("second solve ran %d ops, want %d", n, tc.wantRuns)
			}
			got := rec2.final(t)
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("%s: %s, want %s", name, got[name], want)
				}
			}
			checkOneFinalEach(t, rec2, top2)
			if len(res[0].Layers) != 4 {
				t.Errorf("target result has %d layers, want 4", len(res[0].Layers))
			}
		})
	}
}

func TestCachedResultKeepsRecordedLayersAndTime(t *testing.T) {
	rs := newRecords(t)
	s, _ := newSolver(t, rs, 1)
	top, _ := cacheGraph()
	first := solve(t, s, top)[0]
	if first.Created.IsZero() {
		t.Fatal("a result that ran has no Created time")
	}
	top2, _ := cacheGraph()
	second := solve(t, s, top2)[0]
	if !second.Created.Equal(first.Created) {
		t.Errorf("cached Created %v, want the record's %v", second.Created, first.Created)
	}
	if fmt.Sprint(second.Layers) != fmt.Sprint(first.Layers) {
		t.Errorf("cached layers %v, want %v", second.Layers, first.Layers)
	}
}

func TestIdenticalVerticesInOneGraphRunOnce(t *testing.T) {
	cases := []struct {
		name       string
		parallel   int
		source     bool
		wantStates []solver.State // the two twins' final states, sorted
	}{
		{"serially", 1, false, []solver.State{solver.StateDeduped, solver.StateRan}},
		{"in parallel", 4, false, []solver.State{solver.StateDeduped, solver.StateRan}},
		{"sources are reported cached", 4, true, []solver.State{solver.StateCached, solver.StateCached}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := source("base", "base")
			x1 := vertex("x1", "same", base)
			x2 := vertex("x2", "same", base)
			if tc.source {
				x1, x2 = source("x1", "same"), source("x2", "same")
			}
			top := vertex("top", "top", x1, x2)
			s, rec := newSolver(t, newRecords(t), tc.parallel)
			solve(t, s, top)

			if n := op(x1).runs.Load() + op(x2).runs.Load(); n != 1 {
				t.Errorf("twins ran %d times, want 1", n)
			}
			final := rec.final(t)
			got := []solver.State{final["x1"], final["x2"]}
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			if fmt.Sprint(got) != fmt.Sprint(tc.wantStates) {
				t.Errorf("twins' states %v, want %v", got, tc.wantStates)
			}
			keys := rec.keys(t)
			if keys["x1"].Digest != keys["x2"].Digest {
				t.Errorf("twins have different keys %s and %s", keys["x1"].Digest, keys["x2"].Digest)
			}
			in := op(top).gotIn
			if len(in) != 2 || len(in[0].Layers) == 0 || fmt.Sprint(in[0].Layers) != fmt.Sprint(in[1].Layers) {
				t.Errorf("top's inputs should be the same result twice: %v", in)
			}
			checkOneFinalEach(t, rec, top)
		})
	}
}

func TestCachedTargetReportsItsInputsWithoutRunningThem(t *testing.T) {
	rs := newRecords(t)
	s, rec := newSolver(t, rs, 2)
	top, _ := cacheGraph()
	solve(t, s, top)
	keys := rec.keys(t)
	// a's record is gone (GC): it is not needed, so it is skipped, not run
	if err := rs.Delete(keys["a"].Digest); err != nil {
		t.Fatal(err)
	}

	s2, rec2 := newSolver(t, rs, 2)
	top2, _ := cacheGraph()
	solve(t, s2, top2)
	if n := totalRuns(top2); n != 0 {
		t.Errorf("ran %d ops, want 0", n)
	}
	want := map[string]solver.State{
		"top": solver.StateCached,
		"b":   solver.StateCached, // record exists
		"a":   solver.StateSkipped,
		"src": solver.StateCached, // sources are always available
	}
	got := rec2.final(t)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %s, want %s", name, got[name], w)
		}
	}
	// skipped vertices still carry their key
	for name, k := range rec2.keys(t) {
		if k.Digest != keys[name].Digest {
			t.Errorf("%s: key %s in second solve, %s in first", name, k.Digest, keys[name].Digest)
		}
	}
	checkOneFinalEach(t, rec2, top2)
}

// concurrency tracks how many ops are inside Run at once.
type concurrency struct {
	now, max atomic.Int32
}

func (c *concurrency) enter() {
	n := c.now.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *concurrency) leave() { c.now.Add(-1) }

func TestParallelOneNeverRunsTwoOpsAtOnce(t *testing.T) {
	var c concurrency
	hold := func(ctx context.Context) error {
		c.enter()
		defer c.leave()
		// stay inside Run for a moment so that an overlapping op would be seen
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	}
	base := source("base", "base")
	op(base).hook = hold
	var leaves []*solver.Vertex
	for i := range 6 {
		v := vertex(fmt.Sprintf("leaf%d", i), fmt.Sprintf("leaf%d", i), base)
		op(v).hook = hold
		leaves = append(leaves, v)
	}
	top := vertex("top", "top", leaves...)
	op(top).hook = hold
	s, rec := newSolver(t, newRecords(t), 1)
	solve(t, s, top)
	if n := totalRuns(top); n != 8 {
		t.Fatalf("ran %d ops, want 8", n)
	}
	if m := c.max.Load(); m != 1 {
		t.Errorf("up to %d ops ran at once with Parallel=1", m)
	}
	checkOneFinalEach(t, rec, top)
}

func TestParallelTwoRunsIndependentOpsTogether(t *testing.T) {
	// Each op waits until the other has started: they can only both
	// finish if they run at the same time.
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	rendezvous := func(mine, other chan struct{}) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			close(mine)
			select {
			case <-other:
				return nil
			case <-time.After(20 * time.Second):
				return errors.New("the other op never started while this one ran")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	a, b := vertex("a", "a"), vertex("b", "b")
	op(a).hook = rendezvous(aStarted, bStarted)
	op(b).hook = rendezvous(bStarted, aStarted)
	top := vertex("top", "top", a, b)
	s, rec := newSolver(t, newRecords(t), 2)
	solve(t, s, top)
	final := rec.final(t)
	for _, name := range []string{"a", "b", "top"} {
		if final[name] != solver.StateRan {
			t.Errorf("%s: %s, want ran", name, final[name])
		}
	}
}

var errBoom = errors.New("boom")

func TestFailingOp(t *testing.T) {
	src := source("src", "src")
	good := vertex("[1/3] RUN true", "good", src)
	bad := &solver.Vertex{Name: "[2/3] RUN make", Location: "Dockerfile:7", Op: &fakeOp{def: "bad", hook: func(context.Context) error { return errBoom }}, Inputs: []*solver.Vertex{good}}
	top := vertex("[3/3] RUN after", "after", bad)

	rs := newRecords(t)
	s, rec := newSolver(t, rs, 1)
	_, err := s.Solve(context.Background(), top)
	if err == nil {
		t.Fatal("Solve succeeded")
	}
	var ve *solver.VertexError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v is not a *solver.VertexError", err, err)
	}
	if ve.Vertex != bad {
		t.Errorf("error names vertex %q, want %q", ve.Vertex.Name, bad.Name)
	}
	if !errors.Is(err, errBoom) {
		t.Errorf("error %v does not wrap the op's error", err)
	}
	if want := "Dockerfile:7: RUN make: boom"; err.Error() != want {
		t.Errorf("error %q, want %q", err.Error(), want)
	}
	if n := op(top).runs.Load(); n != 0 {
		t.Errorf("the step after the failure ran %d times", n)
	}

	final := rec.final(t)
	if final[bad.Name] != solver.StateFailed {
		t.Errorf("failed vertex: %s, want failed", final[bad.Name])
	}
	for _, e := range rec.finals()[bad.Name] {
		if !errors.Is(e.Err, errBoom) {
			t.Errorf("failed event carries error %v", e.Err)
		}
	}
	if final[good.Name] != solver.StateRan {
		t.Errorf("vertex before the failure: %s, want ran", final[good.Name])
	}
	checkOneFinalEach(t, rec, top)

	keys := rec.keys(t)
	if _, err := rs.Get(keys[bad.Name].Digest); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("failed vertex has a cache record (err %v)", err)
	}
	if _, err := rs.Get(keys[good.Name].Digest); err != nil {
		t.Errorf("vertex that ran has no record: %v", err)
	}
	all, err := rs.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Errorf("%d records, want 1 (the step that ran)", len(all))
	}
}

func TestFailingCacheKeyFailsTheVertex(t *testing.T) {
	bad := vertex("[2/3] COPY missing /", "bad", source("src", "src"))
	op(bad).keyErr = errBoom
	top := vertex("[3/3] RUN after", "after", bad)
	s, rec := newSolver(t, newRecords(t), 2)
	_, err := s.Solve(context.Background(), top)
	var ve *solver.VertexError
	if !errors.As(err, &ve) || ve.Vertex != bad || !errors.Is(err, errBoom) {
		t.Fatalf("error %v, want a VertexError for %q wrapping boom", err, bad.Name)
	}
	if n := totalRuns(top); n != 0 {
		t.Errorf("ran %d ops although a key could not be computed", n)
	}
	if got := rec.final(t)[bad.Name]; got != solver.StateFailed {
		t.Errorf("vertex whose key failed: %s, want failed", got)
	}
	checkOneFinalEach(t, rec, top)
}

func TestUnsavableRecordFailsTheVertex(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	rs, err := record.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// a cache directory that vanished: every Put fails, even as root
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	v := vertex("[1/1] RUN x", "x", source("src", "src"))
	s, rec := newSolver(t, rs, 1)
	_, err = s.Solve(context.Background(), v)
	var ve *solver.VertexError
	if !errors.As(err, &ve) || ve.Vertex != v || !strings.Contains(err.Error(), "save cache record") {
		t.Fatalf("error %v, want a VertexError for %q about saving the record", err, v.Name)
	}
	if got := rec.final(t)[v.Name]; got != solver.StateFailed {
		t.Errorf("vertex whose record could not be saved: %s, want failed", got)
	}
	checkOneFinalEach(t, rec, v)
}

func TestVertexErrorMessage(t *testing.T) {
	cases := []struct {
		name, vertex, location, want string
	}{
		{"step prefix dropped when located", "[build 2/4] RUN make", "Dockerfile:7", "Dockerfile:7: RUN make: boom"},
		{"plain name with location", "RUN make", "Dockerfile:7", "Dockerfile:7: RUN make: boom"},
		{"no location keeps the name", "[2/4] RUN make", "", "RUN make: boom"},
		{"bracket without step suffix kept whole", "[weird", "x:1", "x:1: [weird: boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := &solver.VertexError{Vertex: &solver.Vertex{Name: tc.vertex, Location: tc.location}, Err: errBoom}
			if err.Error() != tc.want {
				t.Errorf("got %q, want %q", err.Error(), tc.want)
			}
		})
	}
}

func TestEveryVertexGetsExactlyOneFinalEvent(t *testing.T) {
	failing := func(name, def string, inputs ...*solver.Vertex) *solver.Vertex {
		v := vertex(name, def, inputs...)
		op(v).hook = func(context.Context) error { return errBoom }
		return v
	}
	cases := []struct {
		name     string
		parallel int
		graph    func() *solver.Vertex
		wantErr  bool
	}{
		{"diamond", 2, func() *solver.Vertex {
			src := source("src", "src")
			return vertex("top", "top", vertex("a", "a", src), vertex("b", "b", src))
		}, false},
		{"shared input of two targets' inputs", 3, func() *solver.Vertex {
			src := source("src", "src")
			shared := vertex("shared", "shared", src)
			return vertex("top", "top", vertex("a", "a", shared), vertex("b", "b", shared), shared)
		}, false},
		{"twins", 2, func() *solver.Vertex {
			src := source("src", "src")
			return vertex("top", "top", vertex("x1", "x", src), vertex("x2", "x", src))
		}, false},
		{"failure with a downstream chain", 1, func() *solver.Vertex {
			return vertex("c", "c", vertex("b", "b", failing("bad", "bad", source("src", "src"))))
		}, true},
		{"failure beside an independent branch", 1, func() *solver.Vertex {
			src := source("src", "src")
			return vertex("top", "top", failing("bad", "bad", src), vertex("ok1", "ok1", src), vertex("ok2", "ok2", vertex("ok3", "ok3", src)))
		}, true},
		{"failure beside an independent branch, parallel", 4, func() *solver.Vertex {
			src := source("src", "src")
			return vertex("top", "top", failing("bad", "bad", src), vertex("ok1", "ok1", src), vertex("ok2", "ok2", vertex("ok3", "ok3", src)))
		}, true},
		{"failing twin", 2, func() *solver.Vertex {
			src := source("src", "src")
			return vertex("top", "top", failing("x1", "x", src), vertex("y", "y", failing("x2", "x", src)))
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRecords(t)
			for round := 1; round <= 2; round++ {
				top := tc.graph()
				s, rec := newSolver(t, rs, tc.parallel)
				_, err := s.Solve(context.Background(), top)
				if (err != nil) != tc.wantErr {
					t.Fatalf("round %d: error %v, want error %v", round, err, tc.wantErr)
				}
				checkOneFinalEach(t, rec, top)
			}
		})
	}
}

func TestStartedComesBeforeTheFinalEvent(t *testing.T) {
	src := source("src", "src")
	top := vertex("top", "top", vertex("a", "a", src), vertex("b", "b", src))
	s, rec := newSolver(t, newRecords(t), 2)
	solve(t, s, top)
	started := map[string]bool{}
	for _, e := range rec.events {
		switch e.State {
		case solver.StateStarted:
			if started[e.Vertex.Name] {
				t.Errorf("%s started twice", e.Vertex.Name)
			}
			started[e.Vertex.Name] = true
		case solver.StateRan:
			if !started[e.Vertex.Name] {
				t.Errorf("%s ran without a started event before", e.Vertex.Name)
			}
		}
	}
	// an input finishes before the vertex that uses it starts
	pos := map[string]int{}
	for i, e := range rec.events {
		pos[string(e.State)+" "+e.Vertex.Name] = i
	}
	for _, in := range []string{"a", "b"} {
		if pos["ran "+in] > pos["started top"] {
			t.Errorf("top started before its input %s finished", in)
		}
	}
}

// fakeDef is an op definition as a frontend builds it: plain data that
// cannot run until the solver's Bind gives it what it runs with.
type fakeDef struct{ def string }

func TestBindMakesEachVertexOpOnceBeforeItsKey(t *testing.T) {
	bound := map[*fakeDef]*fakeOp{}
	var mu sync.Mutex
	s, _ := newSolver(t, newRecords(t), 4)
	s.Bind = func(def any) (solver.Op, error) {
		d, ok := def.(*fakeDef)
		if !ok {
			return nil, fmt.Errorf("%T is not a fakeDef", def)
		}
		mu.Lock()
		defer mu.Unlock()
		if bound[d] != nil {
			t.Errorf("definition %s bound twice", d.def)
		}
		bound[d] = &fakeOp{def: d.def}
		return bound[d], nil
	}
	base := &solver.Vertex{Name: "base", Op: &fakeDef{def: "base"}, Source: true}
	run := &solver.Vertex{Name: "run", Op: &fakeDef{def: "run"}, Inputs: []*solver.Vertex{base}}
	res := solve(t, s, run)
	if len(bound) != 2 {
		t.Fatalf("bound %d definitions, want 2", len(bound))
	}
	for d, o := range bound {
		if o.runs.Load() != 1 {
			t.Errorf("bound op of %s ran %d times, want 1", d.def, o.runs.Load())
		}
	}
	if len(res[0].Layers) != 2 {
		t.Errorf("result has %d layers, want the base's and its own", len(res[0].Layers))
	}

	bad := &solver.Vertex{Name: "bad", Location: "Dockerfile:3", Op: "not a definition"}
	_, err := s.Solve(context.Background(), bad)
	var ve *solver.VertexError
	if !errors.As(err, &ve) || ve.Vertex != bad || !strings.Contains(err.Error(), "not a fakeDef") {
		t.Errorf("binding an unknown definition: err = %v, want a VertexError of vertex bad", err)
	}
}

func TestWithoutBindAVertexOpMustRun(t *testing.T) {
	s, _ := newSolver(t, newRecords(t), 1)
	v := &solver.Vertex{Name: "def", Op: &fakeDef{def: "x"}}
	if _, err := s.Solve(context.Background(), v); err == nil || !strings.Contains(err.Error(), "no Bind") {
		t.Errorf("err = %v, want one saying the solver has no Bind", err)
	}
}
