package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	dockerdReadyTimeout = 60 * time.Second
	dockerdStopTimeout  = 20 * time.Second
	// A running system containerd makes dockerd 20.10 use it instead of
	// starting its own; StartDockerd then runs a private containerd.
	systemContainerdSock = "/run/containerd/containerd.sock"
)

// Dockerd is a private Docker daemon (Debian's dockerd 20.10) started by
// StartDockerd. It has its own data root, exec root, socket, containerd and
// CLI config, no bridge network and no iptables rules, so containers must run
// with --network none or --network host.
type Dockerd struct {
	Dir      string // the directory given to StartDockerd
	DataRoot string // Dir/data
	ExecRoot string // short directory /tmp/kd-NNN (unix socket path limits)
	Socket   string // the API socket, in ExecRoot
	Host     string // "unix://" + Socket, the value of DOCKER_HOST
	LogPath  string // Dir/dockerd.log
	Pid      int    // dockerd's pid

	cliConfig string // DOCKER_CONFIG for the client, so ~/.docker is never read

	cmd     *exec.Cmd
	exited  chan struct{} // closed when dockerd has been reaped
	waitErr error

	ctrd       *exec.Cmd // private containerd, if one was needed
	ctrdExited chan struct{}

	stopOnce sync.Once
	stopErr  error
}

// StartDockerd starts a Docker daemon whose state lives in dir (created if
// needed): data root dir/data, log dir/dockerd.log, pid file dir/pid. The
// exec root (and the API socket in it) is a short directory /tmp/kd-NNN.
// It returns once `docker version` answers, or an error (with the end of the
// daemon's log) if that takes more than 60 s. Call Stop when done.
func StartDockerd(dir string) (*Dockerd, error) {
	return startDockerd(dir, false)
}

func startDockerd(dir string, privateContainerd bool) (d *Dockerd, err error) {
	dockerd, err := LookCommand("dockerd")
	if err != nil {
		return nil, err
	}
	if _, err := LookCommand("docker"); err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d = &Dockerd{
		Dir:       dir,
		DataRoot:  filepath.Join(dir, "data"),
		LogPath:   filepath.Join(dir, "dockerd.log"),
		cliConfig: filepath.Join(dir, "cli-config"),
	}
	for _, p := range []string{d.DataRoot, d.cliConfig} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, err
		}
	}
	// An empty daemon.json so a host /etc/docker/daemon.json cannot clash
	// with our flags ("directives specified both as a flag and in the
	// configuration file").
	daemonJSON := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(daemonJSON, []byte("{}\n"), 0o644); err != nil {
		return nil, err
	}
	d.ExecRoot, err = os.MkdirTemp("/tmp", "kd-")
	if err != nil {
		return nil, err
	}
	d.Socket = filepath.Join(d.ExecRoot, "docker.sock")
	d.Host = "unix://" + d.Socket

	// From here on, any failure tears down whatever was started.
	defer func() {
		if err != nil {
			_ = d.Stop()
			d = nil
		}
	}()

	args := []string{
		"--config-file", daemonJSON,
		"--data-root", d.DataRoot,
		"--exec-root", d.ExecRoot,
		"--host", d.Host,
		"--pidfile", filepath.Join(dir, "pid"),
		"--iptables=false",
		"--ip-masq=false",
		"--bridge=none",
		"--userland-proxy=false",
	}
	if !privateContainerd {
		if _, err := os.Lstat(systemContainerdSock); err == nil {
			privateContainerd = true
		}
	}
	if privateContainerd {
		sock, err := d.startContainerd()
		if err != nil {
			return d, err
		}
		args = append(args, "--containerd", sock)
	}

	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return d, err
	}
	defer logf.Close()
	d.cmd = exec.Command(dockerd, args...)
	d.cmd.Stdout = logf
	d.cmd.Stderr = logf
	d.cmd.Env = daemonEnv()
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := startPinned(d.cmd); err != nil {
		return d, fmt.Errorf("starting dockerd: %w", err)
	}
	d.Pid = d.cmd.Process.Pid
	d.exited = make(chan struct{})
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()

	deadline := time.Now().Add(dockerdReadyTimeout)
	var lastErr error
	for {
		select {
		case <-d.exited:
			return d, fmt.Errorf("dockerd exited during startup (%v); log %s:\n%s", d.waitErr, d.LogPath, d.logTail(30))
		default:
		}
		if _, err := os.Stat(d.Socket); err == nil {
			_, lastErr = d.Docker("version", "--format", "{{.Server.Version}}")
			if lastErr == nil {
				return d, nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("dockerd not ready after %v (last: %v); log %s:\n%s", dockerdReadyTimeout, lastErr, d.LogPath, d.logTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startContainerd runs a containerd private to this daemon (state in
// DataRoot/containerd and ExecRoot/containerd) and returns its socket.
func (d *Dockerd) startContainerd() (string, error) {
	bin, err := LookCommand("containerd")
	if err != nil {
		return "", err
	}
	root := filepath.Join(d.DataRoot, "containerd", "daemon")
	state := filepath.Join(d.ExecRoot, "containerd", "daemon")
	sock := filepath.Join(d.ExecRoot, "containerd", "containerd.sock")
	for _, p := range []string{root, state} {
		if err := os.MkdirAll(p, 0o711); err != nil {
			return "", err
		}
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, root, state, sock, filepath.Join(d.DataRoot, "containerd", "opt"))
	// In the exec root, so the command line names it (Stop finds leftovers
	// by that).
	cfgPath := filepath.Join(d.ExecRoot, "containerd", "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return "", err
	}
	logf, err := os.OpenFile(filepath.Join(d.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	d.ctrd = exec.Command(bin, "--config", cfgPath)
	d.ctrd.Stdout = logf
	d.ctrd.Stderr = logf
	d.ctrd.Env = daemonEnv()
	d.ctrd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := startPinned(d.ctrd); err != nil {
		d.ctrd = nil
		return "", fmt.Errorf("starting containerd: %w", err)
	}
	d.ctrdExited = make(chan struct{})
	go func() {
		_ = d.ctrd.Wait()
		close(d.ctrdExited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return sock, nil
		}
		select {
		case <-d.ctrdExited:
			return "", fmt.Errorf("containerd exited during startup; see %s", filepath.Join(d.Dir, "containerd.log"))
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("containerd socket %s did not appear; see %s", sock, filepath.Join(d.Dir, "containerd.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemonEnv is the environment for dockerd/containerd: Debian's sbin and bin
// first (runc, containerd, docker-init, docker-proxy), no DOCKER_* variables.
func daemonEnv() []string {
	var env []string
	path := "/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "DOCKER_"):
		case strings.HasPrefix(kv, "PATH="):
			if rest := kv[len("PATH="):]; rest != "" {
				path += ":" + rest
			}
		default:
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+path)
}

// Pdeathsig is delivered when the *thread* that forked the child exits, not
// the process. Fork daemons from one goroutine locked to a thread that lives
// as long as the test process, so they get SIGTERM only if the test binary
// dies without stopping them (panic, timeout), never earlier.
var (
	pinnedOnce sync.Once
	pinnedReqs chan pinnedReq
)

type pinnedReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startPinned(cmd *exec.Cmd) error {
	pinnedOnce.Do(func() {
		pinnedReqs = make(chan pinnedReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must not exit
			for r := range pinnedReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error)
	pinnedReqs <- pinnedReq{cmd, done}
	return <-done
}

// logTail returns the last n lines of dockerd's log.
func (d *Dockerd) logTail(n int) string {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Env returns the environment for running the docker client against d.
func (d *Dockerd) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"DOCKER_HOST="+d.Host,
		"DOCKER_BUILDKIT=1",
		"DOCKER_CONFIG="+d.cliConfig,
	)
}

// Docker runs /usr/bin/docker against d (DOCKER_HOST set, BuildKit on) and
// returns its standard output. On failure the error includes stderr.
func (d *Dockerd) Docker(args ...string) (string, error) {
	return d.DockerInput(nil, args...)
}

// DockerInput is Docker with stdin connected to the given bytes.
func (d *Dockerd) DockerInput(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(dockerClient, args...)
	cmd.Env = d.Env()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v\nstderr:\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Build runs `docker build --network host -t tag -f dockerfile contextDir`
// with BuildKit and plain progress (the whole build log is in the error on
// failure). A relative dockerfile is taken relative to contextDir; ""
// means contextDir/Dockerfile. Each buildArg is "NAME=VALUE" (--build-arg).
func (d *Dockerd) Build(contextDir, dockerfile string, tag string, buildArgs ...string) error {
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(contextDir, dockerfile)
	}
	args := []string{"build", "--network", "host", "--progress", "plain", "-t", tag, "-f", dockerfile}
	for _, a := range buildArgs {
		args = append(args, "--build-arg", a)
	}
	args = append(args, contextDir)
	_, err := d.Docker(args...)
	return err
}

// Save writes image tag to outTar with `docker save`.
func (d *Dockerd) Save(tag, outTar string) error {
	_, err := d.Docker("save", "-o", outTar, tag)
	return err
}

// Import runs `docker import [--change C]... tarPath ref`, e.g.
// d.Import(testenv.BusyboxTar(t), "busybox:latest").
func (d *Dockerd) Import(tarPath, ref string, changes ...string) error {
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	args = append(args, tarPath, ref)
	_, err := d.Docker(args...)
	return err
}

// Mounts lists the mount points, as in /proc/self/mountinfo, at or below the
// daemon's data root or exec root.
func (d *Dockerd) Mounts() ([]string, error) {
	return mountsUnder(d.DataRoot, d.ExecRoot)
}

// Stop stops exactly this daemon: SIGTERM to dockerd, SIGKILL to its process
// group after 20 s, then kills whatever it left (containerd, shims and their
// containers: every process whose command line names the daemon's data or
// exec root, and their descendants), unmounts anything left below the data
// and exec roots, and removes both. dir/dockerd.log is kept. Stop is
// idempotent and safe to call on a partly started daemon.
func (d *Dockerd) Stop() error {
	d.stopOnce.Do(func() { d.stopErr = d.stop() })
	return d.stopErr
}

func (d *Dockerd) stop() error {
	var errs []error
	roots := []string{}
	for _, r := range []string{d.DataRoot, d.ExecRoot} {
		if r != "" {
			roots = append(roots, r)
		}
	}
	// Remember the daemon's process tree before it goes, to catch anything
	// re-parented to init later.
	seeds := []int{}
	if d.cmd != nil && d.cmd.Process != nil {
		seeds = append(seeds, d.Pid)
	}
	if d.ctrd != nil && d.ctrd.Process != nil {
		seeds = append(seeds, d.ctrd.Process.Pid)
	}
	before := relatedProcs(seeds, roots)

	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(dockerdStopTimeout):
			errs = append(errs, fmt.Errorf("dockerd (pid %d) ignored SIGTERM for %v; killed", d.Pid, dockerdStopTimeout))
			_ = syscall.Kill(-d.Pid, syscall.SIGKILL)
			_ = d.cmd.Process.Kill()
			select {
			case <-d.exited:
			case <-time.After(10 * time.Second):
				errs = append(errs, fmt.Errorf("dockerd (pid %d) survived SIGKILL", d.Pid))
			}
		}
	}
	if d.ctrd != nil && d.ctrd.Process != nil {
		_ = d.ctrd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.ctrdExited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-d.ctrd.Process.Pid, syscall.SIGKILL)
			_ = d.ctrd.Process.Kill()
			<-d.ctrdExited
		}
	}

	// Leftovers: shims, containers, a containerd that outlived dockerd.
	errs = append(errs, removeRoots(before, roots))
	return errors.Join(errs...)
}

// removeRoots is the end of every daemon's stop: kill what is left of it
// (see killLeftovers), unmount whatever is still mounted below roots and,
// when that worked, remove them.
func removeRoots(before []procID, roots []string) error {
	var errs []error
	if err := killLeftovers(before, roots); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(roots...); err != nil {
		errs = append(errs, err)
	} else {
		for _, r := range roots {
			if err := os.RemoveAll(r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// killLeftovers SIGKILLs every process in before (if it is still the same
// process) or related to roots now, and waits up to 10 s for them to go.
// dockerd had its chance to shut things down cleanly; what is left now
// (shims and containers of a crashed daemon) gets no second one.
func killLeftovers(before []procID, roots []string) error {
	collect := func() []procID {
		alive := map[procID]bool{}
		for _, p := range before {
			if p.alive() {
				alive[p] = true
			}
		}
		for _, p := range relatedProcs(nil, roots) {
			alive[p] = true
		}
		out := make([]procID, 0, len(alive))
		for p := range alive {
			out = append(out, p)
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := collect()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes left after stopping dockerd: %v", left)
		}
		for _, p := range left {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Shared daemon, one per test process.
var shared struct {
	mu      sync.Mutex
	started bool
	dir     string
	d       *Dockerd
	err     error
}

// SharedDockerd returns a daemon shared by all tests of the process, started
// on first use (skips, or under CI=true fails, unless root with dockerd and
// /usr/bin/docker installed). TestMain should call StopShared.
func SharedDockerd(t testing.TB) *Dockerd {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "dockerd")
	RequireCommand(t, "docker")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		shared.started = true
		shared.dir, shared.err = os.MkdirTemp("", "kiln-dockerd-")
		if shared.err == nil {
			shared.d, shared.err = StartDockerd(shared.dir)
		}
	}
	if shared.err != nil {
		t.Fatalf("SharedDockerd: %v", shared.err)
	}
	return shared.d
}

// StopShared stops the shared daemon, if one was started, and removes its
// directory. A later SharedDockerd starts a new one.
func StopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var err error
	if shared.d != nil {
		err = shared.d.Stop()
	}
	if shared.dir != "" && err == nil {
		err = os.RemoveAll(shared.dir)
	}
	shared.started, shared.dir, shared.d, shared.err = false, "", nil, nil
	return err
}
