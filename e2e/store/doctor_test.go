package store

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// TestDoctorFindsRepairsAndReports damages a store the way a disk or a
// careless hand does, and checks what kiln doctor says and does.
func TestDoctorFindsRepairsAndReports(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("build", "-t", "good:1", e2etest.ContextDir(t, "FROM busybox\nRUN echo good > /id\n", map[string][]byte{}))
	s.MustKiln("build", "-t", "bad:1", e2etest.ContextDir(t, "FROM busybox\nRUN echo bad > /id\n", map[string][]byte{}))
	if out := s.MustKiln("doctor", "--deep"); !strings.Contains(out, "the store is consistent") {
		t.Errorf("doctor of a healthy store:\n%s", out)
	}
	if out := s.MustKiln("fsck"); !strings.Contains(out, "the store is consistent") {
		t.Errorf("fsck (alias):\n%s", out)
	}

	// bad:1's own layer gets a flipped byte.
	var insp []struct {
		RootFS struct {
			DiffIDs []string `json:"Layers"`
		}
	}
	mustJSON(t, s.MustKiln("inspect", "bad:1"), &insp)
	layer := insp[0].RootFS.DiffIDs[1]
	p := filepath.Join(s.Root, "content", "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 1
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}

	out, stderr, err := s.Kiln("doctor")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("doctor of a damaged store: %v\n%s%s", err, out, stderr)
	}
	for _, w := range []string{"PROBLEM: blob " + layer + ": content does not match its digest", "PROBLEM: image bad:1", "kiln doctor --repair"} {
		if !strings.Contains(out, w) {
			t.Errorf("doctor output lacks %q:\n%s", w, out)
		}
	}
	// The other images are still listed, the damaged one reported.
	if out := s.MustKiln("images", "good"); !strings.Contains(out, "good ") {
		t.Errorf("images good:\n%s", out)
	}

	out = s.MustKiln("doctor", "--repair")
	for _, w := range []string{"repaired: removed", "image bad:1", "the image is lost, build or pull it again", "all repaired: the store is consistent"} {
		if !strings.Contains(out, w) {
			t.Errorf("doctor --repair output lacks %q:\n%s", w, out)
		}
	}
	if out := s.MustKiln("doctor", "--deep"); !strings.Contains(out, "the store is consistent") {
		t.Errorf("doctor after --repair:\n%s", out)
	}
	if out, _, _ := s.Kiln("images", "-q", "bad"); out != "" {
		t.Errorf("bad:1 still listed")
	}
	if out := s.MustKiln("run", "--rm", "good:1", "cat", "/id"); out != "good\n" {
		t.Errorf("good:1 runs %q", out)
	}
	// Rebuilt, the lost image comes back.
	s.MustKiln("build", "-t", "bad:1", e2etest.ContextDir(t, "FROM busybox\nRUN echo bad > /id\n", map[string][]byte{}))
	if out := s.MustKiln("run", "--rm", "bad:1", "cat", "/id"); out != "bad\n" {
		t.Errorf("rebuilt bad:1 runs %q", out)
	}
	s.AssertDoctorClean()
}
