package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver/runc"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/lock"
	"github.com/kiln-build/kiln/store/snapshot"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CreateOptions are docker run's (and create's) options.
type CreateOptions struct {
	// Image is the image reference as the user typed it.
	Image string
	// Name is --name ("" = generated).
	Name string
	// Cmd replaces the image's CMD when set (the words after IMAGE).
	Cmd []string
	// Entrypoint replaces the image's ENTRYPOINT when EntrypointSet
	// (--entrypoint; "" clears it), and then the image's CMD too.
	Entrypoint    string
	EntrypointSet bool
	// Env are -e: NAME=VALUE, or NAME to take the value from this
	// process's environment.
	Env           []string
	User, Workdir string
	// Network is "host" (the default) or "none".
	Network string
	// Binds are -v HOST:CTR[:ro|rw].
	Binds []string
	// Tty is -t, Stdin -i, AutoRemove --rm.
	Tty, Stdin, AutoRemove bool
}

// mountStubs are the paths runc may have to create in the writable layer
// to mount over (besides -v targets): store.Container.Stubs.
var mountStubs = []string{"/proc", "/sys", "/dev", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}

// NoCommandError is docker's for an image with neither ENTRYPOINT nor CMD
// and no command given.
var NoCommandError = errors.New("No command specified")

// Create makes a container of o.Image without starting it (docker create).
func (m *Manager) Create(ctx context.Context, o CreateOptions) (*store.Container, error) {
	si, err := m.Store.LookupImage(o.Image)
	if err != nil {
		return nil, err
	}
	ic := si.Config.Config
	entry, cmd := ic.Entrypoint, ic.Cmd
	if o.EntrypointSet {
		entry, cmd = nil, nil
		if o.Entrypoint != "" {
			entry = []string{o.Entrypoint}
		}
	}
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	argv := append(append([]string(nil), entry...), cmd...)
	if len(argv) == 0 {
		return nil, NoCommandError
	}
	network := o.Network
	switch network {
	case "", "host", "default":
		network = "host"
	case "none":
	default:
		return nil, fmt.Errorf("network %s not found (kiln has host and none)", network)
	}
	stubs := append([]string(nil), mountStubs...)
	for _, b := range o.Binds {
		bm, err := parseBind(b)
		if err != nil {
			return nil, err
		}
		stubs = append(stubs, bm.Destination)
	}
	layers := make([]record.Layer, len(si.Config.RootFS.DiffIDs))
	for i, d := range si.Config.RootFS.DiffIDs {
		layers[i] = record.Layer{DiffID: d, Size: si.Manifest.Layers[i].Size}
	}
	c := &store.Container{
		Name:       o.Name,
		Image:      o.Image,
		ImageID:    si.ID(),
		Manifest:   si.ManifestDesc.Digest,
		Layers:     layers,
		Path:       argv[0],
		Args:       argv[1:],
		Env:        mergeEnv(ic.Env, o.Env),
		User:       firstNonEmpty(o.User, ic.User),
		WorkingDir: firstNonEmpty(o.Workdir, ic.WorkingDir),
		Entrypoint: entry,
		Cmd:        cmd,
		Network:    network,
		Binds:      o.Binds,
		Tty:        o.Tty,
		OpenStdin:  o.Stdin,
		AutoRemove: o.AutoRemove,
		StopSignal: ic.StopSignal,
		Labels:     ic.Labels,
		Stubs:      stubs,
	}
	if err := m.Store.CreateContainer(c); err != nil {
		return nil, err
	}
	return c, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// mergeEnv applies docker's -e to the image's environment: a variable
// set again replaces the image's value in place; NAME alone takes this
// process's value (and is dropped when it has none).
func mergeEnv(image, flags []string) []string {
	out := append([]string(nil), image...)
	for _, e := range flags {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		name, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, o := range out {
			if n, _, _ := strings.Cut(o, "="); n == name {
				out[i], replaced = e, true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return runc.WithDefaultPath(out)
}

// parseBind reads -v HOST:CTR[:ro|rw]: both absolute, like docker's bind
// form (kiln has no named volumes).
func parseBind(b string) (specs.Mount, error) {
	parts := strings.Split(b, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return specs.Mount{}, fmt.Errorf("invalid volume specification: %q (kiln binds HOST:CONTAINER[:ro])", b)
	}
	host, ctr := parts[0], parts[1]
	if !filepath.IsAbs(host) {
		return specs.Mount{}, fmt.Errorf("invalid volume specification: %q: %q is not an absolute host path (kiln has no named volumes)", b, host)
	}
	if !path.IsAbs(ctr) || path.Clean(ctr) == "/" {
		return specs.Mount{}, fmt.Errorf("invalid volume specification: %q: the container path must be absolute and not /", b)
	}
	opts := []string{"rbind"}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			opts = append(opts, "ro")
		case "rw":
		default:
			return specs.Mount{}, fmt.Errorf("invalid volume specification: %q: mode %q (ro or rw)", b, parts[2])
		}
	}
	return specs.Mount{Destination: path.Clean(ctr), Type: "bind", Source: filepath.Clean(host), Options: opts}, nil
}

// Attach wires a foreground container's process to the caller. With the
// container's Tty set, Stdin and Stdout must be the terminal (*os.File).
type Attach struct {
	Stdin          io.Reader // nil unless -i
	Stdout, Stderr io.Writer
	// Started, if set, is called once the process runs.
	Started func()
}

// AlreadyRunningError is a start of a container that runs.
type AlreadyRunningError struct{ Name string }

func (e *AlreadyRunningError) Error() string {
	return fmt.Sprintf("container %s is already running", e.Name)
}

// Start starts c's process. With a nil attach it runs under a detached
// monitor process and Start returns once it runs (exit code 0; starting a
// running container is then a no-op, as in docker); with attach set this
// process is its monitor and Start returns its exit code when it ends.
func (m *Manager) Start(ctx context.Context, c *store.Container, a *Attach) (int, error) {
	if err := m.ensureExists(c); err != nil {
		return 0, err
	}
	l, err := m.Store.ContainerLock(c.ID)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	ok, err := l.TryLock(lock.Exclusive)
	if err != nil {
		return 0, err
	}
	if !ok {
		if a == nil {
			return 0, nil
		}
		return 0, &AlreadyRunningError{Name: c.Name}
	}
	m.teardown(c) // what a lost run left
	terminal := c.Tty && a != nil
	if err := m.prepare(ctx, c, terminal); err != nil {
		snapshot.UnmountUnder(m.Store.ContainerRootfs(c.ID))
		m.recordFailure(c, err)
		return 0, err
	}
	if a != nil {
		var ios stdio
		if terminal {
			ios = stdio{in: a.Stdin, out: a.Stdout, err: a.Stderr, terminal: true}
		} else {
			log, err := m.openLog(c)
			if err != nil {
				return 0, err
			}
			defer log.Close()
			ios = stdio{in: a.Stdin, out: io.MultiWriter(a.Stdout, log), err: io.MultiWriter(a.Stderr, log)}
		}
		return m.monitor(ctx, c, ios, func(err error) {
			if err == nil && a.Started != nil {
				a.Started()
			}
		})
	}
	return 0, m.spawnMonitor(c, l)
}

// recordFailure notes in c's state why its process could not start; the
// caller holds c's lock.
func (m *Manager) recordFailure(c *store.Container, cause error) {
	st, _ := m.Store.ReadContainerState(c.ID)
	if st.Status == "" || st.Status == store.StatusRunning {
		st.Status = store.StatusCreated
	}
	st.Pid = 0
	st.ExitCode = 128
	if strings.Contains(cause.Error(), "executable file not found") || strings.Contains(cause.Error(), "no such file or directory") {
		st.ExitCode = 127
	} else if strings.Contains(cause.Error(), "permission denied") {
		st.ExitCode = 126
	}
	st.Error = cause.Error()
	m.Store.WriteContainerState(c.ID, st)
}

// prepare mounts c's rootfs and writes its runc bundle.
func (m *Manager) prepare(ctx context.Context, c *store.Container, terminal bool) error {
	lowers, err := m.Store.SnapshotStack(ctx, c.Layers)
	if err != nil {
		return err
	}
	rootfs := m.Store.ContainerRootfs(c.ID)
	if err := m.Store.Snapshots.MountWithUpper(rootfs, lowers, m.Store.ContainerUpper(c.ID), m.Store.ContainerWork(c.ID)); err != nil {
		return err
	}
	uid, gid, extra, err := runc.ResolveUser(rootfs, c.User)
	if err != nil {
		return err
	}
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if dir, err := securejoin.SecureJoin(rootfs, cwd); err == nil {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			os.MkdirAll(dir, 0o755) // docker creates a missing working directory
		}
	}
	var mounts []specs.Mount
	for _, b := range c.Binds {
		bm, err := parseBind(b)
		if err != nil {
			return err
		}
		if _, err := os.Stat(bm.Source); os.IsNotExist(err) {
			if err := os.MkdirAll(bm.Source, 0o755); err != nil { // docker does, for -v
				return err
			}
		}
		mounts = append(mounts, bm)
	}
	p := runc.Process{
		Args: append([]string{c.Path}, c.Args...), Env: c.Env, Cwd: cwd,
		UID: uid, GID: gid, AdditionalGids: extra,
		Network: c.Network, Hostname: c.ShortID(), Mounts: mounts, Terminal: terminal,
	}
	return runc.WriteBundle(m.Store.ContainerBundle(c.ID), rootfs, p)
}

func (m *Manager) openLog(c *store.Container) (*os.File, error) {
	return os.OpenFile(m.Store.ContainerLog(c.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// stdio is what runc run's process is wired to. With terminal, runc makes
// the pseudo-terminal itself and in and out must be the caller's terminal.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	terminal bool
}

// monitor runs c's prepared process to its end and records it: state
// running once the process exists (then ready(nil) — or ready(err) if it
// never started), exited with its code when it ends; then tears down and,
// for --rm, removes the container. The caller holds c's lock. ctx ending
// stops the process (a foreground kiln's Ctrl-C).
func (m *Manager) monitor(ctx context.Context, c *store.Container, ios stdio, ready func(error)) (int, error) {
	pidFile := filepath.Join(m.Store.ContainerDir(c.ID), "pid")
	os.Remove(pidFile)
	cmd, err := m.runcCmd("run", "--bundle", m.Store.ContainerBundle(c.ID), "--pid-file", pidFile, c.ID)
	if err != nil {
		m.failStart(c, err, ready)
		return 0, err
	}
	tail := &tailWriter{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ios.in, ios.out, io.MultiWriter(ios.err, tail)
	if !ios.terminal {
		// Own process group: a terminal's Ctrl-C reaches kiln, which
		// stops the container. With a terminal runc must stay in the
		// foreground group to read it; Ctrl-C is then a byte for the
		// container's own terminal.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		m.failStart(c, err, ready)
		return 0, err
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	var waitErr error
	exited := false
	for !exited {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
			break
		}
		select {
		case waitErr = <-waitc:
			exited = true
		case <-time.After(2 * time.Millisecond):
		}
	}
	if exited {
		if b, _ := os.ReadFile(pidFile); len(b) == 0 {
			err := fmt.Errorf("start container %s: %s", c.Name, tail.last())
			m.failStart(c, err, ready)
			return 0, err
		}
	}
	started := time.Now().UTC()
	var pid int
	if b, err := os.ReadFile(pidFile); err == nil {
		fmt.Sscan(string(b), &pid)
	}
	m.Store.WriteContainerState(c.ID, store.ContainerState{Status: store.StatusRunning, Pid: pid, StartedAt: started})
	ready(nil)
	if !exited {
		select {
		case waitErr = <-waitc:
		case <-ctx.Done():
			m.signal(c, "TERM")
			select {
			case waitErr = <-waitc:
			case <-time.After(10 * time.Second):
				m.signal(c, "KILL")
				waitErr = <-waitc
			}
		}
	}
	code := exitCode(waitErr)
	m.Store.WriteContainerState(c.ID, store.ContainerState{Status: store.StatusExited, ExitCode: code, StartedAt: started, FinishedAt: time.Now().UTC()})
	m.teardown(c)
	if c.AutoRemove {
		if err := m.Store.RemoveContainerFiles(c); err != nil {
			return code, err
		}
	}
	return code, nil
}

func (m *Manager) failStart(c *store.Container, err error, ready func(error)) {
	m.teardown(c)
	m.recordFailure(c, err)
	if c.AutoRemove {
		m.Store.RemoveContainerFiles(c)
	}
	ready(err)
}

// signal sends sig to c's process, ignoring failure (it may have ended).
func (m *Manager) signal(c *store.Container, sig string) {
	if cmd, err := m.runcCmd("kill", c.ID, sig); err == nil {
		cmd.Run()
	}
}

// exitCode is the container process's exit status from runc run's: runc
// exits with it, or 128+N when the process died of signal N.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
	}
	return LostExitCode
}

// tailWriter keeps the last line written to it (runc's error, when the
// process could not start).
type tailWriter struct{ buf []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailWriter) last() string {
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "runc exited before the process started"
}

// Stop sends c's stop signal, waits up to timeout for it to exit, then
// kills it (docker stop -t). Stopping a stopped container does nothing.
func (m *Manager) Stop(ctx context.Context, c *store.Container, timeout time.Duration) error {
	if !m.Running(c) {
		return m.ensureExists(c)
	}
	sig := c.StopSignal
	if sig == "" {
		sig = "TERM"
	}
	m.signal(c, sig)
	if m.waitStopped(ctx, c, timeout) {
		return nil
	}
	m.signal(c, "KILL")
	if m.waitStopped(ctx, c, 30*time.Second) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("container %s did not stop", c.Name)
}

// waitStopped waits up to timeout for c's monitor to let go of its lock.
func (m *Manager) waitStopped(ctx context.Context, c *store.Container, timeout time.Duration) bool {
	l, err := m.Store.ContainerLock(c.ID)
	if err != nil {
		return !m.Running(c)
	}
	defer l.Close()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return l.Wait(wctx, lock.Shared, time.Hour, nil) == nil
}

// Wait waits for c's process to end and returns its exit code.
func (m *Manager) Wait(ctx context.Context, c *store.Container) (int, error) {
	l, err := m.Store.ContainerLock(c.ID)
	if err != nil {
		return 0, err
	}
	if err := l.Wait(ctx, lock.Shared, time.Hour, nil); err != nil {
		l.Close()
		return 0, err
	}
	l.Close()
	st, err := m.State(c)
	return st.ExitCode, err
}

// NotRunningError is docker's for exec in a stopped container.
type NotRunningError struct{ ID string }

func (e *NotRunningError) Error() string { return fmt.Sprintf("Container %s is not running", e.ID) }

// ExecOptions are docker exec's.
type ExecOptions struct {
	Args          []string
	Env           []string
	User, Workdir string
	// Tty is -t: Stdin and Stdout must then be the terminal (*os.File).
	Tty    bool
	Stdin  io.Reader // nil unless -i
	Stdout io.Writer
	Stderr io.Writer
}

// Exec runs another process in c, which must be running, and returns its
// exit code. The process gets the container's environment, user and
// working directory unless o sets them.
func (m *Manager) Exec(ctx context.Context, c *store.Container, o ExecOptions) (int, error) {
	if !m.Running(c) {
		return 0, &NotRunningError{ID: c.ID}
	}
	args := []string{"exec"}
	if o.Tty {
		args = append(args, "--tty")
	}
	if o.Workdir != "" {
		args = append(args, "--cwd", o.Workdir)
	}
	for _, e := range mergeEnvFlags(o.Env) {
		args = append(args, "--env", e)
	}
	if o.User != "" {
		uid, gid, extra, err := runc.ResolveUser(m.Store.ContainerRootfs(c.ID), o.User)
		if err != nil {
			return 0, err
		}
		args = append(args, "--user", fmt.Sprintf("%d:%d", uid, gid))
		for _, g := range extra {
			args = append(args, "--additional-gids", fmt.Sprint(g))
		}
	}
	args = append(append(args, c.ID), o.Args...)
	cmd, err := m.runcCmd(args...)
	if err != nil {
		return 0, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	if !o.Tty {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	select {
	case err = <-waitc:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM) // runc exec forwards it
		err = <-waitc
	}
	return exitCode(err), nil
}

// mergeEnvFlags resolves exec's -e NAME from this process's environment.
func mergeEnvFlags(flags []string) []string {
	var out []string
	for _, e := range flags {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		out = append(out, e)
	}
	return out
}
