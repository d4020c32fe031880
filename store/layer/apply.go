package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/kiln-build/kiln/internal/readers"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Apply unpacks an uncompressed layer tar from r into dir, a fresh empty
// snapshot directory, and returns the sha256 digest and size of every byte
// read from r (including any padding after the end-of-archive marker), so
// the caller can check it against the expected diffID. On error dir is left
// half-filled for the caller to remove.
//
// ".wh.<name>" entries become overlay whiteouts (char device 0/0 at <name>)
// and "<dir>/.wh..wh..opq" sets trusted.overlay.opaque=y on <dir>. Other
// ".wh..wh.*" names (aufs bookkeeping) are skipped.
//
// Names are taken relative to dir: leading "/" is dropped, so "/etc/x" is
// written at dir/etc/x, as Docker and containerd do. A name or hardlink
// target that still climbs out with ".." is an error wrapping
// ErrUnsafePath. Parent directories are resolved with securejoin, so a
// symlink in dir (even one from this layer, pointing at "/" or "../..") is
// followed as if dir were the filesystem root and never leads outside it.
// The final component is never followed: files are created with O_EXCL and
// O_NOFOLLOW after removing whatever was there, and metadata is set with
// the l* / AT_SYMLINK_NOFOLLOW calls. Symlink targets are stored verbatim,
// absolute ones too; they are only dangerous when followed.
//
// A tar cut inside a header or file content is an error. One cut after its
// last entry's content (missing padding or the end-of-archive marker) reads
// as complete, as it does for archive/tar, Docker and containerd; the
// caller's diffID check is what catches that.
//
// This assumes nothing else changes dir while Apply runs; it is meant for a
// fresh snapshot directory that only kiln can see.
func Apply(ctx context.Context, r io.Reader, dir string) (digest.Digest, int64, error) {
	digester := digest.Canonical.Digester()
	cr := &readers.Counting{R: io.TeeReader(r, digester.Hash())}
	if err := unpack(ctx, tar.NewReader(cr), dir, true); err != nil {
		return "", cr.N, fmt.Errorf("apply layer to %s: %w", dir, err)
	}
	// The diffID covers the whole stream, and tar writers may pad past the
	// two zero blocks (GNU tar pads to 10 KiB records), so read it all.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return "", cr.N, fmt.Errorf("apply layer to %s: read trailing bytes: %w", dir, err)
	}
	return digester.Digest(), cr.N, nil
}

// Extract unpacks a plain tar archive from r into dir, an empty directory,
// with Apply's path safety but none of its layer semantics: an entry named
// ".wh.x" is a file called ".wh.x", not a deletion. It is for archives that
// are not image layers, such as a build context sent on stdin.
func Extract(ctx context.Context, r io.Reader, dir string) error {
	if err := unpack(ctx, tar.NewReader(r), dir, false); err != nil {
		return fmt.Errorf("extract to %s: %w", dir, err)
	}
	return nil
}

// unpack writes tr's entries below dir; with whiteouts set, ".wh." names
// are layer deletions (see Apply).
func unpack(ctx context.Context, tr *tar.Reader, dir string, whiteouts bool) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return errors.New("not a directory")
	}
	u := &unpacker{root: dir, whiteouts: whiteouts, dirTimes: make(map[string]time.Time)}
	err = forEntries(ctx, tr, func(hdr *tar.Header) error {
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return u.setDirTimes()
}

// forEntries calls fn for each entry of tr, up to the end of the archive;
// it stops at the first error of fn, of the tar ("read tar: …", wrapping
// the reader's error) or of ctx.
func forEntries(ctx context.Context, tr *tar.Reader, fn func(*tar.Header) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := fn(hdr); err != nil {
			return err
		}
	}
}

type unpacker struct {
	root string
	// whiteouts: ".wh." entries are deletions of a layer, not files.
	whiteouts bool
	// dirs lists directories in the order they were unpacked, by cleaned
	// tar name, and dirTimes holds the mtime of each. Their mtimes are set
	// last because creating children changes them.
	dirs     []string
	dirTimes map[string]time.Time
}

// cleanName turns a tar name into a clean path relative to the root, "."
// for the root itself. Leading slashes are dropped (absolute names are
// taken as relative to the layer root); a name that still climbs out with
// ".." is refused rather than clamped, because such a tar is broken or
// hostile and silently writing somewhere else would hide that.
func cleanName(name string) (string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", ErrUnsafePath
	}
	return rel, nil
}

// locate returns the host path for rel (a cleanName result): its parent
// resolved inside the root with securejoin and its last component appended
// unresolved, so that the final component is never followed.
func (u *unpacker) locate(rel string) (string, error) {
	if rel == "." {
		return u.root, nil
	}
	dir, base := path.Split(rel)
	parent, err := securejoin.SecureJoin(u.root, dir)
	if err != nil {
		return "", fmt.Errorf("resolve parent: %w", err)
	}
	return filepath.Join(parent, base), nil
}

// resolve is locate for an entry about to be created: tars need not list
// parent directories, so missing ones are made. MkdirAll only creates the
// part securejoin could not resolve, which does not exist and so holds no
// symlinks to follow.
func (u *unpacker) resolve(rel string) (string, error) {
	target, err := u.locate(rel)
	if err != nil || rel == "." {
		return target, err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", fmt.Errorf("create parent: %w", err)
	}
	return target, nil
}

func (u *unpacker) entry(hdr *tar.Header, content io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	base := path.Base(rel)
	switch {
	case !u.whiteouts:
	case base == opaqueWhiteout:
		return u.opaque(path.Dir(rel))
	case strings.HasPrefix(base, whiteoutMeta):
		return nil
	case strings.HasPrefix(base, whiteoutPrefix):
		return u.whiteout(path.Dir(rel), strings.TrimPrefix(base, whiteoutPrefix), hdr)
	}

	target, err := u.resolve(rel)
	if err != nil {
		return err
	}
	if err := u.clear(target, rel, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dir(target, rel, hdr)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return u.file(target, hdr, content)
	case tar.TypeLink:
		return u.hardlink(target, hdr.Linkname)
	case tar.TypeSymlink:
		if err := unix.Symlink(hdr.Linkname, target); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := mknod(target, hdr); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return setMetadata(target, hdr)
}

// clear removes whatever is at target so the entry can be created there,
// as tar does for later entries with the same name. An existing directory
// is kept when the entry is a directory too, so its children survive.
func (u *unpacker) clear(target, rel string, isDir bool) error {
	info, err := os.Lstat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if isDir && info.IsDir() {
		return nil
	}
	if rel == "." {
		return errors.New("cannot replace the layer root with a non-directory")
	}
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("replace existing: %w", err)
	}
	return nil
}

func (u *unpacker) dir(target, rel string, hdr *tar.Header) error {
	if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mkdir: %w", err)
	}
	if err := setOwnerModeXattrs(target, hdr); err != nil {
		return err
	}
	if _, seen := u.dirTimes[rel]; !seen {
		u.dirs = append(u.dirs, rel)
	}
	u.dirTimes[rel] = hdr.ModTime
	return nil
}

func (u *unpacker) file(target string, hdr *tar.Header, content io.Reader) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if isSparse(hdr) {
		err = copySparse(f, content, hdr.Size)
	} else {
		_, err = io.Copy(f, content)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	return setMetadata(target, hdr)
}

// isSparse tells a GNU sparse entry (old format or PAX GNU.sparse.*
// records), whose holes the tar reader returns as zeros.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// copySparse writes a sparse entry's content leaving its zero blocks as
// holes, so a small tar that claims a huge sparse file costs no disk.
func copySparse(f *os.File, r io.Reader, size int64) error {
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if allZero(buf[:n]) {
				if _, serr := f.Seek(int64(n), io.SeekCurrent); serr != nil {
					return serr
				}
			} else if _, werr := f.Write(buf[:n]); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off != size {
		return fmt.Errorf("sparse file: %d bytes of content, header says %d", off, size)
	}
	return f.Truncate(size)
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// hardlink links target to the entry named linkname. The link target is
// resolved like any entry name, and linkat without AT_SYMLINK_FOLLOW links
// a final symlink itself rather than what it points at, so a hardlink can
// never reach a file outside the root.
func (u *unpacker) hardlink(target, linkname string) error {
	rel, err := cleanName(linkname)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", linkname, err)
	}
	if rel == "." {
		return fmt.Errorf("hardlink target %q: cannot link to the layer root", linkname)
	}
	old, err := u.locate(rel)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", linkname, err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, old, unix.AT_FDCWD, target, 0); err != nil {
		return fmt.Errorf("hardlink to %q: %w", linkname, err)
	}
	return nil
}

func mknod(target string, hdr *tar.Header) error {
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknod(target, mode|0o600, int(dev)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	return nil
}

// whiteout records that name in the directory rel is deleted: overlay's
// char device 0/0, owned by root with mode 0 as overlayfs makes them.
func (u *unpacker) whiteout(rel, name string, hdr *tar.Header) error {
	// ".wh.." and ".wh..." would put the device at the directory itself or
	// its parent.
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q: %w", name, ErrUnsafePath)
	}
	target, err := u.resolve(path.Join(rel, name))
	if err != nil {
		return err
	}
	if err := u.clear(target, path.Join(rel, name), false); err != nil {
		return err
	}
	if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create whiteout: %w", err)
	}
	return setTimes(target, hdr)
}

// opaque marks the directory rel as hiding all lower layers' contents,
// creating it if the tar did not list it first. Unlike an entry's own name,
// rel is a parent here ("<rel>/.wh..wh..opq"), so a symlink at rel is
// followed inside the root, as it is for any other "<rel>/<name>" entry.
func (u *unpacker) opaque(rel string) error {
	target, err := securejoin.SecureJoin(u.root, rel)
	if err != nil {
		return fmt.Errorf("resolve opaque dir: %w", err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create opaque dir: %w", err)
	}
	if err := unix.Lsetxattr(target, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("mark opaque: %w", err)
	}
	return nil
}

// setMetadata restores owner, mode, xattrs and times of a non-directory.
func setMetadata(target string, hdr *tar.Header) error {
	if err := setOwnerModeXattrs(target, hdr); err != nil {
		return err
	}
	return setTimes(target, hdr)
}

// setOwnerModeXattrs restores what the header says about target, in the
// order that keeps it: chown clears setuid/setgid bits and file
// capabilities, so it goes first.
func setOwnerModeXattrs(target string, hdr *tar.Header) error {
	if err := unix.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	isSymlink := hdr.Typeflag == tar.TypeSymlink
	// Symlink modes are fixed at 0777 on Linux, and chmod would follow it.
	if !isSymlink {
		if err := unix.Chmod(target, uint32(hdr.Mode&0o7777)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, paxXattrPrefix)
		if !ok || !keepXattr(name) {
			continue
		}
		// The kernel refuses user.* xattrs on symlinks; a tar carrying
		// them is odd but not worth failing over.
		if isSymlink && strings.HasPrefix(name, "user.") {
			continue
		}
		if err := unix.Lsetxattr(target, name, []byte(value), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func setTimes(target string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return utimes(target, atime, hdr.ModTime)
}

func utimes(target string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setDirTimes sets directory mtimes deepest-last-first, so setting one does
// not disturb another. Paths are resolved again because a later entry may
// have replaced a parent with a symlink since the directory was made;
// directories later replaced by something else are skipped.
func (u *unpacker) setDirTimes() error {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		rel := u.dirs[i]
		target, err := u.locate(rel)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", rel, err)
		}
		info, err := os.Lstat(target)
		if err != nil || !info.IsDir() {
			continue
		}
		mtime := u.dirTimes[rel]
		if err := utimes(target, mtime, mtime); err != nil {
			return fmt.Errorf("layer entry %q: %w", rel, err)
		}
	}
	return nil
}
