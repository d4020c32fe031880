package layer

import (
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Usage walks dir without following symlinks and returns the total size of
// the regular files in it and the number of entries (dir itself not
// counted). A file with several hardlinks counts once toward bytes, as it
// is stored once in the layer tar, but each name counts as an entry.
func Usage(dir string) (bytes int64, entries int, err error) {
	seen := make(map[inode]bool)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		entries++
		if !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if st.Nlink > 1 {
			key := inode{dev: uint64(st.Dev), ino: st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		bytes += st.Size
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, err)
	}
	return bytes, entries, nil
}
