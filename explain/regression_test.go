package explain

import (
	"strings"

	"github.com/kiln-build/kiln/cache/record"
	"sync"
	"testing"
)

// Two steps with no key (failed before their key was known) of
// different instructions must not be paired as "the same key".
func TestDiffBuildsDoesNotPairUnkeyedStepsAsTheSameKey(t *testing.T) {
	b := base(m1)
	a := &Build{ID: "a", Steps: []Step{step("[1/2] FROM busybox", "cached", b), {Name: "[2/2] ADD http://a/x /x", State: "failed"}}}
	c := &Build{ID: "c", Steps: []Step{step("[1/2] FROM busybox", "cached", b), {Name: "[2/2] RUN something else", State: "failed"}}}
	d := (&History{}).DiffBuilds(a, c)
	if len(d) != 1 || d[0].Name != "[2/2] RUN something else" || len(d[0].Why) != 1 || d[0].Why[0].Kind != KindInstruction {
		t.Fatalf("builds with different failing steps: %+v", d)
	}
	if d := (&History{}).DiffBuilds(a, a); len(d) != 0 {
		t.Errorf("a build with an unkeyed step differs from itself: %+v", d)
	}
}

// The explainer calls Explain from every solver goroutine with one
// shared History (run with -race).
func TestExplainFromSeveralGoroutines(t *testing.T) {
	b := base(m1)
	r1 := runComps(`["make"]`, envJSON("V=1"), keyOf(b))
	old := &Build{ID: "old", Dockerfile: "/c/Dockerfile", Context: "/c", Steps: []Step{step("[1/2] FROM busybox:latest", "cached", b), step("[2/2] RUN make", "ran", r1)}}
	h := &History{Builds: []*Build{old}}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cur := &Build{ID: "new", Dockerfile: "/c/Dockerfile", Context: "/c"}
			r := runComps(`["make"]`, envJSON("V=2", string(rune('a'+i))), keyOf(b))
			h.Explain(cur, step("[2/2] RUN make", "started", r))
		}(i)
	}
	wg.Wait()
}

// A secret-named ARG's value reaches explain through an ENV of
// another name built from it.
func TestSecretValueDoesNotLeakThroughADerivedEnv(t *testing.T) {
	h := &History{}
	b := base(m1)
	got := explainSecond(t, h, b, b,
		runComps(`["true"]`, envJSON("API_TOKEN=s3cr3tA", "URL=https://u:s3cr3tA@host"), keyOf(b)),
		runComps(`["true"]`, envJSON("API_TOKEN=s3cr3tB", "URL=https://u:s3cr3tB@host"), keyOf(b)))
	for _, c := range got {
		if strings.Contains(c.Name+c.Text+c.Old+c.New, "s3cr3t") {
			t.Errorf("secret value shown: %+v", c)
		}
	}
	if len(got) != 2 || !got[1].Redacted || got[1].Name != "URL" {
		t.Errorf("want $API_TOKEN and $URL named, redacted: %+v", got)
	}
}

// A secret's value in a flag (a WORKDIR, a URL) is not shown either.
func TestSecretValueDoesNotLeakThroughAFlag(t *testing.T) {
	b := base(m1)
	flagged := func(pw, cwd string) []record.Component {
		return comps("op", "exec", "args", `["true"]`, "env", envJSON("DB_PASSWORD="+pw), "cwd", cwd, "user", "", "network", "host", "input:0", keyOf(b))
	}
	old, cur := flagged("hunter2a", "/srv/hunter2a"), flagged("hunter2b", "/srv/hunter2b")
	for _, c := range explainSecond(t, &History{}, b, b, old, cur) {
		if strings.Contains(c.Name+c.Text+c.Old+c.New, "hunter2") {
			t.Errorf("secret value shown: %+v", c)
		}
	}
}

// A short secret value ("1") is not looked for in other values: it would
// hide every value with a 1 in it.
func TestShortSecretValueHidesOnlyItsVariable(t *testing.T) {
	b := base(m1)
	got := explainSecond(t, &History{}, b, b,
		runComps(`["true"]`, envJSON("API_TOKEN=1", "PORT=8081"), keyOf(b)),
		runComps(`["true"]`, envJSON("API_TOKEN=2", "PORT=8082"), keyOf(b)))
	if len(got) != 2 || !got[0].Redacted || got[1].Redacted || got[1].New != "8082" {
		t.Errorf("want $API_TOKEN hidden and $PORT shown: %+v", got)
	}
}
