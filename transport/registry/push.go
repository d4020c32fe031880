// Pushing: Push sends images from kiln's store to registries
// (`kiln push`, `kiln build --push`, `-o type=registry` / `type=image,push=true`).
//
// The store keeps every layer uncompressed (blob digest = diffID). A push
// compresses each layer with exporter/compression — gzip in parallel
// (pgzip) by default, or zstd, or none — which remembers the compressed
// blob, so a layer is compressed once and every later push (or -o
// type=oci) reuses it. The manifest is rewritten over the compressed
// layer descriptors with OCI media types; the config is sent byte for
// byte, so the image ID in the registry is the one in the store.
//
// go-containerregistry's remote package does the protocol (auth, token
// scopes, chunk-less monolithic uploads, retries), fed with layers whose
// bytes are the stored compressed blobs: it never compresses anything
// itself. Each layer is uploaded as soon as its compression is done, so
// compressing one layer overlaps with uploading another. Blobs the
// repository already has are not sent again (HEAD); a blob kiln knows to
// be in another repository of the same registry is mounted from there
// (see Source).

package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/v1image"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Defaults for Options.
const (
	// DefaultJobs is how many layers download or upload at once (docker's
	// default for max-concurrent-uploads is 5, ggcr's 4).
	DefaultJobs = 4
	// compressJobs is how many layers compress at once: pgzip and zstd
	// already use every CPU for a big layer; small ones gain from running
	// side by side.
	compressJobs = 3
)

// PushOptions for Push.
type PushOptions struct {
	// Registry says how registries are reached: plain-HTTP hosts, extra
	// CAs, credentials (default: the docker config's keychain).
	Registry Config
	// Compression of the layers (default gzip at its default level).
	Compression compression.Options
	// ForceCompression compresses every layer as asked even when the
	// registry holds a copy compressed with the same algorithm at another
	// level (or by another tool), which is otherwise reused as is.
	ForceCompression bool
	// DockerMediaTypes writes a docker schema 2 manifest with docker's
	// media types instead of OCI's (BuildKit's oci-mediatypes=false).
	// zstd layers keep the OCI zstd type, which docker lacks.
	DockerMediaTypes bool
	// Progress receives docker-push-like lines, one per layer state
	// (not the final "TAG: digest: ... size: N", which is the caller's);
	// nil is silent.
	Progress io.Writer
	// Jobs bounds concurrent layer uploads (default DefaultJobs).
	Jobs int
}

// PushResult of a successful push.
type PushResult struct {
	// Ref is the reference pushed to, in full (host/repo:tag).
	Ref string
	// Tag is the tag alone.
	Tag string
	// Digest and Size of the manifest in the registry (it differs from
	// the store's manifest: its layers are the compressed blobs).
	Digest digest.Digest
	Size   int64
	// RepoDigest is REPOSITORY@Digest, as docker shows it.
	RepoDigest string
	// Layers counts the distinct layers by what happened to them.
	Pushed, Existed, Mounted int
}

// PushError is a failed push: "push REF: cause".
type PushError struct {
	Ref string
	Err error
}

func (e *PushError) Error() string { return "push " + e.Ref + ": " + e.Err.Error() }
func (e *PushError) Unwrap() error { return e.Err }

// errNoLocalCopy is what a layer kiln knows only from a registry returns
// when ggcr wants its bytes: it could be neither found nor mounted.
var errNoLocalCopy = errors.New("no local copy of this compressed blob")

// Push sends the stored image whose manifest is desc to dest
// (REGISTRY/REPO[:TAG], docker's rules; the tag defaults to latest).
func Push(ctx context.Context, cs *content.Store, desc ocispec.Descriptor, dest string, opts PushOptions) (*PushResult, error) {
	res, err := push(ctx, cs, desc, dest, opts)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		return nil, &PushError{Ref: dest, Err: err}
	}
	return res, nil
}

// layerState is what happened to one distinct layer.
type layerState int

const (
	statePushed layerState = iota
	stateExisted
	stateMounted
)

// layerJob is one distinct layer of the image.
type layerJob struct {
	diffID digest.Digest
	desc   ocispec.Descriptor // the blob as the manifest names it (set when done)
	state  layerState
	from   string // repository it was mounted from
}

func push(ctx context.Context, cs *content.Store, desc ocispec.Descriptor, dest string, opts PushOptions) (*PushResult, error) {
	if opts.Compression.Algorithm == "" {
		opts.Compression = compression.Options{Algorithm: compression.Gzip, Level: compression.DefaultGzipLevel}
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs
	}
	ref, tag, err := parseDest(opts.Registry, dest)
	if err != nil {
		return nil, err
	}
	repo := ref.Context()
	host := repo.RegistryStr()
	im, err := cs.ReadImage(desc)
	if err != nil {
		return nil, err
	}
	rawConfig, err := cs.ReadBlob(im.Manifest.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	diffIDs := im.Config.RootFS.DiffIDs
	for i, l := range im.Manifest.Layers {
		// Stored layers are uncompressed: the blob digest is the diffID.
		if l.Digest != diffIDs[i] {
			return nil, fmt.Errorf("image %s: layer %d is not stored uncompressed", desc.Digest, i)
		}
	}

	ropts, err := opts.Registry.RemoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := opts.Registry.Transport()
	if err != nil {
		return nil, err
	}
	obs := &observer{next: tr}
	ropts = append(ropts, remote.WithTransport(obs), remote.WithJobs(opts.Jobs))
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, err
	}

	p := &Progress{W: opts.Progress}
	named, err := reference.ParseNormalizedNamed(dest)
	if err != nil {
		return nil, fmt.Errorf("invalid reference format %q: %w", dest, err)
	}
	p.Printf("The push refers to repository [%s]\n", reference.TrimNamed(named).String())

	// The distinct layers, top first in the progress like docker.
	var jobs []*layerJob
	byDiffID := map[digest.Digest]*layerJob{}
	for i := len(diffIDs) - 1; i >= 0; i-- {
		if byDiffID[diffIDs[i]] != nil {
			continue
		}
		j := &layerJob{diffID: diffIDs[i]}
		byDiffID[j.diffID] = j
		jobs = append(jobs, j)
		p.Printf("%s: Preparing\n", short(j.diffID))
	}

	// The config first: it is small, needed anyway, and its upload checks
	// the connection and the credentials before any layer is compressed.
	cl := static.NewLayer(rawConfig, types.MediaType(ocispec.MediaTypeImageConfig))
	if err := pusher.Upload(ctx, repo, cl); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, explain(err, host)
	}

	comp := compression.New(cs)
	compressSem := make(chan struct{}, compressJobs)
	uploadSem := make(chan struct{}, opts.Jobs)
	g, gctx := errgroup.WithContext(ctx)
	for _, j := range jobs {
		g.Go(func() error {
			if err := pushLayer(gctx, cs, comp, pusher, repo, obs, p, j, opts, compressSem, uploadSem); err != nil {
				if gctx.Err() != nil && errors.Is(err, gctx.Err()) && ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("layer %s: %w", short(j.diffID), explain(err, host))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}

	// The manifest over the blobs as the registry now holds them.
	blobs := make(map[digest.Digest]ocispec.Descriptor, len(jobs))
	for _, j := range jobs {
		blobs[j.diffID] = j.desc
	}
	pushed, err := v1image.Open(cs, desc, v1image.Options{Layers: blobs, DockerMediaTypes: opts.DockerMediaTypes})
	if err != nil {
		return nil, err
	}
	img := pushed.V1()
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	// Every layer is in the repository; this sends the config (unless
	// it is there) and the manifest.
	if err := pusher.Push(ctx, ref, img); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, explain(err, host)
	}
	mdigest := digest.FromBytes(rawManifest)
	res := &PushResult{
		Ref:        ref.Name(),
		Tag:        tag,
		Digest:     mdigest,
		Size:       int64(len(rawManifest)),
		RepoDigest: reference.TrimNamed(named).String() + "@" + mdigest.String(),
	}
	pm, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	manifestType := map[digest.Digest]string{}
	for i, l := range pm.Layers {
		manifestType[diffIDs[i]] = string(l.MediaType)
	}
	for _, j := range jobs {
		switch j.state {
		case statePushed:
			res.Pushed++
		case stateExisted:
			res.Existed++
		case stateMounted:
			res.Mounted++
		}
		// Remembered for mounts into other repositories later; a hint only.
		_ = RememberSources(cs, j.diffID, Source{
			Registry: host, Repository: repo.RepositoryStr(),
			Digest: j.desc.Digest, Size: j.desc.Size, MediaType: manifestType[j.diffID],
		})
	}
	// Like docker, a local name that is the pushed reference records the
	// digest it has in the registry (RepoDigests).
	_ = cs.RecordRepoDigest(dest, desc.Digest, res.RepoDigest)
	return res, nil
}

// parseDest parses where to push: a tagged (or untagged, then :latest)
// reference; digests are refused (the manifest kiln sends is new).
func parseDest(cfg Config, dest string) (name.Tag, string, error) {
	named, err := reference.ParseNormalizedNamed(dest)
	if err != nil {
		return name.Tag{}, "", err
	}
	if _, ok := named.(reference.Digested); ok {
		return name.Tag{}, "", fmt.Errorf("cannot push to a digest reference; give a tag")
	}
	named = reference.TagNameOnly(named)
	tag := named.(reference.Tagged).Tag()
	r, err := cfg.Parse(named.String())
	if err != nil {
		return name.Tag{}, "", err
	}
	t, ok := r.(name.Tag)
	if !ok {
		return name.Tag{}, "", fmt.Errorf("cannot push to %s: not a tag", dest)
	}
	return t, tag, nil
}

// pushLayer gets one layer into the repository: a blob the registry is
// known to hold is found (HEAD) or mounted; otherwise the layer is
// compressed (or its remembered compression reused) and uploaded unless
// the repository has it.
func pushLayer(ctx context.Context, cs *content.Store, comp *compression.Cache, pusher *remote.Pusher, repo name.Repository,
	obs *observer, p *Progress, j *layerJob, opts PushOptions, compressSem, uploadSem chan struct{}) error {
	host := repo.RegistryStr()
	// Blobs are named with OCI media types here; the manifest renders
	// docker's when asked (v1image).
	want := opts.Compression.MediaType()

	upload := func(l *uploadLayer, mountFrom string) error {
		layer, err := partial.CompressedToLayer(l)
		if err != nil {
			return err
		}
		if mountFrom != "" && mountFrom != repo.RepositoryStr() {
			// Same registry, another repository: ggcr asks for a mount.
			if src, err := name.NewRepository(host+"/"+mountFrom, registryOpts(repo)...); err == nil {
				layer = &remote.MountableLayer{Layer: layer, Reference: src.Tag("latest")}
			}
		}
		select {
		case uploadSem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-uploadSem }()
		return pusher.Upload(ctx, repo, layer)
	}
	finish := func(l *uploadLayer) {
		j.desc = l.desc
		switch {
		case l.opened.Load():
			j.state = statePushed
			p.Printf("%s: Pushed  %s in %.1fs\n", short(j.diffID), HumanSize(l.desc.Size), time.Since(l.openedAt()).Seconds())
		case obs.mountedFrom(l.desc.Digest) != "":
			j.state, j.from = stateMounted, obs.mountedFrom(l.desc.Digest)
			p.Printf("%s: Mounted from %s\n", short(j.diffID), j.from)
		default:
			j.state = stateExisted
			p.Printf("%s: Layer already exists\n", short(j.diffID))
		}
	}
	sources := Sources(cs, j.diffID, host)
	mountFrom := func(d digest.Digest) string {
		for _, s := range sources {
			if s.Digest == d {
				return s.Repository
			}
		}
		return ""
	}

	// The compressed blob, if this layer was compressed so before.
	var local ocispec.Descriptor
	haveLocal := false
	if opts.Compression.Algorithm == compression.Uncompressed {
		local, haveLocal = ocispec.Descriptor{Digest: j.diffID}, true
		if size, ok := cs.Has(j.diffID); ok {
			local.Size = size
		} else {
			return fmt.Errorf("blob %s: %w", j.diffID, content.ErrNotFound)
		}
	} else if d, ok := comp.Lookup(j.diffID, opts.Compression); ok {
		local, haveLocal = d, true
	}

	// No compressed copy here, but the registry holds one (a layer pulled
	// from it, or pushed from another store): find or mount it there, and
	// nothing needs compressing.
	if !haveLocal && !opts.ForceCompression {
		tried := 0
		for _, s := range sources {
			if tried == 3 || !compatible(s.MediaType, opts.Compression) {
				continue
			}
			tried++
			l := newUploadLayer(cs, ocispec.Descriptor{MediaType: want, Digest: s.Digest, Size: s.Size}, j.diffID, false, nil)
			err := upload(l, s.Repository)
			if err == nil {
				finish(l)
				return nil
			}
			if !errors.Is(err, errNoLocalCopy) {
				return err
			}
		}
	}
	if !haveLocal {
		select {
		case compressSem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		d, err := comp.Compress(ctx, j.diffID, opts.Compression)
		<-compressSem
		if err != nil {
			return err
		}
		local = d
	}
	l := newUploadLayer(cs, ocispec.Descriptor{MediaType: want, Digest: local.Digest, Size: local.Size}, j.diffID, true,
		func() { p.Printf("%s: Pushing  %s\n", short(j.diffID), HumanSize(local.Size)) })
	if err := upload(l, mountFrom(local.Digest)); err != nil {
		if l.opened.Load() && ctx.Err() == nil {
			return fmt.Errorf("upload of %s interrupted after %s: %w", HumanSize(local.Size), HumanSize(l.sent.Load()), explain(err, host))
		}
		return err
	}
	finish(l)
	return nil
}

func registryOpts(repo name.Repository) []name.Option {
	if repo.Scheme() == "http" {
		return []name.Option{name.Insecure}
	}
	return nil
}

// compatible reports whether a blob of media type mt is compressed the
// way o asks (the level does not matter for a blob that exists).
func compatible(mt string, o compression.Options) bool {
	switch o.Algorithm {
	case compression.Gzip:
		return mt == ocispec.MediaTypeImageLayerGzip || mt == content.MediaTypeDockerLayerGz
	case compression.Zstd:
		return mt == ocispec.MediaTypeImageLayerZstd
	}
	return false
}

// uploadLayer is one layer as pushLayer uploads it: the stored blob
// (v1image.Layer, so ggcr compresses nothing) with progress notes. A layer
// without a local copy (local false) can be found or mounted in the
// registry, never uploaded.
type uploadLayer struct {
	*v1image.Layer
	desc   ocispec.Descriptor
	local  bool
	onOpen func()

	opened atomic.Bool
	at     atomic.Int64
	sent   atomic.Int64 // most bytes read by one attempt
}

func newUploadLayer(cs *content.Store, desc ocispec.Descriptor, diffID digest.Digest, local bool, onOpen func()) *uploadLayer {
	return &uploadLayer{Layer: v1image.NewLayer(cs, desc, diffID), desc: desc, local: local, onOpen: onOpen}
}

func (l *uploadLayer) Compressed() (io.ReadCloser, error) {
	if !l.local {
		return nil, errNoLocalCopy
	}
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	if !l.opened.Swap(true) {
		l.at.Store(time.Now().UnixNano())
		if l.onOpen != nil {
			l.onOpen()
		}
	}
	return &countingReader{ReadCloser: rc, l: l}, nil
}

// countingReader notes how far an upload attempt read, for errors.
type countingReader struct {
	io.ReadCloser
	l *uploadLayer
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	for {
		cur := c.l.sent.Load()
		if c.n <= cur || c.l.sent.CompareAndSwap(cur, c.n) {
			break
		}
	}
	return n, err
}

func (l *uploadLayer) openedAt() time.Time { return time.Unix(0, l.at.Load()) }

// observer sees every request ggcr makes and notes cross-repository
// mounts that worked (POST .../blobs/uploads/?mount=D&from=R → 201).
type observer struct {
	next    http.RoundTripper
	mounted sync.Map // digest string → repository
}

func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated {
		q := req.URL.Query()
		if d, from := q.Get("mount"), q.Get("from"); d != "" && from != "" {
			o.mounted.Store(d, from)
		}
	}
	return resp, err
}

func (o *observer) mountedFrom(d digest.Digest) string {
	if v, ok := o.mounted.Load(string(d)); ok {
		return v.(string)
	}
	return ""
}

// explain makes a registry or network error one readable line.
func explain(err error, host string) error {
	var done *explained
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, errNoLocalCopy) || errors.As(err, &done) {
		return err
	}
	if e := Explain(err); e.Error() != err.Error() {
		return e
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &explained{fmt.Sprintf("cannot connect to the registry at %s: connection refused", host), err}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return &explained{fmt.Sprintf("connection to the registry at %s lost (%s)", host, innermost(err)), err}
	case errors.As(err, &dnsErr):
		return &explained{fmt.Sprintf("cannot resolve registry host %s: %s", dnsErr.Name, dnsErr.Err), err}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// Without the URL, whose query holds upload state nobody can read.
		return &explained{fmt.Sprintf("%s %s: %v", strings.ToUpper(ue.Op), host, ue.Err), err}
	}
	return err
}

// innermost is the text of the deepest wrapped error ("broken pipe").
func innermost(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
