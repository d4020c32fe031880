package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/store"
)

// fakeBuild journals a build of three vertices, planned in Dockerfile
// order, whose events arrive in another order; the second fails.
func fakeBuild(t *testing.T, dir string, fail error) (*Journal, []*solver.Vertex) {
	t.Helper()
	vs := []*solver.Vertex{{Name: "[1/3] FROM busybox"}, {Name: "[2/3] RUN make"}, {Name: "[3/3] RUN make test"}}
	jr, err := newJournal(dir, Options{Target: "app"}, "/ctx", "/ctx/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	jr.plan(vs)
	ev := jr.event(nil)
	log := jr.logger(nil)
	now := time.Now()
	ev(solver.Event{Vertex: vs[1], State: solver.StateStarted, Time: now})
	fmt.Fprint(log(vs[1]), "building\n")
	log(vs[0]) // a logger that is never written to
	ev(solver.Event{Vertex: vs[0], State: solver.StateCached})
	if fail != nil {
		ev(solver.Event{Vertex: vs[1], State: solver.StateFailed, Duration: time.Second, Err: fail})
	} else {
		ev(solver.Event{Vertex: vs[1], State: solver.StateRan, Duration: time.Second})
		ev(solver.Event{Vertex: vs[2], State: solver.StateRan, Duration: time.Second})
		fmt.Fprint(log(vs[2]), "testing\n")
	}
	jr.finish(context.Background(), "", fail)
	jr.finish(context.Background(), "sha256:later", errors.New("a second finish changes nothing"))
	j, err := FindJournal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return j, vs
}

func TestJournalNumbersStepsInPlanOrderWhateverTheEventOrder(t *testing.T) {
	dir := t.TempDir()
	j, vs := fakeBuild(t, dir, nil)
	if len(j.Steps) != 3 {
		t.Fatalf("steps: %+v", j.Steps)
	}
	for i, s := range j.Steps {
		if s.Num != i+1 || s.Name != vs[i].Name {
			t.Errorf("step %d: #%d %s, want #%d %s", i, s.Num, s.Name, i+1, vs[i].Name)
		}
	}
	if j.Steps[0].Log != "" {
		t.Errorf("a step that wrote nothing has a log: %q", j.Steps[0].Log)
	}
	if j.Steps[1].Log != "step-2.log" || j.Steps[2].Log != "step-3.log" {
		t.Errorf("log files are not named by step number: %q %q", j.Steps[1].Log, j.Steps[2].Log)
	}
	if j.Outcome() != StatusCompleted || j.Error != "" {
		t.Errorf("status %q error %q; the second finish must not count", j.Status, j.Error)
	}
	if c := j.Counts(); c != (solver.Counts{Ran: 2, Cached: 1}) {
		t.Errorf("counts: %+v", c)
	}
	if j.ShortID() == j.ID || len(j.ShortID()) != 12 {
		t.Errorf("short ID %q of %q", j.ShortID(), j.ID)
	}
	if j.DockerfileName() != "Dockerfile" {
		t.Errorf("Dockerfile name %q", j.DockerfileName())
	}
}

func TestJournalOfAFailedBuildKeepsTheErrorAndLeavesOutStepsNeverReached(t *testing.T) {
	dir := t.TempDir()
	j, _ := fakeBuild(t, dir, errors.New("exit code 2"))
	if j.Outcome() != StatusError || j.Error != "exit code 2" {
		t.Errorf("status %q error %q", j.Status, j.Error)
	}
	if len(j.Steps) != 2 || j.Steps[1].State != solver.StateFailed || j.Steps[1].Error != "exit code 2" {
		t.Errorf("steps: %+v", j.Steps)
	}
	if c := j.Counts(); c != (solver.Counts{Cached: 1, Failed: 1}) {
		t.Errorf("counts: %+v", c)
	}
}

func TestJournalOfACanceledBuildSaysInterrupted(t *testing.T) {
	dir := t.TempDir()
	jr, err := newJournal(dir, Options{}, "/ctx", "/ctx/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	jr.finish(ctx, "", fmt.Errorf("RUN sleep: %w", context.Canceled))
	j, err := FindJournal(dir, "")
	if err != nil || j.Outcome() != StatusInterrupted {
		t.Fatalf("journal %+v, %v; want interrupted", j, err)
	}
}

func TestFindStepByNumberOrUniqueNamePart(t *testing.T) {
	j, _ := fakeBuild(t, t.TempDir(), nil)
	for ref, want := range map[string]int{"2": 2, "#3": 3, "FROM": 1, "[2/3] RUN make": 2, "make test": 3} {
		s, err := j.FindStep(ref)
		if err != nil || s.Num != want {
			t.Errorf("FindStep(%q) = %+v, %v; want #%d", ref, s, err, want)
		}
	}
	for ref, want := range map[string]string{"9": "no step #9", "RUN": "ambiguous", "COPY": "no step named"} {
		if _, err := j.FindStep(ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FindStep(%q): %v; want an error saying %q", ref, err, want)
		}
	}
}

func TestCopyLogsStreamsEachStepAfterAHeaderAndSaysWhenPruned(t *testing.T) {
	dir := t.TempDir()
	j, _ := fakeBuild(t, dir, nil)
	var all bytes.Buffer
	if err := CopyLogs(&all, dir, j); err != nil {
		t.Fatal(err)
	}
	if want := "#2 [2/3] RUN make\nbuilding\n#3 [3/3] RUN make test\ntesting\n"; all.String() != want {
		t.Errorf("CopyLogs:\n%s\nwant:\n%s", all.String(), want)
	}
	if err := os.Remove(filepath.Join(dir, j.ID, "step-3.log")); err != nil {
		t.Fatal(err)
	}
	var one bytes.Buffer
	if err := CopyLog(&one, dir, j, j.Steps[2]); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Errorf("CopyLog of a pruned log: %v", err)
	}
	if LogSize(dir, j, j.Steps[2]) != -1 || LogSize(dir, j, j.Steps[1]) != int64(len("building\n")) {
		t.Error("LogSize")
	}
	all.Reset()
	CopyLogs(&all, dir, j)
	if !strings.Contains(all.String(), "#3 [3/3] RUN make test\n(log removed by kiln prune)\n") {
		t.Errorf("CopyLogs with a pruned log:\n%s", all.String())
	}
}

func TestABuildThatFailsBeforeSolvingIsOnRecord(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nRUNN typo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, buildErr := Run(context.Background(), st, Options{ContextDir: ctxDir})
	if buildErr == nil {
		t.Fatal("the build should fail")
	}
	j, err := FindJournal(st.BuildsDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if j.Outcome() != StatusError || j.Error != buildErr.Error() || j.Dockerfile != filepath.Join(ctxDir, "Dockerfile") {
		t.Errorf("journal %+v; want the error %q", j, buildErr)
	}
}

// A journal written by kiln before steps had a number has no "num"; its
// steps are found by the number kiln builds show prints.
func TestOldJournalStepsAreNumberedByPosition(t *testing.T) {
	dir := t.TempDir()
	id := "20261201T000000Z-deadbeef"
	os.MkdirAll(filepath.Join(dir, id), 0o700)
	os.WriteFile(filepath.Join(dir, id, "build.json"), []byte(`{"id":"`+id+`","steps":[
{"name":"[1/2] FROM busybox","state":"cached","key":"sha256:aa"},
{"name":"[2/2] RUN echo hi","state":"ran","key":"sha256:bb","log":"step-1.log"}]}`), 0o600)
	j, err := FindJournal(dir, "deadbeef")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range j.Steps {
		if s.Num != i+1 {
			t.Errorf("step %d %q: Num = %d", i+1, s.Name, s.Num)
		}
	}
	if _, err := j.FindStep("2"); err != nil {
		t.Errorf("FindStep(2): %v", err)
	}
}

func TestDamagedJournalIsSaidDamagedNotNoSuchBuild(t *testing.T) {
	for name, content := range map[string]string{
		"truncated": `{"id":"x","steps":[{"na`,
		"not UTF-8": "{\"id\":\"x\",\"error\":\"\xff\xfe\"}",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			id := "20261201T000000Z-deadbeef"
			os.MkdirAll(filepath.Join(dir, id), 0o700)
			os.WriteFile(filepath.Join(dir, id, "build.json"), []byte(content), 0o600)
			_, err := FindJournal(dir, "deadbeef")
			if !errors.Is(err, store.ErrDamagedRecord) || errors.Is(err, ErrNoSuchBuild) || !strings.Contains(err.Error(), "build "+id+": damaged record") {
				t.Errorf("FindJournal of a %s journal: %v", name, err)
			}
		})
	}
}

func TestFinishingBuildKeepsARunningBuildsJournal(t *testing.T) {
	dir := t.TempDir()
	running := "20261204T000000Z-aaaaaaaaaaaa"
	os.MkdirAll(filepath.Join(dir, running), 0o700)
	for i := 0; i < keepBuilds; i++ {
		id := fmt.Sprintf("20261204T01%04dZ-%012x", i, i)
		os.MkdirAll(filepath.Join(dir, id), 0o700)
		os.WriteFile(filepath.Join(dir, id, store.BuildRecordFile), []byte(`{"id":"`+id+`","steps":[]}`), 0o600)
	}
	fakeBuild(t, dir, nil)
	if _, err := os.Stat(filepath.Join(dir, running)); err != nil {
		t.Errorf("the running build's journal: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != keepBuilds+1 {
		t.Errorf("%d directories, want %d finished and the running one", len(ents), keepBuilds)
	}
}

func TestFinishWarnsWhenTheRecordCannotBeWritten(t *testing.T) {
	dir := t.TempDir()
	var warnings []string
	jr, err := newJournal(dir, Options{Warn: func(s string) { warnings = append(warnings, s) }}, "/ctx", "/ctx/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// a directory in the record's place makes its rename fail, as a full disk fails the write
	os.MkdirAll(filepath.Join(jr.dir, store.BuildRecordFile, "x"), 0o700)
	jr.finish(context.Background(), "", nil)
	if len(warnings) != 1 || !strings.Contains(warnings[0], "record was not written") {
		t.Errorf("warnings: %q", warnings)
	}
}

func TestFindJournalTakesLastAndRejectsAnEmptyStep(t *testing.T) {
	dir := t.TempDir()
	j, _ := fakeBuild(t, dir, nil)
	last, err := FindJournal(dir, "last")
	if err != nil || last.ID != j.ID {
		t.Fatalf("FindJournal(last) = %v, %v; want %s", last, err, j.ID)
	}
	if _, err := FindJournal(dir, "nosuch"); !errors.Is(err, ErrNoSuchBuild) || err.Error() != "no such build: nosuch (kiln builds lists them)" {
		t.Errorf("FindJournal(nosuch): %v", err)
	}
	if s, err := j.FindStep(""); !errors.Is(err, ErrNoSuchStep) {
		t.Errorf("FindStep(\"\") = %v, %v", s, err)
	}
}
