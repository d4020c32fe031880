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
	if os.Geteuid() != 0 {
		f.Skip("applying layers needs root (mknod, chown)")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		os.Mkdir(root, 0o755)
		os.Mkdir(outside, 0o755)
		_, _, err := Apply(context.Background(), bytes.NewReader(data), root)
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
