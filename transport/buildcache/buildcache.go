// Package buildcache exports build cache records together with their
// layers, so that a build on another machine hits them, and imports them
// back. The format is one OCI artifact (see docs/cache-format.md):
//
//	manifest  artifactType application/vnd.kiln.buildcache.v1
//	config    application/vnd.kiln.buildcache.config.v1+json: the records
//	layers    each layer any record uses, compressed, annotated with its diffID
//
// stored in an OCI image layout directory (type=local) or a registry
// (type=registry). Importing reads only the manifest and the records; a
// layer blob is fetched only when a cache hit needs it.
package buildcache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/layer"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types and annotations of the format.
const (
	ArtifactType     = "application/vnd.kiln.buildcache.v1"
	ConfigMediaType  = "application/vnd.kiln.buildcache.config.v1+json"
	AnnotationDiffID = "io.kiln.layer.diffid"
)

// Config is the artifact's config blob.
type Config struct {
	Records []*record.Record `json:"records"`
}

// Source is an imported cache: where to fetch the layers its records use.
type Source struct {
	name   string
	layers map[digest.Digest]ocispec.Descriptor // diffID → compressed blob
	open   func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error)
}

// Has reports whether the source can provide layer diffID.
func (s *Source) Has(diffID digest.Digest) bool {
	_, ok := s.layers[diffID]
	return ok
}

// Fetch downloads layer diffID into the store (decompressed, verified
// against its diffID, committed atomically).
func (s *Source) Fetch(ctx context.Context, st *store.Store, diffID digest.Digest) error {
	desc, ok := s.layers[diffID]
	if !ok {
		return fmt.Errorf("cache %s: no layer %s", s.name, diffID)
	}
	rc, err := s.open(ctx, desc)
	if err != nil {
		return fmt.Errorf("cache %s: layer %s: %w", s.name, diffID, err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	r, err := layer.Decompress(layer.DetectCompression(br), br)
	if err != nil {
		return fmt.Errorf("cache %s: layer %s: %w", s.name, diffID, err)
	}
	defer r.Close()
	if _, err := st.Content.Write(ctx, r, diffID); err != nil {
		return fmt.Errorf("cache %s: layer %s: %w", s.name, diffID, err)
	}
	return nil
}

// importRecords adds the records to the local store (those it lacks) and
// returns a source for their layers.
func importRecords(st *store.Store, name string, cfg Config, m ocispec.Manifest, open func(context.Context, ocispec.Descriptor) (io.ReadCloser, error)) (*Source, int, error) {
	src := &Source{name: name, layers: map[digest.Digest]ocispec.Descriptor{}, open: open}
	for _, l := range m.Layers {
		d := digest.Digest(l.Annotations[AnnotationDiffID])
		if d.Validate() != nil {
			return nil, 0, fmt.Errorf("cache %s: layer %s has no valid %s annotation", name, l.Digest, AnnotationDiffID)
		}
		src.layers[d] = l
	}
	n := 0
	for _, r := range cfg.Records {
		if r == nil || r.Key.Validate() != nil {
			continue
		}
		for _, l := range r.Layers {
			if !src.Has(l.DiffID) {
				return nil, 0, fmt.Errorf("cache %s: record %s uses layer %s that the cache does not hold", name, r.Key, l.DiffID)
			}
		}
		if _, err := st.Records.Get(r.Key); err == nil {
			continue
		}
		if err := st.Records.Put(r); err != nil {
			return nil, 0, err
		}
		n++
	}
	return src, n, nil
}

// layersOf lists the distinct layers the records use, sorted by diffID.
func layersOf(records []*record.Record) []record.Layer {
	seen := map[digest.Digest]record.Layer{}
	for _, r := range records {
		for _, l := range r.Layers {
			seen[l.DiffID] = l
		}
	}
	out := make([]record.Layer, 0, len(seen))
	for _, l := range seen {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DiffID < out[j].DiffID })
	return out
}
