package buildcache

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/v1image"
	"github.com/kiln-build/kiln/transport/registry"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// parseRef parses a cache reference with the registry policy every kiln
// path shares (registry.Config): plain HTTP only for loopback hosts and
// the configured insecure ones.
func parseRef(cfg registry.Config, ref string) (name.Reference, error) {
	if ref == "" {
		return nil, fmt.Errorf("type=registry needs ref=HOST/REPO:TAG")
	}
	r, err := cfg.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("cache ref %q: %w", ref, err)
	}
	return r, nil
}

// ExportRegistry pushes the cache artifact to ref, reached as cfg says
// (plain-HTTP hosts, CAs, credentials): the layers and the records
// (skipping blobs the registry already has), then the manifest. The
// layers are the compressed copies in the store, sent as they are.
func ExportRegistry(ctx context.Context, st *store.Store, records []*record.Record, ref string, comp compression.Options, cfg registry.Config) error {
	r, err := parseRef(cfg, ref)
	if err != nil {
		return err
	}
	opts, err := cfg.RemoteOptions(ctx)
	if err != nil {
		return err
	}
	m, config, err := build(ctx, st, records, comp)
	if err != nil {
		return err
	}
	diffIDs := make([]digest.Digest, len(m.Layers))
	for i, l := range m.Layers {
		diffIDs[i] = digest.Digest(l.Annotations[AnnotationDiffID])
	}
	img, err := v1image.New(st.Content, m, config, diffIDs)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img.V1(), opts...); err != nil {
		return fmt.Errorf("push cache to %s: %w", ref, err)
	}
	return nil
}

// ImportRegistry reads the cache artifact at ref, reached as cfg says:
// manifest and records now, layers later, one blob per cache hit that
// needs it.
func ImportRegistry(ctx context.Context, st *store.Store, ref string, cfg registry.Config) (*Source, error) {
	r, err := parseRef(cfg, ref)
	if err != nil {
		return nil, err
	}
	opts, err := cfg.RemoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil || m.ArtifactType != ArtifactType {
		return nil, fmt.Errorf("cache %s: not a kiln build cache", ref)
	}
	blob := func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		l, err := remote.Layer(r.Context().Digest(string(d.Digest)), append(opts, remote.WithContext(ctx))...)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	rc, err := blob(ctx, m.Config)
	if err != nil {
		return nil, fmt.Errorf("cache %s: records: %w", ref, err)
	}
	defer rc.Close()
	cb, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("cache %s: records: %w", ref, err)
	}
	if digest.FromBytes(cb) != m.Config.Digest {
		return nil, fmt.Errorf("cache %s: records do not match their digest", ref)
	}
	var records Config
	if err := json.Unmarshal(cb, &records); err != nil {
		return nil, fmt.Errorf("cache %s: records: %w", ref, err)
	}
	src, _, err := importRecords(st, ref, records, m, blob)
	return src, err
}
