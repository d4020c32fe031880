package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Runtime drives the runc CLI (or a compatible one such as crun).
type Runtime struct {
	// Binary is "runc" unless set.
	Binary string
	// StateDir is runc's --root; it lives in the store's run/ so that a
	// crashed build's containers can be found and deleted.
	StateDir string
}

// ExitError is a process that ran and exited non-zero.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit code %d", e.Code) }

// Run runs p as container id with the given rootfs, using bundleDir for
// config.json and the generated /etc files. Output goes to out. The
// container is always deleted before Run returns, also when ctx is
// cancelled (the process is killed).
func (r *Runtime) Run(ctx context.Context, id, bundleDir, rootfs string, p Process, out io.Writer) error {
	bin := r.Binary
	if bin == "" {
		bin = "runc"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("container runtime %q not found: install it (apt-get install %s)", bin, bin)
	}
	if err := WriteBundle(bundleDir, rootfs, p); err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(path, "--root", r.StateDir, "run", "--bundle", bundleDir, id)
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = io.MultiWriter(out, &stderr)
	// Own process group: a terminal's Ctrl-C reaches kiln, which stops
	// the container itself and cleans up, rather than racing runc.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	select {
	case err = <-waitc:
	case <-ctx.Done():
		exec.Command(path, "--root", r.StateDir, "kill", "--all", id, "KILL").Run()
		select {
		case err = <-waitc:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			err = <-waitc
		}
		err = ctx.Err()
	}
	// runc run removes a container that exited; this catches the rest.
	exec.Command(path, "--root", r.StateDir, "delete", "--force", id).Run()
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		// runc reports the container process's exit status as its own.
		return &ExitError{Code: ee.ExitCode()}
	}
	return fmt.Errorf("%s: %v: %s", bin, err, bytes.TrimSpace(stderr.Bytes()))
}

// WriteBundle writes the OCI bundle for p with rootfs at rootfs into
// bundleDir: config.json (Spec) and the /etc files it binds.
func WriteBundle(bundleDir, rootfs string, p Process) error {
	etc, err := writeEtcFiles(bundleDir, p.Hostname)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(Spec(p, rootfs, etc), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundleDir, "config.json"), b, 0o600)
}

func writeEtcFiles(bundleDir, hostname string) (map[string]string, error) {
	if hostname == "" {
		hostname = "kiln"
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = []byte("nameserver 127.0.0.1\n")
	}
	files := map[string][]byte{
		"/etc/hosts":       []byte(hosts),
		"/etc/resolv.conf": resolv,
		"/etc/hostname":    []byte(hostname + "\n"),
	}
	out := map[string]string{}
	for dst, data := range files {
		p := filepath.Join(bundleDir, filepath.Base(dst))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		out[dst] = p
	}
	return out, nil
}
