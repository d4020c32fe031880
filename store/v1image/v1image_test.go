package v1image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/kiln-build/kiln/store/content"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// stored is an image written to a fresh store: two uncompressed layers.
type stored struct {
	cs       *content.Store
	manifest ocispec.Descriptor
	layers   []ocispec.Descriptor
	raw      [][]byte // the layer tars
}

func layerTar(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func storeImage(t *testing.T) stored {
	t.Helper()
	cs, err := content.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := stored{cs: cs}
	var config dockerspec.DockerOCIImage
	config.OS, config.Architecture, config.RootFS.Type = "linux", "amd64", "layers"
	for _, f := range []string{"a", "b"} {
		b := layerTar(t, f, "content of "+f)
		d, err := cs.Write(context.Background(), bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		d.MediaType = ocispec.MediaTypeImageLayer
		s.layers, s.raw = append(s.layers, d), append(s.raw, b)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, d.Digest)
		config.History = append(config.History, ocispec.History{CreatedBy: "add " + f})
	}
	if s.manifest, err = cs.WriteImage(config, s.layers); err != nil {
		t.Fatal(err)
	}
	return s
}

// gzipCopy stores a gzip copy of layer i, as exporter/compression would.
func (s stored) gzipCopy(t *testing.T, i int) ocispec.Descriptor {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(s.raw[i])
	zw.Close()
	d, err := s.cs.Write(context.Background(), &buf, "")
	if err != nil {
		t.Fatal(err)
	}
	d.MediaType = ocispec.MediaTypeImageLayerGzip
	return d
}

// mustOpen opens the stored image and validates it. ggcr's validate
// reads layer bytes through gzip only, so an image with uncompressed
// layers is validated without reading them (validate.Fast).
func mustOpen(t *testing.T, s stored, opts Options, vopts ...validate.Option) v1.Image {
	t.Helper()
	img, err := Open(s.cs, s.manifest, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img.V1(), vopts...); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return img.V1()
}

func TestOpenIsTheStoredImageByteForByte(t *testing.T) {
	s := storeImage(t)
	img := mustOpen(t, s, Options{}, validate.Fast)
	raw, _ := img.RawManifest()
	stored, err := s.cs.ReadBlob(s.manifest.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, stored) {
		t.Errorf("manifest is not the stored one:\n%s\n%s", raw, stored)
	}
	im, err := s.cs.ReadImage(s.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := img.ConfigName(); id.String() != string(im.ID()) {
		t.Errorf("config name %s, image ID %s", id, im.ID())
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers %v %v", layers, err)
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(b, s.raw[i]) {
			t.Errorf("layer %d: Compressed is not the stored blob", i)
		}
		if mt, _ := l.MediaType(); mt != types.OCIUncompressedLayer {
			t.Errorf("layer %d: media type %s", i, mt)
		}
	}
}

// A remembered compressed copy replaces its layer in the manifest; the
// config (and with it the diff IDs and the image ID) does not change.
func TestOpenNamesCompressedCopies(t *testing.T) {
	s := storeImage(t)
	gz := s.gzipCopy(t, 1)
	mustOpen(t, s, Options{Layers: map[digest.Digest]ocispec.Descriptor{s.layers[1].Digest: gz}}, validate.Fast)
	img := mustOpen(t, s, Options{Layers: map[digest.Digest]ocispec.Descriptor{s.layers[0].Digest: s.gzipCopy(t, 0), s.layers[1].Digest: gz}})
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Layers[1].Digest.String() != string(gz.Digest) || m.Layers[1].Size != gz.Size || m.Layers[1].MediaType != types.OCILayer {
		t.Errorf("layer 1 %+v, want the gzip copy %+v", m.Layers[1], gz)
	}
	cfg, _ := img.RawConfigFile()
	im, _ := s.cs.ReadImage(s.manifest)
	if digest.FromBytes(cfg) != im.ID() {
		t.Errorf("config changed")
	}
	l, err := img.LayerByDiffID(v1.Hash{Algorithm: "sha256", Hex: s.layers[1].Digest.Encoded()})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if digest.FromBytes(b) != gz.Digest {
		t.Errorf("Compressed is not the stored gzip copy")
	}
}

func TestOpenWithDockerMediaTypes(t *testing.T) {
	s := storeImage(t)
	zstd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerZstd, Digest: digest.FromString("elsewhere"), Size: 9}
	img, err := Open(s.cs, s.manifest, Options{
		Layers:           map[digest.Digest]ocispec.Descriptor{s.layers[0].Digest: s.gzipCopy(t, 0), s.layers[1].Digest: zstd},
		DockerMediaTypes: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != string(types.DockerManifestSchema2) || m.Config.MediaType != content.MediaTypeDockerConfig {
		t.Errorf("manifest %s config %s", m.MediaType, m.Config.MediaType)
	}
	if m.Layers[0].MediaType != content.MediaTypeDockerLayerGz || m.Layers[1].MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Errorf("layer media types %s, %s", m.Layers[0].MediaType, m.Layers[1].MediaType)
	}
	if mt, _ := img.MediaType(); mt != types.DockerManifestSchema2 {
		t.Errorf("MediaType %s", mt)
	}
	// A blob the store lacks (one a registry holds) is named, not read.
	l, err := img.LayerByDigest(v1.Hash{Algorithm: "sha256", Hex: zstd.Digest.Encoded()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Compressed(); !errors.Is(err, content.ErrNotFound) {
		t.Errorf("Compressed of a missing blob: %v", err)
	}
}

// ggcr's layout package writes the image and reads it back as the same
// image: kiln's images are ordinary v1.Images to every ggcr sink.
func TestLayoutRoundTrip(t *testing.T) {
	s := storeImage(t)
	img := mustOpen(t, s, Options{Layers: map[digest.Digest]ocispec.Descriptor{s.layers[0].Digest: s.gzipCopy(t, 0), s.layers[1].Digest: s.gzipCopy(t, 1)}})
	p, err := layout.Write(t.TempDir(), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	back, err := p.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(back); err != nil {
		t.Fatalf("validate: %v", err)
	}
	for _, f := range []func(v1.Image) (v1.Hash, error){v1.Image.Digest, v1.Image.ConfigName} {
		a, _ := f(img)
		b, _ := f(back)
		if a != b {
			t.Errorf("read back %s, wrote %s", b, a)
		}
	}
}

func TestNewIsAnArtifactAsGiven(t *testing.T) {
	s := storeImage(t)
	gz := s.gzipCopy(t, 0)
	gz.Annotations = map[string]string{"io.kiln.layer.diffid": string(s.layers[0].Digest)}
	cfg := []byte(`{"records":[]}`)
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.example",
		Config:       ocispec.Descriptor{MediaType: "application/vnd.example.config+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:       []ocispec.Descriptor{gz},
	}
	m.SchemaVersion = 2
	img, err := New(s.cs, m, cfg, []digest.Digest{s.layers[0].Digest})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	want, _ := json.Marshal(m)
	if !bytes.Equal(raw, want) {
		t.Errorf("manifest\n%s\nwant\n%s", raw, want)
	}
	if got, _ := img.RawConfigFile(); !bytes.Equal(got, cfg) {
		t.Errorf("config %s", got)
	}
	if _, err := New(s.cs, m, cfg, nil); err == nil {
		t.Errorf("New without diff IDs for its layers succeeded")
	}
}
