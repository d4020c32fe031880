package output

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/transport/archive"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	cases := []struct {
		specs []Spec
		err   string
	}{
		{[]Spec{{Type: Local, Dest: filepath.Join(dir, "new")}}, ""},
		{[]Spec{{Type: Local, Dest: dir}}, ""},
		{[]Spec{{Type: Tar, Dest: "x.tar"}, {Type: OCI, Dest: "-"}}, ""},
		{[]Spec{{Type: OCI, Dest: "o.tar", Attrs: map[string]string{"compression": "zstd", "compression-level": "12", "force-compression": "true", "oci-mediatypes": "true", "name": "a:1"}}}, ""},
		{[]Spec{{Type: Docker, Dest: "d.tar", Attrs: map[string]string{"name": "a:1,b:2", "tar": "true"}}}, ""},
		{[]Spec{{Type: CacheOnly}}, ""},
		{[]Spec{{Type: Local}}, "dest=DIR is required"},
		{[]Spec{{Type: Local, Dest: "-"}}, "dest=DIR is required"},
		{[]Spec{{Type: Local, Dest: file}}, "not a directory"},
		{[]Spec{{Type: Tar, Dest: dir}}, "is a directory"},
		{[]Spec{{Type: Tar, Dest: "-"}, {Type: Docker}}, "only one output can write to stdout"},
		{[]Spec{{Type: OCI, Dest: "o.tar", Attrs: map[string]string{"compression": "lz4"}}}, "unknown compression"},
		{[]Spec{{Type: OCI, Dest: "o.tar", Attrs: map[string]string{"compression-level": "11"}}}, "gzip levels"},
		{[]Spec{{Type: OCI, Dest: "o.tar", Attrs: map[string]string{"tar": "false"}}}, "only tar=true"},
		{[]Spec{{Type: Docker, Dest: "d.tar", Attrs: map[string]string{"compression": "gzip"}}}, `unknown attribute "compression"`},
		{[]Spec{{Type: Local, Dest: dir, Attrs: map[string]string{"name": "x"}}}, `unknown attribute "name"`},
		{[]Spec{{Type: TypeRegistry}}, ""},
		{[]Spec{{Type: TypeRegistry, Attrs: map[string]string{"name": "127.0.0.1:5000/a:1,127.0.0.1:5000/b:2", "compression": "zstd", "oci-mediatypes": "false"}}}, ""},
		{[]Spec{{Type: TypeImage, Attrs: map[string]string{"name": "a:1", "push": "true", "store": "true", "unpack": "false"}}}, ""},
		{[]Spec{{Type: TypeRegistry, Dest: "x"}}, "takes name=, not dest="},
		{[]Spec{{Type: TypeRegistry, Attrs: map[string]string{"push": "false"}}}, "always pushes"},
		{[]Spec{{Type: TypeImage, Attrs: map[string]string{"push": "maybe"}}}, "expected true or false"},
		{[]Spec{{Type: TypeImage, Attrs: map[string]string{"name": "x/UPPER"}}}, "must be lowercase"},
		{[]Spec{{Type: TypeRegistry, Attrs: map[string]string{"compression": "lz4"}}}, "unknown compression"},
		{[]Spec{{Type: TypeRegistry, Attrs: map[string]string{"tag": "x"}}}, `unknown attribute "tag"`},
		{[]Spec{{Type: "bogus", Dest: "x"}}, `unknown output type "bogus"`},
	}
	for _, c := range cases {
		err := Validate(c.specs)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Validate(%+v) = %v, want %q", c.specs, err, c.err)
		}
	}
}

func TestWriteToIsAtomic(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "sub", "out.tar")
	err := writeTo(dest, nil, func(w io.Writer) error {
		w.Write(bytes.Repeat([]byte("x"), 3<<20))
		return errors.New("failed half way")
	})
	if err == nil {
		t.Fatal("error lost")
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("partial file at dest: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dest)); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	// An existing dest survives a failed write untouched.
	os.WriteFile(dest, []byte("old"), 0o644)
	writeTo(dest, nil, func(w io.Writer) error { w.Write([]byte("new")); return errors.New("no") })
	if b, _ := os.ReadFile(dest); string(b) != "old" {
		t.Errorf("dest changed by a failed write: %q", b)
	}
	if err := writeTo(dest, nil, func(w io.Writer) error { _, err := w.Write([]byte("new")); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "new" {
		t.Errorf("dest %q", b)
	}
	var out bytes.Buffer
	if err := writeTo("-", &out, func(w io.Writer) error { _, err := w.Write([]byte("stdout")); return err }); err != nil || out.String() != "stdout" {
		t.Errorf("stdout: %q %v", out.String(), err)
	}
}

// Export of the archive kinds (no mount needed): names, compression, and
// the image left as it is in the store.
func TestExportArchives(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	tw.WriteHeader(&tar.Header{Name: "hello", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("hi\n"))
	tw.Close()
	desc, err := archive.Import(context.Background(), &rootfs, st.Content, archive.ImportOptions{Created: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Manifest: desc, Names: []string{"docker.io/library/app:1"}}
	dir := t.TempDir()
	ociTar, dockerTar := filepath.Join(dir, "oci.tar"), filepath.Join(dir, "docker.tar")
	var stdout bytes.Buffer
	err = Export(context.Background(), st, img, []Spec{
		{Type: OCI, Dest: ociTar, Attrs: map[string]string{"compression": "zstd"}},
		{Type: Docker, Dest: dockerTar, Attrs: map[string]string{"name": "other:2,third"}},
		{Type: OCI, Dest: "-", Attrs: map[string]string{"compression": "uncompressed"}},
	}, Options{Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	files := readTar(t, mustRead(t, ociTar))
	var idx ocispec.Index
	json.Unmarshal(files["index.json"], &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/library/app:1" {
		t.Fatalf("index.json %s", files["index.json"])
	}
	var m ocispec.Manifest
	json.Unmarshal(files["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()], &m)
	if len(m.Layers) != 1 || m.Layers[0].MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Errorf("oci manifest layers %+v", m.Layers)
	}
	var dm []struct{ RepoTags []string }
	json.Unmarshal(readTar(t, mustRead(t, dockerTar))["manifest.json"], &dm)
	if len(dm) != 1 || strings.Join(dm[0].RepoTags, ",") != "other:2,third:latest" {
		t.Errorf("docker RepoTags %+v", dm)
	}
	// Uncompressed to stdout: the stored manifest as it is.
	files = readTar(t, stdout.Bytes())
	json.Unmarshal(files["index.json"], &idx)
	if idx.Manifests[0].Digest != desc.Digest {
		t.Errorf("uncompressed oci manifest %s, stored %s", idx.Manifests[0].Digest, desc.Digest)
	}
	// The store's image is unchanged.
	if im, err := st.Content.ReadImage(desc); err != nil || im.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
		t.Errorf("stored image changed: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readTar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
}
