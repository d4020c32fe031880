// Package compression makes compressed copies of layers for exports that
// send layers elsewhere (-o type=oci, push, cache export). The
// store keeps every layer uncompressed (its blob digest is its diffID); a
// compressed copy is written into the same content store, atomically
// (content.Writer), and remembered in one of the store's layer notes
// (content.Store.RememberCompressed) holding the compressed blob's digest,
// so that each layer is compressed once per (algorithm, level) and reused
// by every later export for as long as the blob is in the store.
//
// Output is deterministic, so the same layer gives the same compressed
// digest on any machine: gzip is written by pgzip in parallel with a fixed
// block size and a header without name or mtime; zstd by klauspost's
// encoder in job mode, whose job size does not depend on the number of
// CPUs.
package compression

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/readers"
	"github.com/kiln-build/kiln/store/content"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"
)

// Algorithms.
const (
	Gzip         = "gzip"
	Zstd         = "zstd"
	Uncompressed = "uncompressed"
)

// Default levels: what BuildKit uses (gzip's default, zstd's "default"
// speed, which is zstd level 3).
const (
	DefaultGzipLevel = 6
	DefaultZstdLevel = 3
)

// gzipBlockSize is pgzip's unit of parallel work. It is fixed (not derived
// from the CPU count) because it shapes the output bytes.
const gzipBlockSize = 1 << 20

// Options chooses an algorithm and level.
type Options struct {
	Algorithm string // Gzip, Zstd or Uncompressed
	Level     int    // meaningful for gzip (0-9) and zstd (1-22)
}

// Parse reads BuildKit's compression attributes: algorithm "" (= gzip),
// gzip, zstd or uncompressed, and level "" (= the algorithm's default) or
// a number in the algorithm's range.
func Parse(algorithm, level string) (Options, error) {
	o := Options{Algorithm: strings.ToLower(algorithm)}
	switch o.Algorithm {
	case "", Gzip:
		o.Algorithm, o.Level = Gzip, DefaultGzipLevel
	case Zstd:
		o.Level = DefaultZstdLevel
	case Uncompressed:
	case "estargz":
		return Options{}, fmt.Errorf("compression %q is not supported (gzip, zstd or uncompressed)", algorithm)
	default:
		return Options{}, fmt.Errorf("unknown compression %q (gzip, zstd or uncompressed)", algorithm)
	}
	if level == "" {
		return o, nil
	}
	n, err := strconv.Atoi(level)
	if err != nil {
		return Options{}, fmt.Errorf("compression-level=%s: not a number", level)
	}
	switch o.Algorithm {
	case Gzip:
		if n < 0 || n > 9 {
			return Options{}, fmt.Errorf("compression-level=%d: gzip levels are 0 to 9", n)
		}
	case Zstd:
		if n < 1 || n > 22 {
			return Options{}, fmt.Errorf("compression-level=%d: zstd levels are 1 to 22", n)
		}
	case Uncompressed:
		return Options{}, fmt.Errorf("compression-level=%d: uncompressed layers have no level", n)
	}
	o.Level = n
	return o, nil
}

// MediaType is the OCI media type of a layer compressed with o.
func (o Options) MediaType() string {
	switch o.Algorithm {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayer
}

// key names the mapping directory for o, e.g. "gzip-6".
func (o Options) key() string { return fmt.Sprintf("%s-%d", o.Algorithm, o.Level) }

func (o Options) String() string {
	if o.Algorithm == Uncompressed {
		return o.Algorithm
	}
	return fmt.Sprintf("%s (level %d)", o.Algorithm, o.Level)
}

// Cache compresses layers of a content store and remembers the results
// as the store's compressed-copy notes.
type Cache struct {
	Content *content.Store
}

// New returns the cache of a content store.
func New(cs *content.Store) *Cache {
	return &Cache{Content: cs}
}

var flights singleflight.Group

// MappingPath is the file that remembers the compressed digest of layer
// diffID under o.
func (c *Cache) MappingPath(diffID digest.Digest, o Options) string {
	return c.Content.NotePath(content.NoteCompressed(o.key()), diffID)
}

// Lookup returns the descriptor of an earlier compression of diffID under
// o, if it is remembered and its blob is still in the store.
func (c *Cache) Lookup(diffID digest.Digest, o Options) (ocispec.Descriptor, bool) {
	d, err := c.Content.Compressed(diffID, o.key())
	if err != nil {
		return ocispec.Descriptor{}, false
	}
	size, ok := c.Content.Has(d)
	if !ok {
		return ocispec.Descriptor{}, false
	}
	return ocispec.Descriptor{MediaType: o.MediaType(), Digest: d, Size: size}, true
}

// Compress returns the descriptor of layer diffID (an uncompressed blob in
// the store) compressed with o, compressing it now unless an earlier
// compression is remembered. The compressed blob is in the store when
// Compress returns. Uncompressed returns the layer itself.
func (c *Cache) Compress(ctx context.Context, diffID digest.Digest, o Options) (ocispec.Descriptor, error) {
	if o.Algorithm == Uncompressed {
		size, ok := c.Content.Has(diffID)
		if !ok {
			return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", diffID, content.ErrNotFound)
		}
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: size}, nil
	}
	if d, ok := c.Lookup(diffID, o); ok {
		return d, nil
	}
	v, err, _ := flights.Do(c.MappingPath(diffID, o), func() (any, error) {
		if d, ok := c.Lookup(diffID, o); ok {
			return d, nil
		}
		return c.compress(ctx, diffID, o)
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return v.(ocispec.Descriptor), nil
}

func (c *Cache) compress(ctx context.Context, diffID digest.Digest, o Options) (ocispec.Descriptor, error) {
	f, err := c.Content.Open(diffID)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer f.Close()
	w, err := c.Content.NewWriter()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	// The uncompressed input is checked against its digest on the way:
	// a damaged layer must not turn into a well-formed compressed blob.
	v := diffID.Verifier()
	if err := Write(ctx, w, io.TeeReader(f, v), o); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compress layer %s: %w", diffID, err)
	}
	if !v.Verified() {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: content does not match its digest", diffID)
	}
	desc, err := w.Commit("", content.UnknownSize)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc.MediaType = o.MediaType()
	if err := c.Content.RememberCompressed(diffID, o.key(), desc.Digest); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// Write compresses r into w with o.
func Write(ctx context.Context, w io.Writer, r io.Reader, o Options) error {
	r = readers.WithContext(ctx, r)
	switch o.Algorithm {
	case Gzip:
		zw, err := pgzip.NewWriterLevel(w, o.Level)
		if err != nil {
			return err
		}
		if err := zw.SetConcurrency(gzipBlockSize, max(runtime.GOMAXPROCS(0), 2)); err != nil {
			return err
		}
		// No name, no mtime (pgzip would otherwise write the low bits of
		// the zero time.Time), OS "unknown": the same bytes everywhere.
		zw.Name, zw.Comment, zw.Extra = "", "", nil
		zw.ModTime = time.Unix(0, 0)
		zw.OS = 255
		if _, err := io.Copy(zw, r); err != nil {
			zw.Close()
			return err
		}
		return zw.Close()
	case Zstd:
		// At least two encoders, so that job mode (whose output does not
		// depend on the concurrency) is used even on one CPU.
		zw, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(o.Level)),
			zstd.WithEncoderConcurrency(max(runtime.GOMAXPROCS(0), 2)),
			zstd.WithConcurrentBlocks(true))
		if err != nil {
			return err
		}
		if _, err := io.Copy(zw, r); err != nil {
			zw.Close()
			return err
		}
		return zw.Close()
	case Uncompressed:
		_, err := io.Copy(w, r)
		return err
	}
	return fmt.Errorf("unknown compression %q", o.Algorithm)
}
