package buildcache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ExportLocal writes records and their layers (compressed with comp) as
// the artifact tagged tag in the OCI layout directory dir, creating it if
// needed and reusing blobs it already has. index.json is replaced
// atomically, so a reader sees the old or the new cache.
func ExportLocal(ctx context.Context, st *store.Store, records []*record.Record, dir, tag string, comp compression.Options) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	put := func(d ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
		p := filepath.Join(blobs, d.Digest.Encoded())
		if fi, err := os.Stat(p); err == nil && fi.Size() == d.Size {
			return nil
		}
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		return atomicfile.Write(p, 0o644, func(w io.Writer) error {
			v := d.Digest.Verifier()
			if _, err := io.Copy(io.MultiWriter(w, v), rc); err != nil {
				return err
			}
			if !v.Verified() {
				return fmt.Errorf("blob %s: content does not match its digest", d.Digest)
			}
			return nil
		})
	}
	m, cfg, err := build(ctx, st, records, comp)
	if err != nil {
		return err
	}
	for _, l := range m.Layers {
		l := l
		if err := put(l, func() (io.ReadCloser, error) { return st.Content.Open(l.Digest) }); err != nil {
			return fmt.Errorf("export cache layer: %w", err)
		}
	}
	bytesBlob := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	if err := put(m.Config, bytesBlob(cfg)); err != nil {
		return err
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if err := put(mdesc, bytesBlob(mb)); err != nil {
		return err
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := atomicfile.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), layout, 0o644); err != nil {
		return err
	}
	idx := readIndex(dir)
	var kept []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] != tag {
			kept = append(kept, d)
		}
	}
	mdesc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	idx.Manifests = append(kept, mdesc)
	idx.SchemaVersion, idx.MediaType = 2, ocispec.MediaTypeImageIndex
	ib, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644)
}

// build makes the artifact's manifest and config for records, compressing
// every layer they use (once; the compressed blobs are kept in the store).
func build(ctx context.Context, st *store.Store, records []*record.Record, comp compression.Options) (ocispec.Manifest, []byte, error) {
	sort.Slice(records, func(i, j int) bool { return records[i].Key < records[j].Key })
	cfg, err := json.Marshal(Config{Records: records})
	if err != nil {
		return ocispec.Manifest{}, nil, err
	}
	cc := compression.New(st.Content)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:       []ocispec.Descriptor{},
	}
	for _, l := range layersOf(records) {
		d, err := cc.Compress(ctx, l.DiffID, comp)
		if err != nil {
			return ocispec.Manifest{}, nil, fmt.Errorf("compress layer %s: %w", l.DiffID, err)
		}
		d.MediaType = comp.MediaType()
		d.Annotations = map[string]string{AnnotationDiffID: string(l.DiffID)}
		m.Layers = append(m.Layers, d)
	}
	return m, cfg, nil
}

// ImportLocal reads the artifact tagged tag from the OCI layout dir: its
// records go into the store now, its layers are fetched on demand through
// the returned source. It returns how many records were new.
func ImportLocal(ctx context.Context, st *store.Store, dir, tag string) (*Source, int, error) {
	idx := readIndex(dir)
	var mdesc *ocispec.Descriptor
	for i, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == tag {
			mdesc = &idx.Manifests[i]
		}
	}
	if mdesc == nil {
		return nil, 0, fmt.Errorf("cache %s: no cache tagged %q", dir, tag)
	}
	fetch := func(_ context.Context, d ocispec.Descriptor) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if err != nil {
			return nil, err
		}
		if digest.FromBytes(b) != d.Digest {
			return nil, fmt.Errorf("blob %s: content does not match its digest", d.Digest)
		}
		return b, nil
	}
	// The manifest and its records (the config), through the one walk;
	// layers are fetched later, only when a cache hit needs them.
	var m ocispec.Manifest
	var cfg Config
	err := content.Walk(ctx, fetch, []ocispec.Descriptor{*mdesc}, func(ctx context.Context, n *content.Node) error {
		b, err := n.Blob(ctx)
		switch {
		case n.Role == content.RoleLayer:
			return nil
		case err != nil:
			return fmt.Errorf("cache %s: %w", dir, err)
		case n.Role == content.RoleManifest:
			if err := json.Unmarshal(b, &m); err != nil || m.ArtifactType != ArtifactType {
				return fmt.Errorf("cache %s: not a kiln build cache", dir)
			}
		case n.Role == content.RoleConfig:
			if err := json.Unmarshal(b, &cfg); err != nil {
				return fmt.Errorf("cache %s: records: %w", dir, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	open := func(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		return os.Open(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
	}
	return importRecords(st, dir, cfg, m, open)
}

func readIndex(dir string) ocispec.Index {
	var idx ocispec.Index
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil {
		json.Unmarshal(b, &idx)
	}
	return idx
}
