package explain

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/cache/record"
)

// comps builds key components from name=value pairs.
func comps(kv ...string) []record.Component {
	var out []record.Component
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, record.Component{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func envJSON(kvs ...string) string {
	b, _ := json.Marshal(kvs)
	return string(b)
}

func step(name, state string, c []record.Component) Step {
	return Step{Name: name, State: state, Key: string(record.NewKey(c).Digest), Components: c}
}

func runComps(args, env string, input string) []record.Component {
	return comps("op", "exec", "args", args, "env", env, "cwd", "/", "user", "", "network", "host", "input:0", input)
}

func base(manifest string) []record.Component {
	return comps("op", "image", "manifest", manifest)
}

func keyOf(c []record.Component) string { return string(record.NewKey(c).Digest) }

const (
	m1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	m2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// twoBuilds is an earlier build and the current one of a two-step
// Dockerfile: FROM, then a step made by mk from the FROM's key.
func explainSecond(t *testing.T, h *History, oldBase, newBase []record.Component, oldStep, newStep []record.Component) []Change {
	t.Helper()
	old := &Build{ID: "old", Dockerfile: "/c/Dockerfile", Context: "/c", Steps: []Step{
		step("[1/2] FROM busybox:latest", "cached", oldBase),
		step("[2/2] RUN make", "ran", oldStep),
	}}
	h.Builds = append([]*Build{old}, h.Builds...)
	cur := &Build{ID: "new", Dockerfile: "/c/Dockerfile", Context: "/c", Steps: []Step{
		step("[1/2] FROM busybox:latest", "cached", newBase),
	}}
	s := step("[2/2] RUN make", "started", newStep)
	cur.Steps = append(cur.Steps, s)
	return h.Explain(cur, s)
}

func kinds(cs []Change) string {
	var ks []string
	for _, c := range cs {
		ks = append(ks, string(c.Kind))
	}
	return strings.Join(ks, ",")
}

func TestExplainNamesAChangedBuildArgWithBothValues(t *testing.T) {
	b := base(m1)
	why := explainSecond(t, &History{}, b, b,
		runComps(`["/bin/sh","-c","make"]`, envJSON("VERSION=1.0", "PATH=/bin"), keyOf(b)),
		runComps(`["/bin/sh","-c","make"]`, envJSON("VERSION=2.0", "PATH=/bin"), keyOf(b)))
	if len(why) != 1 || why[0].Kind != KindVar || why[0].Name != "VERSION" || why[0].Old != "1.0" || why[0].New != "2.0" {
		t.Fatalf("why = %+v", why)
	}
	if want := `$VERSION changed: "1.0" → "2.0"`; why[0].Text != want {
		t.Errorf("text %q, want %q", why[0].Text, want)
	}
}

func TestExplainNeverShowsTheValueOfASecretNamedVariable(t *testing.T) {
	b := base(m1)
	why := explainSecond(t, &History{}, b, b,
		runComps(`["make"]`, envJSON("API_TOKEN=hunter2", "PUBLIC_KEY=abc"), keyOf(b)),
		runComps(`["make"]`, envJSON("API_TOKEN=s3cr3t", "PUBLIC_KEY=abd"), keyOf(b)))
	if kinds(why) != "var,var" {
		t.Fatalf("why = %+v", why)
	}
	b2, _ := json.Marshal(why)
	if strings.Contains(string(b2), "hunter2") || strings.Contains(string(b2), "s3cr3t") {
		t.Errorf("a secret's value is in %s", b2)
	}
	if !why[0].Redacted || why[0].Name != "API_TOKEN" || !strings.Contains(why[0].Text, "changed") {
		t.Errorf("secret change: %+v", why[0])
	}
	if why[1].Redacted || why[1].New != "abd" {
		t.Errorf("PUBLIC_KEY is not a secret's name: %+v", why[1])
	}
}

func TestIsSecretNameFollowsBuildKitsPatterns(t *testing.T) {
	for name, want := range map[string]bool{
		"API_TOKEN": true, "password": true, "AWS_SECRET_ACCESS_KEY": true, "GITHUB_AUTH": true,
		"db_passwd": true, "apikey": true, "CREDENTIALS": true,
		"PUBLIC_KEY": false, "VERSION": false, "TOKENIZER": false, "KEYBOARD": false, "MONKEY": false,
	} {
		if IsSecretName(name) != want {
			t.Errorf("IsSecretName(%q) = %v", name, !want)
		}
	}
}

func TestExplainFollowsTheInputToAChangedBaseImage(t *testing.T) {
	ob, nb := base(m1), base(m2)
	why := explainSecond(t, &History{}, ob, nb,
		runComps(`["make"]`, "[]", keyOf(ob)),
		runComps(`["make"]`, "[]", keyOf(nb)))
	if len(why) != 1 || why[0].Kind != KindBase || why[0].Name != "busybox:latest" || why[0].Old != m1 || why[0].New != m2 {
		t.Fatalf("why = %+v", why)
	}
	if !strings.Contains(why[0].Text, "sha256:111111111111 → sha256:222222222222") {
		t.Errorf("text %q", why[0].Text)
	}
}

func TestExplainPointsAtAnInputStepThatRan(t *testing.T) {
	b := base(m1)
	oldCopy := comps("op", "copy", "sources", `["."]`, "dest", "/src", "src:.", m1, "input:0", keyOf(b))
	newCopy := comps("op", "copy", "sources", `["."]`, "dest", "/src", "src:.", m2, "input:0", keyOf(b))
	old := &Build{ID: "old", Steps: []Step{step("[1/3] FROM busybox", "cached", b), step("[2/3] COPY . /src", "ran", oldCopy),
		step("[3/3] RUN make", "ran", runComps(`["make"]`, "[]", keyOf(oldCopy)))}}
	cur := &Build{ID: "new", Steps: []Step{step("[1/3] FROM busybox", "cached", b), step("[2/3] COPY . /src", "ran", newCopy)}}
	s := step("[3/3] RUN make", "started", runComps(`["make"]`, "[]", keyOf(newCopy)))
	why := (&History{Builds: []*Build{old}}).Explain(cur, s)
	if len(why) != 1 || why[0].Kind != KindInput || why[0].Name != "[2/3] COPY . /src" {
		t.Fatalf("why = %+v", why)
	}
}

// trees is a fake tree store: digest → entries.
type trees map[string][]contenthash.Entry

func (ts trees) read(d string) ([]contenthash.Entry, error) {
	if es, ok := ts[d]; ok {
		return es, nil
	}
	return nil, contenthash.ErrNoTree
}

func copyStep(src string, b []record.Component) []record.Component {
	return comps("op", "copy", "sources", `["."]`, "dest", "/src", "chown", "", "chmod", "", "src:.", src, "input:0", keyOf(b))
}

func TestExplainNamesEditedAddedAndRemovedFilesWithDigests(t *testing.T) {
	sum := func(c byte) string { return strings.Repeat(string(c), 64) }
	ts := trees{
		m1: {{Name: "", Type: "dir", Mode: 0o755}, {Name: "a.txt", Type: "file", Mode: 0o644, Content: sum('a')}, {Name: "gone", Type: "file", Mode: 0o644, Content: sum('g')}},
		m2: {{Name: "", Type: "dir", Mode: 0o755}, {Name: "a.txt", Type: "file", Mode: 0o644, Content: sum('b')}, {Name: "new", Type: "symlink", Content: "a.txt"}},
	}
	b := base(m1)
	why := explainSecond(t, &History{Tree: ts.read}, b, b, copyStep(m1, b), copyStep(m2, b))
	if kinds(why) != "file,file,file" {
		t.Fatalf("why = %+v", why)
	}
	if why[0].Name != "a.txt" || why[0].Old != "sha256:"+sum('a') || why[0].New != "sha256:"+sum('b') {
		t.Errorf("edited: %+v", why[0])
	}
	if want := "file a.txt changed: sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"; why[0].Text != want {
		t.Errorf("text %q, want %q", why[0].Text, want)
	}
	if why[1].Name != "new" || why[1].Text != "file new added" || why[2].Name != "gone" || why[2].Text != "file gone removed" {
		t.Errorf("added/removed: %+v", why[1:])
	}
}

func TestExplainCapsTheFileListAndCountsTheRest(t *testing.T) {
	var o, n []contenthash.Entry
	for i := 0; i < MaxFiles+7; i++ {
		name := fmt.Sprintf("f%02d", i)
		o = append(o, contenthash.Entry{Name: name, Type: "file", Content: "aa"})
		n = append(n, contenthash.Entry{Name: name, Type: "file", Content: "bb"})
	}
	b := base(m1)
	why := explainSecond(t, &History{Tree: trees{m1: o, m2: n}.read}, b, b, copyStep(m1, b), copyStep(m2, b))
	if len(why) != MaxFiles+1 || why[MaxFiles].Text != "and 7 more files" {
		t.Fatalf("why = %s", Summary(why))
	}
}

func TestExplainSaysOnlyModeOrOnlyOwnerChanged(t *testing.T) {
	ts := trees{
		m1: {{Name: "run.sh", Type: "file", Mode: 0o644, Content: "aa"}, {Name: "x", Type: "file", Mode: 0o644, Content: "bb"}},
		m2: {{Name: "run.sh", Type: "file", Mode: 0o755, Content: "aa"}, {Name: "x", Type: "file", Mode: 0o644, UID: 1000, GID: 1000, Content: "bb"}},
	}
	b := base(m1)
	why := explainSecond(t, &History{Tree: ts.read}, b, b, copyStep(m1, b), copyStep(m2, b))
	if kinds(why) != "mode,owner" {
		t.Fatalf("why = %+v", why)
	}
	if why[0].Text != "only mode bits changed: run.sh 0644 → 0755" || why[1].Text != "only owner changed: x 0:0 → 1000:1000" {
		t.Errorf("texts: %s", Summary(why))
	}
}

func TestExplainWithoutTreesNamesThePathAndBothDigests(t *testing.T) {
	b := base(m1)
	why := explainSecond(t, &History{}, b, b, copyStep(m1, b), copyStep(m2, b))
	if len(why) != 1 || why[0].Kind != KindFile || why[0].Name != "." || why[0].Old != m1 || why[0].New != m2 {
		t.Fatalf("why = %+v", why)
	}
}

func TestExplainNamesAChangedInstructionAndFlags(t *testing.T) {
	b := base(m1)
	o := comps("op", "copy", "sources", `["a"]`, "dest", "/x", "chown", "", "chmod", "", "input:0", keyOf(b))
	n := comps("op", "copy", "sources", `["a"]`, "dest", "/y", "chown", "1000", "chmod", "", "input:0", keyOf(b))
	why := explainSecond(t, &History{}, b, b, o, n)
	if kinds(why) != "instruction,flag" {
		t.Fatalf("why = %+v", why)
	}
	if why[0].Old != "COPY a /x" || why[0].New != "COPY a /y" {
		t.Errorf("instruction: %+v", why[0])
	}
	if why[1].Name != "--chown" || why[1].Old != "" || why[1].New != "1000" {
		t.Errorf("flag: %+v", why[1])
	}
	w := runComps(`["make"]`, "[]", keyOf(b))
	w2 := append([]record.Component(nil), w...)
	w2[3] = record.Component{Name: "cwd", Value: "/src"}
	why = explainSecond(t, &History{}, b, b, w, w2)
	if len(why) != 1 || why[0].Kind != KindFlag || why[0].Name != "WORKDIR" {
		t.Errorf("cwd: %+v", why)
	}
}

func TestExplainNoCacheNewAndPruned(t *testing.T) {
	b := base(m1)
	r := runComps(`["make"]`, "[]", keyOf(b))
	cur := &Build{ID: "new", Steps: []Step{step("[1/2] FROM busybox", "cached", b)}}
	s := step("[2/2] RUN make", "started", r)

	if why := (&History{}).Explain(cur, s); kinds(why) != "new" || why[0].Text != "no earlier build of this step" {
		t.Errorf("first build: %+v", why)
	}
	old := &Build{ID: "old", Steps: []Step{step("[1/2] FROM busybox", "cached", b), step("[2/2] RUN make", "ran", r)}}
	h := &History{Builds: []*Build{old}}
	if why := h.Explain(cur, s); kinds(why) != "pruned" || !strings.HasPrefix(why[0].Text, "the cache record was pruned") {
		t.Errorf("same key again: %+v", why)
	}
	old.Steps[1].State = "failed"
	if why := h.Explain(cur, s); kinds(why) != "failed" || why[0].Text != "the same step failed in old, so nothing was cached" {
		t.Errorf("same key, failed before: %+v", why)
	}
	old.Steps[1].State = "skipped"
	if why := h.Explain(cur, s); kinds(why) != "new" || why[0].Text != "no earlier build ran this step (it was skipped in old)" {
		t.Errorf("same key, skipped before: %+v", why)
	}
	s.NoCache = "--no-cache"
	if why := h.Explain(cur, s); kinds(why) != "no-cache" || why[0].Name != "--no-cache" {
		t.Errorf("--no-cache: %+v", why)
	}
}

func TestExplainPrefersTheSameDockerfileThenFewestDifferences(t *testing.T) {
	b := base(m1)
	mk := func(v string) []record.Component {
		return runComps(`["make"]`, envJSON("V="+v), keyOf(b))
	}
	build := func(id, df, v string) *Build {
		return &Build{ID: id, Dockerfile: df, Steps: []Step{step("[1/2] FROM busybox", "cached", b), step("[2/2] RUN make", "ran", mk(v))}}
	}
	h := &History{Builds: []*Build{build("other", "/other/Dockerfile", "3"), build("b2", "/c/Dockerfile", "2"), build("b1", "/c/Dockerfile", "1")}}
	cur := &Build{ID: "new", Dockerfile: "/c/Dockerfile", Steps: []Step{step("[1/2] FROM busybox", "cached", b)}}
	why := h.Explain(cur, step("[2/2] RUN make", "started", mk("4")))
	if len(why) != 1 || why[0].Old != "2" {
		t.Errorf("compared with %+v, want the newest build of the same Dockerfile", why)
	}
	other := &Build{ID: "other", Dockerfile: "/other/Dockerfile", Steps: []Step{step("[2/2] RUN make test", "ran", runComps(`["make", "test"]`, "[]", keyOf(b)))}}
	fresh := &Build{ID: "new", Dockerfile: "/c/Dockerfile"}
	if why := (&History{Builds: []*Build{other}}).Explain(fresh, step("[2/2] RUN make", "started", mk("1"))); kinds(why) != "new" {
		t.Errorf("another Dockerfile's step at the same position: %+v", why)
	}
}

func TestSameStepMatchesPositionOrInstruction(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"[build 2/4] RUN make", "[build 2/5] RUN make all", true},
		{"[build 2/4] RUN make", "[test 2/4] RUN go test", false},
		{"[build 2/4] RUN make", "[build 3/5] RUN make", true},
		{"[2/3] COPY . /src", "[2/3] COPY . /app", true},
		{"[2/3] COPY . /src", "[3/3] RUN x", false},
		{"FROM alpine", "FROM alpine", true},
	} {
		if got := SameStep(c.a, c.b); got != c.want {
			t.Errorf("SameStep(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

func TestDiffBuildsPairsStepsAndSaysWhy(t *testing.T) {
	b := base(m1)
	r1 := runComps(`["make"]`, envJSON("V=1"), keyOf(b))
	r2 := runComps(`["make"]`, envJSON("V=2"), keyOf(b))
	a := &Build{ID: "a", Steps: []Step{step("[1/3] FROM busybox", "cached", b), step("[2/3] RUN make", "ran", r1), step("[3/3] RUN old", "ran", r1)}}
	c := &Build{ID: "c", Steps: []Step{step("[1/2] FROM busybox", "cached", b), step("[2/2] RUN make", "ran", r2)}}
	d := (&History{}).DiffBuilds(a, c)
	if len(d) != 2 {
		t.Fatalf("diff = %+v", d)
	}
	if d[0].Name != "[2/2] RUN make" || d[0].OldState != "ran" || kinds(d[0].Why) != "var" || d[0].Why[0].New != "2" {
		t.Errorf("changed step: %+v", d[0])
	}
	if d[1].Name != "[3/3] RUN old" || d[1].NewState != "" {
		t.Errorf("step only in a: %+v", d[1])
	}
	if got := (&History{}).DiffBuilds(a, a); len(got) != 0 {
		t.Errorf("a build against itself: %+v", got)
	}
}

func TestSummaryJoinsTexts(t *testing.T) {
	if s := Summary([]Change{{Text: "a"}, {Text: "b"}}); s != "a; b" {
		t.Errorf("Summary = %q", s)
	}
}

func TestDiffBuildsPointsAtAChangedInputStepButFollowsABaseImage(t *testing.T) {
	ob, nb := base(m1), base(m2)
	oc, nc := copyStep(m1, ob), copyStep(m1, nb)
	a := &Build{ID: "a", Steps: []Step{step("[1/3] FROM busybox", "cached", ob), step("[2/3] COPY . /src", "ran", oc), step("[3/3] RUN make", "ran", runComps(`["make"]`, "[]", keyOf(oc)))}}
	b := &Build{ID: "b", Steps: []Step{step("[1/3] FROM busybox", "cached", nb), step("[2/3] COPY . /src", "cached", nc), step("[3/3] RUN make", "cached", runComps(`["make"]`, "[]", keyOf(nc)))}}
	d := (&History{}).DiffBuilds(a, b)
	if len(d) != 3 {
		t.Fatalf("diff = %+v", d)
	}
	if kinds(d[0].Why) != "base" || d[0].Why[0].New != m2 {
		t.Errorf("FROM: %+v", d[0])
	}
	if kinds(d[1].Why) != "base" {
		t.Errorf("COPY follows the base image: %+v", d[1])
	}
	if kinds(d[2].Why) != "input" || d[2].Why[0].Text != "its input step [2/3] COPY . /src changed" {
		t.Errorf("RUN points at the COPY row: %+v", d[2])
	}
}
