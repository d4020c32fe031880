package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(content), mode))
	// WriteFile is subject to umask, and os.Chmod would need os.ModeSetuid
	// and friends rather than the raw bits the tests spell out.
	must(t, unix.Chmod(path, uint32(mode)))
}

// writeLayer runs WriteTar and checks that the returned digest and size
// describe the bytes actually written.
func writeLayer(t *testing.T, dir string, opts WriteOptions) ([]byte, digest.Digest) {
	t.Helper()
	var buf bytes.Buffer
	dgst, n, err := WriteTar(context.Background(), dir, &buf, opts)
	if err != nil {
		t.Fatalf("WriteTar(%s): %v", dir, err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTar size = %d, wrote %d bytes", n, buf.Len())
	}
	if want := digest.FromBytes(buf.Bytes()); dgst != want {
		t.Fatalf("WriteTar digest = %s, bytes hash to %s", dgst, want)
	}
	return buf.Bytes(), dgst
}

func headers(t *testing.T, data []byte) []*tar.Header {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var hdrs []*tar.Header
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		must(t, err)
		hdrs = append(hdrs, hdr)
	}
}

func headerNames(hdrs []*tar.Header) []string {
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
	}
	return names
}

func findHeader(t *testing.T, hdrs []*tar.Header, name string) *tar.Header {
	t.Helper()
	for _, h := range hdrs {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no entry %q in %q", name, headerNames(hdrs))
	return nil
}

func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(path, &st))
	return st
}

func xattr(t *testing.T, path, name string) string {
	t.Helper()
	value, ok, err := getXattr(path, name)
	must(t, err)
	if !ok {
		return "<unset>"
	}
	return string(value)
}

// buildRichTree makes a directory with one of everything WriteTar handles.
func buildRichTree(t *testing.T, dir string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "etc/config"), "hello\n", 0o644)
	must(t, unix.Lsetxattr(filepath.Join(dir, "etc/config"), "user.foo", []byte("bar"), 0))
	must(t, unix.Lsetxattr(filepath.Join(dir, "etc/config"), "trusted.secret", []byte("no"), 0))
	writeFile(t, filepath.Join(dir, "bin/tool"), "#!/bin/sh\n", 0o4755)
	writeFile(t, filepath.Join(dir, "data/a"), "shared content", 0o600)
	must(t, os.Link(filepath.Join(dir, "data/a"), filepath.Join(dir, "data/b")))
	must(t, os.Symlink("etc/config", filepath.Join(dir, "rel")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "abs")))
	writeFile(t, filepath.Join(dir, "home/user/file"), "mine", 0o640)
	must(t, os.Lchown(filepath.Join(dir, "home/user/file"), 1000, 1000))
	must(t, os.Lchown(filepath.Join(dir, "home/user"), 1000, 1000))
	must(t, os.MkdirAll(filepath.Join(dir, "run"), 0o755))
	must(t, unix.Mkfifo(filepath.Join(dir, "run/fifo"), 0o620))
	must(t, unix.Chmod(filepath.Join(dir, "run/fifo"), 0o620))
	must(t, os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
	must(t, unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Mkdir(filepath.Join(dir, "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "tmp"), 0o1777|os.ModeSticky))
	writeFile(t, filepath.Join(dir, strings.Repeat("long-name/", 12), "file"), "deep", 0o644)
	writeFile(t, filepath.Join(dir, "empty"), "", 0o644)

	l, err := net.Listen("unix", filepath.Join(dir, "run/sock"))
	must(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	must(t, l.Close())

	// Distinct, old mtimes so that the round trip checks they are kept.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		old = old.Add(time.Hour)
		return utimes(p, old, old)
	}))
}

func TestWriteTarThenApplyRoundTripsByteIdentically(t *testing.T) {
	testenv.RequireRoot(t)
	src := t.TempDir()
	buildRichTree(t, src)

	first, firstDigest := writeLayer(t, src, WriteOptions{})
	hdrs := headers(t, first)

	t.Run("tar describes the tree", func(t *testing.T) {
		names := headerNames(hdrs)
		// No name in this tree has a sibling sorting between it and its
		// children ("a-" vs "a/"), so plain string order must hold.
		if !sort.StringsAreSorted(names) {
			t.Errorf("entries not in byte order: %q", names)
		}
		for _, name := range names {
			if strings.HasPrefix(name, "./") || strings.HasPrefix(name, "/") {
				t.Errorf("entry %q is not a plain relative name", name)
			}
			if strings.Contains(name, "sock") {
				t.Errorf("socket written as %q", name)
			}
		}
		if h := findHeader(t, hdrs, "etc/"); h.Typeflag != tar.TypeDir {
			t.Errorf("etc/ type = %q", h.Typeflag)
		}
		if h := findHeader(t, hdrs, "bin/tool"); h.Mode != 0o4755 {
			t.Errorf("setuid file mode = %#o, want 04755", h.Mode)
		}
		if h := findHeader(t, hdrs, "tmp/"); h.Mode != 0o1777 {
			t.Errorf("sticky dir mode = %#o, want 01777", h.Mode)
		}
		if h := findHeader(t, hdrs, "data/a"); h.Typeflag != tar.TypeReg || h.Size != int64(len("shared content")) {
			t.Errorf("first hardlink name: type %q size %d, want regular file with content", h.Typeflag, h.Size)
		}
		if h := findHeader(t, hdrs, "data/b"); h.Typeflag != tar.TypeLink || h.Linkname != "data/a" {
			t.Errorf("second hardlink name: type %q -> %q, want link to data/a", h.Typeflag, h.Linkname)
		}
		if h := findHeader(t, hdrs, "abs"); h.Typeflag != tar.TypeSymlink || h.Linkname != "/etc/passwd" {
			t.Errorf("absolute symlink: type %q -> %q", h.Typeflag, h.Linkname)
		}
		if h := findHeader(t, hdrs, "home/user/file"); h.Uid != 1000 || h.Gid != 1000 || h.Uname != "" || h.Gname != "" {
			t.Errorf("owner = %d:%d (%q:%q), want 1000:1000 without names", h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if h := findHeader(t, hdrs, "run/fifo"); h.Typeflag != tar.TypeFifo || h.Mode != 0o620 {
			t.Errorf("fifo: type %q mode %#o", h.Typeflag, h.Mode)
		}
		if h := findHeader(t, hdrs, "dev/null"); h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 3 {
			t.Errorf("device: type %q %d:%d", h.Typeflag, h.Devmajor, h.Devminor)
		}
		h := findHeader(t, hdrs, "etc/config")
		if got := h.PAXRecords["SCHILY.xattr.user.foo"]; got != "bar" {
			t.Errorf("user.foo xattr = %q, want bar", got)
		}
		if _, ok := h.PAXRecords["SCHILY.xattr.trusted.secret"]; ok {
			t.Error("trusted.* xattr written")
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("atime/ctime written: %v %v", h.AccessTime, h.ChangeTime)
		}
	})

	dst := t.TempDir()
	applied, n, err := Apply(context.Background(), bytes.NewReader(first), dst)
	if err != nil {
		t.Fatal(err)
	}
	if applied != firstDigest || n != int64(len(first)) {
		t.Errorf("Apply = %s (%d bytes), want %s (%d bytes)", applied, n, firstDigest, len(first))
	}

	t.Run("applied tree has the metadata", func(t *testing.T) {
		if st := lstat(t, filepath.Join(dst, "bin/tool")); st.Mode&0o7777 != 0o4755 {
			t.Errorf("setuid file mode = %#o", st.Mode&0o7777)
		}
		if st := lstat(t, filepath.Join(dst, "home/user/file")); st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("owner = %d:%d", st.Uid, st.Gid)
		}
		a, b := lstat(t, filepath.Join(dst, "data/a")), lstat(t, filepath.Join(dst, "data/b"))
		if a.Ino != b.Ino || a.Nlink != 2 {
			t.Errorf("hardlinks not restored: inodes %d %d nlink %d", a.Ino, b.Ino, a.Nlink)
		}
		if st := lstat(t, filepath.Join(dst, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
			t.Errorf("fifo type = %#o", st.Mode&unix.S_IFMT)
		}
		if target, _ := os.Readlink(filepath.Join(dst, "abs")); target != "/etc/passwd" {
			t.Errorf("absolute symlink target = %q", target)
		}
		if got := xattr(t, filepath.Join(dst, "etc/config"), "user.foo"); got != "bar" {
			t.Errorf("user.foo = %q", got)
		}
	})

	second, secondDigest := writeLayer(t, dst, WriteOptions{})
	if secondDigest != firstDigest || !bytes.Equal(first, second) {
		t.Errorf("re-exported tar differs: %s vs %s\nfirst:  %q\nsecond: %q",
			firstDigest, secondDigest, headerNames(hdrs), headerNames(headers(t, second)))
	}
}

func TestWriteTarIsDeterministic(t *testing.T) {
	build := func(t *testing.T) string {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "b"), "b", 0o644)
		writeFile(t, filepath.Join(dir, "a/z"), "z", 0o644)
		writeFile(t, filepath.Join(dir, "a.txt"), "a", 0o644)
		return dir
	}
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
	}{
		{"twice in a row", func(t *testing.T, dir string) {}},
		{"after reading and touching atime", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "b")
			st := lstat(t, p)
			mtime := time.Unix(st.Mtim.Unix())
			must(t, os.Chtimes(p, time.Now().Add(time.Hour), mtime))
			_, err := os.ReadFile(p)
			must(t, err)
		}},
		{"after rewriting a file with the same content and mtime", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a/z")
			st := lstat(t, p)
			must(t, os.WriteFile(p, []byte("z"), 0o644))
			must(t, utimes(p, time.Now(), time.Unix(st.Mtim.Unix())))
			// Writing the file changed its directory's mtime too.
			dirSt := lstat(t, filepath.Join(dir, "a"))
			must(t, utimes(filepath.Join(dir, "a"), time.Now(), time.Unix(dirSt.Mtim.Unix())))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := build(t)
			first, d1 := writeLayer(t, dir, WriteOptions{})
			tt.change(t, dir)
			second, d2 := writeLayer(t, dir, WriteOptions{})
			if d1 != d2 || !bytes.Equal(first, second) {
				t.Errorf("digest changed: %s -> %s", d1, d2)
			}
		})
	}
}

func TestWriteTarOrdersParentsBeforeChildrenInByteOrder(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b", "a/z", "a.txt", "a/b/c", "B", "a-"} {
		writeFile(t, filepath.Join(dir, name), name, 0o644)
	}
	data, _ := writeLayer(t, dir, WriteOptions{})
	got := headerNames(headers(t, data))
	want := []string{"B", "a/", "a/b/", "a/b/c", "a/z", "a-", "a.txt", "b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("order = %q, want %q", got, want)
	}
}

func TestWriteTarClampsLaterMtimes(t *testing.T) {
	dir := t.TempDir()
	clamp := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	future := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, filepath.Join(dir, "old"), "", 0o644)
	writeFile(t, filepath.Join(dir, "new"), "", 0o644)
	writeFile(t, filepath.Join(dir, "fraction"), "", 0o644)
	must(t, utimes(filepath.Join(dir, "old"), old, old))
	must(t, utimes(filepath.Join(dir, "new"), future, future))
	must(t, utimes(filepath.Join(dir, "fraction"), old, old.Add(700*time.Millisecond)))

	tests := []struct {
		name  string
		clamp time.Time
		want  map[string]time.Time
	}{
		{"zero clamp keeps mtimes", time.Time{}, map[string]time.Time{"old": old, "new": future, "fraction": old}},
		{"later mtimes become the clamp", clamp, map[string]time.Time{"old": old, "new": clamp, "fraction": old}},
		{"sub-second clamp is cut to seconds", clamp.Add(time.Millisecond), map[string]time.Time{"new": clamp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, _ := writeLayer(t, dir, WriteOptions{Clamp: tt.clamp})
			hdrs := headers(t, data)
			for name, want := range tt.want {
				if got := findHeader(t, hdrs, name).ModTime; !got.Equal(want) {
					t.Errorf("%s mtime = %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestWriteTarRefusesNamesReservedForWhiteouts(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "sub/.wh.real-file"), "data", 0o644)
	_, _, err := WriteTar(context.Background(), dir, io.Discard, WriteOptions{})
	if err == nil || !strings.Contains(err.Error(), ".wh.real-file") {
		t.Fatalf("err = %v, want error naming the file", err)
	}
}

func TestWriteTarStopsWhenContextIsCancelled(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), "x", 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := WriteTar(ctx, dir, io.Discard, WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestWhiteoutsAndOpaqueDirsRoundTrip(t *testing.T) {
	testenv.RequireRoot(t)
	src := t.TempDir()
	must(t, unix.Mknod(filepath.Join(src, "gone"), unix.S_IFCHR, 0))
	writeFile(t, filepath.Join(src, "d/keep"), "kept", 0o644)
	must(t, unix.Lsetxattr(filepath.Join(src, "d"), opaqueXattr, []byte("y"), 0))
	// "x" marks a dir holding whiteouts on newer kernels; it is not opaque.
	must(t, os.Mkdir(filepath.Join(src, "merge"), 0o755))
	must(t, unix.Lsetxattr(filepath.Join(src, "merge"), opaqueXattr, []byte("x"), 0))

	data, dgst := writeLayer(t, src, WriteOptions{})
	hdrs := headers(t, data)
	want := []string{".wh.gone", "d/", "d/.wh..wh..opq", "d/keep", "merge/"}
	if got := headerNames(hdrs); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries = %q, want %q", got, want)
	}
	for _, name := range []string{".wh.gone", "d/.wh..wh..opq"} {
		h := findHeader(t, hdrs, name)
		if h.Typeflag != tar.TypeReg || h.Size != 0 || h.Mode != 0 || len(h.PAXRecords) != 0 {
			t.Errorf("%s: type %q size %d mode %#o records %v, want empty regular file", name, h.Typeflag, h.Size, h.Mode, h.PAXRecords)
		}
	}
	if _, ok := findHeader(t, hdrs, "d/").PAXRecords["SCHILY.xattr."+opaqueXattr]; ok {
		t.Error("opaque xattr leaked into the tar as an xattr")
	}

	dst := t.TempDir()
	if _, _, err := Apply(context.Background(), bytes.NewReader(data), dst); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(dst, "gone")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("gone: mode %#o rdev %d, want char device 0/0", st.Mode, st.Rdev)
	}
	if got := xattr(t, filepath.Join(dst, "d"), opaqueXattr); got != "y" {
		t.Errorf("d opaque xattr = %q, want y", got)
	}
	if got := xattr(t, filepath.Join(dst, "merge"), opaqueXattr); got != "<unset>" {
		t.Errorf("merge opaque xattr = %q, want unset", got)
	}
	if _, again := writeLayer(t, dst, WriteOptions{}); again != dgst {
		t.Errorf("re-exported digest %s, want %s", again, dgst)
	}
}

func TestApplyOpaqueMarkerCreatesMissingDir(t *testing.T) {
	testenv.RequireRoot(t)
	data := buildTar(t, []tarEntry{{name: "a/b/.wh..wh..opq"}, {name: ".wh..wh..plnk/123"}, {name: "x/.wh..wh.aufs"}})
	dst := t.TempDir()
	if _, _, err := Apply(context.Background(), bytes.NewReader(data), dst); err != nil {
		t.Fatal(err)
	}
	if got := xattr(t, filepath.Join(dst, "a/b"), opaqueXattr); got != "y" {
		t.Errorf("a/b opaque xattr = %q, want y", got)
	}
	if _, err := os.Lstat(filepath.Join(dst, "x/.wh..wh.aufs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("aufs metadata entry was unpacked: %v", err)
	}
}

// mountOverlay mounts an overlay of lower (colon-separated, top first) with
// an optional upper dir at a new dir. It is unmounted in t.Cleanup unless
// the returned unmount has done so already.
func mountOverlay(t *testing.T, lower, upper string) (merged string, unmount func() error) {
	t.Helper()
	base := t.TempDir()
	merged = filepath.Join(base, "merged")
	must(t, os.Mkdir(merged, 0o755))
	opts := "lowerdir=" + lower
	if upper != "" {
		work := filepath.Join(base, "work")
		must(t, os.Mkdir(work, 0o755))
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	opts += ",index=off,redirect_dir=off,metacopy=off"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		if errors.Is(err, unix.ENODEV) && os.Getenv("CI") != "true" {
			t.Skip("kernel has no overlayfs")
		}
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	mounted := true
	unmount = func() error {
		if !mounted {
			return nil
		}
		mounted = false
		return unix.Unmount(merged, 0)
	}
	t.Cleanup(func() {
		if err := unmount(); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged, unmount
}

func TestWriteTarOfOverlayUpperHasWhiteoutsAndApplyRecreatesTheView(t *testing.T) {
	testenv.RequireRoot(t)
	lower, upper := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(lower, "removed"), "old", 0o644)
	writeFile(t, filepath.Join(lower, "kept"), "kept", 0o644)
	writeFile(t, filepath.Join(lower, "d/old1"), "old", 0o644)
	writeFile(t, filepath.Join(lower, "d/sub/old2"), "old", 0o644)

	merged, unmount := mountOverlay(t, lower, upper)
	must(t, os.Remove(filepath.Join(merged, "removed")))
	must(t, os.RemoveAll(filepath.Join(merged, "d")))
	must(t, os.Mkdir(filepath.Join(merged, "d"), 0o755))
	writeFile(t, filepath.Join(merged, "d/new"), "new", 0o644)
	must(t, unmount())

	data, _ := writeLayer(t, upper, WriteOptions{})
	hdrs := headers(t, data)
	for _, name := range []string{".wh.removed", "d/", "d/.wh..wh..opq", "d/new"} {
		findHeader(t, hdrs, name)
	}
	for _, h := range hdrs {
		if strings.HasPrefix(h.Name, "kept") || strings.Contains(h.Name, "old") {
			t.Errorf("unchanged lower content %q in upper layer", h.Name)
		}
	}

	// Applying the layer and stacking it on the lower must show the same
	// view the overlay mount showed.
	snap := t.TempDir()
	if _, _, err := Apply(context.Background(), bytes.NewReader(data), snap); err != nil {
		t.Fatal(err)
	}
	view, _ := mountOverlay(t, snap+":"+lower, "")
	var got []string
	must(t, filepath.WalkDir(view, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != view {
			got = append(got, strings.TrimPrefix(p, view+"/"))
		}
		return nil
	}))
	want := []string{"d", "d/new", "kept"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stacked view = %q, want %q", got, want)
	}
}

type tarEntry struct {
	name     string
	typeflag byte // tar.TypeReg if zero
	linkname string
	body     string
}

func buildTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typeflag, Linkname: e.linkname, Mode: 0o644, Size: int64(len(e.body))}
		switch hdr.Typeflag {
		case 0:
			hdr.Typeflag = tar.TypeReg
		case tar.TypeDir:
			hdr.Mode = 0o755
		}
		must(t, tw.WriteHeader(hdr))
		_, err := tw.Write([]byte(e.body))
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

// snapshotTree describes everything under base except the skip dir, with
// enough detail (type, size, links, content, xattrs) to notice any change.
func snapshotTree(t *testing.T, base, skip string) string {
	t.Helper()
	var b strings.Builder
	must(t, filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		st := lstat(t, p)
		fmt.Fprintf(&b, "%s mode=%#o nlink=%d size=%d", p, st.Mode, st.Nlink, st.Size)
		if d.Type().IsRegular() {
			content, err := os.ReadFile(p)
			must(t, err)
			fmt.Fprintf(&b, " content=%q", content)
		}
		names, err := listXattrs(p)
		must(t, err)
		fmt.Fprintf(&b, " xattrs=%q\n", names)
		return nil
	}))
	return b.String()
}

func TestApplyKeepsHostileEntriesInsideTheRoot(t *testing.T) {
	testenv.RequireRoot(t)
	tests := []struct {
		name    string
		entries func(outside string) []tarEntry
		// wantErr: "unsafe" for an ErrUnsafePath error, "any" for some
		// other error, "" for success.
		wantErr string
		// inside, if set, must exist in the root afterwards.
		inside string
	}{
		{name: "dotdot name", wantErr: "unsafe",
			entries: func(string) []tarEntry { return []tarEntry{{name: "../x", body: "evil"}} }},
		{name: "dotdot inside a name", wantErr: "unsafe",
			entries: func(string) []tarEntry { return []tarEntry{{name: "a/../../x", body: "evil"}} }},
		{name: "absolute name climbing out", wantErr: "unsafe",
			entries: func(string) []tarEntry { return []tarEntry{{name: "/abs/../../x", body: "evil"}} }},
		{name: "absolute name is taken relative to the root", inside: "etc/x",
			entries: func(string) []tarEntry { return []tarEntry{{name: "/etc/x", body: "ok"}} }},
		{name: "hardlink target climbing out", wantErr: "unsafe",
			entries: func(string) []tarEntry {
				return []tarEntry{{name: "evil", typeflag: tar.TypeLink, linkname: "../../outside/file"}}
			}},
		{name: "absolute hardlink target to a host file", wantErr: "any",
			entries: func(outside string) []tarEntry {
				return []tarEntry{{name: "evil", typeflag: tar.TypeLink, linkname: filepath.Join(outside, "file")}}
			}},
		{name: "hardlink through a symlink pointing outside", wantErr: "any",
			entries: func(string) []tarEntry {
				return []tarEntry{
					{name: "link", typeflag: tar.TypeSymlink, linkname: "../../outside"},
					{name: "evil", typeflag: tar.TypeLink, linkname: "link/file"},
				}
			}},
		{name: "file through a symlink to the host root lands in the layer root", inside: "evil",
			entries: func(string) []tarEntry {
				return []tarEntry{
					{name: "link", typeflag: tar.TypeSymlink, linkname: "/"},
					{name: "link/evil", body: "evil"},
				}
			}},
		{name: "file through a relative symlink out lands in the layer root", inside: "outside/file",
			entries: func(string) []tarEntry {
				return []tarEntry{
					{name: "link", typeflag: tar.TypeSymlink, linkname: "../../outside"},
					{name: "link/file", body: "evil"},
				}
			}},
		{name: "file replacing a symlink to a host file replaces the symlink", inside: "passwd",
			entries: func(outside string) []tarEntry {
				return []tarEntry{
					{name: "passwd", typeflag: tar.TypeSymlink, linkname: filepath.Join(outside, "file")},
					{name: "passwd", body: "evil"},
				}
			}},
		{name: "dir through a symlink to a host dir", inside: "link",
			entries: func(outside string) []tarEntry {
				return []tarEntry{
					{name: "link", typeflag: tar.TypeSymlink, linkname: outside},
					{name: "link/sub/", typeflag: tar.TypeDir},
				}
			}},
		{name: "whiteout through a symlink to a host dir",
			entries: func(outside string) []tarEntry {
				return []tarEntry{
					{name: "link", typeflag: tar.TypeSymlink, linkname: outside},
					{name: "link/.wh.file"},
				}
			}},
		{name: "opaque marker through a symlink to a host dir",
			entries: func(outside string) []tarEntry {
				return []tarEntry{
					{name: "link", typeflag: tar.TypeSymlink, linkname: outside},
					{name: "link/.wh..wh..opq"},
				}
			}},
		{name: "whiteout of the parent dir", wantErr: "unsafe",
			entries: func(string) []tarEntry { return []tarEntry{{name: "d/.wh..."}} }},
		{name: "whiteout at the root's parent", wantErr: "unsafe",
			entries: func(string) []tarEntry { return []tarEntry{{name: ".wh..."}} }},
		{name: "root replaced by a file", wantErr: "any",
			entries: func(string) []tarEntry { return []tarEntry{{name: "."}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			writeFile(t, filepath.Join(outside, "file"), "secret", 0o644)
			root := filepath.Join(base, "layers", "root")
			must(t, os.MkdirAll(root, 0o755))
			before := snapshotTree(t, base, root)

			entries := tt.entries(outside)
			_, _, err := Apply(context.Background(), bytes.NewReader(buildTar(t, entries)), root)
			switch tt.wantErr {
			case "unsafe":
				if !errors.Is(err, ErrUnsafePath) {
					t.Errorf("err = %v, want ErrUnsafePath", err)
				} else if name := entries[len(entries)-1].name; !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
					t.Errorf("err %q does not name the entry %q", err, name)
				}
			case "any":
				if err == nil {
					t.Error("Apply succeeded, want an error")
				}
			default:
				if err != nil {
					t.Errorf("Apply: %v", err)
				}
			}
			if tt.inside != "" {
				if _, err := os.Lstat(filepath.Join(root, tt.inside)); err != nil {
					t.Errorf("want %s inside the root: %v", tt.inside, err)
				}
			}
			if after := snapshotTree(t, base, root); after != before {
				t.Errorf("outside the root changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestApplyRejectsTruncatedTars(t *testing.T) {
	testenv.RequireRoot(t)
	full := buildTar(t, []tarEntry{{name: "dir/", typeflag: tar.TypeDir}, {name: "dir/big", body: strings.Repeat("x", 4000)}})
	tests := []struct {
		name string
		size int
	}{
		{"inside a header", 700},
		{"inside file content", 512*3 + 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Apply(context.Background(), bytes.NewReader(full[:tt.size]), t.TempDir())
			if err == nil {
				t.Fatal("Apply of a truncated tar succeeded")
			}
		})
	}
}

// A tar cut where nothing but padding or the end-of-archive marker is
// missing reads as complete (archive/tar, Docker and containerd accept such
// tars), so what catches it is the caller comparing the digest with the
// diffID.
func TestApplyOfTarCutAfterLastEntryGivesAnotherDigest(t *testing.T) {
	testenv.RequireRoot(t)
	full := buildTar(t, []tarEntry{{name: "big", body: strings.Repeat("x", 4000)}})
	want := digest.FromBytes(full)
	for _, size := range []int{len(full) - 1024 - 10, len(full) - 1024, len(full) - 512} {
		t.Run(fmt.Sprintf("%d of %d bytes", size, len(full)), func(t *testing.T) {
			got, n, err := Apply(context.Background(), bytes.NewReader(full[:size]), t.TempDir())
			if err == nil && (got == want || n != int64(size)) {
				t.Errorf("Apply = %s (%d bytes), want a digest other than the full tar's %s", got, n, want)
			}
		})
	}
}

func TestApplyDigestCoversEveryByteRead(t *testing.T) {
	testenv.RequireRoot(t)
	data := buildTar(t, []tarEntry{{name: "f", body: "content"}})
	// GNU tar pads archives to 10 KiB records past the end-of-archive marker.
	padded := append(append([]byte(nil), data...), make([]byte, 10240-len(data)%10240)...)
	dgst, n, err := Apply(context.Background(), bytes.NewReader(padded), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(padded); dgst != want || n != int64(len(padded)) {
		t.Errorf("Apply = %s (%d bytes), want %s (%d bytes)", dgst, n, want, len(padded))
	}
}

func TestApplySetsDirectoryMtimesAfterTheirChildren(t *testing.T) {
	testenv.RequireRoot(t)
	mtime := time.Date(2005, 6, 7, 8, 9, 10, 0, time.UTC)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, hdr := range []*tar.Header{
		{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		{Name: "a/b/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		{Name: "a/b/f", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mtime},
		{Name: "a/.wh.gone", Typeflag: tar.TypeReg, ModTime: mtime},
	} {
		must(t, tw.WriteHeader(hdr))
	}
	must(t, tw.Close())
	dst := t.TempDir()
	if _, _, err := Apply(context.Background(), &buf, dst); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "a/b", "a/b/f", "a/gone"} {
		st := lstat(t, filepath.Join(dst, name))
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(mtime) {
			t.Errorf("%s mtime = %v, want %v", name, got, mtime)
		}
	}
}

func TestApplyStopsWhenContextIsCancelled(t *testing.T) {
	data := buildTar(t, []tarEntry{{name: "f", body: "content"}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Apply(ctx, bytes.NewReader(data), t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestUsageCountsRegularBytesOncePerInode(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), strings.Repeat("a", 10), 0o644)
	writeFile(t, filepath.Join(dir, "sub/b"), strings.Repeat("b", 20), 0o644)
	must(t, os.Link(filepath.Join(dir, "sub/b"), filepath.Join(dir, "sub/b2")))
	must(t, os.Symlink("/a/very/long/target/that/is/not/a/regular/file", filepath.Join(dir, "link")))

	bytes, entries, err := Usage(dir)
	if err != nil {
		t.Fatal(err)
	}
	// a, sub, sub/b, sub/b2, link
	if bytes != 30 || entries != 5 {
		t.Errorf("Usage = %d bytes, %d entries; want 30 bytes, 5 entries", bytes, entries)
	}
}

func TestCheckRefusesWhatApplyWouldRefuse(t *testing.T) {
	tarOf := func(hdrs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
		tw.Close()
		return buf.Bytes()
	}
	good := tarOf(
		&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: 10},
		&tar.Header{Name: "bin/sh", Typeflag: tar.TypeLink, Linkname: "bin/busybox"},
		&tar.Header{Name: "/abs/ok", Typeflag: tar.TypeReg, Size: 1},
		&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		&tar.Header{Name: "etc/.wh.gone", Typeflag: tar.TypeReg},
	)
	if err := Check(bytes.NewReader(good)); err != nil {
		t.Errorf("a sound layer: %v", err)
	}
	for name, data := range map[string][]byte{
		"path escapes":                  tarOf(&tar.Header{Name: "../../etc/x", Typeflag: tar.TypeReg, Size: 1}),
		"hardlink target \"../secret\"": tarOf(&tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../secret"}),
		"not an earlier file":           tarOf(&tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}),
		"cut short":                     good[:1030], // inside bin/busybox's content
		"unsupported tar entry type":    tarOf(&tar.Header{Name: "c", Typeflag: tar.TypeCont}),
	} {
		if err := Check(bytes.NewReader(data)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Check: %v, want an error containing %q", err, name)
		}
	}
	// an absurd size is caught through the seeking fast path too
	f := filepath.Join(t.TempDir(), "huge.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Size: 1 << 40})
	tw.Flush() // the header is out; the content never comes
	must(t, os.WriteFile(f, buf.Bytes(), 0o644))
	fh, err := os.Open(f)
	must(t, err)
	defer fh.Close()
	if err := Check(fh); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Errorf("Check of a 1 TB header without content: %v", err)
	}
}

// A GNU sparse file is unpacked with its holes: a tar of a few KB that
// claims a 4 GB file costs no disk.
func TestApplySparseFileKeepsHoles(t *testing.T) {
	testenv.RequireRoot(t)
	tarBin := testenv.RequireCommand(t, "tar")
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	must(t, err)
	must(t, f.Truncate(4<<30))
	f.WriteAt([]byte("data in the middle"), 2<<30)
	f.Close()
	archive := filepath.Join(t.TempDir(), "sparse.tar")
	if out, err := exec.Command(tarBin, "-S", "-C", src, "-cf", archive, "sparse").CombinedOutput(); err != nil {
		t.Fatalf("tar -S: %v\n%s", err, out)
	}
	r, err := os.Open(archive)
	must(t, err)
	defer r.Close()
	dir := t.TempDir()
	if _, _, err := Apply(context.Background(), r, dir); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(dir, "sparse"), &st))
	if st.Size != 4<<30 || st.Blocks*512 > 1<<20 {
		t.Errorf("unpacked sparse file: size %d, %d bytes allocated", st.Size, st.Blocks*512)
	}
	got := make([]byte, 18)
	g, err := os.Open(filepath.Join(dir, "sparse"))
	must(t, err)
	defer g.Close()
	g.ReadAt(got, 2<<30)
	if string(got) != "data in the middle" {
		t.Errorf("content at 2 GB: %q", got)
	}
}

// A plain archive (a build context) has no whiteouts: ".wh.x" and
// ".wh..wh..opq" are ordinary files there, while Apply reads the same tar
// as a layer that deletes x.
func TestExtractKeepsWhiteoutNamesAsFiles(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{".wh.x", "d/.wh..wh..opq", "d/.wh..wh.plnk"} {
		must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 4, Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte("file"))
		must(t, err)
	}
	must(t, tw.Close())

	dst := t.TempDir()
	must(t, Extract(context.Background(), bytes.NewReader(buf.Bytes()), dst))
	for _, name := range []string{".wh.x", "d/.wh..wh..opq", "d/.wh..wh.plnk"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != "file" {
			t.Errorf("%s: %q, %v; want the file as it was archived", name, b, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, "x")); !os.IsNotExist(err) {
		t.Errorf("x: %v; Extract made a whiteout for .wh.x", err)
	}

	testenv.RequireRoot(t) // the whiteout device needs mknod
	layerDir := t.TempDir()
	if _, _, err := Apply(context.Background(), bytes.NewReader(buf.Bytes()), layerDir); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(layerDir, "x")); st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("Apply of .wh.x: x has mode %#o, want a whiteout device", st.Mode)
	}
}

// Extract keeps Apply's path safety: nothing lands outside dst.
func TestExtractKeepsEntriesInsideTheRoot(t *testing.T) {
	outside := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside, Mode: 0o777}))
	must(t, tw.WriteHeader(&tar.Header{Name: "link/through", Mode: 0o644, Typeflag: tar.TypeReg}))
	must(t, tw.Close())
	Extract(context.Background(), bytes.NewReader(buf.Bytes()), t.TempDir())
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("Extract wrote outside its root: %v", ents)
	}
	var up bytes.Buffer
	tw = tar.NewWriter(&up)
	must(t, tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o644, Typeflag: tar.TypeReg}))
	must(t, tw.Close())
	if err := Extract(context.Background(), bytes.NewReader(up.Bytes()), t.TempDir()); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("Extract of ../escape: %v, want ErrUnsafePath", err)
	}
}
