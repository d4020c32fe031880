package explain

import "fmt"

// StepDiff is one step of two builds compared: its state in each ("" when
// the build had no such step) and, when its key changed, why.
type StepDiff struct {
	Name     string   `json:"name"`
	OldState string   `json:"oldState,omitempty"`
	NewState string   `json:"newState,omitempty"`
	Why      []Change `json:"why,omitempty"`
}

// DiffBuilds pairs the steps of builds a and b — the same key, else the
// same step (SameStep) with the fewest differing components — and lists
// those whose state or key differ, b's order first, then a's steps that b
// lacks. Why names what changed between the two keys, as Explain does.
func (h *History) DiffBuilds(a, b *Build) []StepDiff {
	used := map[*Step]bool{}
	var out []StepDiff
	for i := range b.Steps {
		s := &b.Steps[i]
		o := pair(a, s, used)
		if o == nil {
			out = append(out, StepDiff{Name: s.Name, NewState: s.State, Why: []Change{{Kind: KindNew, Text: "not a step of the other build"}}})
			continue
		}
		used[o] = true
		if s.Key == "" || o.Key == "" {
			// a step that failed before its key was known: nothing to compare
			if o.Name != s.Name || o.State != s.State {
				out = append(out, StepDiff{Name: s.Name, OldState: o.State, NewState: s.State, Why: unkeyed(o, s)})
			}
			continue
		}
		if o.Key == s.Key {
			if o.State != s.State {
				// the same key: if b ran it, what b recorded says why
				why := s.Why
				if len(why) == 0 {
					why = []Change{{Kind: KindSameKey, Text: "the same cache key in both builds"}}
				}
				out = append(out, StepDiff{Name: s.Name, OldState: o.State, NewState: s.State, Why: why})
			}
			continue
		}
		out = append(out, StepDiff{Name: s.Name, OldState: o.State, NewState: s.State, Why: h.diff(a, o, b, s, 0, true)})
	}
	for i := range a.Steps {
		if o := &a.Steps[i]; !used[o] {
			out = append(out, StepDiff{Name: o.Name, OldState: o.State})
		}
	}
	return out
}

// pair finds s's step in a among those not used yet. An empty key (a
// step that failed before its key was known) matches nothing: such a step
// pairs only by SameStep.
func pair(a *Build, s *Step, used map[*Step]bool) *Step {
	var best *Step
	bestN := 0
	for i := range a.Steps {
		o := &a.Steps[i]
		sameKey := s.Key != "" && o.Key == s.Key
		if used[o] || !SameStep(o.Name, s.Name) && !sameKey {
			continue
		}
		n := differing(o.Components, s.Components)
		if sameKey {
			n = -1
		}
		if best == nil || n < bestN {
			best, bestN = o, n
		}
	}
	return best
}

// unkeyed says how two paired steps differ when one has no key.
func unkeyed(o, s *Step) []Change {
	if o.Name != s.Name {
		_, _, ot := splitName(o.Name)
		_, _, nt := splitName(s.Name)
		if ot != nt {
			return []Change{{Kind: KindInstruction, Old: ot, New: nt, Text: fmt.Sprintf("instruction changed: %s → %s", clip(ot), clip(nt))}}
		}
	}
	return []Change{{Kind: KindNew, Text: "no cache key to compare: the step failed before its key was known"}}
}
