// Package container runs docker's containers without a daemon, as podman
// does: a container is a record in the store (store/containers.go), an
// overlay of its image's layers with its own writable layer, and a runc
// container while its process runs. Whoever runs the process — kiln itself
// for `kiln run` in the foreground, a re-executed `kiln` (the monitor, like
// podman's conmon) for `run -d` and `start` — holds the container's lock
// for as long as the process lives and records how it ended. A container
// whose monitor is gone (killed, or the machine restarted) is therefore
// known to have stopped: the next command that looks at it cleans up what
// was left and records it as exited (255, as docker does after a crash).
package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/lock"
	"github.com/kiln-build/kiln/store/snapshot"
)

// LostExitCode is the exit code recorded for a container whose monitor
// died before its process did: docker's for a container that died with
// the daemon.
const LostExitCode = store.LostExitCode

// Manager runs and manages the containers of one store.
type Manager struct {
	Store *store.Store
	// Runc is the runtime binary ("" = runc from PATH).
	Runc string
	// Self is the kiln executable the monitor is re-executed from ("" =
	// this process's own executable).
	Self string
}

// New returns a manager for st's containers.
func New(st *store.Store) *Manager { return &Manager{Store: st} }

func (m *Manager) runc() (string, error) {
	bin := m.Runc
	if bin == "" {
		bin = "runc"
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("container runtime %q not found: install it (apt-get install %s)", bin, bin)
	}
	return p, nil
}

// runcCmd is a runc command on the containers' runc root.
func (m *Manager) runcCmd(args ...string) (*exec.Cmd, error) {
	bin, err := m.runc()
	if err != nil {
		return nil, err
	}
	return exec.Command(bin, append([]string{"--root", m.Store.ContainerRuncRoot()}, args...)...), nil
}

// State is c's state as it really is: a container recorded as running
// whose monitor is gone is cleaned up and recorded as exited first.
func (m *Manager) State(c *store.Container) (store.ContainerState, error) {
	st, err := m.Store.ReadContainerState(c.ID)
	if err != nil {
		return st, err
	}
	if st.Status != store.StatusRunning || m.Store.ContainerRunning(c.ID) {
		return st, nil
	}
	if _, err := m.Store.ReapContainer(c.ID); err != nil {
		return st, err
	}
	return m.Store.ReadContainerState(c.ID)
}

// Running reports whether c's process runs now.
func (m *Manager) Running(c *store.Container) bool {
	st, err := m.State(c)
	return err == nil && st.Status == store.StatusRunning
}

// teardown removes what a stopped container's run leaves: its runc
// container (and any process still in it) and its rootfs mount. The caller
// holds the container's lock.
func (m *Manager) teardown(c *store.Container) {
	if cmd, err := m.runcCmd("delete", "--force", c.ID); err == nil {
		cmd.Run()
	}
	snapshot.UnmountUnder(m.Store.ContainerRootfs(c.ID))
}

// RunningError is docker's refusal to remove a running container.
type RunningError struct{ Name string }

func (e *RunningError) Error() string {
	return fmt.Sprintf("cannot remove container %q: container is running: stop the container before removing or force remove", "/"+e.Name)
}

// Remove removes c: refused while it runs unless force, which kills it
// first (docker rm -f).
func (m *Manager) Remove(ctx context.Context, c *store.Container, force bool) error {
	l, err := m.Store.ContainerLock(c.ID)
	if errors.Is(err, fs.ErrNotExist) {
		return &store.NoSuchContainerError{Ref: c.ID}
	}
	if err != nil {
		return err
	}
	defer l.Close()
	ok, err := l.TryLock(lock.Exclusive)
	if err != nil {
		return err
	}
	if !ok {
		if !force {
			return &RunningError{Name: c.Name}
		}
		m.Kill(c, "KILL")
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := l.Wait(wctx, lock.Exclusive, time.Second, nil); err != nil {
			return fmt.Errorf("container %s did not stop: %w", c.Name, err)
		}
	}
	m.teardown(c)
	if err := m.Store.RemoveContainerFiles(c); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &store.NoSuchContainerError{Ref: c.ID} // removed meanwhile
		}
		return err
	}
	return nil
}

// PruneReport is what Prune removed: the containers' IDs and the size of
// their writable layers.
type PruneReport struct {
	Deleted   []string
	Reclaimed int64
}

// Prune removes every stopped container that keep does not spare (docker
// container prune); a container that starts meanwhile is left alone.
func (m *Manager) Prune(ctx context.Context, keep func(*store.Container) bool) (*PruneReport, error) {
	cs, err := m.Store.Containers()
	if err != nil {
		return nil, err
	}
	rep := &PruneReport{}
	for i := len(cs) - 1; i >= 0; i-- { // oldest first
		c := cs[i]
		if m.Running(c) || keep != nil && keep(c) {
			continue
		}
		size, _ := m.SizeRw(c)
		if err := m.Remove(ctx, c, false); err != nil {
			var running *RunningError
			if errors.As(err, &running) || errors.Is(err, store.ErrNoSuchContainer) {
				continue
			}
			return rep, err
		}
		rep.Deleted = append(rep.Deleted, c.ID)
		rep.Reclaimed += size
	}
	return rep, nil
}

// Kill sends signal (a name such as "TERM" or "SIGKILL", or a number) to
// c's process.
func (m *Manager) Kill(c *store.Container, signal string) error {
	if !m.Running(c) {
		return fmt.Errorf("cannot kill container: %s: container %s is not running", c.Name, c.ID)
	}
	cmd, err := m.runcCmd("kill", c.ID, signal)
	if err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		if !m.Running(c) {
			return nil // it ended meanwhile
		}
		return fmt.Errorf("kill %s: %v: %s", c.Name, err, out)
	}
	return nil
}

// SizeRw is the size of c's writable layer as docker counts it: the
// apparent sizes of what is not a directory, hardlinks once.
func (m *Manager) SizeRw(c *store.Container) (int64, error) {
	var n int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(m.Store.ContainerUpper(c.ID), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		n += fi.Size()
		return nil
	})
	return n, err
}

// ensureExists is for the verbs that take a container already looked up:
// it may have been removed since.
func (m *Manager) ensureExists(c *store.Container) error {
	if _, err := os.Stat(m.Store.ContainerDir(c.ID)); err != nil {
		return &store.NoSuchContainerError{Ref: c.ID}
	}
	return nil
}
