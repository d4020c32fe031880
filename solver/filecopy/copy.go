package filecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Copy copies the expanded sources into destRoot at dest (an absolute path
// inside the image, already joined with WORKDIR by the caller; a trailing
// "/" is significant), following docker's rules:
//   - a source directory's *contents* are copied into the destination
//     directory (created if missing, with parents);
//   - a source file: if dest ends with "/" or dest is an existing directory
//     in destRoot (resolved in-root), it is copied to dest/<basename>; else
//     dest is the file's new path (parents created);
//   - more than one source requires dest to end with "/" or be an existing
//     dir, else error `When using COPY with more than one source file, the
//     destination must be a directory and end with a /`;
//   - created parent directories are mode 0755 and owned by Chown (or 0:0);
//   - file content, mode bits (incl. setuid/setgid/sticky), symlink targets,
//     atimes and mtimes (dir times set after their children), and xattrs in
//     the "user." and "security.capability" namespaces are preserved;
//     hardlinked files inside one copy stay hardlinked to each other;
//     fifos/devices are copied as such;
//   - a file over an existing file replaces it; a directory over an existing
//     directory merges (the directory takes the source's metadata); a file
//     over an existing directory or vice versa replaces the old entry;
//   - all destination paths are resolved inside destRoot, so a symlink in
//     the image pointing to "/" or "../.." cannot make writes land outside
//     destRoot.
//
// As in BuildKit, the destination directory of a directory copy keeps its
// own owner and mode (0755 and Chown or 0:0 if this copy created it) and
// takes the source directory's timestamps.
func Copy(ctx context.Context, srcRoot string, sources []string, destRoot, dest string, opts Options) (err error) {
	if len(sources) == 0 {
		return nil
	}
	sroot, err := cleanRoot(srcRoot)
	if err != nil {
		return err
	}
	droot, err := cleanRoot(destRoot)
	if err != nil {
		return err
	}
	defer func() { err = trimErr(err, droot, sroot) }()

	dirHint := dest == "." || strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.")
	destAbs, err := securejoin.SecureJoin(droot, cleanRel(dest))
	if err != nil {
		return err
	}
	destIsDir := false
	if fi, err := os.Lstat(destAbs); err == nil {
		destIsDir = fi.IsDir()
	} else if !isNotExist(err) {
		return err
	}
	if len(sources) > 1 && !dirHint && !destIsDir {
		return errMultiSource
	}

	c := &copier{
		ctx:      ctx,
		opts:     opts,
		srcRoot:  sroot,
		destRoot: droot,
		links:    map[fileID]linkTarget{},
	}
	for _, src := range sources {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.copySource(src, destAbs, dirHint); err != nil {
			return err
		}
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

// linkTarget is the first copy of a hardlinked source inode.
type linkTarget struct {
	path string
	id   fileID
}

type copier struct {
	ctx      context.Context
	opts     Options
	srcRoot  string
	destRoot string
	links    map[fileID]linkTarget
}

// lazyDir is a destination directory that is created only once something
// below it is copied (needed for excluded directories whose children may be
// re-included).
type lazyDir struct {
	parent *lazyDir
	src    string
	dst    string
	fi     os.FileInfo
	made   bool
}

func (c *copier) copySource(src, destAbs string, dirHint bool) error {
	rel := cleanRel(src)
	var srcAbs string
	var err error
	if c.opts.FollowSourceSymlink {
		srcAbs, err = securejoin.SecureJoin(c.srcRoot, rel)
	} else {
		srcAbs, err = joinNoFollow(c.srcRoot, rel)
	}
	if err != nil {
		return err
	}
	fi, err := os.Lstat(srcAbs)
	if err != nil {
		if isNotExist(err) {
			return fmt.Errorf("%q: %w", rel, ErrNotFound)
		}
		return err
	}
	realRel, err := relTo(c.srcRoot, srcAbs)
	if err != nil {
		return err
	}

	if fi.IsDir() {
		if err := c.ensureDir(destAbs, true); err != nil {
			return err
		}
		top := &lazyDir{dst: destAbs, made: true}
		if err := c.copyChildren(srcAbs, realRel, top); err != nil {
			return err
		}
		return setTimes(destAbs, fi)
	}

	if c.excluded(rel) || c.excluded(realRel) {
		return nil
	}

	if c.opts.ExtractArchives && fi.Mode().IsRegular() {
		done, err := c.extractArchive(srcAbs, rel, destAbs)
		if err != nil || done {
			return err
		}
	}

	target := destAbs
	if dirHint {
		if err := c.ensureDir(destAbs, false); err != nil {
			return err
		}
		target = filepath.Join(destAbs, path.Base(rel))
	} else if dfi, err := os.Lstat(destAbs); err == nil && dfi.IsDir() {
		target = filepath.Join(destAbs, path.Base(rel))
	} else if err := c.mkdirAll(filepath.Dir(destAbs)); err != nil {
		return err
	}
	if target == c.destRoot {
		return fmt.Errorf("cannot copy %q over the root directory", rel)
	}
	return c.copyNonDir(srcAbs, fi, target)
}

func (c *copier) excluded(rel string) bool {
	return c.opts.Excluded != nil && rel != "." && c.opts.Excluded(rel)
}

// copyChildren copies the entries of srcDir into parent.dst.
func (c *copier) copyChildren(srcDir, srcRel string, parent *lazyDir) error {
	entries, err := os.ReadDir(srcDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		childSrc := filepath.Join(srcDir, name)
		childRel := joinRel(srcRel, name)
		childDst := filepath.Join(parent.dst, name)
		fi, err := os.Lstat(childSrc)
		if err != nil {
			return err
		}
		excl := c.excluded(childRel)
		if fi.IsDir() {
			d := &lazyDir{parent: parent, src: childSrc, dst: childDst, fi: fi}
			if !excl {
				if err := c.materialize(d); err != nil {
					return err
				}
			}
			if err := c.copyChildren(childSrc, childRel, d); err != nil {
				return err
			}
			if d.made {
				if err := setTimes(d.dst, d.fi); err != nil {
					return err
				}
			}
			continue
		}
		if excl {
			continue
		}
		if err := c.materialize(parent); err != nil {
			return err
		}
		if err := c.copyNonDir(childSrc, fi, childDst); err != nil {
			return err
		}
	}
	return nil
}

// materialize creates d (and its pending parents) in the destination,
// merging into an existing directory or replacing a non-directory.
func (c *copier) materialize(d *lazyDir) error {
	if d == nil || d.made {
		return nil
	}
	if err := c.materialize(d.parent); err != nil {
		return err
	}
	fi, err := os.Lstat(d.dst)
	switch {
	case err == nil && fi.IsDir():
		// merge
	case err == nil:
		if err := os.Remove(d.dst); err != nil {
			return err
		}
		fallthrough
	case isNotExist(err):
		if err := os.Mkdir(d.dst, 0o700); err != nil {
			return err
		}
	default:
		return err
	}
	if err := c.applyMeta(d.src, d.fi, d.dst); err != nil {
		return err
	}
	d.made = true
	return nil
}

// ensureDir makes sure abs is a directory, creating it and its parents as
// needed. An existing non-directory at abs is replaced if replace is set.
func (c *copier) ensureDir(abs string, replace bool) error {
	fi, err := os.Lstat(abs)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		if !replace || abs == c.destRoot {
			return &os.PathError{Op: "mkdir", Path: abs, Err: syscall.ENOTDIR}
		}
		if err := os.Remove(abs); err != nil {
			return err
		}
	} else if !isNotExist(err) {
		return err
	}
	if err := c.mkdirAll(abs); err != nil {
		return err
	}
	// Like current BuildKit, the destination directory a copy creates gets
	// the --chmod mode too (parents above it stay 0755).
	if c.opts.Chmod != nil {
		if err := unix.Fchmodat(unix.AT_FDCWD, abs, unixPerm(*c.opts.Chmod), 0); err != nil {
			return &os.PathError{Op: "chmod", Path: abs, Err: err}
		}
	}
	return nil
}

// mkdirAll creates abs (already resolved inside destRoot) and any missing
// parents with mode 0755, owned by Chown or 0:0. It never follows a
// symlink: an existing non-directory component is an error.
func (c *copier) mkdirAll(abs string) error {
	return mkdirAllIn(c.destRoot, abs, c.createdOwner())
}

func mkdirAllIn(root, abs string, owner Owner) error {
	rel, err := relTo(root, abs)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil
	}
	cur := root
	for _, comp := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, comp)
		fi, err := os.Lstat(cur)
		if err == nil {
			if fi.IsDir() {
				continue
			}
			return &os.PathError{Op: "mkdir", Path: cur, Err: syscall.ENOTDIR}
		}
		if !isNotExist(err) {
			return err
		}
		if err := os.Mkdir(cur, 0o755); err != nil {
			return err
		}
		if err := os.Lchown(cur, owner.UID, owner.GID); err != nil {
			return err
		}
		// The umask may have cleared bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, cur, 0o755, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: cur, Err: err}
		}
	}
	return nil
}

// clearTarget removes whatever is at target so a new entry can be created.
func (c *copier) clearTarget(target string) error {
	fi, err := os.Lstat(target)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return err
	}
	if target == c.destRoot {
		return &os.PathError{Op: "replace", Path: target, Err: syscall.EISDIR}
	}
	if fi.IsDir() {
		return os.RemoveAll(target)
	}
	return os.Remove(target)
}

// copyNonDir copies a file, symlink or special file to target, replacing
// whatever is there.
func (c *copier) copyNonDir(src string, fi os.FileInfo, target string) error {
	if err := c.clearTarget(target); err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode()
	switch {
	case mode.IsRegular():
		id := fileID{dev: uint64(st.Dev), ino: st.Ino}
		if st.Nlink > 1 {
			if lt, ok := c.links[id]; ok && c.stillOurs(lt) {
				return os.Link(lt.path, target)
			}
		}
		if err := copyContent(src, target); err != nil {
			return err
		}
		if err := c.applyMeta(src, fi, target); err != nil {
			return err
		}
		if err := setTimes(target, fi); err != nil {
			return err
		}
		if st.Nlink > 1 {
			var tst unix.Stat_t
			if err := unix.Lstat(target, &tst); err == nil {
				c.links[id] = linkTarget{path: target, id: fileID{dev: uint64(tst.Dev), ino: tst.Ino}}
			}
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil {
			return err
		}
		if err := c.applyMeta(src, fi, target); err != nil {
			return err
		}
		return setTimes(target, fi)
	case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
		if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: target, Err: err}
		}
		if err := c.applyMeta(src, fi, target); err != nil {
			return err
		}
		return setTimes(target, fi)
	default:
		return fmt.Errorf("cannot copy %s: unsupported file type %v", src, mode.Type())
	}
}

// stillOurs reports whether the first copy of a hardlinked inode is still
// the file this copy wrote (a later source may have replaced it).
func (c *copier) stillOurs(lt linkTarget) bool {
	var st unix.Stat_t
	if err := unix.Lstat(lt.path, &st); err != nil {
		return false
	}
	return uint64(st.Dev) == lt.id.dev && st.Ino == lt.id.ino
}

// copyContent writes a new file at target with src's content. io.Copy
// between two *os.File lets the runtime use copy_file_range.
func copyContent(src, target string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// owner returns the owner for a copied entry whose source is uid:gid.
func (c *copier) owner(uid, gid int) Owner {
	switch {
	case c.opts.Chown != nil:
		return *c.opts.Chown
	case c.opts.ResetOwner:
		return Owner{}
	default:
		return Owner{UID: uid, GID: gid}
	}
}

// createdOwner is the owner of directories the copy creates on its own.
func (c *copier) createdOwner() Owner {
	if c.opts.Chown != nil {
		return *c.opts.Chown
	}
	return Owner{}
}

// applyMeta sets owner, mode and xattrs of target from the source entry (not
// times: those are set last, after content and children).
func (c *copier) applyMeta(src string, fi os.FileInfo, target string) error {
	st := fi.Sys().(*syscall.Stat_t)
	o := c.owner(int(st.Uid), int(st.Gid))
	if err := os.Lchown(target, o.UID, o.GID); err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil
	}
	// chmod after chown: chown clears setuid/setgid.
	perm := st.Mode & 0o7777
	if c.opts.Chmod != nil {
		perm = unixPerm(*c.opts.Chmod)
	} else if c.opts.ChmodFunc != nil {
		perm = unixPerm(c.opts.ChmodFunc(fi.Mode()))
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, target, perm, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: target, Err: err}
	}
	return copyXattrs(src, target)
}

// unixPerm converts a FileMode to raw permission bits, accepting both Go's
// mode flags and raw octal special bits.
func unixPerm(m os.FileMode) uint32 {
	p := uint32(m.Perm()) | uint32(m)&0o7000
	if m&os.ModeSetuid != 0 {
		p |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		p |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		p |= unix.S_ISVTX
	}
	return p
}

// setTimes copies the source's atime and mtime onto target without
// following a symlink.
func setTimes(target string, fi os.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	ts := []unix.Timespec{
		{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec},
		{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: target, Err: err}
	}
	return nil
}

// keepXattr selects the xattrs a copy preserves.
func keepXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || name == "security.capability"
}

// ignorableXattrErr reports errors meaning a filesystem cannot hold (or does
// not have) an xattr; like BuildKit, such failures do not fail the copy.
func ignorableXattrErr(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EPERM)
}

func copyXattrs(src, target string) error {
	names, err := listXattrs(src)
	if err != nil {
		if ignorableXattrErr(err) {
			return nil
		}
		return &os.PathError{Op: "listxattr", Path: src, Err: err}
	}
	for _, name := range names {
		if !keepXattr(name) {
			continue
		}
		val, err := getXattr(src, name)
		if err != nil {
			if ignorableXattrErr(err) {
				continue
			}
			return &os.PathError{Op: "getxattr " + name, Path: src, Err: err}
		}
		if err := unix.Lsetxattr(target, name, val, 0); err != nil {
			if ignorableXattrErr(err) {
				continue
			}
			return &os.PathError{Op: "setxattr " + name, Path: target, Err: err}
		}
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(p, nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
