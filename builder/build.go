// Package builder wires one `kiln build`: it compiles the Dockerfile
// (frontend), solves the graph (solver, with the store's cache records) and
// exports the target as an image in the store (exporter). The CLI calls
// Run and prints its events.
package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/output"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/transport/registry"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options for one build.
type Options struct {
	ContextDir string
	// Dockerfile path; default ContextDir/Dockerfile.
	Dockerfile string
	// DockerfileSource, if not nil, is the Dockerfile itself (build -f -
	// reads it from stdin); Dockerfile then only names it in messages.
	DockerfileSource []byte

	Tags      []string
	Target    string
	BuildArgs map[string]string
	Labels    map[string]string
	NoCache   bool
	Network   string
	Runtime   string
	// Parallel bounds concurrently running steps (default: number of CPUs).
	Parallel int
	// Epoch is SOURCE_DATE_EPOCH, if set.
	Epoch *time.Time
	Warn  func(string)
	// Events and Log feed progress output.
	Events func(solver.Event)
	Log    func(v *solver.Vertex) solver.Logger
	// Explained, if set, hears for each step that runs why it missed the
	// cache (the journal records the same).
	Explained func(v *solver.Vertex, why []explain.Change)
	// Plan, if set, is called with the compiled graph before solving.
	Plan func(b *dockerfile.Build)

	// Secrets maps a secret id to where its value comes from
	// (--secret id=ID,src=PATH|env=VAR). Values are read when a step
	// mounts them and never stored.
	Secrets map[string]Secret
	// SSH maps an ssh id to an agent socket path (--ssh default[=PATH]).
	SSH map[string]string
	// BuildContexts are named contexts (--build-context NAME=DIR or
	// NAME=docker-image://REF) that FROM and COPY --from can name.
	BuildContexts map[string]string
	// NoCacheFilter lists stages that must not use the cache.
	NoCacheFilter []string
	// Platform requested with --platform ("" = the host's).
	Platform string
	// AllowInsecure permits RUN --security=insecure (--allow security.insecure).
	AllowInsecure bool
	// Outputs are extra exports (-o type=local|tar|oci|docker,dest=...,
	// type=image|registry,name=... which push with PullOptions.Registry).
	Outputs []Output
	// MetadataFile receives JSON about the result, like buildx's.
	MetadataFile string
	// CacheFrom are build caches to import (--cache-from); registries are
	// reached with PullOptions.Registry.
	CacheFrom []CacheSpec
	// CacheTo are where to export this build's cache (--cache-to), to
	// registries with PullOptions.Registry.
	CacheTo []CacheSpec
	// Pull re-resolves every FROM image in its registry even when the
	// store has it (--pull); without it a stored image is used and only
	// missing ones are pulled, like docker.
	Pull bool
	// PullOptions say how base images are pulled (registry config,
	// progress).
	PullOptions registry.PullOptions
	// CacheMax is the build cache budget enforced when the build ends
	// (store.CollectOverBudget): 0 means store.DefaultBudget, < 0 none.
	CacheMax int64
	// GC, if set, hears how that went; err is store.ErrBusy when other
	// kiln processes were at work and the collection was left to them.
	GC func(*store.GCReport, error)
}

// CacheSpec is one --cache-from/--cache-to: Type local (src=/dest= an OCI
// layout directory, tag=) or registry (ref=), plus mode=min|max for export.
type CacheSpec struct {
	Type  string
	Attrs map[string]string
}

// Secret is where a build secret's value comes from: a file or an
// environment variable.
type Secret struct {
	File string
	Env  string
}

// Output is one -o/--output: Type is local, tar, oci or docker; Dest a
// directory (local) or file ("-" = stdout for tar kinds); Attrs the rest.
type Output struct {
	Type  string
	Dest  string
	Attrs map[string]string
}

// Result of a successful build.
type Result struct {
	Manifest ocispec.Descriptor
	ID       string // config digest
	Names    []string
}

// Run builds and tags.
func Run(ctx context.Context, st *store.Store, opts Options) (res *Result, err error) {
	return run(ctx, st, opts, nil)
}

// run builds and tags, or with chk set only compiles every stage for
// Check and returns no result.
func run(ctx context.Context, st *store.Store, opts Options, chk *CheckResult) (res *Result, err error) {
	variant, err := checkOutputOptions(opts)
	if err != nil {
		return nil, err
	}
	ctxDir, err := filepath.Abs(opts.ContextDir)
	if err != nil {
		return nil, err
	}
	dfPath := opts.Dockerfile
	if dfPath == "" {
		dfPath = filepath.Join(ctxDir, "Dockerfile")
	}
	// From here on every build is on record, a failed one with its error
	// (a check builds nothing and leaves no record).
	var jr *journal
	if chk == nil {
		if jr, err = newJournal(st.BuildsDir(), opts, ctxDir, dfPath); err != nil {
			return nil, err
		}
		defer func() {
			jr.finish(ctx, "", err)
		}()
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("build context %q: not a directory", opts.ContextDir)
	}
	src := opts.DockerfileSource
	if src == nil {
		if src, err = os.ReadFile(dfPath); err != nil {
			return nil, fmt.Errorf("read Dockerfile: %w", err)
		}
	}
	names := make([]string, 0, len(opts.Tags))
	for _, t := range opts.Tags {
		n, err := content.NormalizeTag(t)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", t, err)
		}
		names = append(names, n)
	}
	excluded, ignore, err := dockerignore(ctxDir, dfPath)
	if err != nil {
		return nil, err
	}
	hasher, err := contenthash.NewHasher(ctxDir, st.StatCacheDir(), excluded)
	if err != nil {
		return nil, err
	}
	defer hasher.Save()

	worker := ops.NewWorker(st, opts.Runtime)
	worker.Secrets = secretSource{secrets: opts.Secrets, ssh: opts.SSH}
	for _, spec := range opts.CacheFrom {
		if chk != nil {
			break // a check builds nothing, so reads no cache
		}
		src, err := importCache(ctx, st, spec, opts.PullOptions.Registry)
		if err != nil {
			// like BuildKit: a cache that cannot be read is a warning
			if opts.Warn != nil {
				opts.Warn(fmt.Sprintf("--cache-from: %v", err))
			}
			continue
		}
		worker.Fetchers = append(worker.Fetchers, src)
	}
	named, err := namedContexts(opts.BuildContexts, st.StatCacheDir(), ctxDir)
	if err != nil {
		return nil, err
	}
	keepTrees(st, hasher, named)
	var created time.Time
	if opts.Epoch != nil {
		created = opts.Epoch.UTC()
		worker.Clamp = created
	}
	network := opts.Network
	if network == "" {
		network = "host"
	}
	if network != "host" && network != "none" && network != "default" {
		return nil, fmt.Errorf("--network=%s: only host, none and default are supported", network)
	}
	if network == "default" {
		network = "host"
	}
	compileOpts := dockerfile.Options{
		Filename:  displayName(dfPath, ctxDir),
		Source:    src,
		Context:   hasher,
		Target:    opts.Target,
		BuildArgs: opts.BuildArgs,
		Labels:    opts.Labels,
		NoCache:   opts.NoCache,
		Network:   network,
		Images:    &resolver{st: st, pull: opts.Pull, pullOpts: opts.PullOptions, warn: opts.Warn},
		Epoch:     opts.Epoch,
		Warn:      opts.Warn,
		OS:        "linux",
		Arch:      runtime.GOARCH,

		NamedContexts: named,
		NoCacheFilter: opts.NoCacheFilter,
		AllowInsecure: opts.AllowInsecure,
		Ignore:        ignore,
	}
	if chk != nil {
		chk.Filename, chk.Source = compileOpts.Filename, src
		compileOpts.AllStages = opts.Target == "" // like BuildKit: no target, every stage
		compileOpts.Lint = func(w dockerfile.Warning) { chk.Warnings = append(chk.Warnings, w) }
	}
	b, err := dockerfile.Compile(ctx, compileOpts)
	if err != nil || chk != nil {
		return nil, err
	}
	jr.plan(b.Vertices)
	if opts.Plan != nil {
		opts.Plan(b)
	}
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = runtime.NumCPU()
	}
	s := &solver.Solver{
		Records:       st.Records,
		Parallel:      parallel,
		LayersPresent: worker.LayersPresent,
		Bind:          worker.Bind,
		Events:        jr.event(jr.explainer(st, opts, opts.Events)),
		Log:           jr.logger(opts.Log),
	}
	results, err := s.Solve(ctx, b.Target)
	if err != nil {
		return nil, err
	}
	img := b.Image
	img.OS, img.Architecture = "linux", runtime.GOARCH
	if variant != "" {
		img.Variant = variant
	}
	if created.IsZero() {
		created = results[0].Created
	}
	desc, err := exporter.Image(st.Content, img, results[0].Layers, created)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if len(names) == 0 {
		err = st.Content.AddUntagged(desc)
	}
	for _, n := range names {
		if err = st.Content.Tag(n, desc); err != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("tag: %w", err)
	}
	im, err := st.Content.ReadImage(desc)
	if err != nil {
		return nil, err
	}
	built := &Result{Manifest: desc, ID: string(im.ID()), Names: names}
	if err := finish(ctx, st, opts, built); err != nil {
		return nil, err
	}
	for _, spec := range opts.CacheTo {
		if err := exportCache(ctx, st, spec, jr.records(st, b.Target, spec.Attrs["mode"] == "max"), opts.PullOptions.Registry); err != nil {
			return nil, fmt.Errorf("--cache-to: %w", err)
		}
	}
	// The journal is complete before the collection, which counts it
	// (and spares it: it is the newest).
	jr.finish(ctx, built.ID, nil)
	// Over budget, the build cache shrinks now, least recently used first
	// (never this image); a collection that fails does not fail the build.
	if opts.CacheMax >= 0 {
		rep, err := st.CollectOverBudget(ctx, opts.CacheMax, desc.Digest)
		if opts.GC != nil {
			opts.GC(rep, err)
		}
	}
	return built, nil
}

func displayName(dfPath, ctxDir string) string {
	if rel, err := filepath.Rel(ctxDir, dfPath); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return dfPath
}

// dockerignore reads .dockerignore (or <Dockerfile>.dockerignore next to
// the Dockerfile, which wins, like BuildKit).
func dockerignore(ctxDir, dfPath string) (contenthash.Excluder, *patternmatcher.PatternMatcher, error) {
	var data []byte
	for _, p := range []string{dfPath + ".dockerignore", filepath.Join(ctxDir, ".dockerignore")} {
		b, err := os.ReadFile(p)
		if err == nil {
			data = b
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
	}
	if data == nil {
		return nil, nil, nil
	}
	// ignorefile normalizes patterns like docker does ("/x" and "./x" are "x").
	patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf(".dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, nil, fmt.Errorf(".dockerignore: %w", err)
	}
	return func(rel string) bool {
		ok, _ := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		return ok
	}, pm, nil
}

// resolver finds base images in the local store, pulling those it lacks
// (and, with pull set, every one) from their registry. Each reference is
// resolved once per build.
type resolver struct {
	st       *store.Store
	pull     bool
	pullOpts registry.PullOptions
	warn     func(string)

	mu   sync.Mutex
	done map[string]ocispec.Descriptor
}

func (r *resolver) ResolveImage(ctx context.Context, ref string) (ocispec.Descriptor, *dockerspec.DockerOCIImage, error) {
	name, err := content.NormalizeName(ref)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	desc, ok := r.done[name]
	if !ok {
		if desc, err = r.resolve(ctx, ref, name); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		if r.done == nil {
			r.done = map[string]ocispec.Descriptor{}
		}
		r.done[name] = desc
	}
	im, err := r.st.Content.ReadImage(desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, &im.Config, nil
}

func (r *resolver) resolve(ctx context.Context, ref, name string) (ocispec.Descriptor, error) {
	local, err := r.st.Content.Resolve(name)
	if err != nil && !errors.Is(err, content.ErrNotFound) {
		return ocispec.Descriptor{}, err
	}
	if err == nil && !r.pull {
		return local, nil
	}
	res, perr := registry.Pull(ctx, r.st.Content, ref, r.pullOpts)
	if perr == nil {
		return res.Manifest, nil
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("not in the local store, and %w", perr)
	}
	// --pull of an image that never came from a registry (built, loaded or
	// imported here): keep the local one.
	if local.Annotations[content.AnnotationRepoDigest] == "" && ctx.Err() == nil {
		if r.warn != nil {
			r.warn(fmt.Sprintf("--pull: %v; using the local image %s", perr, content.FamiliarName(name)))
		}
		return local, nil
	}
	return ocispec.Descriptor{}, perr
}

// checkOutputOptions checks, before anything runs, what only matters at
// the end of a build: the platform (kiln builds for the host only; the
// CLI has normalized --platform to "linux/<arch>[/<variant>]") and the
// outputs. It returns the platform's variant, if one was asked for.
func checkOutputOptions(opts Options) (variant string, err error) {
	if p := opts.Platform; p != "" && p != "local" {
		parts := strings.Split(p, "/")
		host := "linux/" + runtime.GOARCH
		if len(parts) < 2 || len(parts) > 3 || parts[0] != "linux" || parts[1] != runtime.GOARCH {
			return "", fmt.Errorf("--platform %s: kiln builds only for the host platform %s", p, host)
		}
		if len(parts) == 3 {
			variant = parts[2]
		}
	}
	return variant, output.Validate(outputSpecs(opts.Outputs))
}

// CheckOutputs checks -o outputs (types, attributes, destinations) without
// building anything; Run checks them again.
func CheckOutputs(outs []Output) error { return output.Validate(outputSpecs(outs)) }

func outputSpecs(outs []Output) []output.Spec {
	specs := make([]output.Spec, len(outs))
	for i, o := range outs {
		specs[i] = output.Spec{Type: o.Type, Dest: o.Dest, Attrs: o.Attrs}
	}
	return specs
}

// finish runs after the image is stored and tagged: it performs the
// outputs (-o) and writes the metadata file. A failure here fails the
// build, but the image stays in the store under its names.
func finish(ctx context.Context, st *store.Store, opts Options, res *Result) error {
	if len(opts.Outputs) > 0 {
		// Pushes (-o type=registry, --push) reach registries and report
		// progress like pulls do.
		err := output.Export(ctx, st, output.Image{Manifest: res.Manifest, Names: res.Names}, outputSpecs(opts.Outputs),
			output.Options{Registry: opts.PullOptions.Registry, Progress: opts.PullOptions.Progress})
		if err != nil {
			return err
		}
	}
	if opts.MetadataFile != "" {
		if err := writeMetadata(opts.MetadataFile, opts.Tags, res); err != nil {
			return fmt.Errorf("--metadata-file: %w", err)
		}
	}
	return nil
}

// Metadata is what --metadata-file receives, with buildx's keys. Digests
// are those of the image in kiln's store (what `kiln inspect` shows): the
// manifest's layers are the uncompressed ones, whatever -o type=oci
// compressed for its own tar.
type Metadata struct {
	ConfigDigest string             `json:"containerimage.config.digest"`
	Digest       string             `json:"containerimage.digest"`
	Descriptor   ocispec.Descriptor `json:"containerimage.descriptor"`
	ImageName    string             `json:"image.name,omitempty"`
}

func writeMetadata(path string, tags []string, res *Result) error {
	md := Metadata{
		ConfigDigest: res.ID,
		Digest:       string(res.Manifest.Digest),
		Descriptor: ocispec.Descriptor{
			MediaType: res.Manifest.MediaType,
			Digest:    res.Manifest.Digest,
			Size:      res.Manifest.Size,
		},
		// As buildx: the names as given to -t, comma separated.
		ImageName: strings.Join(tags, ","),
	}
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// secretSource reads secrets when a step mounts them; values are never
// kept beyond the step.
type secretSource struct {
	secrets map[string]Secret
	ssh     map[string]string
}

func (s secretSource) Secret(id string) ([]byte, bool, error) {
	src, ok := s.secrets[id]
	if !ok {
		return nil, false, nil
	}
	if src.Env != "" {
		v, ok := os.LookupEnv(src.Env)
		return []byte(v), ok, nil
	}
	b, err := os.ReadFile(src.File)
	if err != nil {
		return nil, false, fmt.Errorf("secret %s: %w", id, err)
	}
	return b, true, nil
}

func (s secretSource) SSHSocket(id string) (string, bool) {
	p, ok := s.ssh[id]
	return p, ok
}

// namedContexts resolves --build-context values: a directory (relative to
// the working directory) or docker-image://REF.
func namedContexts(in map[string]string, statDir, mainCtx string) (map[string]dockerfile.NamedContext, error) {
	out := map[string]dockerfile.NamedContext{}
	for name, v := range in {
		if ref, ok := strings.CutPrefix(v, "docker-image://"); ok {
			out[name] = dockerfile.NamedContext{Image: ref}
			continue
		}
		if strings.Contains(v, "://") {
			return nil, fmt.Errorf("--build-context %s=%s: only directories and docker-image:// are supported", name, v)
		}
		dir, err := filepath.Abs(v)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--build-context %s=%s: not a directory", name, v)
		}
		excluded, _, err := dockerignore(dir, filepath.Join(dir, "Dockerfile"))
		if err != nil {
			return nil, err
		}
		h, err := contenthash.NewHasher(dir, statDir, excluded)
		if err != nil {
			return nil, err
		}
		out[name] = dockerfile.NamedContext{Dir: h}
	}
	return out, nil
}
