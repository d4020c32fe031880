// Package filecopy implements the filesystem side of the Dockerfile COPY and
// ADD instructions for local sources, following the behaviour of docker's
// BuildKit.
//
// It works on plain directories: a source root (the build context, or the
// read-only rootfs of another stage) and a destination root (the writable
// rootfs of the image being built). Every path taken from the Dockerfile, the
// context or an archive is resolved inside its root, so symlinks and ".."
// components can never make a read or a write land outside it.
package filecopy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// ErrNotFound is wrapped by the error returned when a source named without
// wildcards does not exist (or is excluded by .dockerignore).
var ErrNotFound = errors.New("not found")

// Owner is a numeric uid/gid pair.
type Owner struct{ UID, GID int }

// Options controls how Copy writes into the destination.
type Options struct {
	// Chown, if non-nil, sets owner of everything copied AND of destination
	// dirs this copy creates.
	Chown *Owner
	// Chmod, if non-nil, sets the permission bits of everything copied
	// (files and dirs, as current BuildKit does). Both Go's os.ModeSetuid,
	// os.ModeSetgid, os.ModeSticky and raw octal 04000/02000/01000 bits are
	// understood. It is not applied to symlinks, to directories this copy
	// creates as parents, or to entries extracted from an archive.
	// ChmodFunc, if set (symbolic --chmod such as u+x,go-w), computes each
	// copied entry's mode from its source mode.
	ChmodFunc func(os.FileMode) os.FileMode
	Chmod     *os.FileMode
	// ResetOwner: when Chown is nil, copied entries are owned 0:0 (sources
	// from the build context, like BuildKit's client resets uid/gid); when
	// false, source uid/gid are kept (COPY --from=stage|image).
	ResetOwner bool
	// Excluded reports whether a source-root-relative path (slash
	// separated, no leading slash) is excluded (.dockerignore). May be nil.
	// It is asked about every path, so it must itself report children of an
	// excluded directory as excluded unless a negated pattern re-includes
	// them (as patternmatcher's MatchesOrParentMatches does). An excluded
	// dir is still descended into, since a negated pattern may re-include
	// children; an excluded dir with nothing non-excluded below it is not
	// created.
	Excluded func(rel string) bool
	// ExtractArchives: ADD semantics — a source that is a local file and a
	// tar archive (plain, gzip, bzip2, zstd; detected by magic bytes; xz is
	// refused with "xz archives are not supported yet") is extracted into
	// the destination directory instead of copied (owner from the archive
	// unless Chown; entries resolved inside the destination so "../" entries
	// and symlinks cannot escape: error naming the entry).
	ExtractArchives bool
	// FollowSourceSymlink: the named source itself, if a symlink, is
	// followed (BuildKit does this for COPY sources); symlinks found inside
	// copied directories are always copied as symlinks.
	FollowSourceSymlink bool
}

// errMultiSource is docker's wording for several sources into a file path.
var errMultiSource = errors.New("When using COPY with more than one source file, the destination must be a directory and end with a /")

// Expand resolves the source patterns (relative to srcRoot, leading "/"
// allowed, wildcards * ? [ ] per path.Match per path segment, as Dockerfile
// COPY does) to the list of matched source paths (slash separated,
// relative, sorted, deduplicated, excluded paths filtered out; the whole
// root is "."). A pattern without wildcards that does not exist → error
// wrapping ErrNotFound whose text is like `"app.py": not found`; a wildcard
// pattern matching nothing → no error, zero matches.
//
// Every lookup is resolved inside srcRoot: "../x" and symlinks pointing
// outside srcRoot are clamped to it. Wildcard matches are returned with the
// part of the pattern before the first wildcard segment resolved (symlinks
// followed), as BuildKit does.
func Expand(srcRoot string, patterns []string, excluded func(string) bool) ([]string, error) {
	root, err := cleanRoot(srcRoot)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range patterns {
		matches, err := expandOne(root, cleanRel(p), excluded)
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func expandOne(root, rel string, excluded func(string) bool) ([]string, error) {
	segs := strings.Split(rel, "/")
	first := slices.IndexFunc(segs, hasWildcard)
	if first < 0 {
		ok, err := visibleSource(root, rel, excluded, false)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%q: %w", rel, ErrNotFound)
		}
		return []string{rel}, nil
	}

	base, err := securejoin.SecureJoin(root, strings.Join(segs[:first], "/"))
	if err != nil {
		return nil, err
	}
	baseRel, err := relTo(root, base)
	if err != nil {
		return nil, err
	}
	var matches []string
	if err := matchSegments(base, baseRel, segs[first:], &matches); err != nil {
		return nil, err
	}
	if excluded == nil {
		return matches, nil
	}
	out := matches[:0]
	for _, m := range matches {
		ok, err := visibleSource(root, m, excluded, true)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// matchSegments appends to out the entries below dir matching the pattern
// segments. Only real directories are descended into for intermediate
// segments (BuildKit walks without following symlinks there); the last
// segment matches entries of any type.
func matchSegments(dir, dirRel string, segs []string, out *[]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return trimErr(err, dir)
	}
	for _, e := range entries {
		ok, err := path.Match(segs[0], e.Name())
		if err != nil {
			// BuildKit ignores malformed patterns: they match nothing.
			return nil
		}
		if !ok {
			continue
		}
		childRel := joinRel(dirRel, e.Name())
		if len(segs) == 1 {
			*out = append(*out, childRel)
			continue
		}
		if e.IsDir() {
			if err := matchSegments(filepath.Join(dir, e.Name()), childRel, segs[1:], out); err != nil {
				return err
			}
		}
	}
	return nil
}

// visibleSource reports whether rel exists in the context as the builder
// sees it after .dockerignore: both the entry as named (final component not
// followed) and, if it is a symlink, what it resolves to must be present and
// not excluded. A dangling symlink counts as present only if allowDangling.
func visibleSource(root, rel string, excluded func(string) bool, allowDangling bool) (bool, error) {
	if rel == "." {
		return true, nil
	}
	lexical, err := joinNoFollow(root, rel)
	if err != nil {
		return false, err
	}
	lfi, err := os.Lstat(lexical)
	if err != nil {
		if isNotExist(err) {
			return false, nil
		}
		return false, trimErr(err, root)
	}
	if excluded != nil {
		lexRel, err := relTo(root, lexical)
		if err != nil {
			return false, err
		}
		if !visible(lexical, lexRel, lfi, excluded) {
			return false, nil
		}
	}
	if lfi.Mode()&fs.ModeSymlink == 0 {
		return true, nil
	}
	real, err := securejoin.SecureJoin(root, rel)
	if err != nil {
		return false, err
	}
	rfi, err := os.Lstat(real)
	if err != nil {
		if isNotExist(err) {
			return allowDangling, nil
		}
		return false, trimErr(err, root)
	}
	if excluded == nil {
		return true, nil
	}
	realRel, err := relTo(root, real)
	if err != nil {
		return false, err
	}
	return visible(real, realRel, rfi, excluded), nil
}

// visible reports whether an entry survives exclusion: it is not excluded,
// or it is a directory with something non-excluded below it.
func visible(abs, rel string, fi os.FileInfo, excluded func(string) bool) bool {
	if rel == "." || !excluded(rel) {
		return true
	}
	return fi.IsDir() && hasVisibleDescendant(abs, rel, excluded)
}

func hasVisibleDescendant(dir, dirRel string, excluded func(string) bool) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		childRel := joinRel(dirRel, e.Name())
		if !excluded(childRel) {
			return true
		}
		if e.IsDir() && hasVisibleDescendant(filepath.Join(dir, e.Name()), childRel, excluded) {
			return true
		}
	}
	return false
}

// hasWildcard reports whether a path segment has an unescaped * ? or [.
func hasWildcard(seg string) bool {
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// cleanRoot makes a root usable with securejoin (absolute and clean).
func cleanRoot(root string) (string, error) {
	if root == "" {
		return "", errors.New("filecopy: empty root path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	return filepath.Clean(abs), nil
}

// cleanRel turns a user-supplied path into a clean root-relative slash path
// without ".." components; the root itself is ".".
func cleanRel(p string) string {
	c := path.Clean("/" + filepath.ToSlash(p))
	if c == "/" {
		return "."
	}
	return c[1:]
}

func joinRel(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// relTo returns abs relative to root as a slash path ("." for the root).
func relTo(root, abs string) (string, error) {
	r, err := filepath.Rel(root, abs)
	if err != nil {
		return "", err
	}
	r = filepath.ToSlash(r)
	if r == ".." || strings.HasPrefix(r, "../") {
		return "", fmt.Errorf("filecopy: %s resolved outside of its root", abs)
	}
	return r, nil
}

// joinNoFollow resolves the parent of rel inside root (following symlinks,
// clamped to root) and appends the final component without following it.
func joinNoFollow(root, rel string) (string, error) {
	if rel == "." {
		return root, nil
	}
	dir, base := path.Split(rel)
	parent, err := securejoin.SecureJoin(root, dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, base), nil
}

func isNotExist(err error) bool {
	return securejoin.IsNotExist(err)
}

// trimErr strips a host root prefix from the path of an *os.PathError so
// messages name paths as the build sees them.
func trimErr(err error, roots ...string) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		for _, r := range roots {
			if r == "" {
				continue
			}
			if pe.Path == r {
				pe.Path = "/"
				break
			}
			if p, ok := strings.CutPrefix(pe.Path, r+string(filepath.Separator)); ok {
				pe.Path = "/" + p
				break
			}
		}
	}
	return err
}
