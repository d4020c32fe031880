package main_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
)

var kilnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kilnBin = filepath.Join(dir, "kiln")
	if out, err := exec.Command("go", "build", "-o", kilnBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build kiln: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	testenv.StopShared()
	testenv.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

// store is a private kiln root holding busybox:latest.
type store struct {
	t    *testing.T
	root string
}

func newStore(t *testing.T) *store {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "runc")
	s := &store{t: t, root: filepath.Join(t.TempDir(), "root")}
	s.mustKiln("import", testenv.BusyboxTar(t), "busybox:latest")
	return s
}

// kiln runs the binary on this store and returns stdout, stderr and err.
func (s *store) kiln(args ...string) (string, string, error) {
	cmd := exec.Command(kilnBin, append([]string{"--root", s.root}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (s *store) mustKiln(args ...string) string {
	s.t.Helper()
	out, errOut, err := s.kiln(args...)
	if err != nil {
		s.t.Fatalf("kiln %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// assertClean checks that nothing of a build is left: no mount below the
// store, nothing but empty directories under run/.
func (s *store) assertClean() {
	s.t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		s.t.Fatal(err)
	}
	if strings.Contains(string(mi), s.root) {
		s.t.Errorf("mounts left under %s:\n%s", s.root, grepLines(string(mi), s.root))
	}
	filepath.Walk(filepath.Join(s.root, "run"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			s.t.Errorf("left behind in run/: %s", p)
		}
		return nil
	})
	snaps, _ := filepath.Glob(filepath.Join(s.root, "snapshots", "[0-9]*"))
	for _, sn := range snaps {
		if _, err := os.Stat(filepath.Join(sn, "diffid")); err != nil {
			s.t.Errorf("uncommitted snapshot left: %s", sn)
		}
	}
	if out, err := exec.Command("runc", "--root", filepath.Join(s.root, "run", "runc"), "list", "-q").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		s.t.Errorf("runc containers left: %s", out)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// copyContext copies testdata/dockerfiles/NAME to a temp dir, so tests can
// set modes git does not keep and change files freely.
func copyContext(t *testing.T, name string) string {
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

func multistageContext(t *testing.T) string {
	dir := copyContext(t, "multistage")
	if err := os.Chmod(filepath.Join(dir, "src", "sub", "two.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

const multistageOutput = `hello from build
arg: world
config
marker
vi gone
user: app
`

func TestSavedImageRunsInDockerAndOpensInSkopeoAndUmoci(t *testing.T) {
	s := newStore(t)
	dir := multistageContext(t)
	s.mustKiln("build", "-t", "multi:1.0", dir)
	if out := s.mustKiln("run", "--rm", "multi:1.0"); out != multistageOutput {
		t.Errorf("kiln run printed:\n%s\nwant:\n%s", out, multistageOutput)
	}
	tarPath := filepath.Join(t.TempDir(), "multi.tar")
	s.mustKiln("save", "-o", tarPath, "multi:1.0")

	// The whiteout and the opaque dir are in the RUN layer as docker expects.
	entries := layerEntries(t, tarPath)
	if !entries["bin/.wh.vi"] || !entries["home/.wh..wh..opq"] {
		t.Errorf("RUN layer lacks whiteout or opaque marker; entries: %v", entries)
	}

	d := testenv.SharedDockerd(t)
	if out, err := d.Docker("load", "-i", tarPath); err != nil || !strings.Contains(out, "multi:1.0") {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	out, err := d.Docker("run", "--rm", "--network", "none", "multi:1.0")
	if err != nil {
		t.Fatalf("docker run: %v", err)
	}
	if out != multistageOutput {
		t.Errorf("docker run printed:\n%s\nwant:\n%s", out, multistageOutput)
	}

	skopeo := testenv.RequireCommand(t, "skopeo")
	raw, err := exec.Command(skopeo, "inspect", "oci-archive:"+tarPath+":1.0").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, raw)
	}
	var info struct{ Layers []string }
	if err := json.Unmarshal(raw, &info); err != nil || len(info.Layers) == 0 {
		t.Fatalf("skopeo inspect output: %v\n%s", err, raw)
	}

	umoci := testenv.RequireCommand(t, "umoci")
	layout := filepath.Join(t.TempDir(), "layout")
	os.MkdirAll(layout, 0o755)
	if out, err := exec.Command("tar", "-xf", tarPath, "-C", layout).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v\n%s", err, out)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", layout+":1.0", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "app", "out.txt")); err != nil || string(b) != "hello from build\n" {
		t.Errorf("umoci rootfs app/out.txt: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(bundle, "rootfs", "bin", "vi")); !os.IsNotExist(err) {
		t.Errorf("umoci rootfs still has bin/vi: %v", err)
	}
}

// layerEntries lists the entry names of every layer in a saved tar.
func layerEntries(t *testing.T, tarPath string) map[string]bool {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h.Name, "blobs/sha256/") || h.Typeflag != tar.TypeReg {
			continue
		}
		inner := tar.NewReader(tr)
		for {
			ih, err := inner.Next()
			if err != nil {
				break // not a tar (config, manifest) or end
			}
			out[strings.TrimPrefix(ih.Name, "./")] = true
		}
	}
	return out
}

func TestBuildMatchesBuildKit(t *testing.T) {
	s := newStore(t)
	dir := multistageContext(t)
	s.mustKiln("build", "-t", "cmp:kiln", dir)
	kilnTar := filepath.Join(t.TempDir(), "kiln.tar")
	s.mustKiln("save", "-o", kilnTar, "cmp:kiln")

	d := testenv.SharedDockerd(t)
	if err := d.Import(testenv.BusyboxTar(t), "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	if err := d.Build(dir, "Dockerfile", "cmp:buildkit"); err != nil {
		t.Fatal(err)
	}
	bkTar := filepath.Join(t.TempDir(), "buildkit.tar")
	if err := d.Save("cmp:buildkit", bkTar); err != nil {
		t.Fatal(err)
	}
	assertSameImage(t, kilnTar, bkTar)
}

// assertSameImage compares final filesystems and configs of two saved
// images; the issue "full Dockerfile" reuses it for its conformance suite.
func assertSameImage(t *testing.T, kilnTar, refTar string) {
	t.Helper()
	a, err := testenv.ReadImageTar(kilnTar, "")
	if err != nil {
		t.Fatalf("read kiln image: %v", err)
	}
	b, err := testenv.ReadImageTar(refTar, "")
	if err != nil {
		t.Fatalf("read reference image: %v", err)
	}
	if diff := testenv.Diff(a, b); len(diff) > 0 {
		t.Errorf("kiln (a) and BuildKit (b) differ:\n%s", strings.Join(diff, "\n"))
	}
}

func TestFailuresExitOneAndLeaveStoreClean(t *testing.T) {
	s := newStore(t)
	okDir := multistageContext(t)
	s.mustKiln("build", "-t", "before:1", okDir)

	cases := []struct {
		name       string
		dockerfile string
		want       []string
	}{
		{"failing RUN", "FROM busybox\nRUN echo one\nRUN echo some output && echo more output >&2 && exit 3\n",
			[]string{"Dockerfile:3: RUN echo some output", "exit code 3", "more output"}},
		{"missing COPY source", "FROM busybox\n\nCOPY nope.txt /nope.txt\n",
			[]string{"Dockerfile:3: COPY nope.txt /nope.txt", `"nope.txt": not found`}},
		{"syntax error", "FROM busybox\nRUN echo ok\nFORM busybox\n",
			[]string{"Dockerfile:3:", "unknown instruction: FORM"}},
		{"unknown base image", "FROM nosuchimage:3\n",
			[]string{"Dockerfile:1:", "nosuchimage:3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(tc.dockerfile), 0o644)
			_, stderr, err := s.kiln("build", "-t", "broken:1", dir)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v\n%s", err, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			s.assertClean()
		})
	}
	// Every earlier image still works.
	if out := s.mustKiln("run", "--rm", "before:1"); out != multistageOutput {
		t.Errorf("earlier image broken after failures:\n%s", out)
	}
	saved := filepath.Join(t.TempDir(), "before.tar")
	s.mustKiln("save", "-o", saved, "before:1")
	other := &store{t: t, root: filepath.Join(t.TempDir(), "other")}
	other.mustKiln("load", "-i", saved)
	if out := other.mustKiln("run", "--rm", "before:1"); out != multistageOutput {
		t.Errorf("earlier image broken after save/load:\n%s", out)
	}
}

func TestInterruptStopsContainerAndCleansUp(t *testing.T) {
	s := newStore(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nRUN echo started && sleep 617\n"), 0o644)
	cmd := exec.Command(kilnBin, "--root", s.root, "build", "--progress", "plain", dir)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	started := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		once := false
		for {
			n, err := pr.Read(buf)
			log.Write(buf[:n])
			if !once && strings.Contains(log.String(), " started") {
				once = true
				close(started)
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-started:
	case <-timeAfter(60):
		cmd.Process.Kill()
		t.Fatalf("RUN never started:\n%s", log.String())
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-timeAfter(30):
		cmd.Process.Kill()
		t.Fatalf("kiln did not stop after SIGINT:\n%s", log.String())
	}
	pw.Close()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("want exit 1 after SIGINT, got %v", err)
	}
	if out, _ := exec.Command("pgrep", "-f", "sleep 617").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("container process still running: %s", out)
	}
	s.assertClean()
}

func timeAfter(seconds int) <-chan time.Time { return time.After(time.Duration(seconds) * time.Second) }
