package output

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/transport/archive"
)

// -o type=oci writes an OCI layout that go-containerregistry reads and
// validates: gzip layers that gunzip to the config's diff IDs, the
// config byte for byte (the image ID is the store's), the compressed
// copies the store remembers.
func TestExportOCIIsValid(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	for _, n := range []string{"a", "b"} {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
		tw.Write([]byte(n + "!\n"))
	}
	tw.Close()
	desc, err := archive.Import(ctx, &rootfs, st.Content, archive.ImportOptions{Created: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	im, err := st.Content.ReadImage(desc)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "oci.tar")
	if err := Export(ctx, st, Image{Manifest: desc, Names: []string{"docker.io/library/app:1"}}, []Spec{{Type: OCI, Dest: dest}}, Options{}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	for name, b := range readTar(t, mustRead(t, dest)) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if name[len(name)-1] == '/' {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("index %+v, %v", m, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("validate: %v", err)
	}
	if id, _ := img.ConfigName(); id.String() != string(im.ID()) {
		t.Errorf("config %s, image ID %s", id, im.ID())
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v", layers, err)
	}
	gz, ok := compression.New(st.Content).Lookup(im.Config.RootFS.DiffIDs[0], compression.Options{Algorithm: compression.Gzip, Level: compression.DefaultGzipLevel})
	if d, _ := layers[0].Digest(); !ok || d.String() != string(gz.Digest) {
		t.Errorf("layer %s, remembered gzip copy %s (%v)", d, gz.Digest, ok)
	}
}
