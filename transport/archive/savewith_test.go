package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SaveWith with a Layer mapping writes the mapped blobs and a manifest
// naming them; the config (diff_ids, image ID) is unchanged, and Load
// reads the result back to the same image ID.
func TestSaveWithReplacedLayers(t *testing.T) {
	s := openStore(t)
	desc := importImage(t, s, "compressed", "docker.io/library/app:1")
	im, err := s.ReadImage(desc)
	if err != nil {
		t.Fatal(err)
	}
	layer := im.Manifest.Layers[0]
	raw, err := s.ReadBlob(layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	gzDesc, err := s.Write(context.Background(), bytes.NewReader(gz(t, raw)), "")
	if err != nil {
		t.Fatal(err)
	}
	gzDesc.MediaType = ocispec.MediaTypeImageLayerGzip

	var buf bytes.Buffer
	err = SaveWith(context.Background(), &buf, s, []SaveImage{{Manifest: desc, Names: []string{"docker.io/library/app:1"}}}, SaveOptions{
		Layer: func(_ context.Context, l ocispec.Descriptor) (ocispec.Descriptor, error) {
			if l.Digest != layer.Digest {
				t.Errorf("asked to map %s", l.Digest)
			}
			return gzDesc, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, files, _ := readTar(t, buf.Bytes())
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	md := idx.Manifests[0]
	if md.Digest == desc.Digest {
		t.Errorf("manifest digest unchanged although its layers changed")
	}
	if md.Annotations[content.AnnotationImageName] != "docker.io/library/app:1" || md.Annotations[content.AnnotationRefName] != "1" {
		t.Errorf("annotations %v", md.Annotations)
	}
	mb := files[blobPath(md.Digest)]
	if digest.FromBytes(mb) != md.Digest || int64(len(mb)) != md.Size {
		t.Fatalf("manifest blob does not match its descriptor")
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest != gzDesc.Digest || m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip || m.Layers[0].Size != gzDesc.Size {
		t.Errorf("manifest layers %+v, want %+v", m.Layers, gzDesc)
	}
	if m.Config.Digest != im.ConfigDesc.Digest {
		t.Errorf("config changed: %s, was %s", m.Config.Digest, im.ConfigDesc.Digest)
	}
	if _, ok := files[blobPath(gzDesc.Digest)]; !ok {
		t.Errorf("compressed layer blob missing")
	}
	if _, ok := files[blobPath(layer.Digest)]; ok {
		t.Errorf("uncompressed layer blob written too")
	}
	var dm []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &dm); err != nil || len(dm) != 1 || dm[0].Layers[0] != blobPath(gzDesc.Digest) {
		t.Errorf("manifest.json %s (%v)", files["manifest.json"], err)
	}

	other := openStore(t)
	loaded, err := Load(context.Background(), bytes.NewReader(buf.Bytes()), other)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].ID != im.ID() {
		t.Errorf("loaded %+v, want image ID %s", loaded, im.ID())
	}

	// A mapping error fails the save.
	err = SaveWith(context.Background(), &bytes.Buffer{}, s, []SaveImage{{Manifest: desc}}, SaveOptions{
		Layer: func(context.Context, ocispec.Descriptor) (ocispec.Descriptor, error) {
			return ocispec.Descriptor{}, errors.New("boom")
		},
	})
	if err == nil {
		t.Errorf("mapping error ignored")
	}
}
