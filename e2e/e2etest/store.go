package e2etest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

// Store is a private kiln root that the kiln binary runs on (--root
// Root). T is the test that failures are reported to; tests with
// subtests point it at the running subtest.
type Store struct {
	T    *testing.T
	Root string
}

// NewStore is a private kiln root holding busybox:latest. It needs root
// and runc: it skips without them, and fails under CI=true.
func NewStore(t *testing.T) *Store {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "runc")
	s := &Store{T: t, Root: filepath.Join(t.TempDir(), "root")}
	s.MustKiln("import", testenv.BusyboxTar(t), "busybox:latest")
	return s
}

// EmptyStore is a private kiln root with nothing in it (same
// requirements as NewStore).
func EmptyStore(t *testing.T) *Store {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "runc")
	return &Store{T: t, Root: filepath.Join(t.TempDir(), "root")}
}

// Kiln runs the binary on this store and returns stdout, stderr and err.
func (s *Store) Kiln(args ...string) (string, string, error) {
	cmd := exec.Command(kilnBin, append([]string{"--root", s.Root}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// MustKiln is Kiln that fails the test when kiln fails; it returns stdout.
func (s *Store) MustKiln(args ...string) string {
	s.T.Helper()
	out, errOut, err := s.Kiln(args...)
	if err != nil {
		s.T.Fatalf("kiln %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// KilnEnv is Kiln with extra environment variables.
func (s *Store) KilnEnv(env []string, args ...string) (string, string, error) {
	cmd := exec.Command(kilnBin, append([]string{"--root", s.Root}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// KilnStdin is Kiln with stdin.
func (s *Store) KilnStdin(stdin []byte, args ...string) (string, string, error) {
	cmd := exec.Command(kilnBin, append([]string{"--root", s.Root}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// Inspect returns the first object `kiln inspect ref` prints.
func (s *Store) Inspect(ref string) map[string]any {
	s.T.Helper()
	var out []map[string]any
	if err := json.Unmarshal([]byte(s.MustKiln("inspect", ref)), &out); err != nil || len(out) != 1 {
		s.T.Fatalf("kiln inspect %s: %v", ref, err)
	}
	return out[0]
}

// Blobs lists content/blobs/sha256 of the store, temp files included.
func (s *Store) Blobs() []string {
	s.T.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Root, "content", "blobs", "sha256"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		s.T.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// AssertClean checks that nothing of a build is left: no mount below the
// store, nothing but empty directories under run/, no uncommitted
// snapshot, no runc container.
func (s *Store) AssertClean() {
	s.T.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		s.T.Fatal(err)
	}
	if strings.Contains(string(mi), s.Root) {
		s.T.Errorf("mounts left under %s:\n%s", s.Root, GrepLines(string(mi), s.Root))
	}
	filepath.Walk(filepath.Join(s.Root, "run"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			s.T.Errorf("left behind in run/: %s", p)
		}
		return nil
	})
	snaps, _ := filepath.Glob(filepath.Join(s.Root, "snapshots", "[0-9]*"))
	for _, sn := range snaps {
		if _, err := os.Stat(filepath.Join(sn, "diffid")); err != nil {
			s.T.Errorf("uncommitted snapshot left: %s", sn)
		}
	}
	if out, err := exec.Command("runc", "--root", filepath.Join(s.Root, "run", "runc"), "list", "-q").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		s.T.Errorf("runc containers left: %s", out)
	}
}

// AssertDoctorClean runs kiln doctor and requires a consistent store.
func (s *Store) AssertDoctorClean() {
	s.T.Helper()
	out, errOut, err := s.Kiln("doctor", "-v")
	if err != nil || !strings.Contains(out, "the store is consistent") {
		s.T.Errorf("kiln doctor: %v\n%s%s", err, out, errOut)
	}
}

// GrepLines returns the lines of s that contain sub.
func GrepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// ToStrings converts a JSON array (as encoding/json decodes it into an
// any) of strings.
func ToStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
