package store

// Helpers for the store robustness tests: crash (crash_test.go),
// concurrency (concurrency_test.go), hostile input (hostile_test.go) and
// a full disk (fulldisk_test.go).

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
	digest "github.com/opencontainers/go-digest"
)

// randomData is n pseudo-random (incompressible) bytes, the same for the
// same seed.
func randomData(seed byte, n int) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// running is a kiln process started in the background. Its output goes to
// files, not pipes: a killed kiln's container may keep a pipe open.
type running struct {
	cmd     *exec.Cmd
	outPath string
	done    chan error
}

func startKiln(s *e2etest.Store, args ...string) *running {
	s.T.Helper()
	f, err := os.CreateTemp(s.T.TempDir(), "kiln-out-")
	if err != nil {
		s.T.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(e2etest.Bin(), append([]string{"--root", s.Root}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.T.Fatal(err)
	}
	r := &running{cmd: cmd, outPath: f.Name(), done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	s.T.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
	})
	return r
}

func (r *running) output() string {
	b, _ := os.ReadFile(r.outPath)
	return string(b)
}

// killWhen SIGKILLs r as soon as ready holds, polling every millisecond.
// The test fails if r ends first or ready never holds within a minute.
func killWhen(t *testing.T, r *running, what string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ready() {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("kiln ended (%v) before %s:\n%s", err, what, r.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after a minute:\n%s", what, r.output())
		}
		time.Sleep(time.Millisecond)
	}
	kill(t, r, what)
}

// kill SIGKILLs r and waits for it; it fails the test if r had already
// ended.
func kill(t *testing.T, r *running, what string) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGKILL)
	err := <-r.done
	r.done <- err
	if ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("kiln ended (%v) before it could be killed %s:\n%s", err, what, r.output())
	}
	t.Logf("killed kiln %s", what)
}

// killOn SIGKILLs r as soon as ch is closed.
func killOn(t *testing.T, r *running, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
		kill(t, r, what)
	case err := <-r.done:
		r.done <- err
		// A trap that kills kiln itself closes ch just after the kill,
		// so kiln's end can be seen first.
		select {
		case <-ch:
			kill(t, r, what)
			return
		case <-time.After(2 * time.Second):
		}
		t.Fatalf("kiln ended (%v) before %s:\n%s", err, what, r.output())
	case <-time.After(time.Minute):
		t.Fatalf("no %s after a minute:\n%s", what, r.output())
	}
}

// tempFileOver reports whether dir holds a kiln temp file (.tmp-*) of more
// than size bytes: an ingest or atomic write in progress.
func tempFileOver(dir string, size int64) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Size() > size {
			return true
		}
	}
	return false
}

// inUncommittedSnapshot reports whether the file name exists, with more
// than size bytes, in a snapshot that is not committed yet (being
// unpacked, copied into or written by a RUN).
func inUncommittedSnapshot(s *e2etest.Store, name string, size int64) bool {
	matches, _ := filepath.Glob(filepath.Join(s.Root, "snapshots", "*", "fs", name))
	for _, m := range matches {
		snap := filepath.Dir(filepath.Dir(m))
		if _, err := os.Stat(filepath.Join(snap, "diffid")); err == nil {
			continue
		}
		if fi, err := os.Lstat(m); err == nil && fi.Size() >= size {
			return true
		}
	}
	return false
}

func blobsDir(s *e2etest.Store) string { return filepath.Join(s.Root, "content", "blobs", "sha256") }

// liveProcesses lists processes (not zombies) whose command line contains
// token.
func liveProcesses(token string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), token) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) STATE ...: comm may hold spaces, so split after ')'.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		out = append(out, filepath.Base(p)+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

// assertRecovered runs the next kiln command (which repairs what a killed
// one left) and checks that nothing of the killed process remains: no mount
// in the store, no runc container, no process whose command line has token
// (the container's), and that kiln doctor finds the store consistent.
func assertRecovered(s *e2etest.Store, token string) {
	s.T.Helper()
	s.MustKiln("images")
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err != nil {
		s.T.Fatal(err)
	} else if strings.Contains(string(mi), s.Root) {
		s.T.Errorf("mounts left under %s:\n%s", s.Root, e2etest.GrepLines(string(mi), s.Root))
	}
	if out, err := exec.Command("runc", "--root", filepath.Join(s.Root, "run", "runc"), "list", "-q").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		s.T.Errorf("runc containers left: %s", out)
	}
	if token != "" {
		// runc delete --force has killed the container; its processes may
		// take a moment to be gone.
		deadline := time.Now().Add(5 * time.Second)
		for len(liveProcesses(token)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if p := liveProcesses(token); len(p) > 0 {
			s.T.Errorf("processes left: %q", p)
		}
	}
	s.AssertDoctorClean()
}

// assertImagesWork runs each image's `cat /id` (it must print the value)
// and saves them all.
func assertImagesWork(s *e2etest.Store, images map[string]string) {
	s.T.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	var names []string
	for name, id := range images {
		names = append(names, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, errOut, err := s.Kiln("run", "--rm", name, "/bin/cat", "/id")
			if err != nil || out != id+"\n" {
				s.T.Errorf("kiln run %s: %v %q\n%s", name, err, out, errOut)
			}
		}()
	}
	wg.Wait()
	sort.Strings(names)
	cmd := exec.Command(e2etest.Bin(), append([]string{"--root", s.Root, "save"}, names...)...)
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		s.T.Fatal(err)
	}
	defer devNull.Close()
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = devNull, &errOut
	if err := cmd.Run(); err != nil {
		s.T.Errorf("kiln save %s: %v\n%s", strings.Join(names, " "), err, errOut.String())
	}
}

// storeFiles lists every path in the store with its type, size and, for
// small files, content hash; snapshots by their directories only. What
// kiln writes for every command (build journals, stat caches, the trees
// context digests were hashed from, locks, scratch, the df size memo) is
// left out: memos that are valid whatever the command did.
func storeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch rel {
		case "builds", "statcache", "trees", "run", "containers/names", "containers/runc":
			return filepath.SkipDir
		case "lock", "content/index.lock", "usage.json", "containers":
			return nil
		}
		if m, _ := filepath.Match("snapshots/*/[fw][so]*", rel); m && d.IsDir() {
			// A snapshot's files: its id and diffid tell it apart.
			out = append(out, rel+"/")
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := rel + " " + fi.Mode().String()
		if fi.Mode().IsRegular() {
			line += " " + strconv.FormatInt(fi.Size(), 10)
			if fi.Size() < 1<<20 {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				line += " " + digest.FromBytes(b).Encoded()[:12]
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffLists returns the lines only in a ("-") or only in b ("+").
func diffLists(a, b []string) []string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range l {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, x := range a {
		if !mb[x] {
			out = append(out, "-"+x)
		}
	}
	for _, x := range b {
		if !ma[x] {
			out = append(out, "+"+x)
		}
	}
	return out
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
