package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/runc"
)

// Exec runs a command (RUN) in a container on its single input.
type Exec struct {
	Args    []string
	Env     []string
	Cwd     string
	User    string
	Network string // "host" or "none"
	// Mounts are RUN --mount specs; their sources are inputs 1.. or the
	// build context.
	Mounts []Mount
	// Insecure is RUN --security=insecure.
	Insecure bool
	// ExtraEnv is passed to the process but not part of the cache key
	// (proxy variables, like BuildKit).
	ExtraEnv []string
}

// CacheKey is the full definition; each field is its own component so a
// miss can be explained.
func (e *Exec) CacheKey(context.Context) ([]record.Component, error) {
	comps := []record.Component{
		component("op", "exec"),
		component("args", e.Args),
		component("env", e.Env),
		component("cwd", e.Cwd),
		component("user", e.User),
		component("network", e.Network),
	}
	if e.Insecure {
		comps = append(comps, component("security", "insecure"))
	}
	if len(e.Mounts) > 0 {
		comps = append(comps, component("mounts", e.Mounts))
	}
	for _, m := range e.Mounts {
		if m.Type == "bind" && m.Input == 0 && m.Context != nil {
			d, err := m.Context.Digest(m.Source, contenthash.Options{})
			if err != nil {
				return nil, fmt.Errorf("--mount=type=bind,source=%s: %w", m.Source, err)
			}
			comps = append(comps, component("bind:"+m.Target, string(d)))
		}
	}
	return comps, nil
}

// mountStubs are paths runc may create in the rootfs to mount over; if the
// image lacked them they must not end up in the layer.
var mountStubs = []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/proc", "/sys", "/dev"}

// missingPaths lists p and its parents that do not exist in rootfs,
// outermost first.
func missingPaths(rootfs, p string) []string {
	var out []string
	for p = path.Clean("/" + p); p != "/"; p = path.Dir(p) {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); os.IsNotExist(err) {
			out = append([]string{p}, out...)
		}
	}
	return out
}

// run runs the command; a non-zero exit fails the step with the last lines
// of its output.
func (e *Exec) run(ctx context.Context, w *Worker, inputs []solver.Result, log solver.Logger) (solver.Result, error) {
	var missing []string
	tail := &tailBuffer{max: 20}
	res, err := w.mutate(ctx, inputs[0], func(rootfs, scratch string) error {
		targets := append([]string(nil), mountStubs...)
		for _, m := range e.Mounts {
			if m.Target != "" {
				targets = append(targets, m.Target)
			}
		}
		for _, t := range targets {
			missing = append(missing, missingPaths(rootfs, t)...)
		}
		uid, gid, extra, err := runc.ResolveUser(rootfs, e.User)
		if err != nil {
			return err
		}
		cwd := e.Cwd
		if cwd == "" {
			cwd = "/"
		}
		if dir, err := securejoin.SecureJoin(rootfs, cwd); err == nil {
			if _, err := os.Stat(dir); os.IsNotExist(err) {
				// docker creates a missing working directory
				os.MkdirAll(dir, 0o755)
			}
		}
		bundle := filepath.Join(scratch, "bundle")
		if err := os.Mkdir(bundle, 0o700); err != nil {
			return err
		}
		mounts, menv, unmount, err := e.setupMounts(ctx, w, inputs, rootfs, scratch)
		if err != nil {
			return err
		}
		defer unmount()
		env := append(append(append([]string(nil), e.Env...), e.ExtraEnv...), menv...)
		p := runc.Process{Args: e.Args, Env: env, Cwd: cwd, UID: uid, GID: gid, AdditionalGids: extra, Network: e.Network, Mounts: mounts, Insecure: e.Insecure}
		id := "kiln-" + filepath.Base(scratch)
		err = w.Runtime.Run(ctx, id, bundle, rootfs, p, io.MultiWriter(log, tail))
		var ee *runc.ExitError
		if errors.As(err, &ee) {
			return &RunError{Args: e.Args, Code: ee.Code, Tail: tail.lines()}
		}
		return err
	}, func(upper string) error {
		// deepest first, so a created parent goes after its child
		sort.Slice(missing, func(i, j int) bool { return len(missing[i]) > len(missing[j]) })
		for _, p := range missing {
			removeStub(filepath.Join(upper, p))
		}
		return nil
	})
	return res, err
}

// removeStub removes an empty file or empty dir runc created as a mount point.
func removeStub(p string) {
	fi, err := os.Lstat(p)
	if err != nil {
		return
	}
	if fi.Mode().IsRegular() && fi.Size() == 0 || fi.IsDir() {
		os.Remove(p) // fails, harmlessly, on a non-empty dir
	}
}

// RunError is a command that exited non-zero.
type RunError struct {
	Args []string
	Code int
	Tail []string
}

func (e *RunError) Error() string {
	cmd := strings.Join(e.Args, " ")
	if len(cmd) > 300 {
		cmd = strings.ToValidUTF8(cmd[:300], "") + "…"
	}
	msg := fmt.Sprintf("process %q did not complete successfully: exit code %d", cmd, e.Code)
	if len(e.Tail) > 0 {
		msg += "\n  last output:\n    " + strings.Join(e.Tail, "\n    ")
	}
	return msg
}

// tailBuffer keeps the last lines written to it.
type tailBuffer struct {
	max  int
	buf  []string
	part []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	data := append(t.part, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		t.buf = append(t.buf, string(data[:i]))
		if len(t.buf) > t.max {
			t.buf = t.buf[1:]
		}
		data = data[i+1:]
	}
	t.part = append([]byte(nil), data...)
	return len(p), nil
}

func (t *tailBuffer) lines() []string {
	out := append([]string(nil), t.buf...)
	if len(t.part) > 0 {
		out = append(out, string(t.part))
	}
	if len(out) > t.max {
		out = out[len(out)-t.max:]
	}
	return out
}
