package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"github.com/kiln-build/kiln/store"
)

// keepBuilds is how many finished builds' journals a build, when it ends,
// leaves in the store; it removes the oldest beyond that. Directories
// without a record (builds running now, or left by a crashed kiln, which
// kiln doctor reports and the next collection removes) are neither counted
// nor touched. The cache budget and kiln prune may keep fewer.
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
	// Status is how the build ended: StatusCompleted, StatusError or
	// StatusInterrupted (Ctrl-C, SIGTERM, a canceled context).
	Status string        `json:"status,omitempty"`
	Error  string        `json:"error,omitempty"`
	Steps  []*StepRecord `json:"steps"`
}

// How a build ended (Journal.Status).
const (
	StatusCompleted   = "completed"
	StatusError       = "error"
	StatusInterrupted = "interrupted"
)

// StepRecord is one step of a journal.
type StepRecord struct {
	// Num is the step's number as the progress shows it (#N): vertices
	// are numbered in Dockerfile order before the build starts.
	Num        int                `json:"num"`
	Name       string             `json:"name"`
	Location   string             `json:"location,omitempty"`
	State      solver.State       `json:"state"`
	Key        string             `json:"key,omitempty"`
	Components []record.Component `json:"components,omitempty"`
	Started    *time.Time         `json:"started,omitempty"`
	Duration   time.Duration      `json:"duration,omitempty"`
	// Error is why the step failed.
	Error string `json:"error,omitempty"`
	// Log names the file (in the journal's directory) that holds the
	// step's whole output; "" if it wrote none.
	Log string `json:"log,omitempty"`
	// Why says, for a step that ran, what made it miss the cache.
	Why []explain.Change `json:"why,omitempty"`
}

type journal struct {
	mu       sync.Mutex
	dir      string
	j        Journal
	steps    map[*solver.Vertex]*StepRecord
	logs     map[*solver.Vertex]*os.File
	finished bool
	warn     func(string) // Options.Warn; may be nil
}

// newJournal starts a build's journal; its directory has no
// store.BuildRecordFile until finish, which is how the store tells a
// running build from a finished one.
func newJournal(buildsDir string, opts Options, ctxDir, dockerfile string) (*journal, error) {
	b := make([]byte, 6)
	rand.Read(b)
	now := time.Now().UTC()
	id := now.Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
	dir := filepath.Join(buildsDir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("build journal: %w", err)
	}
	return &journal{
		dir:   dir,
		j:     Journal{ID: id, Started: now, Context: ctxDir, Dockerfile: dockerfile, Target: opts.Target, Tags: opts.Tags},
		steps: map[*solver.Vertex]*StepRecord{},
		logs:  map[*solver.Vertex]*os.File{},
		warn:  opts.Warn,
	}, nil
}

// plan numbers the build's vertices in the order given (b.Vertices, the
// Dockerfile's), as the progress does, before any event arrives.
func (jr *journal) plan(vs []*solver.Vertex) {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	for _, v := range vs {
		jr.step(v)
	}
}

// step is v's record; a vertex seen for the first time gets the next
// number.
func (jr *journal) step(v *solver.Vertex) *StepRecord {
	s := jr.steps[v]
	if s == nil {
		s = &StepRecord{Num: len(jr.j.Steps) + 1, Name: v.Name, Location: v.Location}
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
		case solver.StateRan:
			s.Duration = e.Duration
		case solver.StateFailed:
			s.Duration = e.Duration
			if e.Err != nil {
				s.Error = e.Err.Error()
			}
		}
		jr.mu.Unlock()
		if next != nil {
			next(e)
		}
	}
}

// logger tees a step's output into its log file, which is created when
// the step first writes: a step that writes nothing has no log.
func (jr *journal) logger(next func(*solver.Vertex) solver.Logger) func(*solver.Vertex) solver.Logger {
	return func(v *solver.Vertex) solver.Logger {
		jr.mu.Lock()
		jr.step(v)
		jr.mu.Unlock()
		out := []io.Writer{&bestEffort{w: &stepFile{jr: jr, v: v}}}
		if next != nil {
			out = append(out, next(v))
		}
		return io.MultiWriter(out...)
	}
}

// stepFile writes to v's log file, creating it on the first write (a
// step's stdout and stderr may write at once).
type stepFile struct {
	jr   *journal
	v    *solver.Vertex
	once sync.Once
	f    *os.File
	err  error
}

func (w *stepFile) Write(p []byte) (int, error) {
	w.once.Do(func() { w.f, w.err = w.jr.logFile(w.v) })
	if w.err != nil {
		return 0, w.err
	}
	return w.f.Write(p)
}

// logFile is v's log file, created by the first of v's loggers to write.
func (jr *journal) logFile(v *solver.Vertex) (*os.File, error) {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if f := jr.logs[v]; f != nil {
		return f, nil
	}
	if jr.finished {
		return nil, os.ErrClosed
	}
	s := jr.step(v)
	name := fmt.Sprintf("step-%d.log", s.Num)
	f, err := os.Create(filepath.Join(jr.dir, name))
	if err != nil {
		return nil, err
	}
	jr.logs[v] = f
	s.Log = name
	return f, nil
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

// finish writes build.json, once (the first call wins), and drops the
// oldest finished journals beyond keepBuilds. A build interrupted (ctx
// canceled, Ctrl-C) is recorded as such; steps the build never reached are
// left out. A record that cannot be written (a full disk) is a warning,
// not the build's error: the build itself is done.
func (jr *journal) finish(ctx context.Context, image string, err error) {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if jr.finished {
		return
	}
	jr.finished = true
	for _, f := range jr.logs {
		f.Close()
	}
	jr.j.Duration = time.Since(jr.j.Started)
	jr.j.Image = image
	jr.j.Status = StatusCompleted
	if err != nil {
		jr.j.Error = err.Error()
		jr.j.Status = StatusError
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			jr.j.Status = StatusInterrupted
		}
	}
	reached := jr.j.Steps[:0:0]
	for _, s := range jr.j.Steps {
		if s.State != "" || s.Log != "" {
			reached = append(reached, s)
		}
	}
	j := jr.j
	j.Steps = reached
	b, e := json.MarshalIndent(j, "", "  ")
	if e == nil {
		e = atomicfile.WriteFile(filepath.Join(jr.dir, store.BuildRecordFile), b, 0o600)
	}
	if e != nil && jr.warn != nil {
		jr.warn(fmt.Sprintf("build %s: its record was not written, kiln builds will not list it: %v", jr.j.ID, e))
	}
	parent := filepath.Dir(jr.dir)
	ents, _ := os.ReadDir(parent)
	var names []string
	for _, e := range ents {
		// only finished builds: a running build's journal is never removed
		if _, err := os.Lstat(filepath.Join(parent, e.Name(), store.BuildRecordFile)); e.IsDir() && err == nil {
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
// still running (no build.json yet) or a damaged journal is left out
// (FindJournal says it is damaged, kiln doctor reports it).
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
	// ids have whole seconds: builds of the same second by start time
	sort.SliceStable(out, func(a, b int) bool { return out[a].Started.After(out[b].Started) })
	return out, nil
}

// readJournal reads the journal in dir. Journals written before steps had
// a number (Num 0) get their position, which is what the progress
// numbered them by.
func readJournal(dir string) (*Journal, error) {
	var j Journal
	if err := store.ReadBuildRecord(dir, &j); err != nil {
		return nil, err
	}
	for i, s := range j.Steps {
		if s.Num == 0 {
			s.Num = i + 1
		}
	}
	return &j, nil
}

// ErrNoSuchBuild means no build on record has the ID a reference names.
var ErrNoSuchBuild = errors.New("no such build")

// FindJournal finds one build by ref: "" or "last" is the newest build,
// otherwise a build ID or an unambiguous prefix of it or of its random
// part (the hex after the dash). Every command that names a build (kiln
// explain, builds show, builds diff, logs) finds it here. A ref that
// matches no finished build is ErrNoSuchBuild; one whose record is damaged
// says so (store.ErrDamagedRecord) rather than that it does not exist.
func FindJournal(buildsDir, ref string) (*Journal, error) {
	if ref == "" || ref == "last" {
		js, err := Journals(buildsDir)
		if err != nil {
			return nil, err
		}
		if len(js) == 0 {
			return nil, fmt.Errorf("%w: the store has no build on record yet", ErrNoSuchBuild)
		}
		return js[0], nil
	}
	ents, err := os.ReadDir(buildsDir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var found []string
	for _, e := range ents {
		id := e.Name()
		if _, err := os.Lstat(filepath.Join(buildsDir, id, store.BuildRecordFile)); !e.IsDir() || err != nil {
			continue // not a journal, or a build still running
		}
		_, suffix, _ := strings.Cut(id, "-")
		if strings.HasPrefix(id, ref) || strings.HasPrefix(suffix, ref) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %s (kiln builds lists them)", ErrNoSuchBuild, ref)
	case 1:
		j, err := readJournal(filepath.Join(buildsDir, found[0]))
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", found[0], err)
		}
		return j, nil
	}
	return nil, fmt.Errorf("build %s is ambiguous: %d builds match", ref, len(found))
}
