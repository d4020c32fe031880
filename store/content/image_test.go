package content

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeLayers stores blobs standing in for layer tars.
func writeLayers(t *testing.T, s *Store, contents ...string) []ocispec.Descriptor {
	t.Helper()
	var out []ocispec.Descriptor
	for _, c := range contents {
		d, err := s.Write(context.Background(), strings.NewReader(c), "")
		must(t, err)
		d.MediaType = ocispec.MediaTypeImageLayer
		out = append(out, d)
	}
	return out
}

func testConfig(layers []ocispec.Descriptor) dockerspec.DockerOCIImage {
	var c dockerspec.DockerOCIImage
	c.Architecture = "amd64"
	c.OS = "linux"
	c.RootFS.Type = "layers"
	for _, l := range layers {
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, l.Digest)
	}
	c.Config.Cmd = []string{"/bin/sh", "-c", "echo hi"}
	c.Config.Env = []string{"PATH=/bin"}
	c.Config.Shell = []string{"/bin/ash", "-c"}
	return c
}

func TestWriteImageThenReadImageRoundTrips(t *testing.T) {
	s := openStore(t)
	layers := writeLayers(t, s, "layer one", "layer two")
	config := testConfig(layers)

	mdesc, err := s.WriteImage(config, layers)
	must(t, err)
	if mdesc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media type = %q", mdesc.MediaType)
	}
	if mdesc.Platform == nil || mdesc.Platform.Architecture != "amd64" || mdesc.Platform.OS != "linux" {
		t.Errorf("manifest platform = %+v, want linux/amd64", mdesc.Platform)
	}

	im, err := s.ReadImage(mdesc)
	must(t, err)
	if im.ManifestDesc.Digest != mdesc.Digest {
		t.Errorf("ManifestDesc = %s, want %s", im.ManifestDesc.Digest, mdesc.Digest)
	}
	if im.Manifest.SchemaVersion != 2 || im.Manifest.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest header = %d %q", im.Manifest.SchemaVersion, im.Manifest.MediaType)
	}
	if !reflect.DeepEqual(im.Manifest.Layers, layers) {
		t.Errorf("layers = %+v, want %+v", im.Manifest.Layers, layers)
	}
	if !reflect.DeepEqual(im.Config, config) {
		t.Errorf("config = %+v, want %+v", im.Config, config)
	}
	if im.ConfigDesc.MediaType != ocispec.MediaTypeImageConfig || im.ConfigDesc.Digest != im.ID() {
		t.Errorf("config descriptor = %+v, ID = %s", im.ConfigDesc, im.ID())
	}
	// The image ID is the digest of the stored config bytes.
	cb, err := s.ReadBlob(im.ID())
	must(t, err)
	if digest.FromBytes(cb) != im.ID() || im.ConfigDesc.Size != int64(len(cb)) {
		t.Errorf("ID %s / size %d do not describe the config blob", im.ID(), im.ConfigDesc.Size)
	}
}

func TestWriteImageIsDeterministic(t *testing.T) {
	s := openStore(t)
	layers := writeLayers(t, s, "l")
	a, err := s.WriteImage(testConfig(layers), layers)
	must(t, err)
	b, err := s.WriteImage(testConfig(layers), layers)
	must(t, err)
	if a.Digest != b.Digest {
		t.Errorf("same image gave manifests %s and %s", a.Digest, b.Digest)
	}
}

func TestWriteImageWithoutLayersHasEmptyLayerArray(t *testing.T) {
	s := openStore(t)
	mdesc, err := s.WriteImage(testConfig(nil), nil)
	must(t, err)
	raw, err := s.ReadBlob(mdesc.Digest)
	must(t, err)
	if !strings.Contains(string(raw), `"layers":[]`) {
		t.Errorf("manifest has no empty layers array: %s", raw)
	}
	im, err := s.ReadImage(mdesc)
	must(t, err)
	if len(im.Manifest.Layers) != 0 {
		t.Errorf("layers = %v", im.Manifest.Layers)
	}
}

func TestWriteManifestRefusesMissingBlobs(t *testing.T) {
	s := openStore(t)
	layers := writeLayers(t, s, "present")
	cdesc, _, err := s.WriteJSON(testConfig(layers), ocispec.MediaTypeImageConfig)
	must(t, err)
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("absent"), Size: 6}
	missingConfig := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("no config"), Size: 9}

	for _, tc := range []struct {
		name   string
		config ocispec.Descriptor
		layers []ocispec.Descriptor
	}{
		{"missing layer", cdesc, []ocispec.Descriptor{layers[0], missing}},
		{"missing config", missingConfig, layers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := s.Blobs()
			must(t, err)
			_, err = s.WriteManifest(tc.config, tc.layers, ocispec.Platform{OS: "linux", Architecture: "amd64"})
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("WriteManifest = %v, want ErrNotFound", err)
			}
			after, err := s.Blobs()
			must(t, err)
			if len(after) != len(before) {
				t.Errorf("a refused manifest still stored a blob: %d blobs, then %d", len(before), len(after))
			}
		})
	}
}

func TestWriteManifestKeepsConfigBlobByteForByte(t *testing.T) {
	s := openStore(t)
	// A docker config as loaded from a tarball: not kiln's own encoding.
	raw := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},  "config":{}}`
	cdesc, err := s.Write(context.Background(), strings.NewReader(raw), "")
	must(t, err)
	cdesc.MediaType = MediaTypeDockerConfig
	mdesc, err := s.WriteManifest(cdesc, nil, ocispec.Platform{OS: "linux", Architecture: "amd64"})
	must(t, err)
	im, err := s.ReadImage(mdesc)
	must(t, err)
	if im.ID() != digest.FromString(raw) {
		t.Errorf("image ID = %s, want the digest of the loaded config %s", im.ID(), digest.FromString(raw))
	}
	if im.ConfigDesc.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("config media type = %q, want the OCI one", im.ConfigDesc.MediaType)
	}
}

func TestReadImageErrors(t *testing.T) {
	s := openStore(t)
	layers := writeLayers(t, s, "one", "two")

	t.Run("missing manifest", func(t *testing.T) {
		if _, err := s.ReadImage(manifestDesc("nothing")); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReadImage = %v, want ErrNotFound", err)
		}
	})
	t.Run("fewer diff IDs than layers", func(t *testing.T) {
		config := testConfig(layers[:1])
		mdesc, err := s.WriteImage(config, layers)
		must(t, err)
		if _, err := s.ReadImage(mdesc); err == nil {
			t.Error("ReadImage of an image with 2 layers and 1 diff ID succeeded")
		}
	})
	t.Run("manifest is not JSON", func(t *testing.T) {
		d, err := s.Write(context.Background(), strings.NewReader("not json"), "")
		must(t, err)
		if _, err := s.ReadImage(d); err == nil {
			t.Error("ReadImage of a non-JSON manifest succeeded")
		}
	})
}
