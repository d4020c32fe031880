// Package output performs the exports of `kiln build -o`, after the image
// is in the store, like BuildKit's exporters as `docker buildx build -o`
// drives them:
//
//	type=local,dest=DIR    the final rootfs, written into DIR
//	type=tar,dest=FILE     the final rootfs as one tar
//	type=oci,dest=FILE     an OCI layout tar with compressed layers
//	                       (compression=gzip|zstd|uncompressed, compression-level=N)
//	type=docker,dest=FILE  a `docker save` tar (with an OCI layout in it too:
//	                       the same tar `kiln save` writes, which docker load reads)
//	type=image[,name=N][,push=true]  the image under names N in the store
//	                       (default: the build's -t names), pushed to their
//	                       registries with push=true (transport/registry)
//	type=registry[,name=N] type=image,push=true (kiln build --push)
//
// image and registry take compression=, compression-level= (layers are
// compressed for the push, gzip by default, each once) and
// oci-mediatypes=false (docker's media types).
//
// dest "-" (or no dest) writes a tar kind to stdout. Files are written
// atomically (temp file next to dest, then rename): a failed or
// interrupted export never leaves a partial file at dest.
package output

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/exporter/local"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/transport/archive"
	"github.com/kiln-build/kiln/transport/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Output types.
const (
	Local  = "local"
	Tar    = "tar"
	OCI    = "oci"
	Docker = "docker"
	// TypeImage names the image in the store and, with push=true, pushes it.
	TypeImage = "image"
	// TypeRegistry is TypeImage with push=true.
	TypeRegistry = "registry"
	// CacheOnly exports nothing (BuildKit's "cacheonly"); kiln's store keeps
	// the result either way.
	CacheOnly = "cacheonly"
)

// Stdout is the dest that means standard output.
const Stdout = "-"

// Spec is one -o: Type, Dest and the other attributes.
type Spec struct {
	Type  string
	Dest  string
	Attrs map[string]string
}

func (s Spec) String() string {
	parts := []string{"type=" + s.Type}
	if s.Dest != "" {
		parts = append(parts, "dest="+s.Dest)
	}
	return strings.Join(parts, ",")
}

// attrs each type accepts besides type and dest. Accepted but ignored:
// platform-split (there is only the host platform), force-compression (the
// store's layers are uncompressed, so every compressed layer is made fresh
// or reused from a compression with the same settings), oci-mediatypes
// (type=oci always uses OCI media types) and tar=true (the default).
var knownAttrs = map[string][]string{
	Local:        {"platform-split"},
	Tar:          {"platform-split"},
	OCI:          {"name", "compression", "compression-level", "force-compression", "oci-mediatypes", "tar"},
	Docker:       {"name", "tar"},
	TypeImage:    pushAttrs,
	TypeRegistry: pushAttrs,
	CacheOnly:    {},
}

// pushAttrs are what type=image and type=registry take. Accepted but
// ignored: store (kiln's store always keeps the result), unpack (layers
// are unpacked in the store already). force-compression=true compresses
// even layers the registry holds compressed with the same algorithm.
var pushAttrs = []string{"name", "push", "compression", "compression-level", "force-compression", "oci-mediatypes", "store", "unpack"}

// Validate checks outputs before a build starts, so that a typo fails in
// a second rather than after the build: known types and attributes,
// compression settings, a dest where one is needed, at most one output to
// stdout, and no file output aimed at an existing directory.
func Validate(specs []Spec) error {
	stdout := 0
	for _, s := range specs {
		known, ok := knownAttrs[s.Type]
		if !ok {
			return fmt.Errorf("-o %s: unknown output type %q (types: local, tar, oci, docker, image, registry)", s, s.Type)
		}
		for k := range s.Attrs {
			if !contains(known, k) {
				return fmt.Errorf("-o %s: unknown attribute %q for type=%s", s, k, s.Type)
			}
		}
		if v, ok := s.Attrs["tar"]; ok && v != "true" {
			return fmt.Errorf("-o %s: only tar=true is supported", s)
		}
		switch s.Type {
		case CacheOnly:
			continue
		case Local:
			if s.Dest == "" || s.Dest == Stdout {
				return fmt.Errorf("-o %s: dest=DIR is required for type=local", s)
			}
			if fi, err := os.Stat(s.Dest); err == nil && !fi.IsDir() {
				return fmt.Errorf("-o %s: %s exists and is not a directory", s, s.Dest)
			}
			continue
		case OCI:
			if _, err := compressionOf(s); err != nil {
				return fmt.Errorf("-o %s: %w", s, err)
			}
		case TypeImage, TypeRegistry:
			if err := validatePush(s); err != nil {
				return fmt.Errorf("-o %s: %w", s, err)
			}
			continue
		}
		if s.Dest == "" || s.Dest == Stdout {
			stdout++
			continue
		}
		if fi, err := os.Stat(s.Dest); err == nil && fi.IsDir() {
			return fmt.Errorf("-o %s: destination %s is a directory", s, s.Dest)
		}
	}
	if stdout > 1 {
		return errors.New("only one output can write to stdout")
	}
	return nil
}

func compressionOf(s Spec) (compression.Options, error) {
	return compression.Parse(s.Attrs["compression"], s.Attrs["compression-level"])
}

// Image is what the outputs export: an image in the store and the names
// it was built as (full names, as content.NormalizeName gives them).
type Image struct {
	Manifest ocispec.Descriptor
	Names    []string
}

// Options for Export.
type Options struct {
	// Stdout receives the tar of an output whose dest is "-" (default
	// os.Stdout).
	Stdout io.Writer
	// Registry says how pushes reach registries (plain-HTTP hosts, CAs,
	// credentials).
	Registry registry.Config
	// Progress receives push progress and each push's final
	// "TAG: digest: ... size: N" line; nil is silent.
	Progress io.Writer
}

// Export performs every output, one after the other.
func Export(ctx context.Context, st *store.Store, img Image, specs []Spec, opts Options) error {
	if err := Validate(specs); err != nil {
		return err
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	im, err := st.Content.ReadImage(img.Manifest)
	if err != nil {
		return err
	}
	layers := make([]record.Layer, len(im.Manifest.Layers))
	for i, l := range im.Manifest.Layers {
		// Stored layers are uncompressed: the blob digest is the diffID.
		layers[i] = record.Layer{DiffID: im.Config.RootFS.DiffIDs[i], Size: l.Size}
		if l.Digest != layers[i].DiffID {
			return fmt.Errorf("image %s: layer %d is not stored uncompressed", img.Manifest.Digest, i)
		}
	}
	for _, s := range specs {
		if err := exportOne(ctx, st, img, layers, s, opts); err != nil {
			return fmt.Errorf("-o %s: %w", s, err)
		}
	}
	return nil
}

func exportOne(ctx context.Context, st *store.Store, img Image, layers []record.Layer, s Spec, opts Options) error {
	switch s.Type {
	case CacheOnly:
		return nil
	case Local:
		return local.WriteDir(ctx, st, layers, s.Dest)
	case Tar:
		return writeTo(s.Dest, opts.Stdout, func(w io.Writer) error {
			return local.WriteTar(ctx, st, layers, w)
		})
	case TypeImage, TypeRegistry:
		return exportImage(ctx, st, img, s, opts)
	case Docker:
		names, err := namesOf(s, img.Names)
		if err != nil {
			return err
		}
		images := []archive.SaveImage{{Manifest: img.Manifest, Names: names}}
		return writeTo(s.Dest, opts.Stdout, func(w io.Writer) error {
			return archive.Save(ctx, w, st.Content, images)
		})
	case OCI:
		names, err := namesOf(s, img.Names)
		if err != nil {
			return err
		}
		co, err := compressionOf(s)
		if err != nil {
			return err
		}
		// Compress first (in parallel, each layer once), then write the
		// tar from blobs that are all in the store.
		mapped, err := compressLayers(ctx, compression.New(st.Content), layers, co)
		if err != nil {
			return err
		}
		images := []archive.SaveImage{{Manifest: img.Manifest, Names: names}}
		return writeTo(s.Dest, opts.Stdout, func(w io.Writer) error {
			return archive.SaveWith(ctx, w, st.Content, images, archive.SaveOptions{
				Layer: func(_ context.Context, l ocispec.Descriptor) (ocispec.Descriptor, error) {
					d, ok := mapped[string(l.Digest)]
					if !ok {
						return ocispec.Descriptor{}, fmt.Errorf("not compressed")
					}
					return d, nil
				},
			})
		})
	}
	return fmt.Errorf("unknown output type %q", s.Type)
}

// compressLayers compresses each distinct layer, a few at a time (pgzip
// and zstd already use every CPU for a big layer; several small layers
// gain from running side by side).
func compressLayers(ctx context.Context, c *compression.Cache, layers []record.Layer, o compression.Options) (map[string]ocispec.Descriptor, error) {
	var mu sync.Mutex
	out := map[string]ocispec.Descriptor{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	seen := map[string]bool{}
	for _, l := range layers {
		if seen[string(l.DiffID)] {
			continue
		}
		seen[string(l.DiffID)] = true
		g.Go(func() error {
			d, err := c.Compress(gctx, l.DiffID, o)
			if err != nil {
				return err
			}
			mu.Lock()
			out[string(l.DiffID)] = d
			mu.Unlock()
			return nil
		})
	}
	return out, g.Wait()
}

// namesOf returns the names an archive output records: its name= attribute
// (comma separated, as BuildKit takes it) or else the build's names.
func namesOf(s Spec, built []string) ([]string, error) {
	v, ok := s.Attrs["name"]
	if !ok {
		return built, nil
	}
	var out []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		full, err := content.NormalizeTag(n)
		if err != nil {
			return nil, fmt.Errorf("name %q: %w", n, err)
		}
		out = append(out, full)
	}
	return out, nil
}

// writeTo writes a tar output to dest atomically, or to stdout for "-" or
// no dest.
func writeTo(dest string, stdout io.Writer, fill func(io.Writer) error) error {
	if dest == "" || dest == Stdout {
		w := bufio.NewWriterSize(stdout, 1<<20)
		if err := fill(w); err != nil {
			return err
		}
		return w.Flush()
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(dest, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := fill(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// validatePush checks the attributes of type=image and type=registry.
func validatePush(s Spec) error {
	if _, err := compressionOf(s); err != nil {
		return err
	}
	for _, k := range []string{"push", "oci-mediatypes", "store", "unpack", "force-compression"} {
		if v, ok := s.Attrs[k]; ok {
			if _, err := strconv.ParseBool(v); err != nil {
				return fmt.Errorf("%s=%s: expected true or false", k, v)
			}
		}
	}
	if s.Type == TypeRegistry {
		if v, ok := s.Attrs["push"]; ok {
			if b, _ := strconv.ParseBool(v); !b {
				return fmt.Errorf("push=false: type=registry always pushes (use type=image without push)")
			}
		}
	}
	if s.Dest != "" {
		return fmt.Errorf("type=%s takes name=, not dest=", s.Type)
	}
	if _, err := namesOf(s, nil); err != nil {
		return err
	}
	return nil
}

// exportImage names the image in the store under the output's names and,
// for type=registry or push=true, pushes it to each.
func exportImage(ctx context.Context, st *store.Store, img Image, s Spec, opts Options) error {
	names, err := namesOf(s, img.Names)
	if err != nil {
		return err
	}
	push := s.Type == TypeRegistry
	if v, ok := s.Attrs["push"]; ok {
		push, _ = strconv.ParseBool(v)
	}
	if len(names) == 0 {
		if push {
			return errors.New("nothing to push to: give name=REGISTRY/REPO:TAG (or -t)")
		}
		return errors.New("name= is required (or -t)")
	}
	for _, n := range names {
		if err := st.Content.Tag(n, img.Manifest); err != nil {
			return fmt.Errorf("tag %s: %w", content.FamiliarName(n), err)
		}
	}
	if !push {
		return nil
	}
	co, err := compressionOf(s)
	if err != nil {
		return err
	}
	dockerTypes := false
	if v, ok := s.Attrs["oci-mediatypes"]; ok {
		b, _ := strconv.ParseBool(v)
		dockerTypes = !b
	}
	force, _ := strconv.ParseBool(s.Attrs["force-compression"])
	for _, n := range names {
		res, err := registry.Push(ctx, st.Content, img.Manifest, n, registry.PushOptions{
			Registry:         opts.Registry,
			Compression:      co,
			ForceCompression: force,
			DockerMediaTypes: dockerTypes,
			Progress:         opts.Progress,
		})
		if err != nil {
			return err
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%s: digest: %s size: %d\n", res.Tag, res.Digest, res.Size)
		}
	}
	return nil
}
