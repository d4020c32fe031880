package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := StopShared(); err != nil {
		println("testenv: StopShared:", err.Error())
		if code == 0 {
			code = 1
		}
	}
	Cleanup()
	os.Exit(code)
}

func execOutput(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func requireDockerd(t *testing.T) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "dockerd")
	RequireCommand(t, "docker")
	RequireCommand(t, "runc")
	RequireCommand(t, "containerd")
}

// assertStopped checks that nothing of d is left: process, mounts, dirs.
func assertStopped(t *testing.T, d *Dockerd) {
	t.Helper()
	if pidAlive(d.Pid) {
		t.Errorf("dockerd pid %d still alive", d.Pid)
	}
	if left := relatedProcs(nil, []string{d.DataRoot, d.ExecRoot}); len(left) != 0 {
		t.Errorf("processes left: %v", left)
	}
	mps, err := mountsUnder(d.DataRoot, d.ExecRoot)
	if err != nil {
		t.Fatal(err)
	}
	if len(mps) != 0 {
		t.Errorf("mounts left: %v", mps)
	}
	for _, p := range []string{d.DataRoot, d.ExecRoot} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed (%v)", p, err)
		}
	}
}

func TestDockerdRoundTrip(t *testing.T) {
	requireDockerd(t)
	bb := BusyboxTar(t)

	start := time.Now()
	d, err := StartDockerd(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	t.Logf("dockerd ready in %v (exec root %s)", time.Since(start).Round(time.Millisecond), d.ExecRoot)

	if err := d.Import(bb, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	ctx := t.TempDir()
	df := "FROM busybox\nRUN echo hi > /hi && rm /bin/ls\nCMD [\"cat\",\"/hi\"]\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Build(ctx, "Dockerfile", "kiln-roundtrip:latest"); err != nil {
		t.Fatal(err)
	}
	out, err := d.Docker("run", "--rm", "--network", "none", "kiln-roundtrip:latest")
	if err != nil {
		t.Fatal(err)
	}
	if out != "hi\n" {
		t.Errorf("docker run printed %q, want \"hi\\n\"", out)
	}

	saved := filepath.Join(t.TempDir(), "saved.tar")
	if err := d.Save("kiln-roundtrip:latest", saved); err != nil {
		t.Fatal(err)
	}
	s, err := ReadImageTar(saved, "kiln-roundtrip:latest")
	if err != nil {
		t.Fatal(err)
	}
	hi, ok := s.Files["hi"]
	if !ok || hi.Type != "file" || hi.Size != 3 || hi.SHA256 != sha([]byte("hi\n")) {
		t.Errorf("/hi: %+v (present %v)", hi, ok)
	}
	if _, ok := s.Files["bin/ls"]; ok {
		t.Error("/bin/ls still present (whiteout not applied)")
	}
	if e := s.Files["bin/cat"]; e.Type != "symlink" || e.Link != "busybox" {
		t.Errorf("/bin/cat: %+v", e)
	}
	if e := s.Files["home/app"]; e.Type != "dir" || e.UID != 1000 || e.GID != 1000 {
		t.Errorf("/home/app: %+v", e)
	}
	if !reflect.DeepEqual(s.Config.Cmd, []string{"cat", "/hi"}) {
		t.Errorf("Cmd = %q", s.Config.Cmd)
	}
	t.Logf("BuildKit config: %+v", s.Config)

	// The imported base image compares equal to itself, and the built one
	// differs from it exactly by /hi and /bin/ls (and Cmd/Env).
	base := filepath.Join(t.TempDir(), "base.tar")
	if err := d.Save("busybox:latest", base); err != nil {
		t.Fatal(err)
	}
	bs, err := ReadImageTar(base, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	var fileDiffs []string
	for _, l := range Diff(bs, s) {
		if !strings.HasPrefix(l, "config.") {
			fileDiffs = append(fileDiffs, l)
		}
	}
	want := []string{"/bin/ls: only in a (symlink)", "/hi: only in b (file)"}
	if !reflect.DeepEqual(fileDiffs, want) {
		t.Errorf("base vs built:\n got %q\nwant %q", fileDiffs, want)
	}

	stopStart := time.Now()
	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("dockerd stopped in %v", time.Since(stopStart).Round(time.Millisecond))
	assertStopped(t, d)
}

// A daemon with a private containerd (what StartDockerd does when a system
// containerd is running) and a container still running at Stop.
func TestDockerdPrivateContainerdStopsContainers(t *testing.T) {
	requireDockerd(t)
	bb := BusyboxTar(t)
	d, err := startDockerd(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	if d.ctrd == nil {
		t.Fatal("no private containerd started")
	}
	if err := d.Import(bb, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Docker("run", "-d", "--stop-timeout", "1", "--network", "none", "busybox", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	out, err := d.Docker("run", "--rm", "--network", "host", "busybox", "echo", "ok")
	if err != nil || out != "ok\n" {
		t.Fatalf("run --network host: %q %v", out, err)
	}
	if procs := relatedProcs([]int{d.Pid}, []string{d.DataRoot, d.ExecRoot}); len(procs) < 4 {
		t.Errorf("expected dockerd, containerd, shim and sleep; got %v", procs)
	}
	start := time.Now()
	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	assertStopped(t, d)
	if pidAlive(d.ctrd.Process.Pid) {
		t.Error("private containerd still alive")
	}
}

func TestSharedDockerd(t *testing.T) {
	requireDockerd(t)
	d1 := SharedDockerd(t)
	d2 := SharedDockerd(t)
	if d1 != d2 {
		t.Fatal("SharedDockerd started two daemons")
	}
	if _, err := d1.Docker("info", "--format", "{{.Driver}}"); err != nil {
		t.Fatal(err)
	}
}

func TestLookCommand(t *testing.T) {
	if p, err := LookCommand("docker"); err == nil && p != "/usr/bin/docker" {
		t.Errorf("docker resolved to %s", p)
	}
	if _, err := LookCommand("no-such-command-kiln"); err == nil {
		t.Error("no error for a missing command")
	}
	if p, err := LookCommand("sh"); err != nil || !filepath.IsAbs(p) {
		t.Errorf("sh: %q %v", p, err)
	}
}

// Stop still cleans up after dockerd died abruptly, leaving containerd (or
// at least shims and a running container) and mounts behind.
func TestDockerdStopAfterCrash(t *testing.T) {
	requireDockerd(t)
	bb := BusyboxTar(t)
	d, err := StartDockerd(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	if err := d.Import(bb, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Docker("run", "-d", "--network", "none", "busybox", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	if mps, _ := d.Mounts(); len(mps) == 0 {
		t.Log("no mounts left behind by the crash (nothing to clean)")
	} else {
		t.Logf("mounts after crash: %d", len(mps))
	}
	if left := relatedProcs(nil, []string{d.DataRoot, d.ExecRoot}); len(left) == 0 {
		t.Log("no processes left behind by the crash")
	} else {
		t.Logf("processes after crash: %v", left)
	}
	start := time.Now()
	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	assertStopped(t, d)
}
