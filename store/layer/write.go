package layer

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// WriteOptions tunes WriteTar.
type WriteOptions struct {
	// Clamp, if non-zero, is the latest mtime a layer may record (the
	// SOURCE_DATE_EPOCH convention): later mtimes are replaced by it, so
	// files touched at build time do not make the layer differ per build.
	Clamp time.Time
	// Exclude, if set, leaves out the entries (and all below them) whose
	// path relative to dir ("etc/hosts") it returns true for.
	Exclude func(rel string) bool
}

// WriteTar writes the contents of dir (an overlay upper dir or a snapshot
// dir) to w as an uncompressed OCI layer tar and returns the sha256 digest
// (the diffID) and size of the bytes written.
//
// The output depends only on the tree's names, types, contents, modes,
// owners, kept xattrs and mtimes, so the same tree always gives the same
// bytes: entries come depth first with siblings in byte order of their tar
// names, times other than mtime are left out, user and group names are left
// out (they would depend on the host's /etc/passwd), and mtimes are cut to
// whole seconds (as Docker and BuildKit do) so headers need no PAX mtime
// record.
//
// Whiteout devices become ".wh.<name>" files and opaque directories get a
// ".wh..wh..opq" entry right after their own. Sockets are skipped: they
// cannot be stored in a tar and are meaningless without a listening process.
// dir itself is not written; only what is inside it.
func WriteTar(ctx context.Context, dir string, w io.Writer, opts WriteOptions) (digest.Digest, int64, error) {
	digester := digest.Canonical.Digester()
	cw := &countingWriter{w: io.MultiWriter(w, digester.Hash())}
	tw := &treeWriter{
		ctx:     ctx,
		tw:      tar.NewWriter(cw),
		clamp:   opts.Clamp,
		exclude: opts.Exclude,
		links:   make(map[inode]string),
	}
	if err := tw.writeRoot(dir); err != nil {
		return "", cw.n, fmt.Errorf("write layer from %s: %w", dir, err)
	}
	if err := tw.tw.Close(); err != nil {
		return "", cw.n, fmt.Errorf("write layer from %s: %w", dir, err)
	}
	return digester.Digest(), cw.n, nil
}

// inode identifies a file for hardlink detection.
type inode struct{ dev, ino uint64 }

type treeWriter struct {
	ctx     context.Context
	tw      *tar.Writer
	clamp   time.Time
	exclude func(string) bool
	// links maps an inode with several names to the tar name it was first
	// written under, so later names become TypeLink entries.
	links map[inode]string
}

// child is one directory entry with the name it gets in the tar.
type child struct {
	name    string // on disk
	tarName string // ".wh.<name>" for whiteouts, else name
	st      unix.Stat_t
}

func (t *treeWriter) writeRoot(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("not a directory")
	}
	// The root's own opaque marker can only come from Apply of a layer that
	// had a top-level ".wh..wh..opq"; keep it so the round trip is exact.
	opaque, err := isOpaque(dir)
	if err != nil {
		return err
	}
	if opaque {
		if err := t.writeOpaque("", &st); err != nil {
			return err
		}
	}
	return t.writeDir(dir, "")
}

// writeDir writes the entries inside the directory at path, whose tar name
// is prefix ("" for the root, else ending in "/").
func (t *treeWriter) writeDir(path, prefix string) error {
	children, err := readChildren(path)
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		if t.exclude != nil && t.exclude(prefix+c.name) {
			continue
		}
		if err := t.writeEntry(filepath.Join(path, c.name), prefix, c); err != nil {
			return err
		}
	}
	return nil
}

// readChildren lists a directory sorted by tar name. Sorting by the tar name
// rather than the on-disk name keeps the tar itself in byte order even where
// a whiteout's ".wh." prefix moves it among its siblings.
func readChildren(path string) ([]child, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read dir %s: %w", path, err)
	}
	children := make([]child, 0, len(names))
	for _, name := range names {
		// A real file named ".wh.*" would turn into a whiteout when the
		// layer is applied, silently deleting data; refuse rather than
		// write a layer that means something else.
		if strings.HasPrefix(name, whiteoutPrefix) {
			return nil, fmt.Errorf("%s: name reserved for whiteouts in OCI layers", filepath.Join(path, name))
		}
		c := child{name: name, tarName: name}
		if err := unix.Lstat(filepath.Join(path, name), &c.st); err != nil {
			return nil, fmt.Errorf("stat %s: %w", filepath.Join(path, name), err)
		}
		if isWhiteout(&c.st) {
			c.tarName = whiteoutPrefix + name
		}
		children = append(children, c)
	}
	slices.SortFunc(children, func(a, b child) int { return strings.Compare(a.tarName, b.tarName) })
	return children, nil
}

// IsWhiteout reports whether st is an overlay whiteout: a char device 0/0.
func IsWhiteout(st *unix.Stat_t) bool { return isWhiteout(st) }

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func (t *treeWriter) writeEntry(path, prefix string, c child) error {
	name := prefix + c.tarName
	st := &c.st
	if isWhiteout(st) {
		// The spec leaves whiteout metadata open; mode, owner and size are
		// zero so that only the name and mtime carry meaning.
		return t.write(&tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			ModTime:  t.mtime(st),
			Format:   tar.FormatPAX,
		}, nil)
	}

	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: t.mtime(st),
		Format:  tar.FormatPAX,
	}
	kind := st.Mode & unix.S_IFMT
	if kind != unix.S_IFDIR && kind != unix.S_IFSOCK && st.Nlink > 1 {
		key := inode{dev: uint64(st.Dev), ino: st.Ino}
		if first, ok := t.links[key]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return t.write(hdr, nil)
		}
		t.links[key] = name
	}
	records, err := xattrRecords(path)
	if err != nil {
		return err
	}
	hdr.PAXRecords = records

	switch kind {
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		return t.writeFile(path, hdr)
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := t.write(hdr, nil); err != nil {
			return err
		}
		opaque, err := isOpaque(path)
		if err != nil {
			return err
		}
		if opaque {
			if err := t.writeOpaque(hdr.Name, st); err != nil {
				return err
			}
		}
		return t.writeDir(path, hdr.Name)
	case unix.S_IFLNK:
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if kind == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		return nil
	default:
		return fmt.Errorf("%s: unsupported file type %#o", path, kind)
	}
	return t.write(hdr, nil)
}

// writeOpaque writes the opaque marker for the directory whose tar name is
// dirName, with the directory's mtime so that it too is deterministic.
func (t *treeWriter) writeOpaque(dirName string, dirStat *unix.Stat_t) error {
	return t.write(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     dirName + opaqueWhiteout,
		ModTime:  t.mtime(dirStat),
		Format:   tar.FormatPAX,
	}, nil)
}

func (t *treeWriter) writeFile(path string, hdr *tar.Header) error {
	// O_NOFOLLOW: the entry was a regular file when we stat'ed it; if it
	// has been swapped for a symlink since, fail rather than archive
	// whatever it points at.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return t.write(hdr, f)
}

// write writes one header and, for regular files, exactly hdr.Size bytes of
// content; a file that shrank since it was stat'ed is an error rather than
// a corrupt tar.
func (t *treeWriter) write(hdr *tar.Header, content io.Reader) error {
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header for %s: %w", hdr.Name, err)
	}
	if content == nil || hdr.Size == 0 {
		return nil
	}
	if _, err := io.CopyN(t.tw, content, hdr.Size); err != nil {
		return fmt.Errorf("write content of %s: %w", hdr.Name, err)
	}
	return nil
}

// mtime returns the mtime to record: clamped, then cut to whole seconds.
func (t *treeWriter) mtime(st *unix.Stat_t) time.Time {
	m := time.Unix(st.Mtim.Unix())
	if !t.clamp.IsZero() && m.After(t.clamp) {
		m = t.clamp
	}
	return time.Unix(m.Unix(), 0)
}

// xattrRecords returns the kept xattrs of path as PAX records, or nil.
func xattrRecords(path string) (map[string]string, error) {
	names, err := listXattrs(path)
	if err != nil {
		return nil, err
	}
	var records map[string]string
	for _, name := range names {
		if !keepXattr(name) {
			continue
		}
		value, ok, err := getXattr(path, name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // removed between list and get
		}
		if records == nil {
			records = make(map[string]string)
		}
		records[paxXattrPrefix+name] = string(value)
	}
	return records, nil
}

// IsOpaque reports whether the directory at path is an opaque overlay dir.
func IsOpaque(path string) (bool, error) { return isOpaque(path) }

func isOpaque(path string) (bool, error) {
	for _, name := range []string{opaqueXattr, userOpaqueXattr} {
		value, ok, err := getXattr(path, name)
		if err != nil {
			return false, err
		}
		// Only "y" means opaque; newer kernels also write "x" to mark a
		// merge dir that merely contains whiteouts.
		if ok && string(value) == "y" {
			return true, nil
		}
	}
	return false, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
