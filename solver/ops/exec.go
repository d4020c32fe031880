package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/runc"
)

// Exec runs a command (RUN) in a container on its single input.
type Exec struct {
	W       *Worker
	Args    []string
	Env     []string
	Cwd     string
	User    string
	Network string // "host" or "none"
}

// CacheKey is the full definition; each field is its own component so a
// miss can be explained.
func (e *Exec) CacheKey(context.Context) ([]record.Component, error) {
	return []record.Component{
		component("op", "exec"),
		component("args", e.Args),
		component("env", e.Env),
		component("cwd", e.Cwd),
		component("user", e.User),
		component("network", e.Network),
	}, nil
}

// mountStubs are paths runc may create in the rootfs to mount over; if the
// image lacked them they must not end up in the layer.
var mountStubs = []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/etc", "/proc", "/sys", "/dev"}

// Run runs the command; a non-zero exit fails the step with the last lines
// of its output.
func (e *Exec) Run(ctx context.Context, inputs []solver.Result, log solver.Logger) (solver.Result, error) {
	var missing []string
	tail := &tailBuffer{max: 20}
	res, err := e.W.mutate(ctx, inputs[0], func(rootfs, scratch string) error {
		for _, p := range mountStubs {
			if _, err := os.Lstat(filepath.Join(rootfs, p)); os.IsNotExist(err) {
				missing = append(missing, p)
			}
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
		p := runc.Process{Args: e.Args, Env: e.Env, Cwd: cwd, UID: uid, GID: gid, AdditionalGids: extra, Network: e.Network}
		id := "kiln-" + filepath.Base(scratch)
		err = e.W.Runtime.Run(ctx, id, bundle, rootfs, p, io.MultiWriter(log, tail))
		var ee *runc.ExitError
		if errors.As(err, &ee) {
			return &RunError{Args: e.Args, Code: ee.Code, Tail: tail.lines()}
		}
		return err
	}, func(upper string) error {
		// deepest first, so /etc goes after /etc/hosts
		for i := len(missing) - 1; i >= 0; i-- {
			removeStub(filepath.Join(upper, missing[i]))
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
	msg := fmt.Sprintf("process %q did not complete successfully: exit code %d", strings.Join(e.Args, " "), e.Code)
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
