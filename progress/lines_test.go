package progress

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLineSplitterCutsLinesAcrossWrites(t *testing.T) {
	var l lineSplitter
	var got []string
	for _, w := range []string{"a", "b\nc", "\n\n", "d\ne", "f"} {
		l.write([]byte(w), func(line []byte) { got = append(got, string(line)) })
	}
	if want := []string{"ab", "c", "", "d"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if string(l.partial) != "ef" {
		t.Errorf("unfinished line %q, want %q", l.partial, "ef")
	}
}

// Output that never ends a line (a progress bar redrawn with \r, a binary
// cat) is neither held whole nor copied on every write: only its first
// maxLineBytes are kept, in every mode.
func TestALongLineWithoutANewlineKeepsOnlyItsStart(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for _, m := range []Mode{Plain, JSON, Quiet, TTY} {
		var out bytes.Buffer
		p := New(&out, m, Options{Interval: -1})
		vs := vertices("[1/1] RUN cat /dev/urandom")
		p.Plan(vs)
		l := p.Logger(vs[0])
		start := time.Now()
		for i := 0; i < 32<<20/len(chunk); i++ { // 32 MiB: 28 s when every write copied the line
			l.Write(chunk)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: 32 MiB without a newline took %v", m, took)
		}
		if n := len(p.steps[vs[0]].lines.partial); n > maxLineBytes {
			t.Errorf("%s: %d bytes of one unfinished line held", m, n)
		}
		l.Write([]byte("\nnext\n"))
		if m == Plain {
			lines := strings.Split(out.String(), "\n")
			if len(lines) != 3 || len(lines[0]) > maxLineBytes+20 || !strings.HasSuffix(lines[1], " next") {
				t.Errorf("plain: %d lines, the first of %d bytes, then %.40q", len(lines), len(lines[0]), lines[1])
			}
		}
	}
	w := New(&bytes.Buffer{}, Plain, Options{}).Writer().(*messageWriter)
	for i := 0; i < 256; i++ {
		w.Write(chunk)
	}
	if n := len(w.lines.partial); n > maxLineBytes {
		t.Errorf("messages: %d bytes of one unfinished line held", n)
	}
}

// A long progress bar redrawn with \r shows its latest state, not the
// state of its first few kilobytes.
func TestTTYShowsTheLatestStateOfALongProgressBar(t *testing.T) {
	p, _, scr, _ := ttyAt(60, 0)
	vs := begin(p, "[1/2] FROM busybox", "[2/2] RUN download")
	var bar strings.Builder
	for i := 0; i <= 1000; i++ {
		fmt.Fprintf(&bar, "\rdownloading %d/1000", i)
	}
	p.Logger(vs[1]).Write([]byte(bar.String() + "\n"))
	p.Redraw()
	if !strings.Contains(scr.String(), " => => # downloading 1000/1000") {
		t.Errorf("screen:\n%s", scr)
	}
}
