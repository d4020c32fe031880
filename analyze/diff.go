package analyze

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"

	digest "github.com/opencontainers/go-digest"
)

// Change is one path that differs between two images' filesystems, as
// docker diff names them: A added, C changed, D deleted.
type Change struct {
	Kind   string    `json:"kind"` // "A", "C" or "D"
	Path   string    `json:"path"`
	Before *FileInfo `json:"before,omitempty"` // nil for A
	After  *FileInfo `json:"after,omitempty"`  // nil for D
	// What lists what changed for C: "type", "mode", "owner", "size",
	// "content", "link".
	What []string `json:"what,omitempty"`
}

// FileInfo is a path of an image's final filesystem.
type FileInfo struct {
	Type string `json:"type"` // file, dir, symlink, hardlink, char, block, fifo
	// Mode is the permission and special bits, as ls shows them.
	Mode     string `json:"mode"`
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	Size     int64  `json:"size"`
	Linkname string `json:"linkname,omitempty"`
	// Digest is the content digest of a regular file, set for files of a
	// C whose content was compared.
	Digest digest.Digest `json:"digest,omitempty"`
}

// Diff compares the final filesystems of the images whose layers (bottom
// first) are a and b, in path order. Modification times are not compared:
// builds at different times would differ everywhere. A path whose final
// entry comes from the same layer in both is unchanged without a look at
// its contents; regular files from different layers are compared by
// content digest.
func Diff(ctx context.Context, a, b []Layer) ([]Change, error) {
	cache := map[layerKey]*parsed{}
	ta, err := build(ctx, a, cache)
	if err != nil {
		return nil, err
	}
	tb, err := build(ctx, b, cache)
	if err != nil {
		return nil, err
	}
	fa, fb := finalFiles(ta), finalFiles(tb)
	paths := make([]string, 0, len(fa)+len(fb))
	for p := range fa {
		paths = append(paths, p)
	}
	for p := range fb {
		if _, ok := fa[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)

	changes := []Change{}
	hashes := hashList{}
	type pending struct {
		c    int // index in changes
		a, b *entry
	}
	var toHash []pending
	for _, p := range paths {
		ea, ina := fa[p]
		eb, inb := fb[p]
		switch {
		case !inb:
			changes = append(changes, Change{Kind: "D", Path: "/" + p, Before: info(ea)})
		case !ina:
			changes = append(changes, Change{Kind: "A", Path: "/" + p, After: info(eb)})
		case ea == eb:
		default:
			what := compare(ea, eb)
			content := ea != nil && eb != nil && isRegular(ea) && isRegular(eb)
			if len(what) == 0 && !content {
				continue
			}
			changes = append(changes, Change{Kind: "C", Path: "/" + p, Before: info(ea), After: info(eb), What: what})
			if content {
				hashes.want(ea)
				hashes.want(eb)
				toHash = append(toHash, pending{len(changes) - 1, ea, eb})
			}
		}
	}
	if err := hashes.compute(ctx); err != nil {
		return nil, err
	}
	drop := map[int]bool{}
	for _, h := range toHash {
		c := &changes[h.c]
		c.Before.Digest, c.After.Digest = hashes.of(h.a), hashes.of(h.b)
		if c.Before.Digest != c.After.Digest {
			c.What = append(c.What, "content")
		} else if len(c.What) == 0 {
			drop[h.c] = true
		}
	}
	out := changes[:0]
	for i, c := range changes {
		if !drop[i] {
			out = append(out, c)
		}
	}
	return out, nil
}

// layerKey names a layer of an image for the parse cache: the same diffID
// at the same repeat count is the same records in both images.
type layerKey struct {
	diffID digest.Digest
	nth    int
}

// build applies layers to a new tree, parsing each layer at most once for
// both images of a Diff.
func build(ctx context.Context, layers []Layer, cache map[layerKey]*parsed) (*tree, error) {
	t := &tree{}
	seen := map[digest.Digest]int{}
	for i, l := range layers {
		k := layerKey{l.DiffID, seen[l.DiffID]}
		seen[l.DiffID]++
		p := cache[k]
		if p == nil {
			var err error
			if p, err = parse(ctx, l, i); err != nil {
				return nil, err
			}
			cache[k] = p
		}
		t.apply(p)
	}
	return t, nil
}

// finalFiles maps every path of t to its entry (nil for an implied
// directory).
func finalFiles(t *tree) map[string]*entry {
	m := map[string]*entry{}
	t.walk(func(p string, e *entry) { m[p] = e })
	return m
}

func isRegular(e *entry) bool {
	return e.typ == tar.TypeReg || (e.typ == tar.TypeLink && e.target != nil)
}

// compare names what differs between two entries of a path, contents
// aside; an implied directory matches any directory.
func compare(a, b *entry) []string {
	ta, tb := typeName(a), typeName(b)
	if ta == "hardlink" && a.target != nil {
		ta = "file"
	}
	if tb == "hardlink" && b.target != nil {
		tb = "file"
	}
	if ta != tb {
		return []string{"type"}
	}
	if a == nil || b == nil {
		return nil
	}
	var what []string
	if a.mode.Perm()|a.mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != b.mode.Perm()|b.mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) {
		what = append(what, "mode")
	}
	if a.uid != b.uid || a.gid != b.gid {
		what = append(what, "owner")
	}
	if a.size != b.size {
		what = append(what, "size")
	}
	if a.linkname != b.linkname && (a.typ == tar.TypeSymlink || (a.typ == tar.TypeLink && a.target == nil)) {
		what = append(what, "link")
	}
	return what
}

func typeName(e *entry) string {
	if e == nil {
		return "dir"
	}
	switch e.typ {
	case tar.TypeReg:
		return "file"
	case tar.TypeDir:
		return "dir"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeChar:
		return "char"
	case tar.TypeBlock:
		return "block"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("type %q", e.typ)
}

func info(e *entry) *FileInfo {
	if e == nil {
		return &FileInfo{Type: "dir"}
	}
	fi := &FileInfo{Type: typeName(e), Mode: e.mode.String(), UID: e.uid, GID: e.gid, Size: e.size}
	if e.typ == tar.TypeSymlink || e.typ == tar.TypeLink {
		fi.Linkname = e.linkname
		if e.typ == tar.TypeLink {
			fi.Linkname = "/" + e.linkname
		}
	}
	return fi
}

// hashList is the regular files whose contents a Diff needs, hashed in
// one pass over each layer that holds some.
type hashList struct {
	byLayer map[*parsed]map[int]digest.Digest // entry index → digest ("" until computed)
}

// want asks for e's content digest (a hard link's is its target's).
func (h *hashList) want(e *entry) {
	if e.target != nil {
		e = e.target
	}
	if h.byLayer == nil {
		h.byLayer = map[*parsed]map[int]digest.Digest{}
	}
	if h.byLayer[e.src] == nil {
		h.byLayer[e.src] = map[int]digest.Digest{}
	}
	h.byLayer[e.src][e.index] = ""
}

func (h *hashList) of(e *entry) digest.Digest {
	if e.target != nil {
		e = e.target
	}
	return h.byLayer[e.src][e.index]
}

// compute reads each layer with wanted entries once, hashing those and
// seeking over the rest.
func (h *hashList) compute(ctx context.Context) error {
	for p, want := range h.byLayer {
		if err := hashLayer(ctx, p, want); err != nil {
			return err
		}
	}
	return nil
}

func hashLayer(ctx context.Context, p *parsed, want map[int]digest.Digest) error {
	f, err := p.layer.Open()
	if err != nil {
		return fmt.Errorf("layer %s: %w", p.layer.DiffID, err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	left := len(want)
	for i := 0; left > 0; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("layer %s: ended before entry %d", p.layer.DiffID, i)
		}
		if err != nil {
			return fmt.Errorf("layer %s: read tar: %w", p.layer.DiffID, err)
		}
		if _, ok := want[i]; !ok {
			continue
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			return fmt.Errorf("layer %s: read entry %d: %w", p.layer.DiffID, i, err)
		}
		want[i] = digest.NewDigest(digest.SHA256, sum)
		left--
	}
	return nil
}
