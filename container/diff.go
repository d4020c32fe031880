package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/layer"
	"golang.org/x/sys/unix"
)

// Change is one path where a container's filesystem differs from its
// image's, as docker diff prints it: "A /etc/new", "C /etc", "D /bin/ls".
type Change struct {
	Kind string `json:"Kind"` // "A", "C" or "D"
	Path string `json:"Path"`
}

func (c Change) String() string { return c.Kind + " " + c.Path }

// Changes lists what c changed in its image's filesystem, parents before
// children and siblings in byte order (docker prints the same lines in
// whatever order its map walk gives). The writable layer is compared
// with the image's layers as docker compares a container with its image:
//
//   - a path of the writable layer the image lacks is A, and so is all
//     below it;
//   - one the image has is C when its type, mode, owner or device differ,
//     or, for what is not a directory, its size or mtime (a directory's
//     size and mtime change with its entries and say nothing);
//   - a whiteout of a path the image has is D (one line for a deleted
//     directory, not one per file in it), and so is every path of the
//     image below an opaque (emptied and remade) directory that is not
//     in it again;
//   - a directory of the image with changes below it is C.
//
// c.Stubs, the mount points runc made in the writable layer, are left
// out, and so are the directories the image lacked that were made only
// to hold them: docker keeps those in a layer of their own that its diff
// does not show.
func Changes(ctx context.Context, st *store.Store, c *store.Container) ([]Change, error) {
	lowers, err := lowerDirs(ctx, st, c)
	if err != nil {
		return nil, err
	}
	d := newDiffer(ctx, st.ContainerUpper(c.ID), lowers, c.Stubs)
	if err := d.run(); err != nil {
		return nil, fmt.Errorf("diff %s: %w", c.Name, err)
	}
	return d.changes, nil
}

// lowerDirs are the directories of c's image's layers, top first.
func lowerDirs(ctx context.Context, st *store.Store, c *store.Container) ([]string, error) {
	ids, err := st.SnapshotStack(ctx, c.Layers)
	if err != nil {
		return nil, fmt.Errorf("container %s: image layers: %w", c.Name, err)
	}
	dirs := make([]string, len(ids))
	for i, id := range ids {
		dirs[len(ids)-1-i] = st.Snapshots.FS(id)
	}
	return dirs, nil
}

// differ walks a writable layer against the layers below it.
type differ struct {
	ctx   context.Context
	upper string
	lower lowerFS
	// stubs are the stub paths, stubParents their ancestors (relative,
	// no leading slash).
	stubs, stubParents map[string]bool
	changes            []Change
	// skipped are the directories the image lacked that hold nothing but
	// stubs: left out of the diff, and of a commit.
	skipped []string
}

func newDiffer(ctx context.Context, upper string, lowers []string, stubs []string) *differ {
	d := &differ{ctx: ctx, upper: upper, lower: lowerFS(lowers), stubs: map[string]bool{}, stubParents: map[string]bool{}}
	for _, s := range stubs {
		rel := stubRel(s)
		if rel == "" {
			continue
		}
		d.stubs[rel] = true
		for p := path.Dir(rel); p != "."; p = path.Dir(p) {
			d.stubParents[p] = true
		}
	}
	return d
}

func (d *differ) run() error {
	if err := d.dir("", false); err != nil {
		return err
	}
	slices.SortFunc(d.changes, func(a, b Change) int { return comparePaths(a.Path, b.Path) })
	return nil
}

// comparePaths orders paths component by component, so that a directory's
// entries come right after it ("/a", "/a/b", "/a-b").
func comparePaths(a, b string) int {
	return strings.Compare(strings.ReplaceAll(a, "/", "\x00"), strings.ReplaceAll(b, "/", "\x00"))
}

func (d *differ) add(kind, rel string) {
	d.changes = append(d.changes, Change{Kind: kind, Path: "/" + rel})
}

// dir compares the entries of directory rel ("" = the root) of the
// writable layer with the image's. hidden says the image's entries in it
// are hidden: rel or a directory above it is opaque.
func (d *differ) dir(rel string, hidden bool) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(d.upper, rel))
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	slices.Sort(names)
	present := map[string]bool{}
	for _, name := range names {
		p := path.Join(rel, name)
		if d.stubs[p] {
			present[name] = true
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(d.upper, p), &st); err != nil {
			return err
		}
		if layer.IsWhiteout(&st) {
			// under an opaque directory the listing below says it
			if !hidden {
				if _, ok, err := d.lower.stat(p); err != nil {
					return err
				} else if ok {
					d.add("D", p)
				}
			}
			continue
		}
		present[name] = true
		if err := d.entry(p, &st, hidden); err != nil {
			return err
		}
	}
	if !hidden {
		return nil
	}
	below, err := d.lower.list(rel)
	if err != nil {
		return err
	}
	for _, name := range below {
		if !present[name] && !d.stubs[path.Join(rel, name)] {
			d.add("D", path.Join(rel, name))
		}
	}
	return nil
}

// entry compares path p of the writable layer, not a whiteout, with the
// image's, and for a directory what is in it.
func (d *differ) entry(p string, st *unix.Stat_t, hidden bool) error {
	old, inImage, err := d.lower.stat(p)
	if err != nil {
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	mark := len(d.changes)
	listed := false
	// the line a directory gets when something below it changed
	parentKind := "C"
	switch {
	case !inImage && isDir && d.stubParents[p]:
		parentKind = "A" // only if more than stubs are in it
	case !inImage:
		d.add("A", p)
		listed = true
	case statDifferent(&old, st):
		d.add("C", p)
		listed = true
	}
	if !isDir {
		return nil
	}
	opaque, err := layer.IsOpaque(filepath.Join(d.upper, p))
	if err != nil {
		return err
	}
	if err := d.dir(p, hidden || opaque); err != nil {
		return err
	}
	if !listed && len(d.changes) > mark {
		d.add(parentKind, p)
	} else if !listed && !inImage {
		d.skipped = append(d.skipped, p)
	}
	return nil
}

// statDifferent is docker's test of a changed path: type and mode, owner
// and device, and for what is not a directory size and mtime too.
func statDifferent(a, b *unix.Stat_t) bool {
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev {
		return true
	}
	if b.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false
	}
	return a.Size != b.Size || a.Mtim != b.Mtim
}

// lowerFS is an image's layers as overlay-style directories (whiteouts
// are 0/0 character devices, opaque directories carry the overlay xattr),
// top first: what overlayfs would show of them, read without a mount.
type lowerFS []string

// probe looks at rel in layer dir: found (with its stat) when the layer
// has it; gone when the layer deletes it (a whiteout of it or of a
// directory above it, or a non-directory above it); stop when the layers
// below cannot show it (an opaque directory above it).
func probe(dir, rel string) (st unix.Stat_t, found, gone, stop bool, err error) {
	parts := strings.Split(rel, "/")
	cur := dir
	for _, part := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, part)
		var ast unix.Stat_t
		if err := unix.Lstat(cur, &ast); errors.Is(err, unix.ENOENT) {
			return st, false, false, stop, nil
		} else if err != nil {
			return st, false, false, false, err
		}
		if ast.Mode&unix.S_IFMT != unix.S_IFDIR {
			// a whiteout or a file: nothing below it, here or lower
			return st, false, true, true, nil
		}
		opaque, err := layer.IsOpaque(cur)
		if err != nil {
			return st, false, false, false, err
		}
		stop = stop || opaque
	}
	err = unix.Lstat(filepath.Join(dir, rel), &st)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return st, false, false, stop, nil
	case err != nil:
		return st, false, false, false, err
	case layer.IsWhiteout(&st):
		return st, false, true, true, nil
	}
	return st, true, false, stop, nil
}

// stat is rel as the image has it, if it has it.
func (l lowerFS) stat(rel string) (unix.Stat_t, bool, error) {
	for _, dir := range l {
		st, found, gone, stop, err := probe(dir, rel)
		if err != nil || found {
			return st, found, err
		}
		if gone || stop {
			break
		}
	}
	return unix.Stat_t{}, false, nil
}

// list is the names in the image's directory rel ("" = the root), sorted.
func (l lowerFS) list(rel string) ([]string, error) {
	seen := map[string]bool{}
	var names []string
	for _, dir := range l {
		stop := false
		if rel != "" {
			st, found, gone, s, err := probe(dir, rel)
			if err != nil {
				return nil, err
			}
			if gone || found && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				break
			}
			if !found {
				if s {
					break
				}
				continue
			}
			stop = s
		}
		p := filepath.Join(dir, rel)
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		ents, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, name := range ents {
			if seen[name] {
				continue
			}
			seen[name] = true
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(p, name), &st); err != nil {
				return nil, err
			}
			if !layer.IsWhiteout(&st) {
				names = append(names, name)
			}
		}
		opaque, err := layer.IsOpaque(p)
		if err != nil {
			return nil, err
		}
		if stop || opaque {
			break
		}
	}
	slices.Sort(names)
	return names, nil
}
