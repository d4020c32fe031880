// Package atomicfile writes files so that readers see either the old file or
// the whole new one, never a partial write: data goes to a temp file in the
// destination's directory, is fsynced, and is renamed into place; then the
// directory is fsynced, so that the new name survives a power cut too.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix marks kiln's temp files; a crash leaves at most such files,
// which the store's cleanup removes.
const TempPrefix = ".tmp-"

// WriteFile atomically replaces path with data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write atomically replaces path with what fill writes. If fill fails the
// temp file is removed and path is untouched.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), TempPrefix+filepath.Base(path)+"-")
	if err != nil {
		// name the file the caller asked for, not the temp file
		var pe *os.PathError
		if errors.As(err, &pe) {
			return &os.PathError{Op: "create", Path: path, Err: pe.Err}
		}
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := Rename(tmp, path); err != nil {
		return fmt.Errorf("commit %s: %w", path, err)
	}
	ok = true
	return nil
}

// Rename moves a complete, synced file (or directory) to newpath and syncs
// newpath's directory, which makes the rename itself durable: without it a
// crash can lose the new name although the data was on disk.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(newpath))
}

// SyncDir fsyncs the directory dir, making the names created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// IsTemp reports whether name is one of kiln's temp files.
func IsTemp(name string) bool { return strings.HasPrefix(filepath.Base(name), TempPrefix) }
