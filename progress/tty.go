package progress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/internal/cells"
	"github.com/kiln-build/kiln/solver"
)

const (
	// tailLines of a running step's output are shown under it; a failed
	// step keeps failTailLines in the final view.
	tailLines     = 6
	failTailLines = 12
	// maxRowBytes of a line's latest state are kept for its row.
	maxRowBytes = 4096
)

// ttyRenderer keeps the live view: a header, one line per step seen so
// far and the last lines of output under each running step, redrawn in
// place every interval. Only lines that changed since the last frame are
// rewritten. Messages are printed above the view.
type ttyRenderer struct {
	out      io.Writer
	size     func() (int, int)
	prev     []string // the frame on screen; the cursor is on the line below it
	stop     chan struct{}
	finished bool
}

func newTTY(p *Progress, out io.Writer, o Options) *ttyRenderer {
	t := &ttyRenderer{out: out, size: o.Size}
	if t.size == nil {
		t.size = func() (int, int) { return 0, 0 }
	}
	interval := o.Interval
	if interval == 0 {
		interval = 100 * time.Millisecond
	}
	if interval > 0 {
		t.stop = make(chan struct{})
		go t.loop(p, interval)
	}
	return t
}

func (t *ttyRenderer) loop(p *Progress, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			p.mu.Lock()
			t.live(p)
			p.mu.Unlock()
		}
	}
}

// Redraw draws the TTY view now (the redraw loop does it every interval).
func (p *Progress) Redraw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.r.(*ttyRenderer); ok {
		t.live(p)
	}
}

// live draws the view while the build runs, once there are steps to show
// (before that, pulls of base images print their lines alone).
func (t *ttyRenderer) live(p *Progress) {
	if !t.finished && len(p.order) > 0 {
		t.paint(t.frame(p, false))
	}
}

func (t *ttyRenderer) event(p *Progress, s *step, e solver.Event) {
	if e.State != solver.StateStarted && e.State != solver.StateFailed {
		s.tail = nil // only a running or failed step shows output
	}
}

func (t *ttyRenderer) line(p *Progress, s *step, line []byte) {
	if i := bytes.LastIndexByte(bytes.TrimRight(line, "\r"), '\r'); i >= 0 {
		line = line[i+1:] // a progress bar redrawn with \r: its last state
	}
	if len(line) > maxRowBytes {
		line = line[:maxRowBytes]
	}
	s.tail = append(s.tail, clean(string(line)))
	if len(s.tail) > failTailLines {
		s.tail = s.tail[len(s.tail)-failTailLines:]
	}
}

func (t *ttyRenderer) explained(p *Progress, s *step) {}

func (t *ttyRenderer) message(p *Progress, text string) {
	var b bytes.Buffer
	t.erase(&b)
	b.WriteString(clean(text))
	b.WriteString("\n")
	t.out.Write(b.Bytes())
	t.prev = nil
	t.live(p)
}

func (t *ttyRenderer) done(p *Progress, res Result) {
	if t.finished {
		return
	}
	t.finished = true
	if t.stop != nil {
		close(t.stop)
	}
	if res.Err != nil && len(p.order) == 0 {
		return // failed before there were steps (a Dockerfile error): main says why
	}
	t.paint(t.frame(p, res.Err == nil))
	t.prev = nil // what follows stays: a later message goes below it
	for _, s := range p.order {
		if s.why != nil {
			fmt.Fprintf(t.out, "#%d WHY %s\n", s.num, clean(explain.Summary(s.why)))
		}
	}
	c := p.counts()
	fmt.Fprintf(t.out, "%d steps: %d ran, %d cached, %d deduped, %d skipped", len(p.order), c.Ran, c.Cached, c.Deduped, c.Skipped)
	if c.Failed > 0 {
		fmt.Fprintf(t.out, ", %d failed", c.Failed)
	}
	fmt.Fprintf(t.out, " in %.1fs\n", p.elapsed().Seconds())
	if res.Err == nil {
		writeResult(t.out, p, res)
	}
}

// erase moves the cursor to the top of the frame and clears it.
func (t *ttyRenderer) erase(b *bytes.Buffer) {
	if len(t.prev) > 0 {
		fmt.Fprintf(b, "\x1b[%dA\r\x1b[J", len(t.prev))
	}
}

// paint draws a frame over the previous one, rewriting only the lines
// that differ.
func (t *ttyRenderer) paint(lines []string) {
	var b bytes.Buffer
	if len(t.prev) > 0 {
		same := len(lines) == len(t.prev)
		for i := 0; same && i < len(lines); i++ {
			same = lines[i] == t.prev[i]
		}
		if same {
			return
		}
		fmt.Fprintf(&b, "\x1b[%dA\r", len(t.prev))
	}
	for i, l := range lines {
		if i < len(t.prev) && t.prev[i] == l {
			b.WriteString("\n")
			continue
		}
		b.WriteString(l)
		b.WriteString("\x1b[K\n")
	}
	if len(lines) < len(t.prev) {
		b.WriteString("\x1b[J")
	}
	t.out.Write(b.Bytes())
	t.prev = lines
}

// frame is the view's lines: the header (FINISHED once the build
// succeeded), then each step that started or finished, in step order,
// with the last lines of output of the running and the failed ones. A live frame fits
// the terminal's height: the first finished steps are left out when it
// would not.
func (t *ttyRenderer) frame(p *Progress, succeeded bool) []string {
	width, height := t.size()
	if width <= 0 {
		width = 80
	}
	width-- // never write the last column: some terminals wrap there
	total, done := p.total, 0
	if len(p.order) > total {
		total = len(p.order)
	}
	var blocks [][]string
	var running []bool
	for _, s := range p.order {
		if s.state == "" {
			continue
		}
		if s.state != solver.StateStarted {
			done++
		}
		block := []string{stepLine(p, s, width)}
		tail := s.tail
		switch {
		case s.state == solver.StateStarted && len(tail) > tailLines:
			tail = tail[len(tail)-tailLines:]
		case s.state == solver.StateFailed && !t.finished && len(tail) > tailLines:
			tail = tail[len(tail)-tailLines:]
		}
		for _, l := range tail {
			block = append(block, cells.Cut(" => => # "+l, width))
		}
		blocks = append(blocks, block)
		running = append(running, s.state == solver.StateStarted)
	}
	header := fmt.Sprintf("[+] Building %.1fs (%d/%d)", p.elapsed().Seconds(), done, total)
	if succeeded {
		header += " FINISHED"
	}
	lines := []string{cells.Cut(header, width)}
	n := 1
	for _, b := range blocks {
		n += len(b)
	}
	for i := 0; !t.finished && height > 1 && n > height-1 && i < len(blocks); i++ {
		if !running[i] {
			n -= len(blocks[i])
			blocks[i] = nil
		}
	}
	for _, b := range blocks {
		lines = append(lines, b...)
	}
	if !t.finished && height > 1 && len(lines) > height-1 {
		lines = append(lines[:1], lines[len(lines)-(height-2):]...)
	}
	return lines
}

// stepLine is " => [STATE ]NAME" with the step's clock at the right edge.
func stepLine(p *Progress, s *step, width int) string {
	var prefix, clock string
	switch s.state {
	case solver.StateStarted:
		clock = fmt.Sprintf("%.1fs", p.now().Sub(s.started).Seconds())
	case solver.StateRan:
		clock = fmt.Sprintf("%.1fs", s.duration.Seconds())
	case solver.StateFailed:
		prefix, clock = "ERROR ", fmt.Sprintf("%.1fs", s.duration.Seconds())
	case solver.StateCached:
		prefix, clock = "CACHED ", "0.0s"
	case solver.StateDeduped:
		prefix, clock = "DEDUPED ", "0.0s"
	case solver.StateSkipped:
		prefix = "SKIPPED "
	}
	left := cells.Cut(" => "+prefix+clean(s.v.Name), width-len(clock)-1)
	pad := max(width-cells.Width(left)-len(clock), 1)
	return cells.Cut(left+strings.Repeat(" ", pad)+clock, width) // a terminal too narrow for the clock: cut too
}

// clean makes text safe to draw on one row: tabs become spaces, escape
// sequences and other control characters are dropped, invalid UTF-8 is
// replaced.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\t':
			b.WriteString("    ")
		case c == 0x1b:
			// CSI: ESC [ parameters final-byte; other escapes: ESC and one byte
			if i+1 < len(s) && s[i+1] == '[' {
				i += 2
				for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
					i++
				}
			} else {
				i++
			}
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
