package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/solver"
)

// clock is a fake time.Now that tests move forward.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func vertices(names ...string) []*solver.Vertex {
	vs := make([]*solver.Vertex, len(names))
	for i, n := range names {
		vs[i] = &solver.Vertex{Name: n, Location: fmt.Sprintf("Dockerfile:%d", i+1)}
	}
	return vs
}

// begin plans steps with these names, the first cached (a FROM) and the
// second started.
func begin(p *Progress, names ...string) []*solver.Vertex {
	vs := vertices(names...)
	p.Plan(vs)
	p.Event(solver.Event{Vertex: vs[0], State: solver.StateCached})
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateStarted})
	return vs
}

func TestParseModeNamesTheValidOnes(t *testing.T) {
	for _, m := range Modes {
		if got, err := ParseMode(string(m)); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	_, err := ParseMode("fancy")
	if err == nil || err.Error() != `--progress "fancy": unknown progress mode (valid: auto, plain, tty, json, quiet)` {
		t.Errorf("ParseMode(fancy): %v", err)
	}
}

func TestAutoIsTTYOnATerminalOnly(t *testing.T) {
	for _, c := range []struct {
		mode     Mode
		terminal bool
		term     string
		want     Mode
	}{
		{Auto, true, "xterm", TTY},
		{Auto, false, "xterm", Plain},
		{Auto, true, "dumb", Plain},
		{Plain, true, "xterm", Plain},
		{TTY, false, "", TTY},
		{JSON, true, "xterm", JSON},
	} {
		if got := c.mode.Resolve(c.terminal, c.term); got != c.want {
			t.Errorf("%s.Resolve(%v, %q) = %s, want %s", c.mode, c.terminal, c.term, got, c.want)
		}
	}
}

// TestPlainPrintsWhatKilnAlwaysPrinted pins the plain format other tests
// and scripts read.
func TestPlainPrintsWhatKilnAlwaysPrinted(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	p := New(&out, Plain, Options{Now: c.now})
	vs := begin(p, "[1/4] FROM busybox", "[2/4] RUN make", "[3/4] RUN test", "[4/4] COPY x /x")
	c.advance(123 * time.Millisecond)
	log := p.Logger(vs[1])
	log.Write([]byte("compiling\nlin"))
	log.Write([]byte("king\n"))
	p.Explained(vs[1], []explain.Change{{Text: "a.c changed"}, {Text: "build arg V changed"}})
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateRan, Duration: 1234 * time.Millisecond})
	p.Event(solver.Event{Vertex: vs[2], State: solver.StateStarted})
	p.Event(solver.Event{Vertex: vs[2], State: solver.StateFailed, Duration: 50 * time.Millisecond})
	p.Event(solver.Event{Vertex: vs[3], State: solver.StateSkipped})
	p.Info("stage x SKIPPED (not needed for the target)")
	p.Message("WARNING: careful")
	c.advance(time.Second)
	p.Done(Result{ID: "sha256:abc", Names: []string{"docker.io/library/app:1"}})
	want := `#1 [1/4] FROM busybox CACHED
#2 [2/4] RUN make
#2 0.123 compiling
#2 0.123 linking
#2 WHY a.c changed; build arg V changed
#2 DONE 1.2s
#3 [3/4] RUN test
#3 ERROR after 0.1s
#4 [4/4] COPY x /x SKIPPED
stage x SKIPPED (not needed for the target)
WARNING: careful
writing image sha256:abc done in 1.1s
naming to docker.io/library/app:1
`
	if out.String() != want {
		t.Errorf("plain output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestPlainSaysNothingMoreOnFailure(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, Plain, Options{})
	p.Done(Result{Err: errors.New("boom")})
	if out.Len() != 0 {
		t.Errorf("plain output on failure: %q (main prints the error)", out.String())
	}
}

func TestQuietShowsWarningsOnly(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, Quiet, Options{})
	vs := begin(p, "[1/2] FROM busybox", "[2/2] RUN make")
	p.Logger(vs[1]).Write([]byte("output\n"))
	p.Explained(vs[1], []explain.Change{{Text: "new"}})
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateRan})
	fmt.Fprintf(p.Writer(), "busybox: Pulling from library/busybox\n")
	p.Info("stage x SKIPPED (not needed for the target)")
	p.Message("WARNING: careful")
	fmt.Fprintf(p.MessageWriter(), "build cache 2GB over its budget 1GB: removed 3 cache records\n")
	p.Done(Result{ID: "sha256:abc"})
	if out.String() != "WARNING: careful\nbuild cache 2GB over its budget 1GB: removed 3 cache records\n" {
		t.Errorf("quiet output: %q", out.String())
	}
}

func TestJSONIsOneEventPerLine(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	p := New(&out, JSON, Options{Now: c.now})
	vs := vertices("[1/2] FROM busybox", "[2/2] RUN make")
	p.Plan(vs)
	key := record.NewKey([]record.Component{{Name: "op", Value: "run"}})
	p.Event(solver.Event{Vertex: vs[0], State: solver.StateCached, Key: key})
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateStarted, Key: key})
	p.Logger(vs[1]).Write([]byte("hello \xff\n"))
	p.Explained(vs[1], []explain.Change{{Kind: explain.KindVar, Name: "TOKEN", Redacted: true, Text: "build arg TOKEN changed"}})
	c.advance(2 * time.Second)
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateFailed, Duration: 2 * time.Second, Err: errors.New("exit code 1")})
	p.Message("WARNING: careful")
	p.Done(Result{Err: errors.New("Dockerfile:2: exit code 1")})

	var events []JSONEvent
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var e JSONEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		events = append(events, e)
	}
	if len(events) != 7 {
		t.Fatalf("%d events:\n%s", len(events), out.String())
	}
	want := []JSONEvent{
		{Type: "step", Step: 1, Name: "[1/2] FROM busybox", Location: "Dockerfile:1", State: solver.StateCached, Key: key.Digest.String()},
		{Type: "step", Step: 2, Name: "[2/2] RUN make", Location: "Dockerfile:2", State: solver.StateStarted, Key: key.Digest.String()},
		{Type: "log", Step: 2, Name: "[2/2] RUN make", Location: "Dockerfile:2", Line: "hello \uFFFD"},
		{Type: "why", Step: 2, Name: "[2/2] RUN make", Location: "Dockerfile:2", Why: []explain.Change{{Kind: explain.KindVar, Name: "TOKEN", Redacted: true, Text: "build arg TOKEN changed"}}},
		{Type: "step", Step: 2, Name: "[2/2] RUN make", Location: "Dockerfile:2", State: solver.StateFailed, Duration: 2, Error: "exit code 1"},
		{Type: "message", Text: "WARNING: careful"},
		{Type: "result", Duration: 2, Counts: &Counts{Cached: 1, Failed: 1}, Error: "Dockerfile:2: exit code 1"},
	}
	for i, e := range events {
		if !e.Time.Equal(c.now()) && !e.Time.Equal(c.now().Add(-2*time.Second)) {
			t.Errorf("event %d: time %v", i, e.Time)
		}
		e.Time = time.Time{}
		got, _ := json.Marshal(e)
		w, _ := json.Marshal(want[i])
		if !bytes.Equal(got, w) {
			t.Errorf("event %d:\n%s\nwant:\n%s", i, got, w)
		}
	}
}

// ttyAt is a TTY Progress drawn on a fake screen of the given size, with
// no redraw loop: the test calls Redraw.
func ttyAt(width, height int) (*Progress, *clock, *e2etest.Screen, *bytes.Buffer) {
	c := newClock()
	scr := &e2etest.Screen{}
	var raw bytes.Buffer
	p := New(writers{scr, &raw}, TTY, Options{Now: c.now, Interval: -1, Size: func() (int, int) { return width, height }})
	return p, c, scr, &raw
}

type writers []interface{ Write([]byte) (int, error) }

func (ws writers) Write(b []byte) (int, error) {
	for _, w := range ws {
		w.Write(b)
	}
	return len(b), nil
}

func TestTTYShowsRunningStepsSideBySideWithClocksAndTails(t *testing.T) {
	p, c, scr, _ := ttyAt(60, 0)
	vs := vertices("[a 1/2] FROM busybox", "[a 2/2] RUN make a", "[b 1/2] FROM busybox", "[b 2/2] RUN make b", "[3/3] COPY --from=a")
	p.Plan(vs)
	p.Event(solver.Event{Vertex: vs[0], State: solver.StateCached})
	p.Event(solver.Event{Vertex: vs[2], State: solver.StateCached})
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateStarted})
	c.advance(500 * time.Millisecond)
	p.Event(solver.Event{Vertex: vs[3], State: solver.StateStarted})
	la, lb := p.Logger(vs[1]), p.Logger(vs[3])
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(la, "a line %d\n", i)
	}
	lb.Write([]byte("b\tline\x1b[31m red\x1b[0m\n50%\r100%\n"))
	c.advance(700 * time.Millisecond)
	p.Redraw()
	want := `[+] Building 1.2s (2/5)
 => CACHED [a 1/2] FROM busybox                        0.0s
 => [a 2/2] RUN make a                                 1.2s
 => => # a line 3
 => => # a line 4
 => => # a line 5
 => => # a line 6
 => => # a line 7
 => => # a line 8
 => CACHED [b 1/2] FROM busybox                        0.0s
 => [b 2/2] RUN make b                                 0.7s
 => => # b    line red
 => => # 100%`
	if scr.String() != want {
		t.Errorf("screen:\n%s\nwant:\n%s", scr, want)
	}
}

func TestTTYRewritesOnlyLinesThatChanged(t *testing.T) {
	p, c, scr, raw := ttyAt(60, 0)
	vs := begin(p, "[1/3] FROM busybox", "[2/3] RUN make", "[3/3] RUN test")
	p.Logger(vs[1]).Write([]byte("one\n"))
	p.Redraw()
	raw.Reset()
	p.Redraw()
	if raw.Len() != 0 {
		t.Errorf("a redraw with nothing changed wrote %q", raw.String())
	}
	c.advance(100 * time.Millisecond)
	p.Redraw()
	// the header's and the running step's clocks changed; the cached step
	// and the output line did not
	if n := strings.Count(raw.String(), "\x1b[K"); n != 2 {
		t.Errorf("rewrote %d lines, want 2: %q", n, raw.String())
	}
	if strings.Contains(raw.String(), "one") || strings.Contains(raw.String(), "CACHED") {
		t.Errorf("an unchanged line was rewritten: %q", raw.String())
	}
	if !strings.HasPrefix(raw.String(), "\x1b[4A\r") {
		t.Errorf("redraw does not start by moving to the top of the view: %q", raw.String())
	}
	if !strings.Contains(scr.String(), "[+] Building 0.1s (1/3)") {
		t.Errorf("screen:\n%s", scr)
	}
}

func TestTTYLinesFitTheTerminalWidth(t *testing.T) {
	p, c, scr, _ := ttyAt(30, 0)
	vs := begin(p, "[1/2] FROM busybox", "[2/2] RUN "+strings.Repeat("x", 100))
	p.Logger(vs[1]).Write([]byte(strings.Repeat("é", 200) + "\n"))
	c.advance(3 * time.Second)
	p.Redraw()
	for _, l := range strings.Split(scr.String(), "\n") {
		if n := utf8.RuneCountInString(l); n > 29 {
			t.Errorf("line of %d columns on a 30-column terminal: %q", n, l)
		}
	}
	if !strings.Contains(scr.String(), " => [2/2] RUN xxxxxxxxxx 3.0s") {
		t.Errorf("the clock is cut off:\n%s", scr)
	}
}

func TestTTYKeepsTheViewWithinTheTerminalHeight(t *testing.T) {
	p, _, scr, _ := ttyAt(60, 8)
	var names []string
	for i := 1; i <= 10; i++ {
		names = append(names, fmt.Sprintf("[%d/10] RUN step %d", i, i))
	}
	vs := vertices(names...)
	p.Plan(vs)
	for _, v := range vs[:9] {
		p.Event(solver.Event{Vertex: v, State: solver.StateCached})
	}
	p.Event(solver.Event{Vertex: vs[9], State: solver.StateStarted})
	p.Logger(vs[9]).Write([]byte("out 1\nout 2\n"))
	p.Redraw()
	lines := strings.Split(scr.String(), "\n")
	if len(lines) > 7 {
		t.Errorf("%d lines on an 8-line terminal:\n%s", len(lines), scr)
	}
	if lines[0] != "[+] Building 0.0s (9/10)" || !strings.Contains(scr.String(), "RUN step 10") || lines[len(lines)-1] != " => => # out 2" {
		t.Errorf("the header, the running step or its output is missing:\n%s", scr)
	}
	p.Event(solver.Event{Vertex: vs[9], State: solver.StateRan})
	p.Done(Result{ID: "sha256:abc"})
	// the final view is not redrawn: every step is in it
	for i := 1; i <= 10; i++ {
		if !strings.Contains(scr.String(), fmt.Sprintf("RUN step %d ", i)) {
			t.Errorf("final view lacks step %d:\n%s", i, scr)
		}
	}
}

func TestTTYPrintsMessagesAboveTheView(t *testing.T) {
	p, _, scr, _ := ttyAt(60, 0)
	vs := begin(p, "[1/2] FROM busybox", "[2/2] RUN make")
	p.Redraw()
	p.Message("WARNING: first")
	fmt.Fprintf(p.Writer(), "busybox: Pulling from library/busybox\n")
	p.Logger(vs[1]).Write([]byte("out\n"))
	p.Redraw()
	want := `WARNING: first
busybox: Pulling from library/busybox
[+] Building 0.0s (1/2)
 => CACHED [1/2] FROM busybox                          0.0s
 => [2/2] RUN make                                     0.0s
 => => # out`
	if scr.String() != want {
		t.Errorf("screen:\n%s\nwant:\n%s", scr, want)
	}
}

func TestTTYEndsWithASummary(t *testing.T) {
	p, c, scr, _ := ttyAt(60, 0)
	vs := begin(p, "[1/4] FROM busybox", "[2/4] RUN make", "[3/4] RUN make", "[4/4] COPY x /x")
	p.Logger(vs[1]).Write([]byte("building\n"))
	p.Explained(vs[1], []explain.Change{{Text: "file a.c changed"}, {Text: "build arg V changed"}})
	c.advance(1500 * time.Millisecond)
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateRan, Duration: 1500 * time.Millisecond})
	p.Event(solver.Event{Vertex: vs[2], State: solver.StateDeduped})
	p.Event(solver.Event{Vertex: vs[3], State: solver.StateSkipped})
	p.Redraw()
	p.Done(Result{ID: "sha256:abc", Names: []string{"docker.io/library/app:1", "docker.io/library/app:latest"}})
	want := `[+] Building 1.5s (4/4) FINISHED
 => CACHED [1/4] FROM busybox                          0.0s
 => [2/4] RUN make                                     1.5s
 => DEDUPED [3/4] RUN make                             0.0s
 => SKIPPED [4/4] COPY x /x
#2 WHY file a.c changed; build arg V changed
4 steps: 1 ran, 1 cached, 1 deduped, 1 skipped in 1.5s
writing image sha256:abc done in 1.5s
naming to docker.io/library/app:1
naming to docker.io/library/app:latest`
	if scr.String() != want {
		t.Errorf("screen:\n%s\nwant:\n%s", scr, want)
	}
}

func TestTTYLeavesTheFailedStepsOutputOnScreen(t *testing.T) {
	p, _, scr, _ := ttyAt(60, 0)
	vs := begin(p, "[1/2] FROM busybox", "[2/2] RUN make")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(p.Logger(vs[1]), "line %d\n", i)
	}
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateFailed, Duration: time.Second})
	p.Redraw()
	if s := scr.String(); !strings.Contains(s, " => ERROR [2/2] RUN make") || strings.Contains(s, "line 14\n") || !strings.Contains(s, "line 20") {
		t.Errorf("live view of a failed step (its last 6 lines):\n%s", s)
	}
	p.Done(Result{Err: errors.New("boom")})
	s := scr.String()
	for i := 9; i <= 20; i++ {
		if !strings.Contains(s, fmt.Sprintf(" => => # line %d\n", i)) {
			t.Errorf("final view lacks line %d:\n%s", i, s)
		}
	}
	if strings.Contains(s, "line 8\n") || strings.Contains(s, "FINISHED") || strings.Contains(s, "writing image") {
		t.Errorf("final view of a failed build:\n%s", s)
	}
	if !strings.HasSuffix(s, "2 steps: 0 ran, 1 cached, 0 deduped, 0 skipped, 1 failed in 0.0s") {
		t.Errorf("no failure summary:\n%s", s)
	}
}

func TestTTYDrawsNoViewBeforeTheFirstStep(t *testing.T) {
	p, _, scr, raw := ttyAt(60, 0)
	p.Info("busybox: Pulling from library/busybox")
	p.Redraw()
	p.Info("Status: Downloaded newer image for busybox:latest")
	p.Done(Result{Err: errors.New("Dockerfile:3: unknown instruction: FORM")})
	if want := "busybox: Pulling from library/busybox\nStatus: Downloaded newer image for busybox:latest"; scr.String() != want || strings.Contains(raw.String(), "\x1b") {
		t.Errorf("screen:\n%s\nwant:\n%s\n(raw %q)", scr, want, raw)
	}
}

func TestTTYMessageAfterTheEndGoesBelowTheSummary(t *testing.T) {
	p, _, scr, _ := ttyAt(60, 0)
	vs := begin(p, "[1/2] FROM busybox", "[2/2] RUN make")
	p.Event(solver.Event{Vertex: vs[1], State: solver.StateRan})
	p.Redraw()
	p.Done(Result{ID: "sha256:abc"})
	p.Message("WARNING: late")
	if s := scr.String(); !strings.HasSuffix(s, "writing image sha256:abc done in 0.0s\nWARNING: late") || !strings.HasPrefix(s, "[+] Building 0.0s (2/2) FINISHED\n") {
		t.Errorf("screen:\n%s", s)
	}
}

func TestTTYRedrawLoopDrawsUntilDone(t *testing.T) {
	var out lockedBuffer
	p := New(&out, TTY, Options{Interval: time.Millisecond})
	vs := vertices("[1/1] RUN sleep")
	p.Plan(vs)
	p.Event(solver.Event{Vertex: vs[0], State: solver.StateStarted})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), " => [1/1] RUN sleep") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !strings.Contains(out.String(), " => [1/1] RUN sleep") {
		t.Fatalf("the loop drew nothing: %q", out.String())
	}
	p.Event(solver.Event{Vertex: vs[0], State: solver.StateRan})
	p.Done(Result{ID: "sha256:abc"})
	n := out.Len()
	time.Sleep(20 * time.Millisecond)
	if out.Len() != n {
		t.Errorf("the loop drew after Done")
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func TestCleanDropsControlCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                 "plain",
		"a\tb":                  "a    b",
		"\x1b[1;31mred\x1b[0m!": "red!",
		"bell\x07 and \x7f":     "bell and ",
		"bad \xff utf8":         "bad \uFFFD utf8",
		"\x1b7saved":            "saved",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
