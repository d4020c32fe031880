package main

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/kiln-build/kiln/solver"
)

// progress prints one line per step state and, in plain mode, every line
// of each step's output prefixed with the step number, like BuildKit's
// plain progress.
type progress struct {
	out     io.Writer
	verbose bool // stream step output
	mu      sync.Mutex
	nums    map[*solver.Vertex]int
	start   time.Time
}

func newProgress(out io.Writer, mode string) *progress {
	return &progress{out: out, verbose: mode != "tty" && mode != "quiet", nums: map[*solver.Vertex]int{}, start: time.Now()}
}

func (p *progress) num(v *solver.Vertex) int {
	n, ok := p.nums[v]
	if !ok {
		n = len(p.nums) + 1
		p.nums[v] = n
	}
	return n
}

// number assigns step numbers in Dockerfile order before the build starts.
func (p *progress) number(vs []*solver.Vertex) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range vs {
		p.num(v)
	}
}

func (p *progress) event(e solver.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.num(e.Vertex)
	switch e.State {
	case solver.StateStarted:
		fmt.Fprintf(p.out, "#%d %s\n", n, e.Vertex.Name)
	case solver.StateRan:
		fmt.Fprintf(p.out, "#%d DONE %.1fs\n", n, e.Duration.Seconds())
	case solver.StateCached:
		fmt.Fprintf(p.out, "#%d %s CACHED\n", n, e.Vertex.Name)
	case solver.StateDeduped:
		fmt.Fprintf(p.out, "#%d %s DEDUPED\n", n, e.Vertex.Name)
	case solver.StateSkipped:
		fmt.Fprintf(p.out, "#%d %s SKIPPED\n", n, e.Vertex.Name)
	case solver.StateFailed:
		fmt.Fprintf(p.out, "#%d ERROR after %.1fs\n", n, e.Duration.Seconds())
	}
}

func (p *progress) logger(v *solver.Vertex) solver.Logger {
	if !p.verbose {
		return io.Discard
	}
	return &stepLog{p: p, v: v}
}

type stepLog struct {
	p    *progress
	v    *solver.Vertex
	part []byte
}

func (l *stepLog) Write(b []byte) (int, error) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	data := append(l.part, b...)
	n := l.p.num(l.v)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(l.p.out, "#%d %.3f %s\n", n, time.Since(l.p.start).Seconds(), data[:i])
		data = data[i+1:]
	}
	l.part = append([]byte(nil), data...)
	return len(b), nil
}
