package e2etest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
)

// TarEntry is one entry of a tar made by TarOf.
type TarEntry struct {
	Hdr  tar.Header
	Body []byte
}

// RegEntry is a regular file.
func RegEntry(name, body string) TarEntry {
	return TarEntry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, []byte(body)}
}

// SymlinkEntry is a symbolic link.
func SymlinkEntry(name, target string) TarEntry {
	return TarEntry{Hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

// HardlinkEntry is a hard link.
func HardlinkEntry(name, target string) TarEntry {
	return TarEntry{Hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}}
}

// DeviceEntry is a device node (typ tar.TypeChar or tar.TypeBlock).
func DeviceEntry(name string, typ byte, major, minor uint32) TarEntry {
	return TarEntry{Hdr: tar.Header{Name: name, Typeflag: typ, Devmajor: int64(major), Devminor: int64(minor), Mode: 0o666}}
}

// TarOf is a PAX tar of the entries, in order, all with mtime 0.
func TarOf(t *testing.T, entries ...TarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Hdr
		h.ModTime = time.Unix(0, 0)
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TarFiles reads a tar archive (docker-save, OCI layout) into memory:
// entry name → content.
func TarFiles(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", p, hdr.Name, err)
		}
		files[hdr.Name] = b
	}
}

// BusyboxTarWith writes busybox's rootfs plus the extra files (path →
// content) as one tar at dst, for `kiln import`.
func BusyboxTarWith(t *testing.T, dst string, extra map[string][]byte) {
	t.Helper()
	src, err := os.Open(testenv.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := extra[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
