package ops

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/filecopy"
	"github.com/kiln-build/kiln/solver/runc"
	"github.com/moby/patternmatcher"
	mode "github.com/tonistiigi/dchapes-mode"
)

// Copy is COPY/ADD: files from the build context (Context set) or from
// its second input (another stage or image) into its first input.
type Copy struct {
	// Context is the build context; nil means copy from inputs[1].
	Context *contenthash.Hasher
	Sources []string
	// Dest is absolute (already joined with WORKDIR); a trailing "/" matters.
	Dest string
	// Chown is the raw --chown value, resolved in the destination image.
	Chown string
	// Chmod is the raw --chmod value (octal).
	Chmod string
	// Add extracts local tar archives (ADD).
	Add bool
	// Parents keeps each source's directories (COPY --parents); a "/./" in
	// a source marks where the kept part starts.
	Parents bool
	// Exclude are --exclude patterns, matched like .dockerignore against
	// paths relative to the source root and to each matched source.
	Exclude []string
}

// CacheKey: the definition, and for context sources the content digest of
// exactly the matched files — mtimes and other files never count. A
// context's file owners never count either (COPY writes them as root), nor
// their modes under --chmod.
func (c *Copy) CacheKey(ctx context.Context) ([]record.Component, error) {
	kind := "copy"
	if c.Add {
		kind = "add"
	}
	comps := []record.Component{
		component("op", kind),
		component("sources", c.Sources),
		component("dest", c.Dest),
		component("chown", c.Chown),
		component("chmod", c.Chmod),
	}
	if c.Parents {
		comps = append(comps, component("parents", "true"))
	}
	if len(c.Exclude) > 0 {
		comps = append(comps, component("exclude", c.Exclude))
	}
	if c.Context == nil {
		return comps, nil
	}
	matches, err := filecopy.Expand(c.Context.Root(), stripPivots(c.Sources), c.Context.IsExcluded)
	if err != nil {
		return nil, err
	}
	extra, err := c.excluder(nil, matches)
	if err != nil {
		return nil, err
	}
	// an octal --chmod makes the source mode irrelevant; a symbolic one
	// (u+x) is applied to it, so it still counts
	octal, _ := parseChmod(c.Chmod)
	opts := contenthash.Options{IgnoreOwner: true, IgnoreMode: octal != nil, Exclude: extra}
	for _, m := range matches {
		d, err := c.Context.Digest(m, opts)
		if err != nil {
			return nil, err
		}
		comps = append(comps, component("src:"+m, string(d)))
	}
	return comps, nil
}

func (c *Copy) run(ctx context.Context, w *Worker, inputs []solver.Result, _ solver.Logger) (solver.Result, error) {
	mode, modeFunc, err := parseChmodAny(c.Chmod)
	if err != nil {
		return solver.Result{}, err
	}
	copyInto := func(srcRoot string, ignored func(string) bool) (solver.Result, error) {
		return w.mutate(ctx, inputs[0], func(rootfs, _ string) error {
			matches, err := filecopy.Expand(srcRoot, stripPivots(c.Sources), ignored)
			if err != nil {
				return err
			}
			excluded, err := c.excluder(ignored, matches)
			if err != nil {
				return err
			}
			opts := filecopy.Options{Chmod: mode, ChmodFunc: modeFunc, ResetOwner: c.Context != nil, Excluded: excluded, ExtractArchives: c.Add, FollowSourceSymlink: true}
			if c.Chown != "" {
				o, err := resolveChown(rootfs, c.Chown)
				if err != nil {
					return err
				}
				opts.Chown = o
			}
			if !c.Parents {
				return filecopy.Copy(ctx, srcRoot, matches, rootfs, c.Dest, opts)
			}
			for _, src := range c.Sources {
				one, err := filecopy.Expand(srcRoot, stripPivots([]string{src}), ignored)
				if err != nil {
					return err
				}
				for _, m := range one {
					kept := keptPath(src, m)
					if fi, err := statIn(srcRoot, m); err != nil || !fi.IsDir() {
						kept = path.Dir(kept) // a file lands in its kept parent dir
					}
					dest := path.Join(c.Dest, kept) + "/"
					if err := filecopy.Copy(ctx, srcRoot, []string{m}, rootfs, dest, opts); err != nil {
						return err
					}
				}
			}
			return nil
		}, nil)
	}
	if c.Context != nil {
		return copyInto(c.Context.Root(), c.Context.IsExcluded)
	}
	var res solver.Result
	err = w.withReadOnly(ctx, inputs[1].Layers, func(src string) error {
		var err error
		res, err = copyInto(src, nil)
		return err
	})
	return res, err
}

// excluder combines a source's own filter (.dockerignore) with --exclude.
func (c *Copy) excluder(base func(string) bool, matches []string) (func(string) bool, error) {
	if len(c.Exclude) == 0 {
		return base, nil
	}
	pm, err := patternmatcher.New(c.Exclude)
	if err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	return func(rel string) bool {
		if base != nil && base(rel) {
			return true
		}
		if ok, _ := pm.MatchesOrParentMatches(rel); ok {
			return true
		}
		for _, m := range matches {
			if strings.HasPrefix(rel, m+"/") {
				if ok, _ := pm.MatchesOrParentMatches(strings.TrimPrefix(rel, m+"/")); ok {
					return true
				}
			}
		}
		return false
	}, nil
}

// stripPivots removes the "/./" markers of --parents from sources.
func stripPivots(srcs []string) []string {
	out := make([]string, len(srcs))
	for i, s := range srcs {
		out[i] = strings.Replace(s, "/./", "/", 1)
	}
	return out
}

// keptPath is the part of match's path that --parents keeps: all of it, or
// what follows a "/./" pivot in the source pattern.
func keptPath(pattern, match string) string {
	if i := strings.Index(pattern, "/./"); i >= 0 {
		pivot := path.Clean(strings.TrimPrefix(pattern[:i], "/"))
		if rel, ok := strings.CutPrefix(match, pivot+"/"); ok {
			return rel
		}
	}
	return match
}

func statIn(root, rel string) (os.FileInfo, error) {
	p, err := securejoin.SecureJoin(root, rel)
	if err != nil {
		return nil, err
	}
	return os.Stat(p)
}

// parseChmodAny accepts what BuildKit does: octal, or a symbolic mode
// (chmod(1) syntax) applied to each source's own mode.
func parseChmodAny(s string) (*os.FileMode, func(os.FileMode) os.FileMode, error) {
	if m, err := parseChmod(s); err == nil || s == "" {
		return m, nil, err
	}
	set, err := mode.ParseWithUmask(s, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid --chmod=%s: not an octal or symbolic mode", s)
	}
	return nil, set.Apply, nil
}

func parseChmod(s string) (*os.FileMode, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return nil, fmt.Errorf("invalid --chmod=%s: only octal modes are supported", s)
	}
	m := os.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return &m, nil
}

// resolveChown resolves --chown=user[:group] against the destination
// image the way BuildKit does: a user name takes uid and primary gid from
// /etc/passwd, a numeric user is used as both uid and gid, and a group
// (name via /etc/group, or number) replaces the gid.
func resolveChown(rootfs, spec string) (*filecopy.Owner, error) {
	user, group, hasGroup := strings.Cut(spec, ":")
	var o filecopy.Owner
	if n, err := strconv.Atoi(user); err == nil {
		o = filecopy.Owner{UID: n, GID: n}
	} else {
		uid, gid, _, err := runc.ResolveUser(rootfs, user)
		if err != nil {
			return nil, fmt.Errorf("--chown=%s: %w", spec, err)
		}
		o = filecopy.Owner{UID: int(uid), GID: int(gid)}
	}
	if hasGroup {
		_, g, _, err := runc.ResolveUser(rootfs, "0:"+group)
		if err != nil {
			return nil, fmt.Errorf("--chown=%s: %w", spec, err)
		}
		o.GID = int(g)
	}
	return &o, nil
}

// Mkdir is WORKDIR's directory creation (mkdir -p, owned by the current
// USER like BuildKit does).
type Mkdir struct {
	Path string
	User string
}

func (m *Mkdir) CacheKey(context.Context) ([]record.Component, error) {
	return []record.Component{component("op", "mkdir"), component("path", m.Path), component("user", m.User)}, nil
}

func (m *Mkdir) run(ctx context.Context, w *Worker, inputs []solver.Result, _ solver.Logger) (solver.Result, error) {
	return w.mutate(ctx, inputs[0], func(rootfs, _ string) error {
		uid, gid, _, err := runc.ResolveUser(rootfs, m.User)
		if err != nil {
			return err
		}
		return mkdirAll(rootfs, path.Clean(m.Path), int(uid), int(gid))
	}, nil)
}

// mkdirAll creates dir and missing parents inside rootfs, each owned by
// uid:gid; existing components are left alone.
func mkdirAll(rootfs, dir string, uid, gid int) error {
	if dir == "/" {
		return nil
	}
	if err := mkdirAll(rootfs, path.Dir(dir), uid, gid); err != nil {
		return err
	}
	p, err := securejoin.SecureJoin(rootfs, dir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(p); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("mkdir %s: not a directory", dir)
		}
		return nil
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	return os.Lchown(p, uid, gid)
}
