// Package v1imagetest checks images in kiln's store with
// go-containerregistry's validate, for tests of every path that writes
// images into the store (build, import, load, pull).
package v1imagetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/v1image"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Validate runs validate.Image over the stored image desc: as stored
// (with validate.Fast, since validate reads layer bytes only through gzip
// and stored layers are uncompressed), then over a gzip copy of each
// layer written into the store, so that every layer's content is checked
// against the config's diff IDs as well.
func Validate(t testing.TB, cs *content.Store, desc ocispec.Descriptor) {
	t.Helper()
	img, err := v1image.Open(cs, desc, v1image.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", desc.Digest, err)
	}
	if err := validate.Image(img.V1(), validate.Fast); err != nil {
		t.Errorf("validate %s as stored: %v", desc.Digest, err)
	}
	im, err := cs.ReadImage(desc)
	if err != nil {
		t.Fatal(err)
	}
	copies := map[digest.Digest]ocispec.Descriptor{}
	for i, l := range im.Manifest.Layers {
		raw, err := cs.ReadBlob(l.Digest)
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		d, err := cs.Write(context.Background(), &buf, "")
		if err != nil {
			t.Fatal(err)
		}
		d.MediaType = ocispec.MediaTypeImageLayerGzip
		copies[im.Config.RootFS.DiffIDs[i]] = d
	}
	if img, err = v1image.Open(cs, desc, v1image.Options{Layers: copies}); err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img.V1()); err != nil {
		t.Errorf("validate %s: %v", desc.Digest, err)
	}
}
