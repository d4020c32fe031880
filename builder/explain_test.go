package builder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/store"
)

func writeJournal(t *testing.T, st *store.Store, j *Journal) {
	t.Helper()
	dir := filepath.Join(st.BuildsDir(), j.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	if err := os.WriteFile(filepath.Join(dir, "build.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func runJournal(id string, started time.Time, version string) *Journal {
	comps := []record.Component{{Name: "op", Value: "exec"}, {Name: "args", Value: `["make"]`}, {Name: "env", Value: `["VERSION=` + version + `"]`}}
	return &Journal{ID: id, Started: started, Dockerfile: "/c/Dockerfile", Context: "/c", Steps: []*StepRecord{
		{Name: "[2/2] RUN make", State: solver.StateRan, Key: string(record.NewKey(comps).Digest), Components: comps},
	}}
}

func TestExplainFillsInAJournalWithoutReasonsFromTheBuildsBeforeIt(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	// three builds within one second: the order is their start times'
	writeJournal(t, st, runJournal("20260101T000000Z-ffffffff", now, "1"))
	writeJournal(t, st, runJournal("20260101T000000Z-00000000", now.Add(time.Millisecond), "2"))
	writeJournal(t, st, runJournal("20260101T000000Z-88888888", now.Add(2*time.Millisecond), "3"))

	j, err := Explain(st, "")
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != "20260101T000000Z-88888888" {
		t.Fatalf("newest build: %s", j.ID)
	}
	why := j.Steps[0].Why
	if len(why) != 1 || why[0].Kind != explain.KindVar || why[0].Old != "2" || why[0].New != "3" {
		t.Errorf("why = %+v", why)
	}
	j, err = Explain(st, "00000000")
	if err != nil {
		t.Fatal(err)
	}
	if why := j.Steps[0].Why; len(why) != 1 || why[0].Old != "1" || why[0].New != "2" {
		t.Errorf("middle build explained against a later one: %+v", why)
	}
}

func TestNoCacheReasonSaysWhichFlag(t *testing.T) {
	stage := &solver.Vertex{Name: "a", NoCache: true}
	down := &solver.Vertex{Name: "b", Inputs: []*solver.Vertex{stage}}
	other := &solver.Vertex{Name: "c"}
	for _, c := range []struct {
		v    *solver.Vertex
		all  bool
		want string
	}{
		{stage, true, "--no-cache"},
		{stage, false, "--no-cache-filter"},
		{down, false, "--no-cache-filter (on a stage it depends on)"},
		{other, false, ""},
	} {
		if got := noCacheReason(c.v, c.all); got != c.want {
			t.Errorf("%s: %q, want %q", c.v.Name, got, c.want)
		}
	}
}
