package progress

import (
	"fmt"
	"io"

	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/solver"
)

// plainRenderer prints one line per step state and every line of each
// step's output prefixed with the step number and the time since the
// build started, like BuildKit's plain progress.
type plainRenderer struct{ out io.Writer }

func (r plainRenderer) event(p *Progress, s *step, e solver.Event) {
	switch e.State {
	case solver.StateStarted:
		fmt.Fprintf(r.out, "#%d %s\n", s.num, s.v.Name)
	case solver.StateRan:
		fmt.Fprintf(r.out, "#%d DONE %.1fs\n", s.num, e.Duration.Seconds())
	case solver.StateCached:
		fmt.Fprintf(r.out, "#%d %s CACHED\n", s.num, s.v.Name)
	case solver.StateDeduped:
		fmt.Fprintf(r.out, "#%d %s DEDUPED\n", s.num, s.v.Name)
	case solver.StateSkipped:
		fmt.Fprintf(r.out, "#%d %s SKIPPED\n", s.num, s.v.Name)
	case solver.StateFailed:
		fmt.Fprintf(r.out, "#%d ERROR after %.1fs\n", s.num, e.Duration.Seconds())
	}
}

func (r plainRenderer) line(p *Progress, s *step, line []byte) {
	fmt.Fprintf(r.out, "#%d %.3f %s\n", s.num, p.elapsed().Seconds(), line)
}

func (r plainRenderer) explained(p *Progress, s *step) {
	fmt.Fprintf(r.out, "#%d WHY %s\n", s.num, explain.Summary(s.why))
}

func (r plainRenderer) message(p *Progress, text string) { fmt.Fprintln(r.out, text) }

func (r plainRenderer) done(p *Progress, res Result) {
	if res.Err == nil {
		writeResult(r.out, p, res)
	}
}

// writeResult says what was built, as docker build does.
func writeResult(w io.Writer, p *Progress, res Result) {
	fmt.Fprintf(w, "writing image %s done in %.1fs\n", res.ID, p.elapsed().Seconds())
	for _, n := range res.Names {
		fmt.Fprintf(w, "naming to %s\n", n)
	}
}

// quietRenderer shows messages (warnings) only.
type quietRenderer struct{ out io.Writer }

func (quietRenderer) event(*Progress, *step, solver.Event) {}
func (quietRenderer) line(*Progress, *step, []byte)        {}
func (quietRenderer) explained(*Progress, *step)           {}
func (r quietRenderer) message(p *Progress, text string)   { fmt.Fprintln(r.out, text) }
func (quietRenderer) done(*Progress, Result)               {}
