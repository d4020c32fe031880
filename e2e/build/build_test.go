package build

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

func TestSavedImageRunsInDockerAndOpensInSkopeoAndUmoci(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.MultistageContext(t)
	s.MustKiln("build", "-t", "multi:1.0", dir)
	if out := s.MustKiln("run", "--rm", "multi:1.0"); out != e2etest.MultistageOutput {
		t.Errorf("kiln run printed:\n%s\nwant:\n%s", out, e2etest.MultistageOutput)
	}
	tarPath := filepath.Join(t.TempDir(), "multi.tar")
	s.MustKiln("save", "-o", tarPath, "multi:1.0")

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
	if out != e2etest.MultistageOutput {
		t.Errorf("docker run printed:\n%s\nwant:\n%s", out, e2etest.MultistageOutput)
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
	s := e2etest.NewStore(t)
	dir := e2etest.MultistageContext(t)
	s.MustKiln("build", "-t", "cmp:kiln", dir)
	kilnTar := filepath.Join(t.TempDir(), "kiln.tar")
	s.MustKiln("save", "-o", kilnTar, "cmp:kiln")

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
	s := e2etest.NewStore(t)
	okDir := e2etest.MultistageContext(t)
	s.MustKiln("build", "-t", "before:1", okDir)

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
			_, stderr, err := s.Kiln("build", "-t", "broken:1", dir)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v\n%s", err, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			s.AssertClean()
		})
	}
	// Every earlier image still works.
	if out := s.MustKiln("run", "--rm", "before:1"); out != e2etest.MultistageOutput {
		t.Errorf("earlier image broken after failures:\n%s", out)
	}
	saved := filepath.Join(t.TempDir(), "before.tar")
	s.MustKiln("save", "-o", saved, "before:1")
	other := &e2etest.Store{T: t, Root: filepath.Join(t.TempDir(), "other")}
	other.MustKiln("load", "-i", saved)
	if out := other.MustKiln("run", "--rm", "before:1"); out != e2etest.MultistageOutput {
		t.Errorf("earlier image broken after save/load:\n%s", out)
	}
}

func TestInterruptStopsContainerAndCleansUp(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nRUN echo started && sleep 617\n"), 0o644)
	_, err := s.KilnInterrupted(" started", "build", "--progress", "plain", dir)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("want exit 1 after SIGINT, got %v", err)
	}
	if out, _ := exec.Command("pgrep", "-f", "sleep 617").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("container process still running: %s", out)
	}
	s.AssertClean()
}

// Two RUNs that change no file have the same empty diff: the step after
// them mounts that one snapshot twice in its stack, which overlay refuses
// unless kiln gives each lower dir once.
func TestStepsAfterTwoEmptyDiffsRun(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo install\nRUN echo more\nRUN echo done > /done\nCMD [\"cat\", \"/done\"]\n")
	s.MustKiln("build", "-t", "twice:1", dir)
	if out := s.MustKiln("run", "--rm", "twice:1"); out != "done\n" {
		t.Errorf("kiln run: %q", out)
	}
}
