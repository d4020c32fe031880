// Package archive moves images between kiln's store and tarballs: Save
// writes one tar that is both an OCI image layout and a docker-save archive
// (manifest.json), Load reads either kind back in one streaming pass, and
// Import turns a root filesystem tar into a one-layer image, like
// `docker import`.
//
// The store keeps every layer as an uncompressed tar whose digest is its
// diffID, so Save streams layers as stored and Load decompresses gzip or
// zstd layers on the fly.
package archive

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/distribution/reference"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Files of an image tarball besides the blobs.
const (
	ociLayoutFile      = "oci-layout"
	indexFile          = "index.json"
	dockerManifestFile = "manifest.json"
	repositoriesFile   = "repositories"
)

// compression is how an archive entry (or a whole archive) is compressed.
type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
)

func (c compression) String() string {
	switch c {
	case gzipped:
		return "gzip"
	case zstded:
		return "zstd"
	}
	return "none"
}

// detectCompression looks at the magic bytes at the head of br without
// consuming them.
func detectCompression(br *bufio.Reader) compression {
	b, _ := br.Peek(4)
	switch {
	case len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 0x08:
		return gzipped
	case len(b) >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd:
		return zstded
	}
	return uncompressed
}

// decompress wraps r in a decompressor for c. Decoding runs in the caller's
// goroutine (no read-ahead), so r is never read after Close returns.
func decompress(c compression, r io.Reader) (io.ReadCloser, error) {
	switch c {
	case gzipped:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case zstded:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// ctxReader fails reads once ctx is done, so that long copies stop promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// tagged parses a name into a tagged reference (adding ":latest" to a bare
// repository). Names pinned by digest only have no tag to save or load.
func tagged(name string) (reference.NamedTagged, error) {
	n, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("invalid reference format %q: %w", name, err)
	}
	t, ok := reference.TagNameOnly(n).(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("%q has no tag", name)
	}
	return t, nil
}

// looksLikeName tells a full image name in an OCI ref.name annotation
// ("app:1.0", "example.com/app") from a bare tag ("1.0", "latest").
func looksLikeName(s string) bool {
	return strings.ContainsAny(s, ":/@")
}
