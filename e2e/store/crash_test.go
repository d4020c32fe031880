package store

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestKillNineAnywhereLeavesARepairableStore kills kiln with SIGKILL at
// twelve points of its work, one after the other on one store: during the
// unpack of a base layer, a RUN, the commit of a big layer, the export of
// the image config, the tag write, a COPY of a big context file, a load, a
// save, a build pulling its FROM image from a registry, a pull, a kiln run
// and an OCI export. Most points are found by watching the store for the
// work's own traces, and the traces must still be there after the kill (it
// landed mid-work, not after); the config and tag writes are atomic writes
// of a few hundred bytes, so there kiln is killed inside the open(2) that
// creates the temp file (fanotify holds it), and the test checks the temp
// file is left and the blob or tag is not in place. After each kill the
// first kiln command must repair the store silently (no output on stderr):
// no mount, no container, no process left, kiln doctor finds it
// consistent, every image tagged before still runs and saves, and the
// killed command succeeds when run again.
func TestKillNineAnywhereLeavesARepairableStore(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and races many kiln processes; not in -short")
	}
	s := e2etest.NewStore(t)
	images := map[string]string{} // tagged images and what their /id holds
	tagged := func(name, id string) { images[name] = id }
	recovered := func(t *testing.T, token string) {
		t.Helper()
		repairsSilently(t, s)
		assertRecovered(s, token)
		assertImagesWork(s, images)
	}
	// point runs one crash point with s reporting to its subtest.
	point := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			s.T = t
			defer func() { s.T = nil }()
			fn(t)
		})
		s.T = t
	}
	big := randomData(1, 32<<20)
	tmp := t.TempDir()

	small := e2etest.ContextDir(t, "FROM busybox\nRUN echo small > /id\n", map[string][]byte{})
	s.MustKiln("build", "-t", "small:1", small)
	tagged("small:1", "small")

	// Thousands of small files keep the unpack busy long enough to be
	// caught in the middle, whatever the machine's load.
	bigFiles := map[string][]byte{"id": []byte("bigbase\n"), "zz-big.bin": big}
	for i := 0; i < 4000; i++ {
		bigFiles[fmt.Sprintf("many/%04d", i)] = []byte("x")
	}
	bigTar := filepath.Join(tmp, "bigbase.tar")
	e2etest.BusyboxTarWith(t, bigTar, bigFiles)
	s.MustKiln("import", bigTar, "bigbase:1")
	tagged("bigbase:1", "bigbase")

	point("unpack", func(t *testing.T) {
		dir := e2etest.ContextDir(t, "FROM bigbase:1\nRUN echo p1 > /id\n", map[string][]byte{})
		r := startKiln(s, "build", "-t", "p1:1", dir)
		killMidWork(t, r, "while unpacking the base layer", func() bool { return inUncommittedSnapshot(s, "many", 0) })
		recovered(t, "")
		s.MustKiln("build", "-t", "p1:1", dir)
		tagged("p1:1", "p1")
	})

	point("RUN", func(t *testing.T) {
		dir := e2etest.ContextDir(t, "FROM busybox\nARG S=0\nRUN touch /marker-run && sleep $S\nRUN echo p2 > /id\n", map[string][]byte{})
		r := startKiln(s, "build", "--build-arg", "S=613", "-t", "p2:1", dir)
		killMidWork(t, r, "during a RUN", func() bool { return inUncommittedSnapshot(s, "marker-run", 0) })
		// The container outlives kiln (runc is its parent) until the next
		// kiln command deletes it.
		for i := 0; i < 100 && len(liveProcesses("sleep 613")) == 0; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if len(liveProcesses("sleep 613")) == 0 {
			t.Errorf("no container process left to clean up: the test proves nothing")
		}
		recovered(t, "sleep 613")
		s.MustKiln("build", "-t", "p2:1", dir)
		tagged("p2:1", "p2")
	})

	point("layer commit", func(t *testing.T) {
		dir := e2etest.ContextDir(t, "FROM busybox\nRUN head -c 33554432 /dev/urandom > /big && mkdir /many && for i in $(seq 3000); do echo $i > /many/$i; done && echo p3 > /id\n", map[string][]byte{})
		r := startKiln(s, "build", "-t", "p3:1", dir)
		killMidWork(t, r, "while committing a 32 MB layer", func() bool { return tempFileOver(blobsDir(s), 4<<20) })
		recovered(t, "")
		s.MustKiln("build", "-t", "p3:1", dir)
		tagged("p3:1", "p3")
	})

	// Steps cached, only a new label: the first blob written is the config.
	exportDir := e2etest.ContextDir(t, "FROM busybox\nRUN echo p4 > /id\n", map[string][]byte{})
	s.MustKiln("build", "-t", "p4:1", exportDir)
	tagged("p4:1", "p4")
	point("export", func(t *testing.T) {
		index := readFile(t, filepath.Join(s.Root, "content", "index.json"))
		r, trap := startKilledAtCreate(s, blobsDir(s), ".tmp-", "build", "--label", "n=2", "-t", "p4:2", exportDir)
		killOn(t, r, "while writing the image config", trap.fired)
		// The kill landed between the temp file's creation and its rename:
		// the temp file of a JSON blob (named after its digest) is there,
		// the blob itself is not, and no tag moved.
		tmpName := filepath.Base(trap.path)
		t.Logf("killed in open(%s)", tmpName)
		m := regexp.MustCompile(`^\.tmp-([0-9a-f]{64})-`).FindStringSubmatch(tmpName)
		if m == nil {
			t.Fatalf("the first temp file in blobs/ is %s, not an atomic write of the config", tmpName)
		}
		if _, err := os.Stat(filepath.Join(blobsDir(s), tmpName)); err != nil {
			t.Errorf("the kill did not land mid-write: %v", err)
		}
		if _, err := os.Stat(filepath.Join(blobsDir(s), m[1])); !os.IsNotExist(err) {
			t.Errorf("the config blob %s is in place (%v): the kill landed after the write", m[1][:12], err)
		}
		if got := readFile(t, filepath.Join(s.Root, "content", "index.json")); got != index {
			t.Errorf("index.json changed before the config was written")
		}
		recovered(t, "")
		s.MustKiln("build", "--label", "n=2", "-t", "p4:2", exportDir)
		tagged("p4:2", "p4")
	})

	point("tag write", func(t *testing.T) {
		contentDir := filepath.Join(s.Root, "content")
		index := readFile(t, filepath.Join(contentDir, "index.json"))
		r, trap := startKilledAtCreate(s, contentDir, ".tmp-index.json", "build", "--label", "n=3", "-t", "p4:3", exportDir)
		killOn(t, r, "while writing index.json", trap.fired)
		// The new index.json was being written, not yet renamed into
		// place: the old one is there, byte for byte, without p4:3.
		tmp := trap.path
		t.Logf("killed in open(%s)", filepath.Base(tmp))
		if _, err := os.Stat(tmp); err != nil {
			t.Errorf("the kill did not land mid-write: %v", err)
		}
		if got := readFile(t, filepath.Join(contentDir, "index.json")); got != index {
			t.Errorf("the kill landed after the tag moved: index.json changed")
		}
		recovered(t, "")
		if out, _, _ := s.Kiln("images", "-q", "p4:3"); out != "" {
			t.Errorf("a build killed before its tag write is tagged: %s", out)
		}
		s.MustKiln("build", "--label", "n=3", "-t", "p4:3", exportDir)
		tagged("p4:3", "p4")
	})

	copyDir := e2etest.ContextDir(t, "FROM busybox\nCOPY big.bin /big.bin\nRUN echo p6 > /id\n", map[string][]byte{"big.bin": big})
	point("COPY", func(t *testing.T) {
		r := startKiln(s, "build", "-t", "p6:1", copyDir)
		killMidWork(t, r, "while copying a 32 MB context file", func() bool { return inUncommittedSnapshot(s, "big.bin", 1) })
		recovered(t, "")
		s.MustKiln("build", "-t", "p6:1", copyDir)
		tagged("p6:1", "p6")
	})

	// Images with layers this store does not have, for load and pull.
	other := e2etest.NewStore(t)
	for i, name := range []string{"loaded:1", "pulled:1", "frompulled:1"} {
		p := filepath.Join(tmp, "other.tar")
		e2etest.BusyboxTarWith(t, p, map[string][]byte{"id": []byte(strings.TrimSuffix(name, ":1") + "\n"), "zz-big.bin": randomData(byte(2+i), 16<<20)})
		other.MustKiln("import", p, name)
	}
	loadTar := filepath.Join(tmp, "load.tar")
	other.MustKiln("save", "-o", loadTar, "loaded:1")

	point("load", func(t *testing.T) {
		r := startKiln(s, "load", "-i", loadTar)
		killMidWork(t, r, "while loading a 16 MB layer", func() bool { return tempFileOver(blobsDir(s), 0) })
		recovered(t, "")
		if out, _, _ := s.Kiln("images", "-q", "loaded"); out != "" {
			t.Errorf("a killed load left a tag: %s", out)
		}
		s.MustKiln("load", "-i", loadTar)
		tagged("loaded:1", "loaded")
	})

	point("save", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out.tar")
		r := startKiln(s, "save", "-o", out, "bigbase:1")
		killMidWork(t, r, "while saving", func() bool { return tempFileOver(filepath.Dir(out), 0) })
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a killed save left %s (%v)", out, err)
		}
		recovered(t, "")
		s.MustKiln("save", "-o", out, "bigbase:1")
	})

	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	point("pull for FROM", func(t *testing.T) {
		ref := reg.Ref("crash/frompulled:1")
		e2etest.PushWithSkopeo(t, other, "frompulled:1", ref)
		dir := e2etest.ContextDir(t, "FROM "+ref+"\nRUN echo p7 > /id\n", map[string][]byte{})
		r := startKiln(s, "build", "-t", "p7:1", dir)
		killMidWork(t, r, "while kiln build pulls its 16 MB base layer", func() bool { return tempFileOver(blobsDir(s), 1<<20) })
		recovered(t, "")
		if out, _, _ := s.Kiln("images", "-q", ref); out != "" {
			t.Errorf("a build killed while pulling its base left the base tagged: %s", out)
		}
		if out, _, _ := s.Kiln("images", "-q", "p7"); out != "" {
			t.Errorf("a build killed while pulling its base was tagged: %s", out)
		}
		s.MustKiln("build", "-t", "p7:1", dir)
		tagged("p7:1", "p7")
		tagged(ref, "frompulled")
	})

	point("pull", func(t *testing.T) {
		ref := reg.Ref("crash/pulled:1")
		e2etest.PushWithSkopeo(t, other, "pulled:1", ref)
		r := startKiln(s, "pull", ref)
		killMidWork(t, r, "while pulling a 16 MB layer", func() bool { return tempFileOver(blobsDir(s), 0) })
		recovered(t, "")
		if out, _, _ := s.Kiln("images", "-q", ref); out != "" {
			t.Errorf("a killed pull left a tag: %s", out)
		}
		s.MustKiln("pull", ref)
		tagged(ref, "pulled")
	})

	point("run", func(t *testing.T) {
		r := startKiln(s, "run", "--rm", "small:1", "sh", "-c", "touch /marker-run2 && sleep 614")
		killMidWork(t, r, "during kiln run", func() bool {
			// a container's writable layer is its own, not a snapshot
			m, _ := filepath.Glob(filepath.Join(s.Root, "containers", "*", "diff", "marker-run2"))
			return len(m) > 0
		})
		recovered(t, "sleep 614")
		if out := s.MustKiln("run", "--rm", "busybox", "/bin/echo", "ok"); out != "ok\n" {
			t.Errorf("kiln run busybox: %q", out)
		}
	})

	point("OCI export", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "oci.tar")
		r := startKiln(s, "build", "-o", "type=oci,dest="+out, "-t", "p6:1", copyDir)
		killMidWork(t, r, "while compressing a 32 MB layer", func() bool { return tempFileOver(blobsDir(s), 1<<20) })
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a killed export left %s (%v)", out, err)
		}
		recovered(t, "")
		s.MustKiln("build", "-o", "type=oci,dest="+out, "-t", "p6:1", copyDir)
		if _, err := os.Stat(out); err != nil {
			t.Error(err)
		}
	})
}

// repairsSilently runs the first kiln command after a kill: it must
// repair what the killed one left without a word and succeed.
func repairsSilently(t *testing.T, s *e2etest.Store) {
	t.Helper()
	_, errOut, err := s.Kiln("images")
	if err != nil || errOut != "" {
		t.Errorf("the first kiln command after the kill did not repair silently: %v\n%s", err, errOut)
	}
}

// killMidWork is killWhen that then checks that ready still holds: the
// kill landed while the work was under way, not after it was done.
func killMidWork(t *testing.T, r *running, what string, ready func() bool) {
	t.Helper()
	killWhen(t, r, what, ready)
	if !ready() {
		t.Fatalf("the kill %s landed after that work was done: nothing of it is left", what)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// createTrap is a kiln process that is SIGKILLed the moment it opens a new
// file in a directory; see startKilledAtCreate.
type createTrap struct {
	fired chan struct{} // closed once kiln has been sent SIGKILL
	path  string        // the file it was creating (set before fired is closed)
}

// startKilledAtCreate starts kiln with args on s and SIGKILLs it
// exactly when it opens a file whose name starts with prefix in dir: a
// fanotify permission event (FAN_OPEN_PERM) holds kiln inside that open(2)
// until the listener answers, and the listener sends SIGKILL before it
// answers, so kiln dies with the file created and not one byte written to
// it: a deterministic kill mid-write, which inotify (a notice after the
// fact, while the write goes on) cannot give. Opens of other files, or by
// other processes, are allowed at once.
func startKilledAtCreate(s *e2etest.Store, dir, prefix string, args ...string) (*running, *createTrap) {
	t := s.T
	t.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		// Every mainstream kernel has fanotify permission events
		// (CONFIG_FANOTIFY_ACCESS_PERMISSIONS); without them there is no
		// deterministic kill point.
		t.Fatalf("fanotify_init: %v", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, dir); err != nil {
		unix.Close(fd)
		t.Fatalf("fanotify_mark %s: %v", dir, err)
	}
	trap := &createTrap{fired: make(chan struct{})}
	var pid atomic.Int32
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Closing the group allows every open still waiting for an answer.
		defer unix.Close(fd)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 20); n <= 0 {
				continue
			}
			n, err := unix.Read(fd, buf)
			if err != nil {
				continue
			}
			fired := false
			for off := 0; off+int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) <= n; {
				ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
				off += int(ev.Event_len)
				if ev.Fd < 0 {
					continue
				}
				name, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", ev.Fd))
				if !fired && ev.Mask&unix.FAN_OPEN_PERM != 0 && filepath.Dir(name) == dir && strings.HasPrefix(filepath.Base(name), prefix) {
					// Start has returned by the time kiln can open
					// anything in the store, but make sure.
					for pid.Load() == 0 {
						time.Sleep(time.Millisecond)
					}
					if ev.Pid == pid.Load() {
						unix.Kill(int(ev.Pid), unix.SIGKILL)
						trap.path = name
						fired = true
					}
				}
				// Answered after the kill: kiln never returns from open.
				resp := unix.FanotifyResponse{Fd: ev.Fd, Response: unix.FAN_ALLOW}
				unix.Write(fd, (*[unsafe.Sizeof(resp)]byte)(unsafe.Pointer(&resp))[:])
				unix.Close(int(ev.Fd))
			}
			if fired {
				close(trap.fired)
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	r := startKiln(s, args...)
	pid.Store(int32(r.cmd.Process.Pid))
	return r, trap
}
