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
)

// Copy is COPY/ADD: files from the build context (Context set) or from
// its second input (another stage or image) into its first input.
type Copy struct {
	W *Worker
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
	if c.Context == nil {
		return comps, nil
	}
	matches, err := filecopy.Expand(c.Context.Root(), c.Sources, c.Context.IsExcluded)
	if err != nil {
		return nil, err
	}
	opts := contenthash.Options{IgnoreOwner: true, IgnoreMode: c.Chmod != ""}
	for _, m := range matches {
		d, err := c.Context.Digest(m, opts)
		if err != nil {
			return nil, err
		}
		comps = append(comps, component("src:"+m, string(d)))
	}
	return comps, nil
}

func (c *Copy) Run(ctx context.Context, inputs []solver.Result, _ solver.Logger) (solver.Result, error) {
	mode, err := parseChmod(c.Chmod)
	if err != nil {
		return solver.Result{}, err
	}
	copyInto := func(srcRoot string, excluded func(string) bool) (solver.Result, error) {
		return c.W.mutate(ctx, inputs[0], func(rootfs, _ string) error {
			matches, err := filecopy.Expand(srcRoot, c.Sources, excluded)
			if err != nil {
				return err
			}
			opts := filecopy.Options{Chmod: mode, ResetOwner: c.Context != nil, Excluded: excluded, ExtractArchives: c.Add}
			if c.Chown != "" {
				o, err := resolveChown(rootfs, c.Chown)
				if err != nil {
					return err
				}
				opts.Chown = o
			}
			return filecopy.Copy(ctx, srcRoot, matches, rootfs, c.Dest, opts)
		}, nil)
	}
	if c.Context != nil {
		return copyInto(c.Context.Root(), c.Context.IsExcluded)
	}
	var res solver.Result
	err = c.W.withReadOnly(ctx, inputs[1].Layers, func(src string) error {
		var err error
		res, err = copyInto(src, nil)
		return err
	})
	return res, err
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
// image; without a group the gid equals the uid, as docker documents.
func resolveChown(rootfs, spec string) (*filecopy.Owner, error) {
	user, group, hasGroup := strings.Cut(spec, ":")
	uid, _, _, err := runc.ResolveUser(rootfs, user)
	if err != nil {
		return nil, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	gid := uid
	if hasGroup {
		_, g, _, err := runc.ResolveUser(rootfs, "0:"+group)
		if err != nil {
			return nil, fmt.Errorf("--chown=%s: %w", spec, err)
		}
		gid = g
	}
	return &filecopy.Owner{UID: int(uid), GID: int(gid)}, nil
}

// Mkdir is WORKDIR's directory creation (mkdir -p, owned by the current
// USER like BuildKit does).
type Mkdir struct {
	W    *Worker
	Path string
	User string
}

func (m *Mkdir) CacheKey(context.Context) ([]record.Component, error) {
	return []record.Component{component("op", "mkdir"), component("path", m.Path), component("user", m.User)}, nil
}

func (m *Mkdir) Run(ctx context.Context, inputs []solver.Result, _ solver.Logger) (solver.Result, error) {
	return m.W.mutate(ctx, inputs[0], func(rootfs, _ string) error {
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
