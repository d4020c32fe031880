package progress

import (
	"encoding/json"
	"io"
	"time"

	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/solver"
)

// JSONEvent is one line of --progress json (docs/progress.md). Type says
// which fields are set:
//
//   - "step": Step, Name, Location, State (started, ran, cached, deduped,
//     skipped, failed), Key for a keyed step, Duration for ran and
//     failed, Error for failed;
//   - "log": Step, Name and Line, one line of the step's output (without
//     its newline; invalid UTF-8 replaced by U+FFFD);
//   - "why": Step, Name and Why, the reasons a step missed the cache;
//   - "message": Text, a line that is not a step's (a warning, a pull);
//   - "result": Duration of the build, Counts, and ID and Names, or Error.
type JSONEvent struct {
	Time     time.Time        `json:"time"`
	Type     string           `json:"type"`
	Step     int              `json:"step,omitempty"`
	Name     string           `json:"name,omitempty"`
	Location string           `json:"location,omitempty"`
	State    solver.State     `json:"state,omitempty"`
	Key      string           `json:"key,omitempty"`
	Duration float64          `json:"duration,omitempty"` // seconds
	Error    string           `json:"error,omitempty"`
	Line     string           `json:"line,omitempty"`
	Why      []explain.Change `json:"why,omitempty"`
	Text     string           `json:"text,omitempty"`
	ID       string           `json:"id,omitempty"`
	Names    []string         `json:"names,omitempty"`
	Counts   *Counts          `json:"counts,omitempty"`
}

type jsonRenderer struct{ out io.Writer }

func (r *jsonRenderer) write(p *Progress, e JSONEvent) {
	e.Time = p.now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return // every field marshals
	}
	r.out.Write(append(b, '\n'))
}

func stepEvent(typ string, s *step) JSONEvent {
	return JSONEvent{Type: typ, Step: s.num, Name: s.v.Name, Location: s.v.Location}
}

func (r *jsonRenderer) event(p *Progress, s *step, e solver.Event) {
	j := stepEvent("step", s)
	j.State = e.State
	if e.Key.Digest != "" {
		j.Key = e.Key.Digest.String()
	}
	j.Duration = e.Duration.Seconds()
	if e.Err != nil {
		j.Error = e.Err.Error()
	}
	r.write(p, j)
}

func (r *jsonRenderer) line(p *Progress, s *step, line []byte) {
	j := stepEvent("log", s)
	j.Line = string(line)
	r.write(p, j)
}

func (r *jsonRenderer) explained(p *Progress, s *step) {
	j := stepEvent("why", s)
	j.Why = s.why
	r.write(p, j)
}

func (r *jsonRenderer) message(p *Progress, text string) {
	r.write(p, JSONEvent{Type: "message", Text: text})
}

func (r *jsonRenderer) done(p *Progress, res Result) {
	c := p.counts()
	j := JSONEvent{Type: "result", Duration: p.elapsed().Seconds(), Counts: &c, ID: res.ID, Names: res.Names}
	if res.Err != nil {
		j.Error = res.Err.Error()
	}
	r.write(p, j)
}
