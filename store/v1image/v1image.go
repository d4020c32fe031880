// Package v1image presents images in kiln's content store as
// go-containerregistry images (v1.Image and v1.Layer), the one adapter
// that push, the registry build cache, `kiln save`, `-o type=oci` and the
// tests share.
//
// Image is a partial.CompressedImageCore and Layer a
// partial.CompressedLayer: ggcr's partial package derives the rest. A
// layer's "compressed" bytes are the blob the manifest names, read from
// the store as they are: the stored layer itself (kept uncompressed, its
// digest is its diffID) or a compressed copy of it made before
// (exporter/compression). ggcr never compresses anything, and the config
// is handed over byte for byte, so the image ID stays the store's.
//
// The package reads the store only through store/content and imports
// nothing of kiln above it.
package v1image

import (
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is one layer blob of a content store as a partial.CompressedLayer.
// Its blob need not be in the store when the Layer is made: one a
// registry is known to hold can be found or mounted there; only
// Compressed needs the bytes.
type Layer struct {
	cs     *content.Store
	blob   ocispec.Descriptor
	diffID digest.Digest
}

// NewLayer is the blob described by blob, whose uncompressed content has
// the digest diffID (blob.Digest itself for a layer stored uncompressed).
func NewLayer(cs *content.Store, blob ocispec.Descriptor, diffID digest.Digest) *Layer {
	return &Layer{cs: cs, blob: blob, diffID: diffID}
}

// Digest is the blob's digest.
func (l *Layer) Digest() (v1.Hash, error) { return v1.NewHash(string(l.blob.Digest)) }

// DiffID is the digest of the uncompressed layer.
func (l *Layer) DiffID() (v1.Hash, error) { return v1.NewHash(string(l.diffID)) }

// Size is the blob's size.
func (l *Layer) Size() (int64, error) { return l.blob.Size, nil }

// MediaType is the blob's media type.
func (l *Layer) MediaType() (types.MediaType, error) { return types.MediaType(l.blob.MediaType), nil }

// Compressed opens the blob as stored: compressed bytes for a compressed
// copy, the tar itself for a layer stored uncompressed (which ggcr sends
// as it is). It fails with content.ErrNotFound if the store lacks it.
func (l *Layer) Compressed() (io.ReadCloser, error) { return l.cs.Open(l.blob.Digest) }

// Image is a manifest, its config and its layers, with blobs in a content
// store, as a partial.CompressedImageCore. It may also be an artifact
// shaped like an image (a kiln build cache): ggcr writes it the same way.
type Image struct {
	manifest  []byte
	mediaType types.MediaType
	config    []byte
	layers    map[v1.Hash]*Layer
}

// Options for Open.
type Options struct {
	// Layers maps a layer's diffID to the blob the image names in its
	// place: normally a compressed copy in the same store (its media type
	// says how it is compressed). Layers not in the map are named as
	// stored. A non-nil map, even an empty one, makes Open render the
	// manifest anew.
	Layers map[digest.Digest]ocispec.Descriptor
	// DockerMediaTypes renders a docker schema 2 manifest: docker's media
	// types for the manifest, the config and gzip or uncompressed layers
	// (zstd keeps the OCI type, which docker lacks).
	DockerMediaTypes bool
}

// Open reads the stored image whose manifest is desc. Without Options it
// is the image exactly as stored: manifest, config and layer blobs byte
// for byte. With Layers or DockerMediaTypes its manifest is the stored one
// (annotations included) over the given blobs and media types; the config
// stays byte for byte either way.
func Open(cs *content.Store, desc ocispec.Descriptor, opts Options) (*Image, error) {
	im, err := cs.ReadImage(desc)
	if err != nil {
		return nil, err
	}
	config, err := cs.ReadBlob(im.Manifest.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	m := im.Manifest
	m.Layers = make([]ocispec.Descriptor, len(im.Manifest.Layers))
	for i, l := range im.Manifest.Layers {
		if b, ok := opts.Layers[im.Config.RootFS.DiffIDs[i]]; ok {
			l = b
		}
		if opts.DockerMediaTypes {
			l.MediaType = dockerLayerType(l.MediaType)
		}
		m.Layers[i] = l
	}
	var raw []byte
	if opts.Layers == nil && !opts.DockerMediaTypes {
		if raw, err = cs.ReadBlob(desc.Digest); err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
	} else {
		if opts.DockerMediaTypes {
			m.MediaType, m.Config.MediaType = string(types.DockerManifestSchema2), content.MediaTypeDockerConfig
		}
		if raw, err = json.Marshal(m); err != nil {
			return nil, err
		}
	}
	return newImage(cs, raw, m, config, im.Config.RootFS.DiffIDs)
}

// New is the image (or artifact) whose manifest is m, rendered as JSON,
// with the config blob config, sent byte for byte. diffIDs are the
// uncompressed digests of m's layers, in order.
func New(cs *content.Store, m ocispec.Manifest, config []byte, diffIDs []digest.Digest) (*Image, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return newImage(cs, raw, m, config, diffIDs)
}

func newImage(cs *content.Store, raw []byte, m ocispec.Manifest, config []byte, diffIDs []digest.Digest) (*Image, error) {
	if len(diffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest: %d layers but %d diff IDs", len(m.Layers), len(diffIDs))
	}
	img := &Image{manifest: raw, mediaType: types.MediaType(m.MediaType), config: config, layers: map[v1.Hash]*Layer{}}
	if img.mediaType == "" {
		img.mediaType = types.OCIManifestSchema1
	}
	for i, l := range m.Layers {
		h, err := v1.NewHash(string(l.Digest))
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		img.layers[h] = NewLayer(cs, l, diffIDs[i])
	}
	return img, nil
}

// RawManifest is the manifest's JSON.
func (i *Image) RawManifest() ([]byte, error) { return i.manifest, nil }

// MediaType is the manifest's media type.
func (i *Image) MediaType() (types.MediaType, error) { return i.mediaType, nil }

// RawConfigFile is the config blob, byte for byte.
func (i *Image) RawConfigFile() ([]byte, error) { return i.config, nil }

// LayerByDigest is the layer whose blob has digest h.
func (i *Image) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("unknown blob %s", h)
}

// V1 is the image as a v1.Image (partial derives the other methods).
func (i *Image) V1() v1.Image {
	img, _ := partial.CompressedToImage(i) // never fails
	return img
}

// dockerLayerType is docker's media type for an OCI layer media type;
// zstd and types docker has no name for stay as they are.
func dockerLayerType(mt string) string {
	switch mt {
	case ocispec.MediaTypeImageLayerGzip:
		return content.MediaTypeDockerLayerGz
	case ocispec.MediaTypeImageLayer:
		return content.MediaTypeDockerLayer
	}
	return mt
}
