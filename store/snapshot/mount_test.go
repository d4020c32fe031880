package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// mount mounts lowers (+ upper) at a new dir and unmounts it at cleanup.
func mount(t *testing.T, s *Store, lowers []string, upper string) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "rootfs")
	must(t, os.Mkdir(target, 0o755))
	if err := s.Mount(target, lowers, upper); err != nil {
		if errors.Is(err, unix.ENODEV) && os.Getenv("CI") != "true" {
			t.Skip("kernel has no overlayfs")
		}
		t.Fatalf("Mount(%v, %q): %v", lowers, upper, err)
	}
	t.Cleanup(func() {
		if err := Unmount(target); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
	if !isMounted(t, target) {
		t.Fatalf("Mount returned nil but %s is not a mount point", target)
	}
	return target
}

func isMounted(t *testing.T, path string) bool {
	t.Helper()
	mounts, err := MountsUnder(path)
	must(t, err)
	for _, m := range mounts {
		if m == path {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func whiteout(t *testing.T, path string) {
	t.Helper()
	must(t, unix.Mknod(path, unix.S_IFCHR, 0))
}

func isWhiteout(t *testing.T, path string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func TestMountStackShowsLowerFilesAndUpperLayersWin(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	l1, l2, up := newSnapshot(t, s), newSnapshot(t, s), newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(l1), "a"), "a from 1")
	writeFile(t, filepath.Join(s.FS(l1), "b"), "b from 1")
	writeFile(t, filepath.Join(s.FS(l1), "c"), "c from 1")
	writeFile(t, filepath.Join(s.FS(l1), "dir", "x"), "x from 1")
	writeFile(t, filepath.Join(s.FS(l2), "b"), "b from 2")
	writeFile(t, filepath.Join(s.FS(l2), "c"), "c from 2")
	writeFile(t, filepath.Join(s.FS(l2), "dir", "y"), "y from 2")
	writeFile(t, filepath.Join(s.FS(up), "c"), "c from upper")

	target := mount(t, s, []string{l1, l2}, up)
	for name, want := range map[string]string{
		"a":     "a from 1",
		"b":     "b from 2",
		"c":     "c from upper",
		"dir/x": "x from 1", // directories merge
		"dir/y": "y from 2",
	} {
		if got := readFile(t, filepath.Join(target, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	// Writes land in the upper snapshot only.
	writeFile(t, filepath.Join(target, "new"), "new")
	writeFile(t, filepath.Join(target, "a"), "a changed")
	if got := readFile(t, filepath.Join(s.FS(up), "new")); got != "new" {
		t.Errorf("upper/new = %q", got)
	}
	if got := readFile(t, filepath.Join(s.FS(up), "a")); got != "a changed" {
		t.Errorf("upper/a = %q", got)
	}
	if got := readFile(t, filepath.Join(s.FS(l1), "a")); got != "a from 1" {
		t.Errorf("a write through the mount changed the lower layer: %q", got)
	}
	if exists(filepath.Join(s.FS(l2), "new")) {
		t.Error("a write through the mount reached a lower layer")
	}
}

func TestMountHonoursWhiteoutsAndOpaqueDirsInLayers(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	l1, l2, up := newSnapshot(t, s), newSnapshot(t, s), newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(l1), "deleted"), "old")
	writeFile(t, filepath.Join(s.FS(l1), "kept"), "kept")
	writeFile(t, filepath.Join(s.FS(l1), "opq", "hidden"), "old")
	writeFile(t, filepath.Join(s.FS(l1), "merged", "old"), "old")
	whiteout(t, filepath.Join(s.FS(l2), "deleted"))
	writeFile(t, filepath.Join(s.FS(l2), "opq", "new"), "new")
	must(t, unix.Setxattr(filepath.Join(s.FS(l2), "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	writeFile(t, filepath.Join(s.FS(l2), "merged", "new"), "new")

	for _, tc := range []struct {
		name  string
		upper string
	}{{"read-only", ""}, {"with upper", up}} {
		t.Run(tc.name, func(t *testing.T) {
			target := mount(t, s, []string{l1, l2}, tc.upper)
			if exists(filepath.Join(target, "deleted")) {
				t.Error("a file whited out in the upper layer is visible")
			}
			if !exists(filepath.Join(target, "kept")) {
				t.Error("a file of the lower layer is not visible")
			}
			if got := dirNames(t, filepath.Join(target, "opq")); fmt.Sprint(got) != "[new]" {
				t.Errorf("opaque dir lists %v, want only [new]", got)
			}
			if got := dirNames(t, filepath.Join(target, "merged")); fmt.Sprint(got) != "[new old]" {
				t.Errorf("non-opaque dir lists %v, want [new old]", got)
			}
		})
	}
}

// Two RUNs that change nothing leave the same empty diff, so one snapshot
// can be twice in a stack; the stack must mount, and read as if only the
// layer's topmost place counted — which equals the stack as given.
func TestMountOfALayerTwiceInTheStack(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	a, b, up := newSnapshot(t, s), newSnapshot(t, s), newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(a), "f"), "a")
	writeFile(t, filepath.Join(s.FS(a), "d", "x"), "a")
	writeFile(t, filepath.Join(s.FS(b), "f"), "b")
	must(t, os.Mkdir(filepath.Join(s.FS(b), "d"), 0o755))
	whiteout(t, filepath.Join(s.FS(b), "d", "x"))
	writeFile(t, filepath.Join(s.FS(b), "only-b"), "b")
	for _, tc := range []struct {
		name  string
		upper string
	}{{"read-only", ""}, {"with upper", up}} {
		t.Run(tc.name, func(t *testing.T) {
			target := mount(t, s, []string{a, b, a}, tc.upper)
			if got := readFile(t, filepath.Join(target, "f")); got != "a" {
				t.Errorf("f = %q, want the top copy of a's", got)
			}
			if got := readFile(t, filepath.Join(target, "d", "x")); got != "a" {
				t.Errorf("d/x = %q: b deleted it, the a above b has it again", got)
			}
			if got := readFile(t, filepath.Join(target, "only-b")); got != "b" {
				t.Errorf("only-b = %q", got)
			}
		})
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestReadOnlyMountOfZeroAndOneLayers(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	l := newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(l), "f"), "content")

	for _, tc := range []struct {
		name   string
		lowers []string
		want   []string
	}{
		{"no layers", nil, nil},
		{"one layer", []string{l}, []string{"f"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := mount(t, s, tc.lowers, "")
			if got := dirNames(t, target); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("mount lists %v, want %v", got, tc.want)
			}
			err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Errorf("write to a read-only mount = %v, want EROFS", err)
			}
		})
	}
	if got := readFile(t, filepath.Join(s.FS(l), "f")); got != "content" {
		t.Errorf("layer file = %q after read-only mounts", got)
	}
}

func TestMountOfOneLayerWithUpper(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	up := newSnapshot(t, s)
	target := mount(t, s, nil, up)
	writeFile(t, filepath.Join(target, "f"), "x")
	if got := readFile(t, filepath.Join(s.FS(up), "f")); got != "x" {
		t.Errorf("upper/f = %q", got)
	}
}

// stack makes n layers; layer i holds file f<i> and a file "top" saying i.
func stack(t *testing.T, s *Store, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newSnapshot(t, s)
		writeFile(t, filepath.Join(s.FS(ids[i]), fmt.Sprintf("f%d", i)), "")
		writeFile(t, filepath.Join(s.FS(ids[i]), "top"), fmt.Sprint(i))
	}
	return ids
}

func TestMountOfManyLayers(t *testing.T) {
	testenv.RequireRoot(t)
	for _, n := range []int{128, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			// A store at a long path: with absolute lowerdirs the options
			// could not fit in a page, so the mount below only works
			// because Mount names the layers relative to the store.
			s, err := Open(filepath.Join(t.TempDir(), strings.Repeat("a-long-path/", 4), "snapshots"))
			must(t, err)
			ids := stack(t, s, n)
			var abs []string
			for i := len(ids) - 1; i >= 0; i-- {
				abs = append(abs, s.FS(ids[i]))
			}
			if l := len("lowerdir=" + strings.Join(abs, ":")); l < os.Getpagesize() {
				t.Fatalf("test setup: absolute lowerdirs fit a page (%d bytes)", l)
			}

			up := newSnapshot(t, s)
			target := mount(t, s, ids, up)
			ents := dirNames(t, target)
			if len(ents) != n+1 {
				t.Errorf("mount of %d layers lists %d entries, want %d", n, len(ents), n+1)
			}
			for i := range ids {
				if !exists(filepath.Join(target, fmt.Sprintf("f%d", i))) {
					t.Errorf("file of layer %d missing", i)
				}
			}
			if got := readFile(t, filepath.Join(target, "top")); got != fmt.Sprint(n-1) {
				t.Errorf("top = %q, want the last layer's %d", got, n-1)
			}
		})
	}
}

func TestMountRefusesOptionsLongerThanAPage(t *testing.T) {
	s := openStore(t)
	target := t.TempDir()
	// Ids this long never exist; the length check must come first. (Each
	// is different: a layer given twice is mounted once.)
	n := os.Getpagesize()/len(fmt.Sprintf("%020d/fs:", 0)) + 1
	lowers := make([]string, n)
	for i := range lowers {
		lowers[i] = fmt.Sprintf("%020d", 90000+i)
	}
	err := s.Mount(target, lowers, "")
	if err == nil || !strings.Contains(err.Error(), "options too long") {
		t.Fatalf("Mount of %d long lowers = %v, want an options-too-long error", n, err)
	}
	if mounts, err := MountsUnder(target); err != nil || len(mounts) != 0 {
		t.Errorf("something got mounted: %v, %v", mounts, err)
	}

	// Just under the limit, the check lets the mount through to the
	// kernel, which then complains about the missing dirs instead.
	fixed := len("lowerdir=" + ":empty" + ",index=off,redirect_dir=off,metacopy=off")
	room := os.Getpagesize() - 1 - fixed
	one := strings.Repeat("8", room-len("/fs"))
	err = s.Mount(target, []string{one}, "")
	if err == nil || strings.Contains(err.Error(), "options too long") {
		t.Errorf("Mount with %d-byte options = %v, want the kernel's error", os.Getpagesize()-1, err)
	}
	err = s.Mount(target, []string{one + "8"}, "")
	if err == nil || !strings.Contains(err.Error(), "options too long") {
		t.Errorf("Mount with %d-byte options = %v, want an options-too-long error", os.Getpagesize(), err)
	}
}

func TestRemovingLowerDirThroughMountLeavesWhiteoutInUpper(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	lower, up := newSnapshot(t, s), newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(lower), "dir", "sub", "f"), "x")
	writeFile(t, filepath.Join(s.FS(lower), "file"), "x")
	target := mount(t, s, []string{lower}, up)

	must(t, os.RemoveAll(filepath.Join(target, "dir")))
	must(t, os.Remove(filepath.Join(target, "file")))

	for _, name := range []string{"dir", "file"} {
		if exists(filepath.Join(target, name)) {
			t.Errorf("%s still visible through the mount", name)
		}
		if !isWhiteout(t, filepath.Join(s.FS(up), name)) {
			t.Errorf("upper has no whiteout (char 0/0) for %s", name)
		}
		if !exists(filepath.Join(s.FS(lower), name)) {
			t.Errorf("removing %s through the mount changed the lower layer", name)
		}
	}

	// Recreating the dir makes it opaque: the old content stays hidden.
	must(t, os.Mkdir(filepath.Join(target, "dir"), 0o755))
	if got := dirNames(t, filepath.Join(target, "dir")); len(got) != 0 {
		t.Errorf("recreated dir lists %v, want nothing", got)
	}
}

func TestCommitAfterMountClearsOverlayWorkDir(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	lower, up := newSnapshot(t, s), newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(lower), "f"), "x")
	target := filepath.Join(t.TempDir(), "rootfs")
	must(t, os.Mkdir(target, 0o755))
	must(t, s.Mount(target, []string{lower}, up))
	writeFile(t, filepath.Join(target, "g"), "y")
	must(t, Unmount(target))
	if isMounted(t, target) {
		t.Fatal("still mounted after Unmount")
	}
	_, err := s.Commit(up, digest.FromString("g"))
	must(t, err)
	if got := dirNames(t, s.Work(up)); len(got) != 0 {
		t.Errorf("work dir after Commit holds %v", got)
	}
	if got := dirNames(t, s.FS(up)); fmt.Sprint(got) != "[g]" {
		t.Errorf("committed layer holds %v, want [g]", got)
	}
}

func TestMountDoesNotChangeProcessWorkingDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t)
	l := newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(l), "f"), "x")
	before, err := os.Getwd()
	must(t, err)
	targets := make([]string, 4)
	for i := range targets {
		targets[i] = filepath.Join(t.TempDir(), "rootfs")
		must(t, os.Mkdir(targets[i], 0o755))
		t.Cleanup(func() { Unmount(targets[i]) })
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Mount(targets[i], []string{l}, "")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Mount %d: %v", i, err)
		} else if got := readFile(t, filepath.Join(targets[i], "f")); got != "x" {
			t.Errorf("mount %d: f = %q", i, got)
		}
	}
	after, err := os.Getwd()
	must(t, err)
	if after != before {
		t.Errorf("working directory changed from %s to %s", before, after)
	}
	// Relative paths still resolve from the old cwd.
	if _, err := os.Stat("mount_test.go"); err != nil {
		t.Errorf("relative path after Mount: %v", err)
	}
}

func TestMountsUnderListsMountsBelowDirDeepestFirst(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	run := filepath.Join(base, "run")
	outer := filepath.Join(run, "step 1", "rootfs") // a space: escaped in mountinfo
	inner := filepath.Join(outer, "proc")
	sibling := filepath.Join(base, "run2", "rootfs") // shares a prefix, not a parent
	for _, d := range []string{outer, sibling} {
		must(t, os.MkdirAll(d, 0o755))
	}
	tmpfs := func(target string) {
		t.Helper()
		must(t, unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"))
		t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	}
	tmpfs(outer)
	must(t, os.Mkdir(inner, 0o755))
	tmpfs(inner)
	tmpfs(sibling)

	got, err := MountsUnder(run)
	must(t, err)
	if want := []string{inner, outer}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("MountsUnder(run) = %q, want %q", got, want)
	}
	// The dir itself counts, with or without a trailing slash.
	if got, err := MountsUnder(outer + "/"); err != nil || len(got) != 2 {
		t.Errorf("MountsUnder(outer/) = %q, %v, want 2 mounts", got, err)
	}

	for _, m := range got {
		must(t, Unmount(m))
	}
	if got, err := MountsUnder(run); err != nil || len(got) != 0 {
		t.Errorf("after Unmount: MountsUnder = %q, %v", got, err)
	}
}

func TestMountsUnderResolvesSymlinks(t *testing.T) {
	testenv.RequireRoot(t)
	real := filepath.Join(t.TempDir(), "real")
	target := filepath.Join(real, "run", "x", "rootfs")
	must(t, os.MkdirAll(target, 0o755))
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink(real, link))
	must(t, unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })

	got, err := MountsUnder(filepath.Join(link, "run"))
	must(t, err)
	if fmt.Sprint(got) != fmt.Sprint([]string{target}) {
		t.Fatalf("MountsUnder through a symlink = %q, want [%s]", got, target)
	}
	must(t, Unmount(got[0]))
	if isMounted(t, target) {
		t.Error("still mounted")
	}
}

func TestUnmountOfANonMountIsNotAnError(t *testing.T) {
	testenv.RequireRoot(t) // umount(2) says EPERM to others before looking
	dir := t.TempDir()
	for _, p := range []string{dir, filepath.Join(dir, "missing")} {
		if err := Unmount(p); err != nil {
			t.Errorf("Unmount(%s) = %v, want nil", p, err)
		}
	}
}

func TestUnmountRemovesStackedMounts(t *testing.T) {
	testenv.RequireRoot(t)
	target := t.TempDir()
	for i := 0; i < 3; i++ {
		must(t, unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"))
	}
	t.Cleanup(func() {
		for i := 0; i < 3; i++ {
			unix.Unmount(target, unix.MNT_DETACH)
		}
	})
	must(t, Unmount(target))
	if mounts, err := MountsUnder(target); err != nil || len(mounts) != 0 {
		t.Errorf("after Unmount: %q, %v", mounts, err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/plain/path", "/plain/path"},
		{`/a\040b`, "/a b"},
		{`/tab\011x`, "/tab\tx"},
		{`/nl\012x`, "/nl\nx"},
		{`/back\134slash`, `/back\slash`},
		{`/end\040`, "/end "},
		{`/short\04`, `/short\04`},
		{`/notoctal\9xy`, `/notoctal\9xy`},
	} {
		if got := unescapeMountinfo(tc.in); got != tc.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
