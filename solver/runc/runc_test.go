package runc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/solver/runc"
)

// busyboxRootfs makes a minimal rootfs: a copy of the static /bin/busybox
// and applet symlinks.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	bb := testenv.RequireCommand(t, "/bin/busybox")
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "cat", "id", "sleep", "pwd"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// newRuntime returns a runtime with a private state dir, or skips (fails
// under CI=true) without root and runc.
func newRuntime(t *testing.T) *runc.Runtime {
	t.Helper()
	testenv.RequireRoot(t)
	bin := testenv.RequireCommand(t, "runc")
	return &runc.Runtime{Binary: bin, StateDir: filepath.Join(t.TempDir(), "state")}
}

// containers lists the containers runc knows in the runtime's state dir.
func containers(t *testing.T, r *runc.Runtime) []string {
	t.Helper()
	out, err := exec.Command(r.Binary, "--root", r.StateDir, "list", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("runc list: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}

// containerID is unique per test process, so that parallel test runs
// never share a container name (runc's cgroup paths derive from it).
func containerID(i int) string { return fmt.Sprintf("kiln-test-%d-%d", os.Getpid(), i) }

// syncBuffer is a bytes.Buffer safe for concurrent writes; it signals
// when its content first contains a marker.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	seen   chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.seen != nil && strings.Contains(b.buf.String(), b.marker) {
		close(b.seen)
		b.seen = nil
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRuntimeRun(t *testing.T) {
	r := newRuntime(t)
	rootfs := busyboxRootfs(t)
	cases := []struct {
		name     string
		p        runc.Process
		wantCode int // 0: success
		want     []string
	}{
		{
			name:     "stdout and stderr are captured and the exit code is reported",
			p:        runc.Process{Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}},
			wantCode: 3,
			want:     []string{"out\n", "err\n"},
		},
		{
			name: "user, groups, cwd and env are applied",
			p: runc.Process{
				Args: []string{"sh", "-c", `echo "ids $(id -u) $(id -g) $(id -G)"; echo "cwd $(pwd)"; echo "foo $FOO"`},
				Env:  []string{"PATH=/bin", "FOO=bar baz"},
				Cwd:  "/bin", UID: 1000, GID: 50, AdditionalGids: []uint32{10},
			},
			want: []string{"ids 1000 50 50 10\n", "cwd /bin\n", "foo bar baz\n"},
		},
		{
			name: "etc files are generated and read-only",
			p: runc.Process{
				Args:     []string{"sh", "-c", `cat /etc/hostname /etc/hosts; echo x >> /etc/hosts && echo writable`},
				Hostname: "stepbox",
			},
			wantCode: 1,
			want:     []string{"stepbox\n", "127.0.1.1\tstepbox\n", "127.0.0.1\tlocalhost\n"},
		},
		{
			name: "network none has only loopback",
			p:    runc.Process{Args: []string{"sh", "-c", "cat /proc/net/dev"}, Network: "none"},
			want: []string{"lo:"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			if p.Env == nil {
				p.Env = []string{"PATH=/bin"}
			}
			if p.Cwd == "" {
				p.Cwd = "/"
			}
			var out syncBuffer
			err := r.Run(context.Background(), containerID(i), t.TempDir(), rootfs, p, &out)
			var ee *runc.ExitError
			switch {
			case tc.wantCode == 0 && err != nil:
				t.Fatalf("Run: %v\noutput:\n%s", err, out.String())
			case tc.wantCode != 0 && (!errors.As(err, &ee) || ee.Code != tc.wantCode):
				t.Fatalf("error %v (%T), want *runc.ExitError with code %d\noutput:\n%s", err, err, tc.wantCode, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "writable") {
				t.Errorf("a read-only bind mount was written:\n%s", out.String())
			}
			if tc.p.Network == "none" && strings.Count(out.String(), ":") != 1 {
				t.Errorf("more interfaces than lo:\n%s", out.String())
			}
			if c := containers(t, r); len(c) != 0 {
				t.Errorf("containers left behind: %v", c)
			}
		})
	}
}

func TestRuntimeRunCancelKillsTheContainer(t *testing.T) {
	r := newRuntime(t)
	rootfs := busyboxRootfs(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{marker: "ready\n", seen: make(chan struct{})}
	ready := out.seen
	done := make(chan error, 1)
	go func() {
		p := runc.Process{Args: []string{"sh", "-c", "echo ready; exec sleep 100"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
		done <- r.Run(ctx, containerID(99), t.TempDir(), rootfs, p, out)
	}()

	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before the container was ready: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("container never got ready:\n%s", out.String())
	}
	if c := containers(t, r); len(c) != 1 || c[0] != containerID(99) {
		t.Fatalf("running containers %v, want [%s]", c, containerID(99))
	}
	pid := containerPid(t, r, containerID(99))
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		// sleep 100 would still be running: the kill did not happen
		t.Fatal("Run did not return after its context was cancelled")
	}
	if c := containers(t, r); len(c) != 0 {
		t.Errorf("containers left behind after cancel: %v", c)
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmdline), "sleep") {
		t.Errorf("the container's process %d still runs: %q", pid, cmdline)
	}
}

// containerPid is the host pid of a running container's process.
func containerPid(t *testing.T, r *runc.Runtime, id string) int {
	t.Helper()
	out, err := exec.Command(r.Binary, "--root", r.StateDir, "state", id).Output()
	if err != nil {
		t.Fatalf("runc state: %v", err)
	}
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Pid <= 0 || st.Status != "running" {
		t.Fatalf("runc state %s: %v", out, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.Pid))
	if err != nil || !strings.Contains(string(cmdline), "sleep") {
		t.Fatalf("container pid %d runs %q (%v), want sleep", st.Pid, cmdline, err)
	}
	return st.Pid
}

func TestRuntimeRunWithoutTheBinaryExplainsWhatToInstall(t *testing.T) {
	r := &runc.Runtime{Binary: "kiln-no-such-runtime", StateDir: t.TempDir()}
	err := r.Run(context.Background(), "x", t.TempDir(), t.TempDir(), runc.Process{Args: []string{"true"}}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `container runtime "kiln-no-such-runtime" not found`) || !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("error %v, want a not-found message with an install hint", err)
	}
}
