package layer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// ErrMismatch is wrapped by Verify's error when dir does not hold what the
// tar says.
var ErrMismatch = errors.New("snapshot differs from its layer")

// want is what Verify expects at one path of the directory.
type want struct {
	typ      byte // tar type; 'w' for a whiteout
	mode     int64
	uid, gid int
	size     int64
	sum      [sha256.Size]byte
	link     string // symlink target, or hardlink target (relative path)
	major    int64
	minor    int64
}

// Verify checks that dir, a snapshot directory, holds exactly what applying
// the uncompressed layer tar r would produce: every entry with its type,
// mode, owner, content (sha256) or link target, whiteouts as 0/0 devices and
// opaque markers, and nothing else besides the parent directories a tar may
// leave implicit. Timestamps and xattrs other than the opaque marker are not
// compared. Paths are resolved inside dir as Apply resolves them, so a
// damaged snapshot cannot make Verify read outside it.
//
// The result does not depend on how the tar was written (ordering, header
// format), which is why kiln doctor --deep uses it rather than re-tarring
// the directory: a layer unpacked from a registry would never re-tar to the
// same bytes.
func Verify(ctx context.Context, r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	wants := map[string]*want{}
	opaque := map[string]bool{}
	err := forEntries(ctx, tr, func(hdr *tar.Header) error {
		rel, err := cleanName(hdr.Name)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		base := path.Base(rel)
		switch {
		case base == opaqueWhiteout:
			opaque[path.Dir(rel)] = true
			return nil
		case strings.HasPrefix(base, whiteoutMeta):
			return nil
		case strings.HasPrefix(base, whiteoutPrefix):
			p := path.Join(path.Dir(rel), strings.TrimPrefix(base, whiteoutPrefix))
			dropBelow(wants, p)
			wants[p] = &want{typ: 'w'}
			return nil
		}
		w := &want{typ: hdr.Typeflag, mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid, major: hdr.Devmajor, minor: hdr.Devminor}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			w.typ = tar.TypeReg
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				return fmt.Errorf("read tar: %w", err)
			}
			w.size = n
			copy(w.sum[:], h.Sum(nil))
		case tar.TypeSymlink:
			w.link = hdr.Linkname
		case tar.TypeLink:
			target, err := cleanName(hdr.Linkname)
			if err != nil {
				return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
			}
			w.link = target
		}
		if hdr.Typeflag != tar.TypeDir {
			dropBelow(wants, rel)
		}
		wants[rel] = w
		return nil
	})
	if err != nil {
		return err
	}
	// Whatever the tar left after its last entry does not matter here: the
	// caller checked the blob's digest.
	io.Copy(io.Discard, r)

	var diffs []string
	note := func(format string, a ...any) { diffs = append(diffs, fmt.Sprintf(format, a...)) }
	rels := make([]string, 0, len(wants))
	for rel := range wants {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := locateIn(dir, rel)
		if err != nil {
			note("%s: %v", rel, err)
			continue
		}
		if d := compare(dir, p, wants[rel]); d != "" {
			note("%s: %s", rel, d)
		}
	}
	for rel := range opaque {
		p, err := locateIn(dir, rel)
		if err != nil {
			note("%s: %v", rel, err)
			continue
		}
		if v, ok, err := getXattr(p, opaqueXattr); err != nil || !ok || string(v) != "y" {
			note("%s: not marked opaque", rel)
		}
	}
	// Anything else in dir must be a parent directory the tar left implicit.
	parents := map[string]bool{}
	for _, rel := range append(rels, keys(opaque)...) {
		for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
			parents[d] = true
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." || wants[rel] != nil || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		if d.IsDir() && (parents[rel] || opaque[rel]) {
			return nil
		}
		note("%s: not in the layer", rel)
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", dir, err)
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return fmt.Errorf("%w: %s", ErrMismatch, strings.Join(diffs, "; "))
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// dropBelow forgets what was expected below rel, which a later entry
// replaces (Apply removes it).
func dropBelow(wants map[string]*want, rel string) {
	for k := range wants {
		if strings.HasPrefix(k, rel+"/") {
			delete(wants, k)
		}
	}
}

// locateIn is unpacker.locate for a directory Verify only reads.
func locateIn(root, rel string) (string, error) {
	if rel == "." {
		return root, nil
	}
	parent, base := path.Split(rel)
	p, err := securejoin.SecureJoin(root, parent)
	if err != nil {
		return "", err
	}
	return filepath.Join(p, base), nil
}

// compare describes how the file at p differs from w ("" if it does not).
func compare(root, p string, w *want) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "missing"
		}
		return err.Error()
	}
	typ := st.Mode & unix.S_IFMT
	wantType := map[byte]uint32{
		tar.TypeReg: unix.S_IFREG, tar.TypeLink: unix.S_IFREG, tar.TypeDir: unix.S_IFDIR,
		tar.TypeSymlink: unix.S_IFLNK, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK,
		tar.TypeFifo: unix.S_IFIFO, 'w': unix.S_IFCHR,
	}[w.typ]
	if w.typ == tar.TypeLink {
		target, err := locateIn(root, w.link)
		if err != nil {
			return "hardlink target: " + err.Error()
		}
		var tst unix.Stat_t
		if err := unix.Lstat(target, &tst); err != nil || tst.Ino != st.Ino || tst.Dev != st.Dev {
			return "not a hardlink to " + w.link
		}
		return ""
	}
	if wantType == 0 || typ != wantType {
		return fmt.Sprintf("type %o, the layer has %q", typ>>12, w.typ)
	}
	if w.typ == 'w' {
		if st.Rdev != 0 {
			return "whiteout device is not 0/0"
		}
		return ""
	}
	if int(st.Uid) != w.uid || int(st.Gid) != w.gid {
		return fmt.Sprintf("owner %d:%d, the layer has %d:%d", st.Uid, st.Gid, w.uid, w.gid)
	}
	if w.typ != tar.TypeSymlink && int64(st.Mode&0o7777) != w.mode {
		return fmt.Sprintf("mode %o, the layer has %o", st.Mode&0o7777, w.mode)
	}
	switch w.typ {
	case tar.TypeReg:
		if st.Size != w.size {
			return fmt.Sprintf("size %d, the layer has %d", st.Size, w.size)
		}
		f, err := os.Open(p)
		if err != nil {
			return err.Error()
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err.Error()
		}
		if string(h.Sum(nil)) != string(w.sum[:]) {
			return "content differs"
		}
	case tar.TypeSymlink:
		if got, err := os.Readlink(p); err != nil || got != w.link {
			return fmt.Sprintf("symlink to %q, the layer has %q", got, w.link)
		}
	case tar.TypeChar, tar.TypeBlock:
		if int64(unix.Major(st.Rdev)) != w.major || int64(unix.Minor(st.Rdev)) != w.minor {
			return "device number differs"
		}
	}
	return ""
}
