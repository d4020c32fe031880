package e2etest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

// WriteContext makes a build context in a new temp dir: name (a path
// relative to it) → content. The other context helpers call it.
func WriteContext(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for n, b := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ContextDir makes a build context holding a Dockerfile and files (which
// it adds the Dockerfile to).
func ContextDir(t *testing.T, dockerfile string, files map[string][]byte) string {
	t.Helper()
	files["Dockerfile"] = []byte(dockerfile)
	return WriteContext(t, files)
}

// TextContext makes a build context with the given files, given as text.
func TextContext(t *testing.T, files map[string]string) string {
	t.Helper()
	b := make(map[string][]byte, len(files))
	for name, body := range files {
		b[name] = []byte(body)
	}
	return WriteContext(t, b)
}

// DockerfileContext makes a build context holding only a Dockerfile.
func DockerfileContext(t *testing.T, content string) string {
	t.Helper()
	return WriteContext(t, map[string][]byte{"Dockerfile": []byte(content)})
}

// CopyContext copies testdata/dockerfiles/NAME (at the repository root) to
// a temp dir, so tests can set modes git does not keep and change files
// freely.
func CopyContext(t *testing.T, name string) string {
	t.Helper()
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repo, "testdata", "dockerfiles", name)
	dst := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return dst
}

// MultistageContext is testdata/dockerfiles/multistage, with the file
// mode its Dockerfile expects; the image it builds prints
// MultistageOutput when run.
func MultistageContext(t *testing.T) string {
	dir := CopyContext(t, "multistage")
	if err := os.Chmod(filepath.Join(dir, "src", "sub", "two.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// MultistageOutput is what the image built from MultistageContext prints.
const MultistageOutput = `hello from build
arg: world
config
marker
vi gone
user: app
`
