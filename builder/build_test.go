package builder_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/transport/archive"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// newStore opens a store in a temp dir holding busybox:latest.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "runc")
	s, err := store.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f, err := os.Open(testenv.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	desc, err := archive.Import(context.Background(), f, s.Content, archive.ImportOptions{Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Content.Tag("docker.io/library/busybox:latest", desc); err != nil {
		t.Fatal(err)
	}
	return s
}

// writeContext creates a build context from name → content ("Dockerfile" included).
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// recorder collects solver events.
type recorder struct {
	mu     sync.Mutex
	events []solver.Event
}

func (r *recorder) add(e solver.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// final maps each vertex name to its final state.
func (r *recorder) final() map[string]solver.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]solver.State{}
	for _, e := range r.events {
		if e.State != solver.StateStarted {
			out[e.Vertex.Name] = e.State
		}
	}
	return out
}

func (r *recorder) started() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.State == solver.StateStarted {
			out = append(out, e.Vertex.Name)
		}
	}
	return out
}

func runBuild(t *testing.T, s *store.Store, dir string, opts builder.Options) (*builder.Result, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts.ContextDir = dir
	opts.Events = rec.add
	res, err := builder.Run(context.Background(), s, opts)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return res, rec
}

const cacheDockerfile = `FROM busybox AS base
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy-of-a
COPY b.txt /b.txt
RUN echo done > /done
`

func TestNoopRebuildIsAllCachedAndRunsNothing(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": cacheDockerfile, "a.txt": "a", "b.txt": "b"})
	first, rec1 := runBuild(t, s, dir, builder.Options{Tags: []string{"c:1"}})
	if len(rec1.started()) != 5 {
		t.Fatalf("first build started %v, want 5 steps", rec1.started())
	}
	second, rec2 := runBuild(t, s, dir, builder.Options{Tags: []string{"c:1"}})
	if got := rec2.started(); len(got) != 0 {
		t.Fatalf("no-op rebuild started %v", got)
	}
	for name, st := range rec2.final() {
		if st != solver.StateCached {
			t.Errorf("%s: %s, want cached", name, st)
		}
	}
	if len(rec2.final()) != 6 {
		t.Errorf("got %d final events, want 6: %v", len(rec2.final()), rec2.final())
	}
	if first.ID != second.ID {
		t.Errorf("image ID changed: %s vs %s", first.ID, second.ID)
	}
}

func TestTouchKeepsCacheAndContentChangeRerunsOnlyDependents(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": cacheDockerfile, "a.txt": "a", "b.txt": "b"})
	runBuild(t, s, dir, builder.Options{})

	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "b.txt"), future, future); err != nil {
		t.Fatal(err)
	}
	_, rec := runBuild(t, s, dir, builder.Options{})
	if got := rec.started(); len(got) != 0 {
		t.Fatalf("touch re-ran %v", got)
	}

	if err := os.WriteFile(filepath.Join(dir, "b.txt"), []byte("B"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, rec = runBuild(t, s, dir, builder.Options{})
	got := strings.Join(rec.started(), "\n")
	want := "[5/6] COPY b.txt /b.txt\n[6/6] RUN echo done > /done"
	if got != want {
		t.Fatalf("after changing b.txt started:\n%s\nwant:\n%s", got, want)
	}
}

func TestIndependentStagesRunConcurrently(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox AS a
RUN sleep 1 && echo a > /a
FROM busybox AS b
RUN sleep 1 && echo b > /b
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
`})
	_, rec := runBuild(t, s, dir, builder.Options{Parallel: 2})
	var aStart, aEnd, bStart, bEnd time.Time
	for _, e := range rec.events {
		switch {
		case strings.HasPrefix(e.Vertex.Name, "[a 2/2]") && e.State == solver.StateStarted:
			aStart = e.Time
		case strings.HasPrefix(e.Vertex.Name, "[a 2/2]") && e.State == solver.StateRan:
			aEnd = e.Time
		case strings.HasPrefix(e.Vertex.Name, "[b 2/2]") && e.State == solver.StateStarted:
			bStart = e.Time
		case strings.HasPrefix(e.Vertex.Name, "[b 2/2]") && e.State == solver.StateRan:
			bEnd = e.Time
		}
	}
	if aStart.IsZero() || bStart.IsZero() || aEnd.IsZero() || bEnd.IsZero() {
		t.Fatalf("missing events: %+v", rec.events)
	}
	if !(aStart.Before(bEnd) && bStart.Before(aEnd)) {
		t.Fatalf("stages did not overlap: a %v..%v, b %v..%v", aStart, aEnd, bStart, bEnd)
	}
}

func TestIdenticalStepsInOneBuildRunOnce(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox AS a
RUN echo same > /same
FROM busybox AS b
RUN echo same > /same
FROM busybox
COPY --from=a /same /a
COPY --from=b /same /b
`})
	_, rec := runBuild(t, s, dir, builder.Options{})
	states := map[solver.State]int{}
	for name, st := range rec.final() {
		if strings.Contains(name, "RUN") {
			states[st]++
		}
	}
	if states[solver.StateDeduped] != 1 || states[solver.StateRan] != 1 {
		t.Fatalf("want one deduped step, got %v", rec.final())
	}
}

func TestUnneededStageIsSkipped(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox AS unused
RUN exit 1
FROM busybox AS used
RUN echo ok > /ok
`})
	res, rec := runBuild(t, s, dir, builder.Options{Tags: []string{"skip:1"}})
	for name := range rec.final() {
		if strings.Contains(name, "unused") {
			t.Errorf("unused stage step %q was part of the build", name)
		}
	}
	if res.ID == "" {
		t.Fatal("no image")
	}
	if _, err := s.Content.Resolve("docker.io/library/skip:1"); err != nil {
		t.Fatal(err)
	}
}

func TestRetagMakesOldImageDangling(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY a.txt /\n", "a.txt": "1"})
	first, _ := runBuild(t, s, dir, builder.Options{Tags: []string{"app:1"}})
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("2"), 0o644)
	second, _ := runBuild(t, s, dir, builder.Options{Tags: []string{"app:1"}})
	if first.ID == second.ID {
		t.Fatal("content change did not change the image")
	}
	imgs, err := s.Content.Images()
	if err != nil {
		t.Fatal(err)
	}
	var dangling []content.Image
	for _, im := range imgs {
		if im.Name == "" && im.Descriptor.Digest == first.Manifest.Digest {
			dangling = append(dangling, im)
		}
	}
	if len(dangling) != 1 {
		t.Fatalf("old image should be listed once without a name: %+v", imgs)
	}
}

func TestEveryBuildLeavesAJournalWithKeysStatesAndFullLogs(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN for i in $(seq 1 3000); do echo line $i; done\nRUN exit 4\n"})
	if _, err := builder.Run(context.Background(), s, builder.Options{ContextDir: dir}); err == nil {
		t.Fatal("build should fail")
	}
	dirs, _ := filepath.Glob(filepath.Join(s.Root, "builds", "*", "build.json"))
	if len(dirs) != 1 {
		t.Fatalf("want one journal, got %v", dirs)
	}
	b, err := os.ReadFile(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	var j builder.Journal
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(j.Error, "exit code 4") || len(j.Steps) != 3 {
		t.Fatalf("journal: %+v", j)
	}
	run := j.Steps[1]
	if run.State != solver.StateRan || run.Key == "" || len(run.Components) == 0 || run.Log == "" {
		t.Fatalf("step record: %+v", run)
	}
	logData, err := os.ReadFile(filepath.Join(filepath.Dir(dirs[0]), run.Log))
	if err != nil || !strings.Contains(string(logData), "line 1\n") || !strings.Contains(string(logData), "line 3000\n") {
		t.Errorf("step log is not complete (%d bytes): %v", len(logData), err)
	}
	if j.Steps[2].State != solver.StateFailed {
		t.Errorf("failed step state: %s", j.Steps[2].State)
	}
}
