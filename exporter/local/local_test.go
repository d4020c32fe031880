package local

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/store"
	"golang.org/x/sys/unix"
)

var mtime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func layerTar(t *testing.T, hdrs []*tar.Header, bodies map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		h.ModTime = mtime
		h.Format = tar.FormatPAX
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		body := bodies[h.Name]
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage stores two layers: a base, and one with whiteouts, an opaque
// directory and an xattr.
func testImage(t *testing.T) (*store.Store, []record.Layer) {
	t.Helper()
	testenv.RequireRoot(t)
	st, err := store.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l1 := layerTar(t, []*tar.Header{
		{Name: "a/", Typeflag: tar.TypeDir},
		{Name: "a/x", Typeflag: tar.TypeReg},
		{Name: "a/y", Typeflag: tar.TypeReg},
		{Name: "bin/", Typeflag: tar.TypeDir},
		{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o4755},
		{Name: "etc/", Typeflag: tar.TypeDir},
		{Name: "etc/passwd", Typeflag: tar.TypeReg},
		{Name: "h1", Typeflag: tar.TypeReg},
		{Name: "h2", Typeflag: tar.TypeLink, Linkname: "h1"},
		{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "own/", Typeflag: tar.TypeDir, Uid: 1000, Gid: 1001, Mode: 0o750},
		{Name: "pipe", Typeflag: tar.TypeFifo},
	}, map[string]string{"a/x": "x", "a/y": "y", "bin/sh": "sh", "etc/passwd": "root:x:0:0::/:/bin/sh\n", "h1": "linked"})
	l2 := layerTar(t, []*tar.Header{
		{Name: "a/", Typeflag: tar.TypeDir},
		{Name: "a/.wh..wh..opq", Typeflag: tar.TypeReg},
		{Name: "a/z", Typeflag: tar.TypeReg},
		{Name: "bin/", Typeflag: tar.TypeDir},
		{Name: "bin/.wh.sh", Typeflag: tar.TypeReg},
		{Name: "etc/", Typeflag: tar.TypeDir},
		{Name: "etc/new", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"SCHILY.xattr.user.kiln": "yes"}},
	}, map[string]string{"a/z": "z", "etc/new": "new"})
	var layers []record.Layer
	for _, b := range [][]byte{l1, l2} {
		d, err := st.Content.Write(context.Background(), bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, record.Layer{DiffID: d.Digest, Size: d.Size})
	}
	return st, layers
}

func assertRunClean(t *testing.T, st *store.Store) {
	t.Helper()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), st.Root) {
		t.Errorf("mount left under %s", st.Root)
	}
	if ents, _ := os.ReadDir(st.RunDir()); len(ents) > 0 {
		t.Errorf("left in run/: %v", ents)
	}
}

func TestWriteDir(t *testing.T) {
	s, layers := testImage(t)
	dest := filepath.Join(t.TempDir(), "out", "rootfs")
	// What dest holds is kept, unless the image replaces it.
	os.MkdirAll(dest, 0o755)
	os.WriteFile(filepath.Join(dest, "keepme"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(dest, "l"), []byte("a file where the image has a symlink"), 0o644)
	if err := WriteDir(context.Background(), s, layers, dest); err != nil {
		t.Fatal(err)
	}
	assertRunClean(t, s)

	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
		}
		return string(b)
	}
	if read("keepme") != "mine" || read("a/z") != "z" || read("etc/new") != "new" || read("h1") != "linked" {
		t.Errorf("contents wrong")
	}
	for _, gone := range []string{"a/x", "a/y", "bin/sh"} {
		if _, err := os.Lstat(filepath.Join(dest, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dest, "l")); err != nil || l != "/etc/passwd" {
		t.Errorf("l: %q %v", l, err)
	}
	var st, st2 unix.Stat_t
	unix.Lstat(filepath.Join(dest, "own"), &st)
	if st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o7777 != 0o750 {
		t.Errorf("own: %d:%d %o", st.Uid, st.Gid, st.Mode&0o7777)
	}
	unix.Lstat(filepath.Join(dest, "h1"), &st)
	unix.Lstat(filepath.Join(dest, "h2"), &st2)
	if st.Ino != st2.Ino {
		t.Errorf("h1 and h2 are not hardlinked")
	}
	unix.Lstat(filepath.Join(dest, "pipe"), &st)
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("pipe: mode %o", st.Mode)
	}
	if st.Mtim.Sec != mtime.Unix() {
		t.Errorf("pipe: mtime %d, want %d", st.Mtim.Sec, mtime.Unix())
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(dest, "etc/new"), "user.kiln", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("xattr user.kiln: %q %v", buf[:max(n, 0)], err)
	}
	// No overlay artefacts.
	filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
		if err == nil && (strings.HasPrefix(fi.Name(), ".wh.") || fi.Mode()&os.ModeCharDevice != 0) {
			t.Errorf("overlay artefact: %s", p)
		}
		return nil
	})

	// dest must be a directory.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if err := WriteDir(context.Background(), s, layers, file); err == nil {
		t.Error("WriteDir into a file")
	}
}

func TestWriteTar(t *testing.T) {
	st, layers := testImage(t)
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), st, layers, &buf); err != nil {
		t.Fatal(err)
	}
	assertRunClean(t, st)
	first := bytes.Clone(buf.Bytes())
	var names []string
	hdrs := map[string]*tar.Header{}
	bodies := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		hdrs[h.Name] = h
		b, _ := io.ReadAll(tr)
		bodies[h.Name] = string(b)
	}
	want := []string{"a/", "a/z", "bin/", "etc/", "etc/new", "etc/passwd", "h1", "h2", "l", "own/", "pipe"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	if h := hdrs["h2"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "h1" {
		t.Errorf("h2: %+v", h)
	}
	if h := hdrs["own/"]; h == nil || h.Uid != 1000 || h.Gid != 1001 || h.Mode != 0o750 {
		t.Errorf("own/: %+v", h)
	}
	if h := hdrs["etc/new"]; h == nil || h.PAXRecords["SCHILY.xattr.user.kiln"] != "yes" || bodies["etc/new"] != "new" {
		t.Errorf("etc/new: %+v", h)
	}
	if h := hdrs["l"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/etc/passwd" {
		t.Errorf("l: %+v", h)
	}
	if h := hdrs["pipe"]; h == nil || h.Typeflag != tar.TypeFifo || !h.ModTime.Equal(mtime) {
		t.Errorf("pipe: %+v", h)
	}

	// Deterministic.
	var again bytes.Buffer
	if err := WriteTar(context.Background(), st, layers, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again.Bytes()) {
		t.Error("two tars of one image differ")
	}

	// An empty image (no layers) is an empty tar.
	var empty bytes.Buffer
	if err := WriteTar(context.Background(), st, nil, &empty); err != nil {
		t.Fatal(err)
	}
	if h, err := tar.NewReader(&empty).Next(); err != io.EOF {
		t.Errorf("empty image: %+v %v", h, err)
	}

	// A failing writer fails the export and still cleans up.
	if err := WriteTar(context.Background(), st, layers, failWriter{}); err == nil {
		t.Error("write error ignored")
	}
	assertRunClean(t, st)
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }
