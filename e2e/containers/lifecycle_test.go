package containers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// state reads a container's recorded state, as kiln's store keeps it.
func state(t *testing.T, s *e2etest.Store, id string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Root, "containers", id, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// A detached container outlives the kiln that started it: exec, logs,
// stop, start and kill reach it, and its end is recorded.
func TestDetachedLifecycle(t *testing.T) {
	s := e2etest.NewStore(t)
	id := strings.TrimSpace(s.MustKiln("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; while :; do sleep 0.1; done"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a 64-hex container ID", id)
	}
	if st := state(t, s, id); st["status"] != "running" {
		t.Fatalf("after run -d: state %v, want running", st)
	}
	if got := s.MustKiln("exec", "web", "cat", "/etc/hostname"); got != id[:12]+"\n" {
		t.Errorf("exec cat /etc/hostname = %q, want the short ID", got)
	}
	if _, _, err := s.Kiln("exec", "web", "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("exec of a failing command: %v, want exit status 3", err)
	}
	if got := s.MustKiln("logs", "web"); got != "started\n" {
		t.Errorf("logs = %q", got)
	}
	start := time.Now()
	if got := s.MustKiln("stop", "-t", "1", "web"); got != "web\n" {
		t.Errorf("stop printed %q, want the name as given", got)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("stop took %v", el)
	}
	st := state(t, s, id)
	if st["status"] != "exited" || st["exit_code"] != float64(137) {
		t.Errorf("after stop of a shell that ignores TERM: %v, want exited 137", st)
	}
	if _, stderr, err := s.Kiln("exec", "web", "true"); err == nil || !strings.Contains(stderr, "is not running") {
		t.Errorf("exec in a stopped container: %v %s", err, stderr)
	}
	if got := s.MustKiln("start", "web"); got != "web\n" {
		t.Errorf("start printed %q", got)
	}
	if got := s.MustKiln("logs", "web"); got != "started\nstarted\n" {
		t.Errorf("logs after a restart = %q, want both runs' output", got)
	}
	s.MustKiln("kill", "web")
	if got := s.MustKiln("wait", "web"); got != "137\n" {
		t.Errorf("wait after kill = %q", got)
	}
	s.AssertDoctorClean()
}

// kill -9 of a container's monitor: the container is recorded as exited
// (255, docker's for a container lost with its daemon) and its process
// and mount are gone, the next time anything looks.
func TestMonitorKilled(t *testing.T) {
	s := e2etest.NewStore(t)
	id := strings.TrimSpace(s.MustKiln("run", "-d", "busybox", "sleep", "1000"))
	pid := int(state(t, s, id)["pid"].(float64))
	monitor := parentOf(t, parentOf(t, pid)) // sleep ← runc run ← monitor
	if b, _ := os.ReadFile("/proc/" + strconv.Itoa(monitor) + "/cmdline"); !strings.Contains(string(b), "container-monitor") {
		t.Fatalf("process %d is not the monitor: %q", monitor, b)
	}
	syscall.Kill(monitor, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(monitor)); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// any verb that looks at the container reconciles it: wait does
	if got := s.MustKiln("wait", id); got != "255\n" {
		t.Errorf("wait after the monitor's death = %q, want 255", got)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); strings.Contains(string(b), "sleep") {
			t.Errorf("the container's process %d still runs", pid)
		}
	}
	s.AssertClean()
	s.AssertDoctorClean()
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// A container without --rm stays with its writable layer; diff lists its
// change and commit makes an image that has it.
func TestRunKeepsContainer(t *testing.T) {
	s := e2etest.NewStore(t)
	out, stderr, err := s.Kiln("run", "--name", "s1", "busybox", "sh", "-c", "echo hello > /greeting; echo out; echo err >&2; exit 4")
	if err == nil || out != "out\n" || !strings.Contains(stderr, "err") {
		t.Fatalf("run: %v %q %q, want exit 4 with out on stdout and err on stderr", err, out, stderr)
	}
	if got := s.MustKiln("diff", "s1"); got != "A /greeting\n" {
		t.Errorf("diff s1 = %q, want A /greeting", got)
	}
	s.MustKiln("commit", "s1", "story:v1")
	if got := s.MustKiln("run", "--rm", "story:v1", "cat", "/greeting"); got != "hello\n" {
		t.Errorf("run of the committed image: %q", got)
	}
	if _, stderr, err := s.Kiln("run", "--name", "s1", "busybox", "true"); err == nil || !strings.Contains(stderr, `The container name "/s1" is already in use`) {
		t.Errorf("second run --name s1: %v %s", err, stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Root, "containers"))
	n := 0
	for _, e := range ents {
		if len(e.Name()) == 64 {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d containers kept, want 1 (s1; --rm ones go)", n)
	}
	s.AssertDoctorClean()
}

// The GC keeps what a container needs: its image untagged and every
// prune run, the stopped container still starts and has its files.
func TestGCKeepsContainerLayers(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("build", "-q", "-t", "keep:1", e2etest.DockerfileContext(t, "FROM busybox\nRUN echo kept > /kept\n"))
	s.MustKiln("run", "--name", "k1", "keep:1", "cat", "/kept")
	s.MustKiln("rmi", "-f", "keep:1")
	s.MustKiln("image", "prune", "-a", "-f")
	s.MustKiln("prune", "-a", "-f")
	if out, stderr, err := s.Kiln("start", "-a", "k1"); err != nil || out != "kept\n" {
		t.Errorf("start -a of the container after prune: %v %q %s", err, out, stderr)
	}
	s.AssertDoctorClean()
}

// -it gives the process a real terminal of the user's size, as docker's.
func TestRunWithATerminal(t *testing.T) {
	s := e2etest.NewStore(t)
	out, term, err := s.KilnTerminal(91, 27, "run", "-it", "--rm", "busybox", "sh", "-c", "tty; stty size; test -t 0 && echo stdin-is-a-tty")
	all := out + string(term)
	if err != nil || !strings.Contains(all, "/dev/pts/") || !strings.Contains(all, "27 91") || !strings.Contains(all, "stdin-is-a-tty") {
		t.Errorf("run -it: %v\nstdout %q\nterminal %q\nwant a pts of 27 rows x 91 columns", err, out, term)
	}
}
