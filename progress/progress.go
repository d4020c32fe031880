// Package progress shows a build as it runs: which steps run, hit the
// cache or fail, their output, why a step missed the cache, and a summary
// at the end. A Progress renders in one Mode: Plain (one line per step
// state and per output line, BuildKit's plain style), TTY (a live view
// redrawn in place), JSON (one object per line per event) or Quiet
// (nothing but other messages such as warnings).
//
// The builder feeds a Progress through its callbacks (Plan, Event,
// Logger, Explained); everything else a build prints on the way (pull
// progress, warnings) goes through Message or Writer so that it cannot
// corrupt a live view.
package progress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/solver"
)

// Mode is how progress is shown.
type Mode string

const (
	Auto  Mode = "auto" // TTY when the output is a terminal, else Plain
	Plain Mode = "plain"
	TTY   Mode = "tty"
	JSON  Mode = "json"
	Quiet Mode = "quiet"
)

// Modes lists the values ParseMode accepts.
var Modes = []Mode{Auto, Plain, TTY, JSON, Quiet}

// ParseMode checks a --progress value.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("--progress %q: unknown progress mode (valid: %s)", s, strings.Join(names, ", "))
}

// Resolve turns Auto into TTY when the output is a terminal that can move
// its cursor, else into Plain; other modes are returned as they are.
func (m Mode) Resolve(terminal bool, term string) Mode {
	if m != Auto {
		return m
	}
	if terminal && term != "dumb" {
		return TTY
	}
	return Plain
}

// Options configure a Progress.
type Options struct {
	// Size returns the terminal's width and height (TTY only; 0 for
	// unknown: 80 columns, no height limit).
	Size func() (width, height int)
	// Now is the clock (time.Now if nil); tests set a fake one.
	Now func() time.Time
	// Interval between redraws of the TTY view (100ms if zero). A
	// negative interval starts no redraw loop: the view is drawn by
	// Redraw only (tests).
	Interval time.Duration
}

// Result is what Done reports: the image built, or the error.
type Result struct {
	ID    string
	Names []string
	Err   error
}

// Counts are the final states of a build's steps.
type Counts = solver.Counts

// Progress receives one build's events and renders them. Its methods may
// be called from many goroutines.
type Progress struct {
	mu    sync.Mutex
	now   func() time.Time
	start time.Time
	steps map[*solver.Vertex]*step
	order []*step // by number
	total int     // steps planned
	quiet bool
	r     renderer
}

// step is what Progress knows of one vertex.
type step struct {
	num      int
	v        *solver.Vertex
	state    solver.State // "" until an event arrives
	started  time.Time
	duration time.Duration
	why      []explain.Change
	tail     []string // the last lines of output (TTY)
	lines    lineSplitter
}

// renderer is one mode's output; its methods run with Progress.mu held.
type renderer interface {
	event(p *Progress, s *step, e solver.Event)
	line(p *Progress, s *step, line []byte)
	explained(p *Progress, s *step)
	message(p *Progress, text string)
	done(p *Progress, r Result)
}

// New starts a Progress writing to out in mode m (Auto must be resolved
// first).
func New(out io.Writer, m Mode, o Options) *Progress {
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Progress{now: o.Now, start: o.Now(), steps: map[*solver.Vertex]*step{}}
	switch m {
	case TTY:
		p.r = newTTY(p, out, o)
	case JSON:
		p.r = &jsonRenderer{out: out}
	case Quiet:
		p.r, p.quiet = quietRenderer{out: out}, true
	default:
		p.r = plainRenderer{out: out}
	}
	return p
}

func (p *Progress) step(v *solver.Vertex) *step {
	s, ok := p.steps[v]
	if !ok {
		s = &step{num: len(p.order) + 1, v: v}
		p.steps[v] = s
		p.order = append(p.order, s)
	}
	return s
}

// Plan numbers the build's steps in Dockerfile order before it starts.
func (p *Progress) Plan(vs []*solver.Vertex) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range vs {
		p.step(v)
	}
	p.total = len(p.order)
}

// Event records a step's new state.
func (p *Progress) Event(e solver.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.step(e.Vertex)
	s.state = e.State
	switch e.State {
	case solver.StateStarted:
		s.started = p.now()
	case solver.StateRan, solver.StateFailed:
		s.duration = e.Duration
	}
	p.r.event(p, s, e)
}

// Explained records why a step missed the cache.
func (p *Progress) Explained(v *solver.Vertex, why []explain.Change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.step(v)
	s.why = why
	p.r.explained(p, s)
}

// Message shows one line that is not a step's and that every mode shows,
// Quiet too: a warning.
func (p *Progress) Message(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.r.message(p, strings.TrimSuffix(text, "\n"))
}

// Info shows one line about the build's progress that is not a step's
// (a pull's progress, a stage skipped); Quiet mode drops it.
func (p *Progress) Info(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.quiet {
		p.r.message(p, strings.TrimSuffix(text, "\n"))
	}
}

// Writer is an io.Writer whose every line is shown with Info (for pull
// progress).
func (p *Progress) Writer() io.Writer { return &messageWriter{show: p.Info} }

// MessageWriter is an io.Writer whose every line is shown with Message,
// in every mode (for reports that are not progress, such as the build
// cache's collection).
func (p *Progress) MessageWriter() io.Writer { return &messageWriter{show: p.Message} }

// Logger is the writer for one step's output.
func (p *Progress) Logger(v *solver.Vertex) solver.Logger {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &stepLog{p: p, s: p.step(v)}
}

// Done ends the view with the result: the summary in TTY mode, the image
// line in Plain mode, a result event in JSON mode.
func (p *Progress) Done(r Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.r.done(p, r)
}

// counts are the steps' final states so far.
func (p *Progress) counts() Counts {
	var c Counts
	for _, s := range p.order {
		if s.state != solver.StateStarted { // still running: not ended yet
			c.Add(s.state)
		}
	}
	return c
}

// elapsed is the time since the build started.
func (p *Progress) elapsed() time.Duration { return p.now().Sub(p.start) }

// maxLineBytes of one line of output are kept for the view; the rest of
// a longer line is dropped (the journal's log keeps all of it), so output
// that never ends a line (a progress bar redrawn with \r, binary data)
// costs no more memory or time than that.
const maxLineBytes = 64 << 10

// lineSplitter cuts written output into lines, without their newlines,
// and keeps the start of an unfinished one: at most maxLineBytes.
type lineSplitter struct{ partial []byte }

// write passes each line that b ends to show, which must not keep the
// slice.
func (l *lineSplitter) write(b []byte, show func(line []byte)) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if len(l.partial) == 0 && i >= 0 { // a whole line: shown without a copy
			show(part[:min(len(part), maxLineBytes)])
		} else {
			room := max(maxLineBytes-len(l.partial), 0)
			l.partial = append(l.partial, part[:min(len(part), room)]...)
			if i < 0 {
				return
			}
			show(l.partial)
			l.partial = l.partial[:0]
		}
		b = b[i+1:]
	}
}

// stepLog splits a step's output into lines for the renderer.
type stepLog struct {
	p *Progress
	s *step
}

func (l *stepLog) Write(b []byte) (int, error) {
	if l.p.quiet {
		return len(b), nil // Quiet shows no output
	}
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	l.s.lines.write(b, func(line []byte) { l.p.r.line(l.p, l.s, line) })
	return len(b), nil
}

// messageWriter turns written lines into Info or Message lines.
type messageWriter struct {
	show  func(string)
	mu    sync.Mutex
	lines lineSplitter
}

func (w *messageWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines.write(b, func(line []byte) { w.show(string(line)) })
	return len(b), nil
}
