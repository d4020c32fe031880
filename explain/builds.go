package explain

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

// pair finds s's step in a among those not used yet.
func pair(a *Build, s *Step, used map[*Step]bool) *Step {
	var best *Step
	bestN := 0
	for i := range a.Steps {
		o := &a.Steps[i]
		if used[o] || !SameStep(o.Name, s.Name) && o.Key != s.Key {
			continue
		}
		n := differing(o.Components, s.Components)
		if o.Key == s.Key {
			n = -1
		}
		if best == nil || n < bestN {
			best, bestN = o, n
		}
	}
	return best
}
