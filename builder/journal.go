package builder

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/solver"
)

// keepBuilds is how many build journals the store keeps.
const keepBuilds = 50

// Journal is what <root>/builds/<id>/build.json says about one build: each
// step's final state, cache key and its components, timing, and where its
// full output is (never clipped; only the terminal is throttled).
type Journal struct {
	ID         string        `json:"id"`
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"duration"`
	Context    string        `json:"context"`
	Dockerfile string        `json:"dockerfile"`
	Target     string        `json:"target,omitempty"`
	Tags       []string      `json:"tags,omitempty"`
	Image      string        `json:"image,omitempty"`
	Error      string        `json:"error,omitempty"`
	Steps      []*StepRecord `json:"steps"`
}

// StepRecord is one step of a journal.
type StepRecord struct {
	Name       string             `json:"name"`
	Location   string             `json:"location,omitempty"`
	State      solver.State       `json:"state"`
	Key        string             `json:"key,omitempty"`
	Components []record.Component `json:"components,omitempty"`
	Started    *time.Time         `json:"started,omitempty"`
	Duration   time.Duration      `json:"duration,omitempty"`
	Log        string             `json:"log,omitempty"`
	// Why says, for a step that ran, what made it miss the cache.
	Why []explain.Change `json:"why,omitempty"`
}

type journal struct {
	mu    sync.Mutex
	dir   string
	j     Journal
	steps map[*solver.Vertex]*StepRecord
	logs  map[*solver.Vertex]*os.File
}

func newJournal(buildsDir string, opts Options, ctxDir, dockerfile string) (*journal, error) {
	b := make([]byte, 4)
	rand.Read(b)
	now := time.Now().UTC()
	id := now.Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
	dir := filepath.Join(buildsDir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &journal{
		dir:   dir,
		j:     Journal{ID: id, Started: now, Context: ctxDir, Dockerfile: dockerfile, Target: opts.Target, Tags: opts.Tags},
		steps: map[*solver.Vertex]*StepRecord{},
		logs:  map[*solver.Vertex]*os.File{},
	}, nil
}

func (jr *journal) step(v *solver.Vertex) *StepRecord {
	s := jr.steps[v]
	if s == nil {
		s = &StepRecord{Name: v.Name, Location: v.Location}
		jr.steps[v] = s
		jr.j.Steps = append(jr.j.Steps, s)
	}
	return s
}

// event records a solver event, then passes it on.
func (jr *journal) event(next func(solver.Event)) func(solver.Event) {
	return func(e solver.Event) {
		jr.mu.Lock()
		s := jr.step(e.Vertex)
		s.State = e.State
		if e.Key.Digest != "" {
			s.Key, s.Components = string(e.Key.Digest), e.Key.Components
		}
		switch e.State {
		case solver.StateStarted:
			t := e.Time
			s.Started = &t
		case solver.StateRan, solver.StateFailed:
			s.Duration = e.Duration
		}
		jr.mu.Unlock()
		if next != nil {
			next(e)
		}
	}
}

// logger tees a step's output into its log file.
func (jr *journal) logger(next func(*solver.Vertex) solver.Logger) func(*solver.Vertex) solver.Logger {
	return func(v *solver.Vertex) solver.Logger {
		jr.mu.Lock()
		defer jr.mu.Unlock()
		s := jr.step(v)
		f := jr.logs[v]
		if f == nil {
			name := fmt.Sprintf("step-%d.log", len(jr.logs)+1)
			var err error
			if f, err = os.Create(filepath.Join(jr.dir, name)); err == nil {
				jr.logs[v] = f
				s.Log = name
			}
		}
		var out []io.Writer
		if f != nil {
			out = append(out, &bestEffort{w: f})
		}
		if next != nil {
			out = append(out, next(v))
		}
		return io.MultiWriter(out...)
	}
}

// bestEffort writes to a step's log file while it can. The file is a
// record, not the output itself: a full disk must neither cut the step's
// output off from the terminal (and from the error's last lines, which may
// be what says the disk is full) nor end the step with a broken pipe.
type bestEffort struct {
	w      io.Writer
	failed atomic.Bool
}

func (b *bestEffort) Write(p []byte) (int, error) {
	if !b.failed.Load() {
		if _, err := b.w.Write(p); err != nil {
			b.failed.Store(true)
		}
	}
	return len(p), nil
}

// finish writes build.json and drops the oldest journals beyond keepBuilds.
func (jr *journal) finish(image string, err error) {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	for _, f := range jr.logs {
		f.Close()
	}
	jr.j.Duration = time.Since(jr.j.Started)
	jr.j.Image = image
	if err != nil {
		jr.j.Error = err.Error()
	}
	if b, e := json.MarshalIndent(jr.j, "", "  "); e == nil {
		atomicfile.WriteFile(filepath.Join(jr.dir, "build.json"), b, 0o600)
	}
	parent := filepath.Dir(jr.dir)
	ents, _ := os.ReadDir(parent)
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // ids start with a UTC timestamp
	for len(names) > keepBuilds {
		os.RemoveAll(filepath.Join(parent, names[0]))
		names = names[1:]
	}
}

// Journals reads the build journals in buildsDir, newest first. A build
// still running (no build.json yet) or a damaged journal is left out.
func Journals(buildsDir string) ([]*Journal, error) {
	ents, err := os.ReadDir(buildsDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Journal
	for i := len(ents) - 1; i >= 0; i-- { // ids start with a UTC timestamp
		if !ents[i].IsDir() {
			continue
		}
		if j, err := readJournal(filepath.Join(buildsDir, ents[i].Name())); err == nil {
			out = append(out, j)
		}
	}
	// ids only tell the second: builds within one are ordered by start
	sort.SliceStable(out, func(a, b int) bool { return out[a].Started.After(out[b].Started) })
	return out, nil
}

func readJournal(dir string) (*Journal, error) {
	b, err := os.ReadFile(filepath.Join(dir, "build.json"))
	if err != nil {
		return nil, err
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &j, nil
}

// FindJournal finds one build by ref: "" is the newest build, otherwise a
// build ID or an unambiguous prefix of it or of its random part (the hex
// after the dash).
func FindJournal(buildsDir, ref string) (*Journal, error) {
	js, err := Journals(buildsDir)
	if err != nil {
		return nil, err
	}
	if ref == "" {
		if len(js) == 0 {
			return nil, fmt.Errorf("no build on record")
		}
		return js[0], nil
	}
	var found []*Journal
	for _, j := range js {
		_, suffix, _ := strings.Cut(j.ID, "-")
		if strings.HasPrefix(j.ID, ref) || strings.HasPrefix(suffix, ref) {
			found = append(found, j)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no such build: %s", ref)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("build %s is ambiguous: %d builds match", ref, len(found))
}
