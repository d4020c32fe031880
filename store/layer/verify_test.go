package layer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"golang.org/x/sys/unix"
)

// appliedRichLayer writes the rich tree as a layer tar and applies it to a
// fresh directory, as kiln unpacks a layer into a snapshot.
func appliedRichLayer(t *testing.T) ([]byte, string) {
	t.Helper()
	src := t.TempDir()
	buildRichTree(t, src)
	must(t, unix.Mknod(filepath.Join(src, "gone"), unix.S_IFCHR, 0)) // a whiteout
	must(t, os.MkdirAll(filepath.Join(src, "hidden"), 0o755))
	must(t, unix.Lsetxattr(filepath.Join(src, "hidden"), opaqueXattr, []byte("y"), 0))
	data, _ := writeLayer(t, src, WriteOptions{})
	dst := t.TempDir()
	_, _, err := Apply(t.Context(), bytes.NewReader(data), dst)
	must(t, err)
	return data, dst
}

func TestVerifyAcceptsWhatApplyMade(t *testing.T) {
	testenv.RequireRoot(t)
	data, dir := appliedRichLayer(t)
	if err := Verify(t.Context(), bytes.NewReader(data), dir); err != nil {
		t.Fatal(err)
	}
	// A tar that leaves parent directories implicit, with an entry given
	// twice (the last one counts), as docker-made layers do.
	tarData := buildTar(t, []tarEntry{{name: "a/b/c", body: "one"}, {name: "a/b/c", body: "two"}, {name: "/abs/x", body: "x"}})
	dir = t.TempDir()
	_, _, err := Apply(t.Context(), bytes.NewReader(tarData), dir)
	must(t, err)
	if err := Verify(t.Context(), bytes.NewReader(tarData), dir); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesEveryKindOfDifference(t *testing.T) {
	testenv.RequireRoot(t)
	cases := []struct {
		name   string
		change func(dir string)
		want   string
	}{
		{"content", func(d string) { must(t, os.WriteFile(filepath.Join(d, "etc/config"), []byte("HELLO\n"), 0o644)) }, "etc/config: content differs"},
		{"size", func(d string) { must(t, os.WriteFile(filepath.Join(d, "empty"), []byte("x"), 0o644)) }, "empty: size 1, the layer has 0"},
		{"mode", func(d string) { must(t, os.Chmod(filepath.Join(d, "bin/tool"), 0o755)) }, "bin/tool: mode 755, the layer has 4755"},
		{"owner", func(d string) { must(t, os.Lchown(filepath.Join(d, "home/user/file"), 0, 0)) }, "home/user/file: owner 0:0, the layer has 1000:1000"},
		{"missing", func(d string) { must(t, os.Remove(filepath.Join(d, "run/fifo"))) }, "run/fifo: missing"},
		{"extra", func(d string) { must(t, os.WriteFile(filepath.Join(d, "tmp/new"), nil, 0o644)) }, "tmp/new: not in the layer"},
		{"symlink", func(d string) {
			must(t, os.Remove(filepath.Join(d, "rel")))
			must(t, os.Symlink("elsewhere", filepath.Join(d, "rel")))
		}, `rel: symlink to "elsewhere"`},
		{"hardlink", func(d string) {
			must(t, os.Remove(filepath.Join(d, "data/b")))
			must(t, os.WriteFile(filepath.Join(d, "data/b"), []byte("shared content"), 0o600))
		}, "not a hardlink"},
		{"device", func(d string) {
			must(t, os.Remove(filepath.Join(d, "dev/null")))
			must(t, unix.Mknod(filepath.Join(d, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
		}, "dev/null: device number differs"},
		{"whiteout", func(d string) { must(t, os.Remove(filepath.Join(d, "gone"))) }, "gone: missing"},
		{"opaque", func(d string) { must(t, unix.Lremovexattr(filepath.Join(d, "hidden"), opaqueXattr)) }, "hidden: not marked opaque"},
		{"type", func(d string) {
			must(t, os.Remove(filepath.Join(d, "empty")))
			must(t, os.Mkdir(filepath.Join(d, "empty"), 0o644))
		}, "empty: type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, dir := appliedRichLayer(t)
			tc.change(dir)
			err := Verify(t.Context(), bytes.NewReader(data), dir)
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want a mismatch naming %q", err, tc.want)
			}
		})
	}
}

func TestVerifyStaysInsideTheDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	// A snapshot whose directory was replaced by a symlink to the host's
	// /etc: Verify resolves inside the snapshot and never reads the host's.
	tarData := buildTar(t, []tarEntry{{name: "etc/", typeflag: '5'}, {name: "etc/hostname", body: "x"}})
	dir := t.TempDir()
	must(t, os.Symlink("/etc", filepath.Join(dir, "etc")))
	err := Verify(t.Context(), bytes.NewReader(tarData), dir)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "etc: type") || strings.Contains(err.Error(), "content differs") {
		t.Errorf("Verify = %v", err)
	}
}
