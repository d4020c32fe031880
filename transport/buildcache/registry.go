package buildcache

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// parseRef parses a registry reference; plain HTTP is allowed only for
// localhost and 127.0.0.1 (and KILN_INSECURE_REGISTRIES hosts).
func parseRef(ref string) (name.Reference, []remote.Option, error) {
	if ref == "" {
		return nil, nil, fmt.Errorf("type=registry needs ref=HOST/REPO:TAG")
	}
	var opts []name.Option
	host := strings.Split(ref, "/")[0]
	if isInsecureHost(host) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("cache ref %q: %w", ref, err)
	}
	return r, []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(http.DefaultTransport)}, nil
}

func isInsecureHost(host string) bool {
	h := strings.Split(host, ":")[0]
	return h == "localhost" || h == "127.0.0.1"
}

// storeLayer is a compressed layer blob in kiln's store, as a ggcr layer
// (so ggcr uploads it as is, without compressing again).
type storeLayer struct {
	cs     *content.Store
	desc   ocispec.Descriptor
	diffID digest.Digest
}

func (l storeLayer) Digest() (v1.Hash, error) { return v1.NewHash(string(l.desc.Digest)) }
func (l storeLayer) DiffID() (v1.Hash, error) { return v1.NewHash(string(l.diffID)) }
func (l storeLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l storeLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}
func (l storeLayer) Compressed() (io.ReadCloser, error) { return l.cs.Open(l.desc.Digest) }

// rawManifest is a manifest ggcr can Put as is.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// ExportRegistry pushes the cache artifact to ref: the layers (skipping
// blobs the registry already has), the records, then the manifest.
func ExportRegistry(ctx context.Context, st *store.Store, records []*record.Record, ref string, comp compression.Options) error {
	r, opts, err := parseRef(ref)
	if err != nil {
		return err
	}
	opts = append(opts, remote.WithContext(ctx))
	m, cfg, err := build(ctx, st, records, comp)
	if err != nil {
		return err
	}
	repo := r.Context()
	for _, d := range m.Layers {
		l, err := partial.CompressedToLayer(storeLayer{cs: st.Content, desc: d, diffID: digest.Digest(d.Annotations[AnnotationDiffID])})
		if err != nil {
			return err
		}
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return fmt.Errorf("push cache layer %s: %w", d.Digest, err)
		}
	}
	if err := remote.WriteLayer(repo, static.NewLayer(cfg, types.MediaType(ConfigMediaType)), opts...); err != nil {
		return fmt.Errorf("push cache records: %w", err)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := remote.Put(r, rawManifest{b: mb, mt: types.OCIManifestSchema1}, opts...); err != nil {
		return fmt.Errorf("push cache manifest to %s: %w", ref, err)
	}
	return nil
}

// ImportRegistry reads the cache artifact at ref: manifest and records now,
// layers later, one blob per cache hit that needs it.
func ImportRegistry(ctx context.Context, st *store.Store, ref string) (*Source, error) {
	r, opts, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	opts = append(opts, remote.WithContext(ctx))
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
	var cfg Config
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, fmt.Errorf("cache %s: records: %w", ref, err)
	}
	src, _, err := importRecords(st, ref, cfg, m, blob)
	return src, err
}
