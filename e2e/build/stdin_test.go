package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// docker build - (a Dockerfile or a context tar on stdin), -f - and -q.
func TestBuildFromStdinAndQuiet(t *testing.T) {
	s := e2etest.NewStore(t)

	// a Dockerfile on stdin: no context; -q prints the image ID only
	out, errOut, err := s.KilnStdin([]byte("FROM busybox\nRUN echo from-stdin > /x\n"), "build", "-q", "-t", "stdin:df", "-")
	if err != nil {
		t.Fatalf("build - < Dockerfile: %v\n%s", err, errOut)
	}
	id := strings.TrimSpace(s.MustKiln("images", "--no-trunc", "-q", "stdin:df"))
	if out != id+"\n" || id == "" {
		t.Errorf("build -q printed %q on stdout, want the image ID %q", out, id)
	}
	if errOut != "" {
		t.Errorf("build -q printed on stderr:\n%s", errOut)
	}
	if got := s.MustKiln("run", "stdin:df", "cat", "/x"); got != "from-stdin\n" {
		t.Errorf("image built from a stdin Dockerfile: %q", got)
	}
	_, errOut, err = s.KilnStdin([]byte("FROM busybox\nCOPY missing.txt /\n"), "build", "-")
	if err == nil || !strings.Contains(errOut, "Dockerfile:2") {
		t.Errorf("COPY without a context: err %v\n%s", err, errOut)
	}

	// a gzipped context tar on stdin
	ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY app.txt /app.txt\n", "app.txt": "in the tarball\n"})
	tgz, err := exec.Command("tar", "-czf", "-", "-C", ctx, ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := s.KilnStdin(tgz, "build", "-t", "stdin:tar", "-"); err != nil {
		t.Fatalf("build - < context.tar.gz: %v\n%s", err, errOut)
	}
	if got := s.MustKiln("run", "stdin:tar", "cat", "/app.txt"); got != "in the tarball\n" {
		t.Errorf("image built from a stdin context: %q", got)
	}

	// -f - with a context directory
	if _, errOut, err := s.KilnStdin([]byte("FROM busybox\nCOPY app.txt /copied\n"), "build", "-f", "-", "-t", "stdin:f", ctx); err != nil {
		t.Fatalf("build -f - DIR: %v\n%s", err, errOut)
	}
	if got := s.MustKiln("run", "stdin:f", "cat", "/copied"); got != "in the tarball\n" {
		t.Errorf("image built with -f -: %q", got)
	}
	if _, errOut, err := s.KilnStdin(nil, "build", "-f", "-", "-"); err == nil || !strings.Contains(errOut, "cannot read both") {
		t.Errorf("build -f - -: err %v\n%s", err, errOut)
	}

	// a hostile context tar on stdin escapes nothing and leaves nothing
	outsideDir := t.TempDir()
	for _, hostile := range [][]byte{
		e2etest.TarOf(t, e2etest.RegEntry("Dockerfile", "FROM busybox\n"), e2etest.RegEntry("../../../../../../.."+outsideDir+"/dotdot", "x")),
		e2etest.TarOf(t, e2etest.RegEntry("Dockerfile", "FROM busybox\n"), e2etest.SymlinkEntry("out", outsideDir), e2etest.RegEntry("out/through-link", "x")),
	} {
		s.KilnStdin(hostile, "build", "-")
		if ents, _ := os.ReadDir(outsideDir); len(ents) > 0 {
			t.Errorf("a stdin context tar wrote outside its directory: %v", ents)
		}
	}
	s.AssertClean()
	if left, _ := filepath.Glob(filepath.Join(s.Root, "run", "stdin-context-*")); len(left) > 0 {
		t.Errorf("stdin contexts left: %v", left)
	}
}

// A context tar is not an image layer: a file named .wh.x in it is a file
// the Dockerfile can COPY, as docker build - treats it, not a whiteout
// that deletes x.
func TestStdinContextFileNamedLikeAWhiteoutIsAFile(t *testing.T) {
	s := e2etest.NewStore(t)
	tarball := e2etest.TarOf(t,
		e2etest.RegEntry("Dockerfile", "FROM busybox\nCOPY .wh.x /copied\nRUN --mount=type=bind,target=/ctx cat /ctx/.wh.x > /read\n"),
		e2etest.RegEntry(".wh.x", "a file, not a deletion\n"))
	if _, errOut, err := s.KilnStdin(tarball, "build", "-t", "stdin:wh", "-"); err != nil {
		t.Fatalf("build - < context with .wh.x: %v\n%s", err, errOut)
	}
	for _, p := range []string{"/copied", "/read"} {
		if got := s.MustKiln("run", "stdin:wh", "cat", p); got != "a file, not a deletion\n" {
			t.Errorf("%s in the image: %q", p, got)
		}
	}
	s.AssertClean()
}
