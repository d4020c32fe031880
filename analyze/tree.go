package analyze

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Layer is one layer of an image, as analysis reads it.
type Layer struct {
	// DiffID names the layer: the digest of its uncompressed tar.
	DiffID digest.Digest
	// CreatedBy is the history line that made the layer ("" when the
	// image's history does not say).
	CreatedBy string
	// Open returns the uncompressed layer tar. Headers are read and
	// contents skipped by seeking, so an *os.File costs only its headers.
	Open func() (io.ReadSeekCloser, error)
}

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// recordKind says what a tar entry does to the filesystem below it.
type recordKind int

const (
	addEntry recordKind = iota // a file, directory, link or device
	whiteout                   // .wh.NAME: NAME and all below it are deleted
	opaque                     // DIR/.wh..wh..opq: what lower layers have in DIR is hidden
)

// entry is one file of a layer as its tar header says it.
type entry struct {
	src      *parsed
	index    int    // position in the layer tar, to find its content again
	path     string // clean, relative to the root ("" is the root)
	typ      byte   // tar type flag (TypeReg for the legacy TypeRegA)
	mode     fs.FileMode
	uid, gid int
	size     int64  // content size of a regular file
	linkname string // symlink target, or the hard link's target path
	// bytes is what the entry puts on disk as docker counts an image's
	// size: a regular file's contents, a symlink's target; 0 for
	// directories, devices and hard links (their target holds the bytes).
	bytes int64
	// target is a hard link's target entry in the same layer; links are
	// the hard links to this entry.
	target *entry
	links  []*entry
}

func (e *entry) isDir() bool { return e.typ == tar.TypeDir }

// record is one entry of a layer tar, in tar order.
type record struct {
	kind recordKind
	path string // the entry's path; for a whiteout the deleted path, for opaque the directory
	e    *entry // addEntry only
}

// parsed is one layer's records, read once.
type parsed struct {
	layer   Layer
	pos     int // the layer's position in the image (bottom is 0)
	records []record
	bytes   int64 // sum of the entries' bytes: the layer's content size
}

// cleanPath turns a tar name into a clean path relative to the root ("" for
// the root itself); a name that climbs out of the root is refused.
func cleanPath(name string) (string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("entry %q climbs out of the root", name)
	}
	if rel == "." {
		return "", nil
	}
	return rel, nil
}

// parse reads layer's tar headers (skipping contents) into records.
func parse(ctx context.Context, l Layer, pos int) (*parsed, error) {
	f, err := l.Open()
	if err != nil {
		return nil, fmt.Errorf("layer %d (%s): %w", pos+1, l.DiffID, err)
	}
	defer f.Close()
	p := &parsed{layer: l, pos: pos}
	regs := map[string]*entry{} // regular files (and links to them) by path, for hard links
	tr := tar.NewReader(f)
	for i := 0; ; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return p, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): read tar: %w", pos+1, l.DiffID, err)
		}
		rel, err := cleanPath(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", pos+1, l.DiffID, err)
		}
		dir, base := path.Split(rel)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case base == opaqueMarker:
			p.records = append(p.records, record{kind: opaque, path: dir})
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			p.records = append(p.records, record{kind: whiteout, path: path.Join(dir, base[len(whiteoutPrefix):])})
			continue
		}
		e := &entry{src: p, index: i, path: rel, typ: hdr.Typeflag, mode: hdr.FileInfo().Mode(),
			uid: hdr.Uid, gid: hdr.Gid, linkname: hdr.Linkname}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			e.typ, e.size, e.bytes = tar.TypeReg, hdr.Size, hdr.Size
			regs[rel] = e
		case tar.TypeSymlink:
			e.bytes = int64(len(hdr.Linkname))
		case tar.TypeLink:
			target, err := cleanPath(hdr.Linkname)
			if err != nil {
				return nil, fmt.Errorf("layer %d (%s): hard link %q: %w", pos+1, l.DiffID, hdr.Name, err)
			}
			e.linkname = target
			// a link to another link's name shares the first file's bytes
			if t := regs[target]; t != nil {
				if t.target != nil {
					t = t.target
				}
				e.target, e.size = t, t.size
				t.links = append(t.links, e)
				regs[rel] = e
			}
		}
		p.bytes += e.bytes
		p.records = append(p.records, record{kind: addEntry, path: rel, e: e})
	}
}

// node is a path of the filesystem that the layers applied so far make.
// e is nil for a directory no layer listed (a parent a tar left implied).
type node struct {
	e        *entry
	children map[string]*node
}

// tree is the filesystem of a stack of layers, applied bottom first.
type tree struct {
	root node
	// lost is told of every entry of a lower layer that the layer being
	// applied deletes or overwrites: at is the path the layer named (the
	// whiteout's path, the opaque directory, the overwritten path), how
	// "deleted" or "overwritten".
	lost func(at string, e *entry, by *parsed, how string)
}

// child returns the node name under n, creating it when create is set.
func (n *node) child(name string, create bool) *node {
	c := n.children[name]
	if c == nil && create {
		if n.children == nil {
			n.children = map[string]*node{}
		}
		c = &node{}
		n.children[name] = c
	}
	return c
}

// find returns the node at p, or nil.
func (t *tree) find(p string) *node {
	n := &t.root
	if p == "" {
		return n
	}
	for _, name := range strings.Split(p, "/") {
		if n = n.child(name, false); n == nil {
			return nil
		}
	}
	return n
}

// apply puts layer l's records on the tree, in tar order.
func (t *tree) apply(l *parsed) {
	for _, r := range l.records {
		switch r.kind {
		case whiteout:
			dir, name := path.Split(r.path)
			parent := t.find(strings.TrimSuffix(dir, "/"))
			if parent == nil || parent.children[name] == nil {
				continue
			}
			if t.drop(parent.children[name], r.path, r.path, l, "deleted") {
				delete(parent.children, name)
			}
		case opaque:
			n := t.find(r.path)
			if n == nil {
				continue
			}
			for name, c := range n.children {
				if t.drop(c, r.path, path.Join(r.path, name), l, "deleted") {
					delete(n.children, name)
				}
			}
		case addEntry:
			t.add(r.e, l)
		}
	}
}

// add sets the entry at e.path: a lower layer's entry there is
// overwritten, and when either is not a directory so is everything a lower
// layer has below it. A non-directory of a lower layer in the way of e's
// parents is overwritten too.
func (t *tree) add(e *entry, l *parsed) {
	n := &t.root
	if e.path != "" {
		parts := strings.Split(e.path, "/")
		for i, name := range parts {
			n = n.child(name, true)
			if i < len(parts)-1 && n.e != nil && !n.e.isDir() {
				at := strings.Join(parts[:i+1], "/")
				t.tell(at, n.e, l, "overwritten")
				n.e = nil
			}
		}
	}
	if old := n.e; old != nil && old.src != l {
		if !old.isDir() || !e.isDir() {
			t.tell(e.path, old, l, "overwritten")
		}
	}
	if !e.isDir() {
		for name, c := range n.children {
			if t.drop(c, e.path, path.Join(e.path, name), l, "overwritten") {
				delete(n.children, name)
			}
		}
	}
	n.e = e
}

// drop removes from the subtree n (at path p) every entry of a lower layer
// than l and reports whether n is left empty. at is the path l named.
func (t *tree) drop(n *node, at, p string, l *parsed, how string) bool {
	for name, c := range n.children {
		if t.drop(c, at, path.Join(p, name), l, how) {
			delete(n.children, name)
		}
	}
	if n.e != nil && n.e.src != l {
		t.tell(at, n.e, l, how)
		n.e = nil
	}
	return n.e == nil && len(n.children) == 0
}

func (t *tree) tell(at string, e *entry, l *parsed, how string) {
	if t.lost != nil {
		t.lost(at, e, l, how)
	}
}

// walk calls fn for every path of the tree below the root, parents before
// children; e is nil for a directory no layer listed.
func (t *tree) walk(fn func(p string, e *entry)) {
	var visit func(n *node, p string)
	visit = func(n *node, p string) {
		for name, c := range n.children {
			cp := path.Join(p, name)
			fn(cp, c.e)
			visit(c, cp)
		}
	}
	visit(&t.root, "")
}
