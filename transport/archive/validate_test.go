package archive

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/kiln-build/kiln/store/v1image/v1imagetest"
)

// import → save → load gives a valid image, the same one.
func TestSaveLoadRoundTripIsValid(t *testing.T) {
	src := openStore(t)
	desc := importImage(t, src, "valid", "docker.io/library/app:1")
	v1imagetest.Validate(t, src, desc)
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
	v1imagetest.Validate(t, dst, d)

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
