package e2etest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"testing"
	"time"
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
