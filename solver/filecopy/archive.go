package filecopy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"github.com/ulikunitz/xz"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

type compression int

const (
	uncompressed compression = iota
	compGzip
	compBzip2
	compXz
	compZstd
)

var (
	magicGzip  = []byte{0x1f, 0x8b, 0x08}
	magicBzip2 = []byte{'B', 'Z', 'h'}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// detectCompression looks at the first bytes of a file.
func detectCompression(b []byte) compression {
	switch {
	case bytes.HasPrefix(b, magicGzip):
		return compGzip
	case bytes.HasPrefix(b, magicBzip2):
		return compBzip2
	case bytes.HasPrefix(b, magicXz):
		return compXz
	case bytes.HasPrefix(b, magicZstd):
		return compZstd
	case len(b) >= 4 && b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18:
		// zstd skippable frame (0x184D2A50-0x184D2A5F, little endian)
		return compZstd
	}
	return uncompressed
}

// extractArchive extracts srcAbs into the directory destAbs if it is a
// (possibly compressed) tar archive. It reports false, without touching the
// destination, if the file is not an archive.
func (c *copier) extractArchive(srcAbs, rel, destAbs string) (bool, error) {
	f, err := os.OpenFile(srcAbs, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(8)

	var r io.Reader = br
	switch detectCompression(head) {
	case compXz:
		xr, err := xz.NewReader(br)
		if err != nil {
			return false, nil
		}
		r = xr
	case compGzip:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return false, nil
		}
		defer gz.Close()
		r = gz
	case compBzip2:
		r = bzip2.NewReader(br)
	case compZstd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return false, nil
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil {
		// Not a tar archive (or an empty one): copied as a plain file.
		return false, nil
	}

	if err := c.ensureDir(destAbs, true); err != nil {
		return true, err
	}
	x := &extractor{c: c, archive: rel, dir: destAbs}
	for {
		if err := c.ctx.Err(); err != nil {
			return true, err
		}
		if err := x.entry(hdr, tr); err != nil {
			return true, err
		}
		hdr, err = tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return true, fmt.Errorf("%q: reading archive: %w", rel, err)
		}
	}
	return true, x.finish()
}

type extractor struct {
	c       *copier
	archive string
	dir     string
	dirs    []dirTimes
}

type dirTimes struct {
	path         string
	atime, mtime time.Time
}

// escapes reports whether a cleaned, relative slash path leaves its root.
func escapes(p string) bool {
	return p == ".." || strings.HasPrefix(p, "../")
}

func (x *extractor) errorf(name, format string, args ...any) error {
	return fmt.Errorf("%q: archive entry %q: %s", x.archive, name, fmt.Sprintf(format, args...))
}

// resolve maps an archive path to a host path inside the extraction
// directory: the parent is resolved in-root (symlinks clamped), the final
// component is not followed.
func (x *extractor) resolve(name string) (string, string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == "" {
		rel = "."
	}
	if escapes(rel) {
		return "", "", x.errorf(name, "path is outside of the destination")
	}
	if rel == "." {
		return x.dir, rel, nil
	}
	dir, base := path.Split(rel)
	parent, err := securejoin.SecureJoin(x.dir, dir)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(parent, base), rel, nil
}

func (x *extractor) entry(hdr *tar.Header, tr io.Reader) error {
	target, rel, err := x.resolve(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if rel == "." && hdr.Typeflag != tar.TypeDir {
		return x.errorf(hdr.Name, "not a directory")
	}
	if target != x.dir {
		if err := x.c.mkdirAll(filepath.Dir(target)); err != nil {
			return err
		}
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if rel == "." {
			// the archive's own root entry does not change the
			// destination directory, like BuildKit
			return nil
		}
		fi, err := os.Lstat(target)
		switch {
		case err == nil && fi.IsDir():
			// merge
		case err == nil:
			if err := os.Remove(target); err != nil {
				return err
			}
			fallthrough
		case isNotExist(err):
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		default:
			return err
		}
		if err := x.meta(hdr, target); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirTimes{target, accessTime(hdr), hdr.ModTime})
		return nil

	case tar.TypeReg, tar.TypeGNUSparse:
		if err := x.c.clearTarget(target); err != nil {
			return err
		}
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("%q: archive entry %q: %w", x.archive, hdr.Name, err)
		}
		if err := out.Close(); err != nil {
			return err
		}

	case tar.TypeSymlink:
		// Like docker, refuse relative links that point above the
		// extraction directory.
		if escapes(path.Join(path.Dir(rel), hdr.Linkname)) {
			return x.errorf(hdr.Name, "symlink target %q is outside of the destination", hdr.Linkname)
		}
		if err := x.c.clearTarget(target); err != nil {
			return err
		}
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}

	case tar.TypeLink:
		old, _, err := x.resolve(hdr.Linkname)
		if err != nil {
			return x.errorf(hdr.Name, "hardlink target %q is outside of the destination", hdr.Linkname)
		}
		if old == target {
			return nil
		}
		if err := x.c.clearTarget(target); err != nil {
			return err
		}
		if err := os.Link(old, target); err != nil {
			return x.errorf(hdr.Name, "%v", err)
		}
		return nil

	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(hdr.Mode) & 0o7777
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		if err := x.c.clearTarget(target); err != nil {
			return err
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(target, mode, int(dev)); err != nil {
			return &os.PathError{Op: "mknod", Path: target, Err: err}
		}

	default:
		return x.errorf(hdr.Name, "unsupported entry type %q", string(hdr.Typeflag))
	}

	if err := x.meta(hdr, target); err != nil {
		return err
	}
	return setTimesTo(target, accessTime(hdr), hdr.ModTime)
}

// meta applies the header's owner (or Chown), mode and xattrs.
func (x *extractor) meta(hdr *tar.Header, target string) error {
	o := Owner{UID: hdr.Uid, GID: hdr.Gid}
	if x.c.opts.Chown != nil {
		o = *x.c.opts.Chown
	}
	if err := os.Lchown(target, o.UID, o.GID); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return nil
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, target, uint32(hdr.Mode)&0o7777, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: target, Err: err}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !keepXattr(name) {
			continue
		}
		if err := unix.Lsetxattr(target, name, []byte(v), 0); err != nil && !ignorableXattrErr(err) {
			return &os.PathError{Op: "setxattr " + name, Path: target, Err: err}
		}
	}
	return nil
}

func (x *extractor) finish() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if err := setTimesTo(d.path, d.atime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

func accessTime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

func setTimesTo(target string, atime, mtime time.Time) error {
	ts := []unix.Timespec{
		{Sec: atime.Unix(), Nsec: int64(atime.Nanosecond())},
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: target, Err: err}
	}
	return nil
}
