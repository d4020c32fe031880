package store

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestFullDiskFailsOnceAndLeavesTheStoreConsistent works on a store that
// lives on a 64 MB tmpfs and fills it five ways: a RUN that writes 100 MB, a
// RUN whose 36 MB layer fits but whose commit does not, a COPY of a 100 MB
// file, a `kiln load` and a `kiln pull` (from a registry on 127.0.0.1) of an
// image whose 20 MB layer fits and whose next, 48 MB layer does not. Each
// fails with exit 1 and an error that says "no space left on device" once
// (in all of stderr: at most once more, where a RUN's own output is shown
// as it ran), gives the space back, and leaves the store as it was: the
// same files (no blob, temp file, snapshot or cache record of the failed
// work), no mount, kiln doctor finds it consistent, nothing is tagged, and
// the image built before still runs and saves. The one exception is
// documented (docs/store.md: "a retry fetches only what is missing"): a
// pull keeps the layers it fetched whole; they must be exactly those
// layers, verified, and `kiln image prune` must give their space back.
func TestFullDiskFailsOnceAndLeavesTheStoreConsistent(t *testing.T) {
	s := e2etest.NewStore(t) // for the busybox tar and the checks; the root moves to the tmpfs

	// The image to load and pull: busybox, then a 20 MB layer and a 48 MB
	// one (random data, which no compression shrinks). It is built on an
	// ordinary store before the tmpfs exists.
	fat := e2etest.NewStore(t)
	fat.MustKiln("build", "-t", "fat:1", e2etest.ContextDir(t, "FROM busybox\nRUN head -c 20971520 /dev/urandom > /a\nRUN head -c 50331648 /dev/urandom > /b\n", map[string][]byte{}))
	fatTar := filepath.Join(t.TempDir(), "fat.tar")
	fat.MustKiln("save", "-o", fatTar, "fat:1")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	fatRef := reg.Ref("full/fat:1")
	e2etest.PushWithSkopeo(t, fat, "fat:1", fatRef)
	var fatInfo []struct{ RootFS struct{ Layers []string } }
	mustJSON(t, fat.MustKiln("inspect", "fat:1"), &fatInfo)
	fatLayers := map[string]bool{}
	for _, d := range fatInfo[0].RootFS.Layers {
		fatLayers[strings.TrimPrefix(d, "sha256:")] = true
	}
	if len(fatLayers) != 3 {
		t.Fatalf("fat:1 has layers %v, want busybox's and two more", fatInfo[0].RootFS.Layers)
	}
	fatBig := strings.TrimPrefix(fatInfo[0].RootFS.Layers[2], "sha256:")

	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	s.Root = filepath.Join(mnt, "root")
	s.MustKiln("import", testenv.BusyboxTar(t), "busybox:latest")
	s.MustKiln("build", "-t", "before:1", e2etest.ContextDir(t, "FROM busybox\nRUN echo before > /id\n", map[string][]byte{}))
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	freeBefore := free()
	t.Logf("%d MB free on the store's tmpfs", freeBefore>>20)

	bigCtx := t.TempDir()
	f, err := os.Create(filepath.Join(bigCtx, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(100 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.WriteFile(filepath.Join(bigCtx, "Dockerfile"), []byte("FROM busybox\nCOPY big /big\n"), 0o644)

	build := func(dir string) []string { return []string{"build", "--progress", "plain", "-t", "full:1", dir} }
	cases := []struct {
		name  string
		args  []string
		error string // how the ERROR line starts
		tag   string // what must not be tagged afterwards
		// keeps: new files allowed in the store (whole layers a pull
		// fetched before the disk filled)
		keeps func(line string) bool
	}{
		{"a RUN writing 100 MB", build(e2etest.ContextDir(t, "FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=100\n", map[string][]byte{})),
			"ERROR: Dockerfile:2: RUN dd", "full", nil},
		{"a layer that fits but its commit does not", build(e2etest.ContextDir(t, "FROM busybox\nRUN head -c 37748736 /dev/urandom > /big\n", map[string][]byte{})),
			"ERROR: Dockerfile:2: RUN head", "full", nil},
		{"a COPY of 100 MB", build(bigCtx), "ERROR: Dockerfile:2: COPY big /big", "full", nil},
		// The archive holds the layers in order: the error names the
		// 48 MB one, so the 20 MB one was stored and then removed again.
		{"a load of 68 MB", []string{"load", "-i", fatTar}, "ERROR: load: entry \"blobs/sha256/" + fatBig + "\": ", "fat", nil},
		{"a pull of 68 MB", []string{"pull", fatRef}, "ERROR: pull " + fatRef + ": ", fatRef, func(line string) bool {
			f := strings.Fields(line)
			d, ok := strings.CutPrefix(f[0], "+content/blobs/sha256/")
			return ok && fatLayers[d] && len(f) == 3 && f[1] == "-r--r--r--"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.T = t
			filesBefore := storeFiles(t, s.Root)
			_, stderr, err := s.Kiln(tc.args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v\n%s", err, stderr)
			}
			saysNoSpaceOnce(t, stderr, tc.error)

			s.AssertClean()
			s.AssertDoctorClean()
			var kept []string
			for _, l := range diffLists(filesBefore, storeFiles(t, s.Root)) {
				if tc.keeps != nil && tc.keeps(l) {
					kept = append(kept, l)
				} else {
					t.Errorf("the failed command left in the store: %s", l)
				}
			}
			if len(kept) > 0 {
				t.Logf("kept whole layers for a retry:\n%s", strings.Join(kept, "\n"))
				s.MustKiln("image", "prune", "-f")
				if d := diffLists(filesBefore, storeFiles(t, s.Root)); len(d) > 0 {
					t.Errorf("kiln image prune left the store changed:\n%s", strings.Join(d, "\n"))
				}
			}
			if got := free(); got < freeBefore-(1<<20) {
				t.Errorf("the failed command kept %d kB of the store's space", (freeBefore-got)>>10)
			}
			assertImagesWork(s, map[string]string{"before:1": "before"})
			if out, _, _ := s.Kiln("images", "-q", tc.tag); out != "" {
				t.Errorf("%s is tagged after the failure: %s", tc.tag, out)
			}
		})
	}
}

// saysNoSpaceOnce checks the stderr of a command that filled the
// disk: it ends with one error, starting with want, that says "no space
// left on device" once; the whole of stderr says it at most twice (the
// progress may show a RUN's own output as it ran, which the error then
// quotes), never once per file, layer or retry.
func saysNoSpaceOnce(t *testing.T, stderr, want string) {
	t.Helper()
	const enospc = "no space left on device"
	i := strings.LastIndex(stderr, "ERROR: ")
	if i < 0 {
		t.Fatalf("no ERROR:\n%s", stderr)
	}
	errPart := stderr[i:]
	t.Logf("%s", strings.TrimSpace(errPart))
	if !strings.HasPrefix(errPart, want) {
		t.Errorf("the error does not start with %q:\n%s", want, errPart)
	}
	if n := strings.Count(strings.ToLower(errPart), enospc); n != 1 {
		t.Errorf("the error says %q %d times, want once:\n%s", enospc, n, errPart)
	}
	if n := strings.Count(strings.ToLower(stderr), enospc); n > 2 {
		t.Errorf("stderr says %q %d times:\n%s", enospc, n, stderr)
	}
	if n := strings.Count(stderr, "ERROR: "); n != 1 {
		t.Errorf("stderr holds %d errors, want one:\n%s", n, stderr)
	}
}
