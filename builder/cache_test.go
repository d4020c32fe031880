package builder_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/solver"
)

const twoMachineDockerfile = `FROM busybox AS deps
COPY deps.txt /deps.txt
RUN sort /deps.txt > /deps.sorted
FROM busybox AS app
COPY src/ /src/
RUN cat /src/*.txt > /app.out
FROM busybox
COPY --from=deps /deps.sorted /deps.sorted
COPY --from=app /app.out /app.out
RUN wc -l /app.out > /lines
`

// A second machine — another store, the context at another path with other
// mtimes — builds from the first machine's exported cache without running
// anything, and gets the same image digest.
func TestCacheExportedByOneStoreIsHitByAnother(t *testing.T) {
	epoch := time.Unix(1700000000, 0).UTC()
	a := newStore(t)
	ctxA := writeContext(t, map[string]string{"Dockerfile": twoMachineDockerfile, "deps.txt": "b\na\n", "src/one.txt": "1\n", "src/two.txt": "2\n"})
	cacheDir := filepath.Join(t.TempDir(), "cache")
	resA, recA := runBuild(t, a, ctxA, builder.Options{Epoch: &epoch, CacheTo: []builder.CacheSpec{{Type: "local", Attrs: map[string]string{"dest": cacheDir, "mode": "max"}}}})
	if len(recA.started()) != 7 {
		t.Fatalf("machine A ran %v", recA.started())
	}

	b := newStore(t)
	ctxB := filepath.Join(t.TempDir(), "elsewhere", "ctx")
	os.MkdirAll(filepath.Dir(ctxB), 0o755)
	if out, err := exec.Command("cp", "-r", ctxA, ctxB).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	later := time.Now().Add(3 * time.Hour)
	filepath.Walk(ctxB, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Chtimes(p, later, later)
		}
		return nil
	})
	from := []builder.CacheSpec{{Type: "local", Attrs: map[string]string{"src": cacheDir}}}
	resB, recB := runBuild(t, b, ctxB, builder.Options{Epoch: &epoch, CacheFrom: from})
	if got := recB.started(); len(got) != 0 {
		t.Fatalf("machine B ran %v; want every step cached", got)
	}
	for name, st := range recB.final() {
		if st != solver.StateCached {
			t.Errorf("%s: %s, want cached", name, st)
		}
	}
	if resA.Manifest.Digest != resB.Manifest.Digest {
		t.Errorf("image digests differ: %s vs %s", resA.Manifest.Digest, resB.Manifest.Digest)
	}
	if got := runIn(t, b, resB, "cat", "/deps.sorted", "/lines"); got != "a\nb\n2 /app.out\n" {
		t.Errorf("image from the cache: %q", got)
	}

	// one source change re-runs exactly what depends on it
	os.WriteFile(filepath.Join(ctxB, "src", "two.txt"), []byte("2\nmore\n"), 0o644)
	_, rec := runBuild(t, b, ctxB, builder.Options{Epoch: &epoch, CacheFrom: from})
	got := strings.Join(rec.started(), "\n")
	want := "[app 2/3] COPY src/ /src/\n[app 3/3] RUN cat /src/*.txt > /app.out\n[stage-2 3/4] COPY --from=app /app.out /app.out\n[stage-2 4/4] RUN wc -l /app.out > /lines"
	if got != want {
		t.Errorf("after one change machine B ran:\n%s\nwant:\n%s", got, want)
	}
}

func TestCacheExportModeMinHoldsOnlyTheTargetStage(t *testing.T) {
	a := newStore(t)
	ctx := writeContext(t, map[string]string{"Dockerfile": twoMachineDockerfile, "deps.txt": "x\n", "src/one.txt": "1\n"})
	cacheDir := filepath.Join(t.TempDir(), "cache")
	runBuild(t, a, ctx, builder.Options{CacheTo: []builder.CacheSpec{{Type: "local", Attrs: map[string]string{"dest": cacheDir}}}})
	b := newStore(t)
	_, rec := runBuild(t, b, ctx, builder.Options{CacheFrom: []builder.CacheSpec{{Type: "local", Attrs: map[string]string{"src": cacheDir}}}})
	// the final stage's steps are cached, so nothing upstream is needed
	if got := rec.started(); len(got) != 0 {
		t.Errorf("mode=min cache should cover the final image's steps; ran %v", got)
	}
	for name, st := range rec.final() {
		if strings.HasPrefix(name, "[deps") && !strings.Contains(name, "FROM") && st == solver.StateCached {
			t.Errorf("%s is cached, but mode=min exports only the target stage", name)
		}
	}
}
