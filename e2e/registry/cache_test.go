package registry

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// Issue "registries": machine A builds and exports its cache (to a registry
// or a local OCI layout directory); machine B — an empty store, the context
// at another path with other mtimes — pulls the base image, hits every step,
// runs no container and gets the same image digest.
func TestSecondMachineBuildsFromCacheWithoutRunningAnything(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	seed := e2etest.NewStore(t)
	base := reg.Ref("library/busybox:latest")
	e2etest.PushWithSkopeo(t, seed, "busybox:latest", base)

	cacheDir := filepath.Join(t.TempDir(), "cache")
	for _, tc := range []struct{ name, to, from string }{
		{"registry", "type=registry,ref=" + reg.Ref("team/app:buildcache") + ",mode=max", "type=registry,ref=" + reg.Ref("team/app:buildcache")},
		{"local", "type=local,dest=" + cacheDir + ",mode=max", "type=local,src=" + cacheDir},
	} {
		t.Run(tc.name, func(t *testing.T) { secondMachine(t, base, tc.to, tc.from) })
	}
}

func secondMachine(t *testing.T, base, cacheTo, cacheFrom string) {
	ctxA := filepath.Join(t.TempDir(), "a")
	files := map[string]string{
		"Dockerfile": "FROM " + base + " AS build\nCOPY src/ /src/\nRUN cat /src/* > /joined\nFROM " + base + "\nCOPY --from=build /joined /joined\nRUN wc -c /joined > /size\n",
		"src/a.txt":  "alpha\n", "src/b.txt": "beta\n",
	}
	for n, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(ctxA, n)), 0o755)
		os.WriteFile(filepath.Join(ctxA, n), []byte(c), 0o644)
	}
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}

	a := e2etest.EmptyStore(t)
	if _, stderr, err := a.KilnEnv(env, "build", "-t", "app:1", "--cache-to", cacheTo, ctxA); err != nil {
		t.Fatalf("machine A: %v\n%s", err, stderr)
	}

	ctxB := filepath.Join(t.TempDir(), "somewhere", "else")
	os.MkdirAll(filepath.Dir(ctxB), 0o755)
	if out, err := exec.Command("cp", "-r", ctxA, ctxB).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	later := time.Now().Add(-48 * time.Hour)
	filepath.Walk(ctxB, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Chtimes(p, later, later)
		}
		return nil
	})
	b := e2etest.EmptyStore(t)
	_, stderr, err := b.KilnEnv(env, "build", "--progress", "plain", "-t", "app:1", "--cache-from", cacheFrom, ctxB)
	if err != nil {
		t.Fatalf("machine B: %v\n%s", err, stderr)
	}
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, " DONE ") || strings.Contains(l, "] RUN") && !strings.HasSuffix(l, "CACHED") {
			t.Errorf("machine B ran a step: %q\n%s", l, stderr)
		}
	}
	// the build journal records each step's final state: none ran
	steps := lastJournalSteps(t, b)
	if len(steps) == 0 {
		t.Fatal("machine B's build journal has no steps")
	}
	for _, st := range steps {
		if st.State != "cached" {
			t.Errorf("machine B: step %q is %s, want cached", st.Name, st.State)
		}
	}
	if got, want := manifestDigest(t, b), manifestDigest(t, a); got != want {
		t.Errorf("image digests differ across machines: %s vs %s", got, want)
	}

	// one changed source re-runs exactly its dependents
	os.WriteFile(filepath.Join(ctxB, "src", "b.txt"), []byte("beta, changed\n"), 0o644)
	_, stderr, err = b.KilnEnv(env, "build", "--progress", "plain", "-t", "app:1", "--cache-from", cacheFrom, ctxB)
	if err != nil {
		t.Fatalf("machine B rebuild: %v\n%s", err, stderr)
	}
	var ran []string
	for _, l := range strings.Split(stderr, "\n") {
		if f := strings.Fields(l); len(f) > 2 && strings.HasPrefix(f[1], "[") && !strings.HasSuffix(l, "CACHED") {
			ran = append(ran, strings.Join(f[1:], " "))
		}
	}
	want := []string{"[build 2/3] COPY src/ /src/", "[build 3/3] RUN cat /src/* > /joined", "[stage-1 2/3] COPY --from=build /joined /joined", "[stage-1 3/3] RUN wc -c /joined > /size"}
	if strings.Join(ran, "\n") != strings.Join(want, "\n") {
		t.Errorf("after one change B ran:\n%s\nwant:\n%s", strings.Join(ran, "\n"), strings.Join(want, "\n"))
	}
	if got := b.MustKiln("run", "app:1", "cat", "/joined", "/size"); got != "alpha\nbeta, changed\n20 /joined\n" {
		t.Errorf("rebuilt image holds %q", got)
	}
}

type journalStep struct{ Name, State string }

// lastJournalSteps reads the steps of s's newest build journal
// (builds/<id>/build.json; ids sort by start time).
func lastJournalSteps(t *testing.T, s *e2etest.Store) []journalStep {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(s.Root, "builds", "*", "build.json"))
	if len(dirs) == 0 {
		t.Fatal("no build journal in the store")
	}
	sort.Strings(dirs)
	data, err := os.ReadFile(dirs[len(dirs)-1])
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ Steps []journalStep }
	if err := json.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	return j.Steps
}

func manifestDigest(t *testing.T, s *e2etest.Store) string {
	t.Helper()
	var insp []struct{ ManifestDigest string }
	if err := json.Unmarshal([]byte(s.MustKiln("inspect", "app:1")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	return insp[0].ManifestDigest
}
