package explain

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/cells"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/store"
)

// MaxFiles is how many changed files a step's reasons name; the rest are
// counted.
const MaxFiles = 5

// Step is one step of a build as the comparison sees it: what a build
// journal keeps of it.
type Step struct {
	// Num is the step's number as the progress showed it (#N), 0 if unknown.
	Num        int
	Name       string
	State      string
	Key        string
	Components []record.Component
	// NoCache, if set, says why the step had to run whatever the cache
	// held: "--no-cache", or --no-cache-filter for it or a step it depends on.
	NoCache string
	// Why is what the build recorded of why the step ran, if it did.
	Why []Change
}

// Build is one build: its steps, in the order they were recorded. Its
// Steps must not change once it has been given to Explain or DiffBuilds:
// the index by key is made from them once.
type Build struct {
	ID         string
	Context    string
	Dockerfile string
	Steps      []Step

	index sync.Once
	byKey map[string]*Step
}

// step is the step of b with key, preferring one that did the work
// (a step deduped against another has the same key); nil for "".
func (b *Build) step(key string) *Step {
	b.index.Do(func() {
		b.byKey = map[string]*Step{}
		for i := range b.Steps {
			s := &b.Steps[i]
			if s.Key != "" && (b.byKey[s.Key] == nil || b.byKey[s.Key].State == "deduped") {
				b.byKey[s.Key] = s
			}
		}
	})
	return b.byKey[key]
}

// History is what the earlier builds left. Explain and DiffBuilds may be
// called from several goroutines at once (the builder explains each step
// as the solver starts it); Tree must then be safe for that too.
type History struct {
	// Builds, newest first.
	Builds []*Build
	// Tree reads the entry list a context digest was hashed from
	// (contenthash.ReadTree); nil, or an error, leaves the files unnamed.
	Tree func(digest string) ([]contenthash.Entry, error)
}

// Explain says why step s of build cur ran instead of hitting the cache.
// cur must hold the steps s depends on (as they are recorded before s
// starts). It compares s with the closest earlier key of the same step —
// same stage and position, or the same instruction — in the earlier
// builds, preferring those of the same Dockerfile and context (another
// Dockerfile's step counts only with the same instruction), then the
// fewest differing components, then the newest.
func (h *History) Explain(cur *Build, s Step) []Change {
	if s.NoCache != "" {
		return []Change{{Kind: KindNoCache, Name: s.NoCache, Text: s.NoCache + ": the step ran without looking at the cache"}}
	}
	// the very same key before: it was cached then, so the record went
	// since — unless it never got one
	var failedIn, skippedIn string
	for _, b := range h.Builds {
		if b.ID == cur.ID || s.Key == "" {
			continue
		}
		switch old := b.step(s.Key); {
		case old == nil:
		case old.State == "ran" || old.State == "cached" || old.State == "deduped":
			return []Change{{Kind: KindPruned, Text: fmt.Sprintf("the cache record was pruned (the same step was built in %s)", b.ID)}}
		case old.State == "skipped":
			if skippedIn == "" {
				skippedIn = b.ID
			}
		default: // failed, or stopped while it ran
			if failedIn == "" {
				failedIn = b.ID
			}
		}
	}
	if failedIn != "" {
		return []Change{{Kind: KindFailed, Text: fmt.Sprintf("the same step failed in %s, so nothing was cached", failedIn)}}
	}
	if skippedIn != "" {
		return []Change{{Kind: KindNew, Text: "no earlier build ran this step (it was skipped in " + skippedIn + ")"}}
	}
	old, ob := h.closest(cur, s)
	if old == nil {
		return []Change{{Kind: KindNew, Text: "no earlier build of this step"}}
	}
	return h.diff(ob, old, cur, &s, 0, false)
}

// closest finds the earlier key of s's step that differs least.
func (h *History) closest(cur *Build, s Step) (*Step, *Build) {
	var best *Step
	var bestBuild *Build
	bestRank := [2]int{}
	for _, b := range h.Builds {
		if b.ID == cur.ID {
			continue
		}
		other := 1
		if b.Dockerfile == cur.Dockerfile && b.Context == cur.Context {
			other = 0
		}
		for i := range b.Steps {
			o := &b.Steps[i]
			if o.Key == "" || len(o.Components) == 0 || !SameStep(o.Name, s.Name) {
				continue
			}
			if other == 1 && !sameInstruction(o.Name, s.Name) {
				continue // another Dockerfile's step at the same position is a coincidence
			}
			rank := [2]int{other, differing(o.Components, s.Components)}
			if best == nil || rank[0] < bestRank[0] || rank[0] == bestRank[0] && rank[1] < bestRank[1] {
				best, bestBuild, bestRank = o, b, rank
			}
		}
	}
	return best, bestBuild
}

// SameStep reports whether two step names ("[build 2/4] RUN make") are
// the same step of a Dockerfile: the same stage and position, or the same
// instruction.
func SameStep(a, b string) bool {
	sa, pa, ta := splitName(a)
	sb, pb, tb := splitName(b)
	return ta == tb || pa > 0 && sa == sb && pa == pb
}

func sameInstruction(a, b string) bool {
	_, _, ta := splitName(a)
	_, _, tb := splitName(b)
	return ta == tb
}

// splitName splits "[build 2/4] RUN make" into its stage "build", position
// 2 and instruction "RUN make"; a single stage's "[2/4] RUN make" has the
// stage "". A name without that prefix has position 0.
func splitName(name string) (stage string, pos int, text string) {
	inner, rest, ok := strings.Cut(strings.TrimPrefix(name, "["), "] ")
	if !ok || !strings.HasPrefix(name, "[") {
		return "", 0, name
	}
	frac := inner
	if i := strings.LastIndexByte(inner, ' '); i >= 0 {
		stage, frac = inner[:i], inner[i+1:]
	}
	n, _, _ := strings.Cut(frac, "/")
	pos, err := strconv.Atoi(n)
	if err != nil {
		return "", 0, name
	}
	return stage, pos, rest
}

// differing counts the components whose values differ (or that only one
// side has).
func differing(a, b []record.Component) int {
	am := map[string]string{}
	for _, c := range a {
		am[c.Name] = c.Value
	}
	n := 0
	for _, c := range b {
		if v, ok := am[c.Name]; !ok || v != c.Value {
			n++
		}
		delete(am, c.Name)
	}
	return n + len(am)
}

// maxDepth bounds how far diff follows unchanged-but-differently-keyed
// inputs back.
const maxDepth = 64

// diff names what differs between old (a step of build ob) and cur (of
// build nb). With pointAtInputs, every changed input that is a step (not
// a base image) is only pointed at, as two builds' diff lists it too.
func (h *History) diff(ob *Build, old *Step, nb *Build, cur *Step, depth int, pointAtInputs bool) []Change {
	om := map[string]string{}
	for _, c := range old.Components {
		om[c.Name] = c.Value
	}
	names := []string{}
	nm := map[string]string{}
	for _, c := range cur.Components {
		nm[c.Name] = c.Value
		names = append(names, c.Name)
	}
	for _, c := range old.Components {
		if _, ok := nm[c.Name]; !ok {
			names = append(names, c.Name)
		}
	}
	// a secret's value reaches other values: an ENV, a URL built from it
	secrets := secretValues(om["env"], nm["env"])
	var out, files []Change
	instruction := false
	for _, n := range names {
		ov, nv := om[n], nm[n]
		if ov == nv {
			continue
		}
		switch {
		case n == "op" || n == "args" || n == "sources" || n == "dest" || n == "path" || n == "url" || strings.HasPrefix(n, "file:"):
			instruction = true
		case n == "env":
			out = append(out, varChanges(ov, nv, secrets)...)
		case n == "manifest":
			ref := cur.Name
			if _, after, ok := strings.Cut(ref, "FROM "); ok {
				ref = after
			}
			out = append(out, Change{Kind: KindBase, Name: ref, Old: ov, New: nv,
				Text: fmt.Sprintf("base image %s changed: %s → %s", ref, short(ov), short(nv))})
		case strings.HasPrefix(n, "input:"):
			out = append(out, h.inputChange(ob, nb, n, ov, nv, depth, pointAtInputs)...)
		case strings.HasPrefix(n, "src:"):
			files = append(files, h.fileChanges(strings.TrimPrefix(n, "src:"), ov, nv)...)
		case strings.HasPrefix(n, "bind:"):
			files = append(files, h.fileChanges("--mount target="+strings.TrimPrefix(n, "bind:"), ov, nv)...)
		default:
			out = append(out, flagChange(n, ov, nv))
		}
	}
	if instruction {
		o, n := ops.Describe(old.Components), ops.Describe(cur.Components)
		out = append([]Change{{Kind: KindInstruction, Old: o, New: n, Text: fmt.Sprintf("instruction changed: %s → %s", clip(o), clip(n))}}, out...)
	}
	if len(files) > MaxFiles {
		rest := len(files) - MaxFiles
		files = append(files[:MaxFiles:MaxFiles], Change{Kind: KindFile, Text: fmt.Sprintf("and %d more %s", rest, plural(rest, "file"))})
	}
	out = append(out, files...)
	for i, c := range out {
		if !c.Redacted && holdsSecret(secrets, c.Name, c.Old, c.New, c.Text) {
			out[i] = redact(c, secrets)
		}
	}
	if len(out) == 0 {
		out = append(out, Change{Kind: KindInstruction, Text: "the step's definition changed"})
	}
	return out
}

// inputChange explains a changed input key. An input that ran in this
// build carries its own reasons, so this step only points at it; one that
// did not (a base image, a step cached from an even older build) is
// followed back, so the root cause shows here.
func (h *History) inputChange(ob, nb *Build, name, ov, nv string, depth int, pointAtInputs bool) []Change {
	in, was := nb.step(nv), ob.step(ov)
	if in == nil || was == nil || depth >= maxDepth {
		return []Change{{Kind: KindInput, Name: name, Old: ov, New: nv, Text: fmt.Sprintf("an input step changed (%s → %s)", short(ov), short(nv))}}
	}
	if pointAtInputs && !isSource(in) {
		return []Change{{Kind: KindInput, Name: in.Name, Old: ov, New: nv, Text: "its input step " + stepRef(in) + " changed"}}
	}
	if in.State == "ran" || in.State == "started" || in.State == "failed" {
		return []Change{{Kind: KindInput, Name: in.Name, Old: ov, New: nv, Text: "its input step " + stepRef(in) + " ran"}}
	}
	return h.diff(ob, was, nb, in, depth+1, pointAtInputs)
}

// isSource reports whether s is a base image or scratch, not a step that
// does work.
func isSource(s *Step) bool {
	for _, c := range s.Components {
		if c.Name == "op" {
			return c.Value == "image" || c.Value == "scratch"
		}
	}
	return false
}

// parseEnv reads an env component (a JSON list of NAME=value): its names
// in order and their values.
func parseEnv(s string) ([]string, map[string]string) {
	var kvs []string
	json.Unmarshal([]byte(s), &kvs)
	m := map[string]string{}
	var order []string
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	return order, m
}

// minSecret is how long a secret's value must be to be looked for in other
// values: a shorter one ("1", "yes") would hide values that only happen
// to contain it.
const minSecret = 4

// secretValues are the values of the secret-named variables (IsSecretName)
// of env components, those long enough to be looked for in other values.
func secretValues(envs ...string) []string {
	var out []string
	for _, e := range envs {
		_, m := parseEnv(e)
		for k, v := range m {
			if IsSecretName(k) && len(v) >= minSecret {
				out = append(out, v)
			}
		}
	}
	return out
}

// holdsSecret reports whether any of values contains one of secrets.
func holdsSecret(secrets []string, values ...string) bool {
	for _, v := range values {
		for _, sv := range secrets {
			if strings.Contains(v, sv) {
				return true
			}
		}
	}
	return false
}

// redact hides the values of a change that holds one of secrets (and its
// name, if that holds one: a path).
func redact(c Change, secrets []string) Change {
	if holdsSecret(secrets, c.Name) {
		c.Name = ""
	}
	what := c.Name
	switch {
	case c.Kind == KindVar:
		what = "$" + c.Name
	case c.Kind == KindInstruction || what == "":
		what = "the instruction"
	}
	c.Old, c.New, c.Redacted = "", "", true
	c.Text = what + " changed (its value is not shown: it holds a secret's value)"
	return c
}

// varChanges compares two env components (JSON lists of NAME=value). A
// variable with a secret's name, or whose value holds one of secrets, is
// named without its values.
func varChanges(ov, nv string, secrets []string) []Change {
	oo, om := parseEnv(ov)
	no, nm := parseEnv(nv)
	var out []Change
	one := func(k string) {
		o, wasSet := om[k]
		n, isSet := nm[k]
		if wasSet == isSet && o == n {
			return
		}
		c := Change{Kind: KindVar, Name: k}
		if IsSecretName(k) {
			c.Redacted = true
			c.Text = "$" + k + " changed (its value is not shown: the name is a secret's)"
			out = append(out, c)
			return
		}
		if holdsSecret(secrets, o, n) {
			out = append(out, redact(c, secrets))
			return
		}
		c.Old, c.New = o, n
		switch {
		case !wasSet:
			c.Text = fmt.Sprintf("$%s set: %q", k, clip(n))
		case !isSet:
			c.Text = fmt.Sprintf("$%s unset (was %q)", k, clip(o))
		default:
			c.Text = fmt.Sprintf("$%s changed: %q → %q", k, clip(o), clip(n))
		}
		out = append(out, c)
	}
	for _, k := range no {
		one(k)
	}
	for _, k := range oo {
		if _, ok := nm[k]; !ok {
			one(k)
		}
	}
	return out
}

// flagNames says components by the instruction flag or setting they come from.
var flagNames = map[string]string{
	"cwd": "WORKDIR", "user": "USER", "network": "--network", "security": "--security",
	"mounts": "--mount", "chown": "--chown", "chmod": "--chmod", "parents": "--parents",
	"exclude": "--exclude", "checksum": "--checksum",
}

func flagChange(name, ov, nv string) Change {
	if f, ok := flagNames[name]; ok {
		name = f
	}
	return Change{Kind: KindFlag, Name: name, Old: ov, New: nv, Text: fmt.Sprintf("%s changed: %q → %q", name, clip(ov), clip(nv))}
}

// fileChanges names the files that differ between two content digests of
// path, from their trees; without the trees it names the path and both
// digests.
func (h *History) fileChanges(path, ov, nv string) []Change {
	tree := func(d string) ([]contenthash.Entry, bool) {
		if d == "" {
			return nil, true // the path was not a source then
		}
		if h.Tree == nil {
			return nil, false
		}
		es, err := h.Tree(d)
		return es, err == nil
	}
	oes, ok1 := tree(ov)
	nes, ok2 := tree(nv)
	if !ok1 || !ok2 {
		return []Change{{Kind: KindFile, Name: path, Old: ov, New: nv, Text: fmt.Sprintf("files in %s changed: %s → %s", path, short(ov), short(nv))}}
	}
	olds := map[string]contenthash.Entry{}
	for _, e := range oes {
		olds[e.Name] = e
	}
	var out []Change
	seen := map[string]bool{}
	for _, e := range nes {
		seen[e.Name] = true
		p := joinPath(path, e.Name)
		o, ok := olds[e.Name]
		switch {
		case !ok:
			out = append(out, Change{Kind: KindFile, Name: p, New: content(e), Text: fmt.Sprintf("file %s added", p)})
		case o.Type != e.Type || o.Content != e.Content:
			out = append(out, Change{Kind: KindFile, Name: p, Old: content(o), New: content(e),
				Text: fmt.Sprintf("file %s changed: %s → %s", p, short(content(o)), short(content(e)))})
		default:
			if o.Mode != e.Mode {
				om, nm := fmt.Sprintf("%04o", o.Mode), fmt.Sprintf("%04o", e.Mode)
				out = append(out, Change{Kind: KindMode, Name: p, Old: om, New: nm, Text: fmt.Sprintf("only mode bits changed: %s %s → %s", p, om, nm)})
			}
			if o.UID != e.UID || o.GID != e.GID {
				oo, no := fmt.Sprintf("%d:%d", o.UID, o.GID), fmt.Sprintf("%d:%d", e.UID, e.GID)
				out = append(out, Change{Kind: KindOwner, Name: p, Old: oo, New: no, Text: fmt.Sprintf("only owner changed: %s %s → %s", p, oo, no)})
			}
		}
	}
	var gone []string
	for n := range olds {
		if !seen[n] {
			gone = append(gone, n)
		}
	}
	sort.Strings(gone)
	for _, n := range gone {
		p := joinPath(path, n)
		out = append(out, Change{Kind: KindFile, Name: p, Old: content(olds[n]), Text: fmt.Sprintf("file %s removed", p)})
	}
	return out
}

// content is what an entry's content is, as a Change says it: a file's
// digest, a symlink's target.
func content(e contenthash.Entry) string {
	switch {
	case e.Type == "file":
		return "sha256:" + e.Content
	case e.Content != "":
		return e.Type + " " + e.Content
	}
	return e.Type
}

func joinPath(path, name string) string {
	switch {
	case name == "":
		return path
	case path == "." || path == "":
		return name
	}
	return strings.TrimSuffix(path, "/") + "/" + name
}

// short abbreviates a digest to its algorithm and 12 hex digits
// (store.ShortID) for a line of text.
func short(d string) string {
	if algo, hex, ok := strings.Cut(d, ":"); ok && algo == "sha256" && len(hex) > 12 {
		return algo + ":" + store.ShortID(d)
	}
	if d == "" {
		return "none"
	}
	return clip(d)
}

// How many characters of a value (a RUN line can be long) and of a step's
// name a line of text shows.
const (
	maxValue = 80
	maxName  = 60
)

// clip shortens a value shown in a line of text.
func clip(s string) string { return cells.Ellipsis(s, maxValue) }

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

// Summary is changes as one line: their texts joined by "; ".
func Summary(changes []Change) string {
	texts := make([]string, len(changes))
	for i, c := range changes {
		texts[i] = c.Text
	}
	return strings.Join(texts, "; ")
}

// stepRef names a step for a reason: its number as the progress showed it
// and its name, cut to a readable length.
func stepRef(s *Step) string {
	name := cells.Ellipsis(s.Name, maxName)
	if s.Num > 0 {
		return fmt.Sprintf("#%d %s", s.Num, name)
	}
	return name
}
