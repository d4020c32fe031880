package layer

import (
	"bufio"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is how a layer blob or archive is compressed, told by its
// magic bytes: load, import, pull and cache import all read such blobs and
// store them uncompressed.
type Compression int

// The compressions kiln reads.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "uncompressed"
}

// DetectCompression looks at the magic bytes at the head of br without
// consuming them.
func DetectCompression(br *bufio.Reader) Compression {
	b, _ := br.Peek(4)
	switch {
	case len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 0x08:
		return Gzip
	case len(b) >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd:
		return Zstd
	}
	return Uncompressed
}

// Decompress wraps r in a decompressor for c. Decoding runs in the caller's
// goroutine (no read-ahead), so r is never read after Close returns.
func Decompress(c Compression, r io.Reader) (io.ReadCloser, error) {
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}
