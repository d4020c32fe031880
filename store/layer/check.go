package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
)

// Check reads a layer tar without unpacking it and refuses what Apply
// would refuse later: names that climb out of the root, hard links to
// anything but an earlier entry of the same layer (docker unpacks each
// layer into its own directory, so nothing else can be linked to), entry
// types kiln does not unpack, and a tar cut short (also one whose header
// claims more content than follows). kiln load runs it so that a broken or
// hostile image is rejected when it arrives, not when it is first used.
// Given an *os.File, only headers are read: contents are seeked over.
func Check(r io.Reader) error {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	err := forEntries(context.Background(), tr, func(hdr *tar.Header) error {
		rel, err := cleanName(hdr.Name)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		case tar.TypeLink:
			target, err := cleanName(hdr.Linkname)
			if err != nil {
				return fmt.Errorf("layer entry %q: hardlink target %q: %w", hdr.Name, hdr.Linkname, err)
			}
			if !seen[target] {
				return fmt.Errorf("layer entry %q: hardlink target %q is not an earlier file of this layer", hdr.Name, hdr.Linkname)
			}
		default:
			return fmt.Errorf("layer entry %q: unsupported tar entry type %q", hdr.Name, hdr.Typeflag)
		}
		if hdr.Typeflag != tar.TypeDir {
			seen[rel] = true
		}
		return nil
	})
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the tar is cut short (truncated, or an entry claims more content than follows)")
	}
	return err
}
