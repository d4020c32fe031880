package archive

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/v1image"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// validateStored checks a stored image with go-containerregistry's
// validate: as stored (validate.Fast, since validate reads layer bytes
// only through gzip and stored layers are uncompressed), then over a gzip
// copy of each layer, so that every layer's content is checked against
// the config's diff IDs too.
func validateStored(t *testing.T, s *content.Store, desc ocispec.Descriptor) {
	t.Helper()
	img, err := v1image.Open(s, desc, v1image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img.V1(), validate.Fast); err != nil {
		t.Errorf("validate %s as stored: %v", desc.Digest, err)
	}
	im, err := s.ReadImage(desc)
	if err != nil {
		t.Fatal(err)
	}
	copies := map[digest.Digest]ocispec.Descriptor{}
	for i, l := range im.Manifest.Layers {
		raw, err := s.ReadBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.Write(context.Background(), bytes.NewReader(gz(t, raw)), "")
		if err != nil {
			t.Fatal(err)
		}
		d.MediaType = ocispec.MediaTypeImageLayerGzip
		copies[im.Config.RootFS.DiffIDs[i]] = d
	}
	if img, err = v1image.Open(s, desc, v1image.Options{Layers: copies}); err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img.V1()); err != nil {
		t.Errorf("validate %s: %v", desc.Digest, err)
	}
}

// import → save → load gives a valid image, the same one.
func TestSaveLoadRoundTripIsValid(t *testing.T) {
	src := openStore(t)
	desc := importImage(t, src, "valid", "docker.io/library/app:1")
	validateStored(t, src, desc)
	tarball := save(t, src, SaveImage{Names: []string{"docker.io/library/app:1"}, Manifest: desc})

	dst := openStore(t)
	loaded, err := Load(context.Background(), bytes.NewReader(tarball), dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 {
		t.Fatalf("loaded %+v", loaded)
	}
	d, err := dst.Resolve("docker.io/library/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Digest != desc.Digest {
		t.Errorf("loaded manifest %s, saved %s", d.Digest, desc.Digest)
	}
	validateStored(t, dst, d)

	// The saved tar is an OCI layout that ggcr's layout package reads as
	// the same image.
	dir := filepath.Join(t.TempDir(), "layout")
	extractTar(t, tarball, dir)
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(v1.Hash{Algorithm: "sha256", Hex: desc.Digest.Encoded()})
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Errorf("validate the saved layout: %v", err)
	}
}
