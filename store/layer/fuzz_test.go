package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

// FuzzApply: a layer tar, however hostile, either applies inside the root
// or fails; nothing is ever created outside it.
func FuzzApply(f *testing.F) {
	add := func(entries ...tar.Header) {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range entries {
			h := h
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len(h.Linkname))
				body := h.Linkname
				h.Linkname = ""
				tw.WriteHeader(&h)
				tw.Write([]byte(body))
				continue
			}
			tw.WriteHeader(&h)
		}
		tw.Close()
		f.Add(b.Bytes())
	}
	add(tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755}, tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "hi"})
	add(tar.Header{Name: "../x", Typeflag: tar.TypeReg, Linkname: "x"})
	add(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"}, tar.Header{Name: "l/evil", Typeflag: tar.TypeReg, Linkname: "e"})
	add(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"})
	add(tar.Header{Name: "d/.wh..wh..opq", Typeflag: tar.TypeReg}, tar.Header{Name: ".wh.gone", Typeflag: tar.TypeReg})
	add(tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../tmp"}, tar.Header{Name: "up/kiln-fuzz-escaped", Typeflag: tar.TypeReg, Linkname: "e"})
	add(tar.Header{Name: "/../../../../tmp/kiln-fuzz-abs", Typeflag: tar.TypeReg, Linkname: "e"})
	add(tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, tar.Header{Name: "a/x", Typeflag: tar.TypeLink, Linkname: "a"})
	seeds, _ := filepath.Glob("testdata/fuzz-seeds/*.tar") // tars made by GNU tar
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	testenv.RequireRoot(f) // mknod, chown
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		os.Mkdir(root, 0o755)
		os.Mkdir(outside, 0o755)
		// Where an entry would land if it escaped — through a symlink to
		// "/" or by climbing any number of levels — is its name taken
		// from the host's root: none of those may appear.
		var escapes []string
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			if hdr.Size > 16<<20 {
				// this target looks for escapes; expanding a huge
				// (sparse) file would only make it slow
				t.Skip("entry larger than 16 MB")
			}
			for _, name := range []string{hdr.Name, hdr.Linkname} {
				for _, p := range hostPaths(name, base) {
					if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
						escapes = append(escapes, p)
					}
				}
			}
		}
		_, _, err := Apply(context.Background(), bytes.NewReader(data), root)
		for _, p := range escapes {
			if _, serr := os.Lstat(p); serr == nil {
				os.RemoveAll(p)
				t.Fatalf("layer wrote %s, outside its root", p)
			}
		}
		if err != nil && errors.Is(err, ErrUnsafePath) && !strings.Contains(err.Error(), "escapes") {
			t.Fatalf("unsafe path error without explanation: %v", err)
		}
		ents, _ := os.ReadDir(outside)
		if len(ents) > 0 {
			t.Fatalf("layer wrote outside its root: %v", ents)
		}
		siblings, _ := os.ReadDir(base)
		if len(siblings) != 2 {
			t.Fatalf("layer created %v next to its root", siblings)
		}
	})
}

// hostPaths are the host paths a tar entry name could reach if it escaped
// the root: the name from "/", and from each ancestor of base, for every
// suffix of the name (a symlink may have replaced any prefix).
func hostPaths(name, base string) []string {
	parts := strings.Split(filepath.Clean("/"+name), "/")[1:]
	if len(parts) == 0 || parts[0] == "" {
		return nil
	}
	var out []string
	for i := range parts {
		rest := filepath.Join(parts[i:]...)
		for dir := base; ; dir = filepath.Dir(dir) {
			out = append(out, filepath.Join(dir, rest))
			if dir == "/" {
				break
			}
		}
	}
	return out
}
