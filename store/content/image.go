package content

import (
	"encoding/json"
	"fmt"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types, accepted on input alongside the OCI ones.
const (
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	// MediaTypeDockerManifestList is docker's multi-platform index.
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGz      = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// StoredImage is an image read back from the store.
type StoredImage struct {
	Manifest     ocispec.Manifest
	ManifestDesc ocispec.Descriptor
	Config       dockerspec.DockerOCIImage
	ConfigDesc   ocispec.Descriptor
}

// ID is docker's IMAGE ID: the digest of the config.
func (im *StoredImage) ID() digest.Digest { return im.Manifest.Config.Digest }

// ReadImage loads a manifest and its config.
func (s *Store) ReadImage(desc ocispec.Descriptor) (*StoredImage, error) {
	mb, err := s.ReadBlob(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	im := &StoredImage{ManifestDesc: desc}
	if err := json.Unmarshal(mb, &im.Manifest); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	cb, err := s.ReadBlob(im.Manifest.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := json.Unmarshal(cb, &im.Config); err != nil {
		return nil, fmt.Errorf("config %s: %w", im.Manifest.Config.Digest, err)
	}
	im.ConfigDesc = im.Manifest.Config
	if len(im.Config.RootFS.DiffIDs) != len(im.Manifest.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff IDs", desc.Digest, len(im.Manifest.Layers), len(im.Config.RootFS.DiffIDs))
	}
	return im, nil
}

// WriteImage stores config and a manifest over layers (blobs that must
// already be in the store) and returns the manifest descriptor. Layers are
// kept uncompressed locally, so each layer's digest is its diffID.
func (s *Store) WriteImage(config dockerspec.DockerOCIImage, layers []ocispec.Descriptor) (ocispec.Descriptor, error) {
	cdesc, _, err := s.WriteJSON(config, ocispec.MediaTypeImageConfig)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return s.WriteManifest(cdesc, layers, ocispec.Platform{Architecture: config.Architecture, OS: config.OS})
}

// WriteManifest stores a manifest for a config blob already in the store
// (kept byte for byte, so the image ID survives a load).
func (s *Store) WriteManifest(config ocispec.Descriptor, layers []ocispec.Descriptor, platform ocispec.Platform) (ocispec.Descriptor, error) {
	for _, l := range append([]ocispec.Descriptor{config}, layers...) {
		if _, ok := s.Has(l.Digest); !ok {
			return ocispec.Descriptor{}, fmt.Errorf("blob %s: %w", l.Digest, ErrNotFound)
		}
	}
	config.MediaType = ocispec.MediaTypeImageConfig
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    layers,
	}
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mdesc, _, err := s.WriteJSON(m, ocispec.MediaTypeImageManifest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mdesc.Platform = &platform
	return mdesc, nil
}
