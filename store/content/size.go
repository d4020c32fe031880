package content

import (
	"archive/tar"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
)

// LayerContentSize is the size of what layer blob d (an uncompressed layer
// tar, as the store keeps them) puts on disk, counted as docker counts an
// image's SIZE: file contents and symlink targets, each hard-linked file
// once, not the tar's headers and padding. Only the headers are read (the
// tar reader seeks over contents), so this is cheap even for large layers.
func (s *Store) LayerContentSize(d digest.Digest) (int64, error) {
	f, err := s.Open(d)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return TarContentSize(f)
}

// TarContentSize sums what LayerContentSize counts, for any tar stream.
func TarContentSize(r io.Reader) (int64, error) {
	tr := tar.NewReader(r)
	var n int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read layer: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg: // the reader turns legacy TypeRegA into TypeReg
			n += hdr.Size
		case tar.TypeSymlink:
			n += int64(len(hdr.Linkname))
		}
	}
}
