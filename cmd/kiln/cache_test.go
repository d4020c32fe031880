package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
)

// Issue "registries": machine A builds and exports its cache to a registry;
// machine B — an empty store, the context at another path with other
// mtimes — pulls the base image, hits every step, runs no container and
// gets the same image digest.
func TestSecondMachineBuildsFromRegistryCacheWithoutRunningAnything(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	seed := newStore(t)
	base := reg.Ref("library/busybox:latest")
	ptPush(t, seed, "busybox:latest", base)

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
	cacheRef := reg.Ref("team/app:buildcache")

	a := ptEmptyStore(t)
	if _, stderr, err := ptKilnEnv(a, env, "build", "-t", "app:1", "--cache-to", "type=registry,ref="+cacheRef+",mode=max", ctxA); err != nil {
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
	b := ptEmptyStore(t)
	_, stderr, err := ptKilnEnv(b, env, "build", "--progress", "plain", "-t", "app:1", "--cache-from", "type=registry,ref="+cacheRef, ctxB)
	if err != nil {
		t.Fatalf("machine B: %v\n%s", err, stderr)
	}
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, " DONE ") || strings.Contains(l, "] RUN") && !strings.HasSuffix(l, "CACHED") {
			t.Errorf("machine B ran a step: %q\n%s", l, stderr)
		}
	}
	if got, want := manifestDigest(t, b), manifestDigest(t, a); got != want {
		t.Errorf("image digests differ across machines: %s vs %s", got, want)
	}

	// one changed source re-runs exactly its dependents
	os.WriteFile(filepath.Join(ctxB, "src", "b.txt"), []byte("beta, changed\n"), 0o644)
	_, stderr, err = ptKilnEnv(b, env, "build", "--progress", "plain", "-t", "app:1", "--cache-from", "type=registry,ref="+cacheRef, ctxB)
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
}

func manifestDigest(t *testing.T, s *store) string {
	t.Helper()
	var insp []struct{ ManifestDigest string }
	if err := json.Unmarshal([]byte(s.mustKiln("inspect", "app:1")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	return insp[0].ManifestDigest
}
