// Pulling: Pull brings images from registries into kiln's store.
//
// A pull resolves the reference with docker's rules, picks the build
// platform's manifest from an index, and downloads the layers the store
// does not hold yet, several at a time. Each layer is verified against its
// digest (and size) as it streams in, decompressed on the fly (gzip, zstd
// or none, told by its magic bytes and checked against its media type) and
// ingested as an uncompressed blob that must match the config's diff_id —
// the store keeps every layer uncompressed, digest = diffID. Blobs are
// ingested into temp files and committed only once verified, and the image
// is tagged only when every blob is in: an interrupted pull leaves no
// partial blob and no tag behind, and a retry fetches only what is missing.

package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/store/layer"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-build/kiln/internal/readers"
	"github.com/kiln-build/kiln/store/content"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// PullOptions for a pull.
type PullOptions struct {
	// Registry says how registries are reached (insecure hosts, CAs,
	// credentials).
	Registry Config
	// Progress receives docker-pull-like lines: one per layer when it is
	// done, then Digest: and Status:. nil: silent.
	Progress io.Writer
	// Jobs bounds concurrent layer downloads (default DefaultJobs).
	Jobs int
	// OS and Arch of the image to pick from an index (default linux and
	// runtime.GOARCH); Variant, if set, is preferred among several.
	OS, Arch, Variant string
}

// PullResult of a successful pull.
type PullResult struct {
	// Name is the store name the image is tagged as (content.NormalizeName
	// of the reference, e.g. docker.io/library/busybox:latest).
	Name string
	// Manifest is the image manifest in the local store (layers
	// uncompressed, so it differs from the registry's).
	Manifest ocispec.Descriptor
	// Config is the image's config (stored byte for byte).
	Config *dockerspec.DockerOCIImage
	// Digest is the manifest (or index) digest in the registry.
	Digest digest.Digest
	// RepoDigest is REPOSITORY@Digest, as docker's RepoDigests show it.
	RepoDigest string
	// Updated is false when the name already pointed at this image.
	Updated bool
	// Fetched counts the layers downloaded (the rest were present).
	Fetched int
}

// PullError is a failed pull: "pull REF: cause".
type PullError struct {
	Ref string
	Err error
}

func (e *PullError) Error() string { return "pull " + e.Ref + ": " + e.Err.Error() }
func (e *PullError) Unwrap() error { return e.Err }

// Pull fetches ref into cs and tags it under its normalized name.
func Pull(ctx context.Context, cs *content.Store, ref string, opts PullOptions) (*PullResult, error) {
	res, err := pull(ctx, cs, ref, opts)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		shown := ref // with the :latest it means, when it has no tag
		if n, perr := reference.ParseNormalizedNamed(ref); perr == nil && reference.IsNameOnly(n) {
			shown = ref + ":latest"
		}
		return nil, &PullError{Ref: shown, Err: Explain(err)}
	}
	return res, nil
}

func pull(ctx context.Context, cs *content.Store, ref string, opts PullOptions) (*PullResult, error) {
	storeName, err := content.NormalizeName(ref)
	if err != nil {
		return nil, err
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, err
	}
	r, err := opts.Registry.Parse(ref)
	if err != nil {
		return nil, err
	}
	ropts, err := opts.Registry.RemoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	if opts.OS == "" {
		opts.OS = "linux"
	}
	if opts.Arch == "" {
		opts.Arch = runtime.GOARCH
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs
	}
	p := &Progress{W: opts.Progress}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, err
	}
	if t, ok := r.(name.Tag); ok {
		p.Printf("%s: Pulling from %s\n", t.TagStr(), reference.Path(named))
	} else {
		p.Printf("Pulling from %s\n", reference.Path(named))
	}
	repoDigest := reference.TrimNamed(named).String() + "@" + desc.Digest.String()
	img, err := pickImage(ctx, desc, opts)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if m.Config.MediaType != "" && !isConfigType(string(m.Config.MediaType)) {
		return nil, fmt.Errorf("%s is not a container image (config media type %s)", ref, m.Config.MediaType)
	}
	configDigest := digest.Digest(m.Config.Digest.String())
	if err := configDigest.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: config digest: %w", err)
	}

	// The config: from the store if it is there, else from the registry
	// (verified, kept byte for byte).
	rawConfig, err := cs.ReadBlob(configDigest)
	if err != nil {
		if rawConfig, err = img.RawConfigFile(); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if got := digest.FromBytes(rawConfig); got != configDigest {
			return nil, fmt.Errorf("config: digest mismatch: got %s, manifest says %s", got, configDigest)
		}
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", configDigest, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d rootfs.diff_ids in its config", ref, len(m.Layers), len(diffIDs))
	}
	for i, l := range m.Layers {
		if err := checkLayerType(string(l.MediaType)); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		if err := diffIDs[i].Validate(); err != nil || diffIDs[i].Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("config: rootfs.diff_ids[%d] %q: not a sha256 digest", i, diffIDs[i])
		}
	}

	// Layers: present ones are reported, missing ones fetched, each
	// distinct diffID once, a few at a time.
	type job struct {
		layer  v1.Descriptor
		diffID digest.Digest
	}
	var jobs []job
	seen := map[digest.Digest]bool{}
	for i, l := range m.Layers {
		d := diffIDs[i]
		if seen[d] {
			continue
		}
		seen[d] = true
		if _, ok := cs.Has(d); ok {
			p.Printf("%s: Already exists\n", short(digest.Digest(l.Digest.String())))
			continue
		}
		jobs = append(jobs, job{layer: l, diffID: d})
	}
	if len(jobs) > 0 {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Jobs)
		for _, j := range jobs {
			g.Go(func() error {
				return fetchLayer(gctx, cs, img, j.layer, j.diffID, p)
			})
		}
		if err := g.Wait(); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
	}

	// Everything is in: config, manifest, then the tag.
	if _, err := cs.WriteSized(ctx, bytes.NewReader(rawConfig), configDigest, m.Config.Size); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	layers := make([]ocispec.Descriptor, len(diffIDs))
	for i, d := range diffIDs {
		size, ok := cs.Has(d)
		if !ok {
			return nil, fmt.Errorf("layer %s: %w", d, content.ErrNotFound)
		}
		layers[i] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}
	}
	mdesc, err := cs.WriteManifest(
		ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: configDigest, Size: int64(len(rawConfig))},
		layers,
		ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion},
	)
	if err != nil {
		return nil, err
	}
	prev, perr := cs.Resolve(storeName)
	updated := perr != nil || prev.Digest != mdesc.Digest
	if err := cs.TagWith(storeName, mdesc, map[string]string{content.AnnotationRepoDigest: repoDigest}); err != nil {
		return nil, fmt.Errorf("tag %s: %w", storeName, err)
	}
	p.Printf("Digest: %s\n", desc.Digest)
	if updated {
		p.Printf("Status: Downloaded newer image for %s\n", content.FamiliarName(storeName))
	} else {
		p.Printf("Status: Image is up to date for %s\n", content.FamiliarName(storeName))
	}
	return &PullResult{
		Name: storeName, Manifest: mdesc, Config: &cfg,
		Digest: digest.Digest(desc.Digest.String()), RepoDigest: repoDigest,
		Updated: updated, Fetched: len(jobs),
	}, nil
}

// pickImage returns the image a descriptor stands for: itself, or from an
// index (nested ones too) the manifest for opts' platform.
func pickImage(ctx context.Context, desc *remote.Descriptor, opts PullOptions) (v1.Image, error) {
	switch {
	case desc.MediaType.IsImage():
		return desc.Image()
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		return pickFromIndex(ctx, idx, opts)
	case desc.MediaType == types.DockerManifestSchema1 || desc.MediaType == types.DockerManifestSchema1Signed:
		return nil, fmt.Errorf("manifest %s: docker schema 1 images are not supported", desc.Digest)
	}
	return nil, fmt.Errorf("manifest %s: unsupported media type %q", desc.Digest, desc.MediaType)
}

// pickFromIndex walks from root down the indexes that hold opts' platform
// to its image, fetching only the indexes on that path.
func pickFromIndex(ctx context.Context, root v1.ImageIndex, opts PullOptions) (v1.Image, error) {
	rootDigest, err := root.Digest()
	if err != nil {
		return nil, err
	}
	rootType, err := root.MediaType()
	if err != nil {
		return nil, err
	}
	indexes := map[digest.Digest]v1.ImageIndex{digest.Digest(rootDigest.String()): root}
	// Only indexes are read through the walk, each once it is on the path.
	fetch := func(_ context.Context, d ocispec.Descriptor) ([]byte, error) {
		idx, ok := indexes[d.Digest]
		if !ok {
			return nil, fmt.Errorf("index %s: not on the path to the image", d.Digest)
		}
		return idx.RawManifest()
	}
	chosen := map[*content.Node]int{} // index → the position of its pick
	var img v1.Image
	rootDesc := ocispec.Descriptor{MediaType: string(rootType), Digest: digest.Digest(rootDigest.String())}
	err = content.Walk(ctx, fetch, []ocispec.Descriptor{rootDesc}, func(ctx context.Context, n *content.Node) error {
		if n.Role != content.RoleManifest {
			return content.SkipChildren
		}
		d := n.Descriptor
		if n.Parent != nil {
			if chosen[n.Parent] != n.Index {
				return content.SkipChildren
			}
			parent := indexes[n.Parent.Descriptor.Digest]
			h, err := v1.NewHash(string(d.Digest))
			if err != nil {
				return err
			}
			if !content.IsIndexType(d.MediaType) {
				img, err = parent.Image(h)
				if err != nil {
					return err
				}
				return content.SkipChildren
			}
			if indexes[d.Digest], err = parent.ImageIndex(h); err != nil {
				return err
			}
		}
		im, err := indexes[d.Digest].IndexManifest()
		if err != nil {
			return err
		}
		i, err := pickPlatform(im.Manifests, d.Digest.String(), opts)
		chosen[n] = i
		return err
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// pickPlatform returns the position in an index's manifests of the image
// (or index) for opts' platform.
func pickPlatform(ms []v1.Descriptor, what string, opts PullOptions) (int, error) {
	var cands []int
	for i, m := range ms {
		if m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		if m.Platform != nil && m.Platform.OS == "unknown" {
			continue
		}
		if !m.MediaType.IsImage() && !m.MediaType.IsIndex() {
			continue
		}
		cands = append(cands, i)
	}
	var match []int
	var have []string
	for _, i := range cands {
		m := ms[i]
		if m.Platform == nil {
			have = append(have, "unknown")
			continue
		}
		if m.Platform.OS == opts.OS && m.Platform.Architecture == opts.Arch {
			match = append(match, i)
		}
		have = append(have, platformString(m.Platform))
	}
	if len(match) == 0 && len(cands) == 1 && ms[cands[0]].Platform == nil {
		match = cands // a one-image index without platforms
	}
	if len(match) == 0 {
		sort.Strings(have)
		if len(have) == 0 {
			return -1, fmt.Errorf("index %s lists no images", what)
		}
		return -1, fmt.Errorf("no image for %s/%s in index %s (it has %s)", opts.OS, opts.Arch, what, strings.Join(have, ", "))
	}
	pick := match[0]
	for _, i := range match {
		if m := ms[i]; opts.Variant != "" && m.Platform != nil && m.Platform.Variant == opts.Variant {
			pick = i
			break
		}
	}
	return pick, nil
}

func platformString(p *v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func isConfigType(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == content.MediaTypeDockerConfig
}

// Layer media types kiln can unpack, and the compression each promises.
var layerTypes = map[string]layer.Compression{
	ocispec.MediaTypeImageLayer:                                 layer.Uncompressed,
	ocispec.MediaTypeImageLayerGzip:                             layer.Gzip,
	ocispec.MediaTypeImageLayerZstd:                             layer.Zstd,
	ocispec.MediaTypeImageLayerNonDistributable:                 layer.Uncompressed, //nolint:staticcheck // still found in the wild
	ocispec.MediaTypeImageLayerNonDistributableGzip:             layer.Gzip,         //nolint:staticcheck
	ocispec.MediaTypeImageLayerNonDistributableZstd:             layer.Zstd,         //nolint:staticcheck
	content.MediaTypeDockerLayer:                                layer.Uncompressed,
	content.MediaTypeDockerLayerGz:                              layer.Gzip,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": layer.Gzip,
}

func checkLayerType(mt string) error {
	if mt == "" {
		return nil // told by the content
	}
	if _, ok := layerTypes[mt]; !ok {
		return fmt.Errorf("unsupported layer media type %q", mt)
	}
	return nil
}

// fetchLayer streams one layer from the registry into the store: ggcr's
// reader checks the compressed bytes against the layer digest and size at
// the end; the uncompressed tar goes into a temp blob committed only if it
// matches the diffID.
func fetchLayer(ctx context.Context, cs *content.Store, img v1.Image, l v1.Descriptor, diffID digest.Digest, p *Progress) error {
	start := time.Now()
	remote, err := img.LayerByDigest(l.Digest)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	rc, err := remote.Compressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, Explain(err))
	}
	defer rc.Close()
	counted := &readers.Counting{R: readers.WithContext(ctx, rc)}
	br := bufio.NewReaderSize(counted, 1<<20)
	comp := layer.DetectCompression(br)
	if want, ok := layerTypes[string(l.MediaType)]; ok && want != layer.Uncompressed && want != comp {
		return fmt.Errorf("layer %s: media type %s says %s, but the content is %s", l.Digest, l.MediaType, want, comp)
	}
	w, err := cs.NewWriter()
	if err != nil {
		return err
	}
	defer w.Close()
	dr, err := layer.Decompress(comp, br)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	_, err = io.Copy(w, dr)
	dr.Close()
	if err == nil {
		// Whatever follows the compressed stream is still part of the
		// blob: read to the end so its digest is checked.
		_, err = io.Copy(io.Discard, br)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return fmt.Errorf("layer %s: connection to the registry lost after %s of %s: %w", l.Digest, HumanSize(counted.N), HumanSize(l.Size), err)
		}
		return fmt.Errorf("layer %s: %w", l.Digest, Explain(err))
	}
	if l.Size > 0 && counted.N != l.Size {
		return fmt.Errorf("layer %s: got %d bytes, manifest says %d", l.Digest, counted.N, l.Size)
	}
	if _, err := w.Commit(diffID, content.UnknownSize); err != nil {
		return fmt.Errorf("layer %s: uncompressed content does not match rootfs.diff_id %s: %w", l.Digest, diffID, err)
	}
	p.Printf("%s: Pull complete  %s in %.1fs\n", short(digest.Digest(l.Digest.String())), HumanSize(counted.N), time.Since(start).Seconds())
	return nil
}
