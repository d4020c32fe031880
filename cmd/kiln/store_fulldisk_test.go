package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestFullDiskFailsOnceAndLeavesTheStoreConsistent builds on a store that
// lives on a 64 MB tmpfs: a RUN that writes 100 MB, a RUN whose 36 MB layer
// fits but whose commit does not, and a COPY of a 100 MB file. Each build
// fails with exit 1 and one "no space left on device" in its error, gives
// the space back, and leaves a consistent store in which the image built
// before still runs and saves.
func TestFullDiskFailsOnceAndLeavesTheStoreConsistent(t *testing.T) {
	s := newStore(t) // for the busybox tar and the checks; the root moves to the tmpfs
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	s.root = filepath.Join(mnt, "root")
	s.mustKiln("import", testenv.BusyboxTar(t), "busybox:latest")
	s.mustKiln("build", "-t", "before:1", contextDir(t, "FROM busybox\nRUN echo before > /id\n", map[string][]byte{}))
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	freeBefore := free()

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

	cases := []struct{ name, dir string }{
		{"a RUN writing 100 MB", contextDir(t, "FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=100\n", map[string][]byte{})},
		{"a layer that fits but its commit does not", contextDir(t, "FROM busybox\nRUN head -c 37748736 /dev/urandom > /big\n", map[string][]byte{})},
		{"a COPY of 100 MB", bigCtx},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			_, stderr, err := s.kiln("build", "--progress", "plain", "-t", "full:1", tc.dir)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v\n%s", err, stderr)
			}
			i := strings.LastIndex(stderr, "ERROR:")
			if i < 0 {
				t.Fatalf("no ERROR:\n%s", stderr)
			}
			if n := strings.Count(strings.ToLower(stderr[i:]), "no space left on device"); n != 1 {
				t.Errorf("the error says \"no space left on device\" %d times:\n%s", n, stderr[i:])
			}
			t.Logf("%s", strings.TrimSpace(stderr[i:]))
			s.assertClean()
			s.assertDoctorClean()
			if got := free(); got < freeBefore-(1<<20) {
				t.Errorf("the failed build kept %d kB of the store's space", (freeBefore-got)>>10)
			}
			s.assertImagesWork(map[string]string{"before:1": "before"})
			if out, _, _ := s.kiln("images", "-q", "full"); out != "" {
				t.Errorf("a failed build was tagged: %s", out)
			}
		})
	}
}
