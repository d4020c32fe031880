// Package solver runs a build graph: vertices are ops (exec, file copy,
// image source, ...) whose inputs are other vertices. It knows nothing of
// Dockerfiles. Every vertex gets a content-based cache key (its op's own
// components plus its inputs' keys); before running an op the solver looks
// the key up in the cache records and reuses a hit. Independent vertices run
// concurrently, bounded by a semaphore; vertices with the same key in one
// build run once.
package solver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// Result is what a vertex produces: a stack of layers, bottom first.
type Result struct {
	Layers []record.Layer
	// Created is when the newest layer of the result was made: now for a
	// step that ran, the record's time for a cache hit. A no-op rebuild
	// thus exports the very same image (same ID) instead of a new one.
	Created time.Time
}

// Op is one step of work, with what it runs with: a frontend's definition
// after Solver.Bind.
type Op interface {
	// CacheKey returns the op's own key components: its full definition
	// and, for ops that read local files, the content digests of exactly
	// the files read. The solver appends the keys of the inputs.
	CacheKey(ctx context.Context) ([]record.Component, error)
	// Run computes the result from the inputs' results, in input order.
	Run(ctx context.Context, inputs []Result, log Logger) (Result, error)
}

// Logger receives a running op's output.
type Logger interface {
	Write(p []byte) (int, error)
}

// Vertex is a node of the build graph.
type Vertex struct {
	// Name is shown in progress, e.g. "[build 2/4] RUN make".
	Name string
	// Location says where the vertex comes from, e.g. "Dockerfile:7";
	// errors are prefixed with it.
	Location string
	// Op is the step as a frontend defines it: plain data (what to run,
	// mounts, copy flags) that Solver.Bind turns into the Op that is keyed
	// and run. Without Bind it must be an Op itself.
	Op     any
	Inputs []*Vertex
	// Source vertices (base images, scratch) are resolved every build and
	// never recorded: they are cheap and their identity is already a digest.
	Source bool
	// NoCache forces a run even when a record exists.
	NoCache bool
}

// State is what happened to a vertex.
type State string

const (
	StateStarted State = "started"
	StateRan     State = "ran"
	StateCached  State = "cached"
	StateDeduped State = "deduped"
	StateSkipped State = "skipped"
	StateFailed  State = "failed"
)

// Counts are how many vertices of a build ended in each state.
type Counts struct {
	Ran     int `json:"ran"`
	Cached  int `json:"cached"`
	Deduped int `json:"deduped"`
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"`
}

// Add counts one vertex by its state; one that had only started (a build
// interrupted while it ran) counts as ran.
func (c *Counts) Add(s State) {
	switch s {
	case StateRan, StateStarted:
		c.Ran++
	case StateCached:
		c.Cached++
	case StateDeduped:
		c.Deduped++
	case StateSkipped:
		c.Skipped++
	case StateFailed:
		c.Failed++
	}
}

// Event reports a vertex's progress. Each vertex of the graph gets exactly
// one final event (ran, cached, deduped, skipped or failed); a vertex that
// runs gets a started event before it.
type Event struct {
	Vertex *Vertex
	State  State
	Key    record.Key
	Time   time.Time
	Err    error
	// Duration of the run, for ran and failed.
	Duration time.Duration
}

// VertexError is a failed vertex with its location.
type VertexError struct {
	Vertex *Vertex
	Err    error
}

func (e *VertexError) Error() string {
	// "[build 2/4] RUN make" → "RUN make": the location already says where.
	name := e.Vertex.Name
	if strings.HasPrefix(name, "[") {
		if _, rest, ok := strings.Cut(name, "] "); ok {
			name = rest
		}
	}
	// An instruction can be megabytes long (a generated RUN line); the
	// message only needs to recognize it.
	if len(name) > 300 {
		name = strings.ToValidUTF8(name[:300], "") + "…"
	}
	if e.Vertex.Location != "" {
		return fmt.Sprintf("%s: %s: %v", e.Vertex.Location, name, e.Err)
	}
	return fmt.Sprintf("%s: %v", name, e.Err)
}

func (e *VertexError) Unwrap() error { return e.Err }

// LayerChecker reports whether every layer of a record can still be used
// (blobs may have been garbage-collected since the record was written).
type LayerChecker func(ctx context.Context, layers []record.Layer) bool

// Solver runs graphs against one cache.
type Solver struct {
	Records *record.Store
	// Parallel bounds how many ops run at once (default 1).
	Parallel int
	// LayersPresent validates a cache hit; nil accepts every record.
	LayersPresent LayerChecker
	// Events, if set, is called for every event, from any goroutine, serially.
	Events func(Event)
	// Log returns where a running vertex's output goes.
	Log func(v *Vertex) Logger
	// Bind gives a vertex's op definition what it runs with (a worker:
	// store, runtime, secrets), once per vertex and before its key is
	// computed. Nil means every vertex's Op is an Op already.
	Bind func(def any) (Op, error)
}

type vertexState struct {
	opOnce sync.Once
	op     Op
	opErr  error

	keyOnce sync.Once
	key     record.Key
	keyErr  error

	solveOnce sync.Once
	res       Result
	err       error
	done      bool
	final     bool // its final event was emitted
}

type build struct {
	s      *Solver
	sem    *semaphore.Weighted
	mu     sync.Mutex
	states map[*Vertex]*vertexState
	byKey  map[string]*Vertex // first vertex solving each key
	evMu   sync.Mutex
}

// Solve computes the results of targets.
func (s *Solver) Solve(ctx context.Context, targets ...*Vertex) ([]Result, error) {
	n := s.Parallel
	if n < 1 {
		n = 1
	}
	b := &build{s: s, sem: semaphore.NewWeighted(int64(n)), states: map[*Vertex]*vertexState{}, byKey: map[string]*Vertex{}}
	out := make([]Result, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	for i, t := range targets {
		g.Go(func() error {
			r, err := b.solve(gctx, t)
			out[i] = r
			return err
		})
	}
	err := g.Wait()
	b.reportUnsolved(targets)
	return out, err
}

func (b *build) state(v *Vertex) *vertexState {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.states[v]
	if st == nil {
		st = &vertexState{}
		b.states[v] = st
	}
	return st
}

func (b *build) emit(e Event) {
	if e.State != StateStarted {
		st := b.state(e.Vertex)
		b.mu.Lock()
		st.final = true
		b.mu.Unlock()
	}
	if b.s.Events == nil {
		return
	}
	e.Time = time.Now()
	b.evMu.Lock()
	defer b.evMu.Unlock()
	b.s.Events(e)
}

// Key computes a vertex's cache key (and its inputs', concurrently).
func (b *build) cacheKey(ctx context.Context, v *Vertex) (record.Key, error) {
	st := b.state(v)
	st.keyOnce.Do(func() {
		inKeys := make([]record.Key, len(v.Inputs))
		g, gctx := errgroup.WithContext(ctx)
		for i, in := range v.Inputs {
			g.Go(func() error {
				k, err := b.cacheKey(gctx, in)
				inKeys[i] = k
				return err
			})
		}
		var comps []record.Component
		g.Go(func() error {
			op, err := b.op(v)
			if err == nil {
				comps, err = op.CacheKey(gctx)
			}
			if err != nil {
				return &VertexError{Vertex: v, Err: err}
			}
			return nil
		})
		if st.keyErr = g.Wait(); st.keyErr != nil {
			return
		}
		for i, k := range inKeys {
			comps = append(comps, record.Component{Name: "input:" + strconv.Itoa(i), Value: string(k.Digest)})
		}
		st.key = record.NewKey(comps)
	})
	return st.key, st.keyErr
}

// op is v's definition bound to what it runs with, made once per vertex.
func (b *build) op(v *Vertex) (Op, error) {
	st := b.state(v)
	st.opOnce.Do(func() {
		if b.s.Bind != nil {
			st.op, st.opErr = b.s.Bind(v.Op)
			return
		}
		op, ok := v.Op.(Op)
		if !ok {
			st.opErr = fmt.Errorf("op %T cannot run: the solver has no Bind", v.Op)
		}
		st.op = op
	})
	return st.op, st.opErr
}

func (b *build) solve(ctx context.Context, v *Vertex) (Result, error) {
	st := b.state(v)
	st.solveOnce.Do(func() {
		st.res, st.err = b.solveOnce(ctx, v, st)
		st.done = true
	})
	return st.res, st.err
}

func (b *build) solveOnce(ctx context.Context, v *Vertex, st *vertexState) (Result, error) {
	key, err := b.cacheKey(ctx, v)
	if err != nil {
		return Result{}, err
	}
	// An identical vertex already in this build: wait for it.
	b.mu.Lock()
	first := b.byKey[string(key.Digest)]
	if first == nil {
		b.byKey[string(key.Digest)] = v
	}
	b.mu.Unlock()
	if first != nil && first != v {
		res, err := b.solve(ctx, first)
		if err == nil {
			state := StateDeduped
			if v.Source {
				state = StateCached // a base image resolved twice did no work twice
			}
			b.emit(Event{Vertex: v, State: state, Key: key})
		}
		return res, err
	}

	if !v.Source && !b.noCache(v) {
		if rec, err := b.s.Records.Get(key.Digest); err == nil {
			if b.s.LayersPresent == nil || b.s.LayersPresent(ctx, rec.Layers) {
				b.emit(Event{Vertex: v, State: StateCached, Key: key})
				return Result{Layers: rec.Layers, Created: rec.Created}, nil
			}
		}
	}

	inputs := make([]Result, len(v.Inputs))
	g, gctx := errgroup.WithContext(ctx)
	for i, in := range v.Inputs {
		g.Go(func() error {
			r, err := b.solve(gctx, in)
			inputs[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}

	if err := b.sem.Acquire(ctx, 1); err != nil {
		return Result{}, err
	}
	defer b.sem.Release(1)
	start := time.Now()
	if !v.Source {
		b.emit(Event{Vertex: v, State: StateStarted, Key: key})
	}
	var log Logger = discard{}
	if b.s.Log != nil {
		log = b.s.Log(v)
	}
	op, _ := b.op(v) // bound without error: its key was computed
	res, err := op.Run(ctx, inputs, log)
	if err != nil {
		var ve *VertexError
		if !errors.As(err, &ve) {
			err = &VertexError{Vertex: v, Err: err}
		}
		b.emit(Event{Vertex: v, State: StateFailed, Key: key, Err: err, Duration: time.Since(start)})
		return Result{}, err
	}
	if v.Source {
		b.emit(Event{Vertex: v, State: StateCached, Key: key})
		return res, nil
	}
	res.Created = time.Now().UTC().Truncate(time.Second)
	if err := b.s.Records.Put(&record.Record{Key: key.Digest, Components: key.Components, Layers: res.Layers, Created: res.Created}); err != nil {
		err = &VertexError{Vertex: v, Err: fmt.Errorf("save cache record: %w", err)}
		b.emit(Event{Vertex: v, State: StateFailed, Key: key, Err: err, Duration: time.Since(start)})
		return Result{}, err
	}
	b.emit(Event{Vertex: v, State: StateRan, Key: key, Duration: time.Since(start)})
	return res, nil
}

// noCache reports whether v or anything it depends on must not use the
// cache: a step downstream of a re-run step is re-run too, because keys
// describe definitions, not outputs, and the re-run output may differ.
func (b *build) noCache(v *Vertex) bool {
	if v.NoCache {
		return true
	}
	for _, in := range v.Inputs {
		if b.noCache(in) {
			return true
		}
	}
	return false
}

// reportUnsolved gives every vertex that has no final event yet its final
// event: its result was not needed because something downstream was
// cached, or the build stopped (a failure elsewhere) before it could run.
// A vertex whose own cache key could not be computed failed.
func (b *build) reportUnsolved(targets []*Vertex) {
	seen := map[*Vertex]bool{}
	var walk func(v *Vertex)
	walk = func(v *Vertex) {
		if seen[v] {
			return
		}
		seen[v] = true
		for _, in := range v.Inputs {
			walk(in)
		}
		st := b.state(v)
		if st.final {
			return
		}
		state := StateSkipped
		var ve *VertexError
		var err error
		switch {
		case errors.As(st.keyErr, &ve) && ve.Vertex == v:
			state, err = StateFailed, st.keyErr
		case !st.done && st.keyErr == nil && st.key.Digest != "":
			if _, err := b.s.Records.Get(st.key.Digest); err == nil || v.Source {
				state = StateCached
			}
		}
		b.emit(Event{Vertex: v, State: state, Key: st.key, Err: err})
	}
	for _, t := range targets {
		walk(t)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
