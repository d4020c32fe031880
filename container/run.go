package container

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/kiln-build/kiln/store"
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
	// (--entrypoint; "" clears it).
	Entrypoint    []string
	EntrypointSet bool
	Env           []string
	User, Workdir string
	// Network is "host" (default) or "none".
	Network string
	// Binds are -v HOST:CTR[:ro].
	Binds []string
	// Tty is -t, Stdin -i, AutoRemove --rm.
	Tty, Stdin, AutoRemove bool
}

var errTODO = errors.New("not implemented yet")

// Create makes a container of o.Image without starting it (docker create).
func (m *Manager) Create(ctx context.Context, o CreateOptions) (*store.Container, error) {
	return nil, errTODO
}

// Attach wires a foreground container's process to the caller.
type Attach struct {
	Stdin          io.Reader // nil unless -i
	Stdout, Stderr io.Writer
}

// Start starts c's process. With a nil attach it runs under a detached
// monitor process and Start returns once it runs (exit code 0); with
// attach set this process is its monitor and Start returns its exit code
// when it ends.
func (m *Manager) Start(ctx context.Context, c *store.Container, a *Attach) (int, error) {
	return 0, errTODO
}

// Stop sends c's stop signal, waits up to timeout for it to exit, then
// kills it (docker stop -t).
func (m *Manager) Stop(ctx context.Context, c *store.Container, timeout time.Duration) error {
	return errTODO
}

// Wait waits for c's process to end and returns its exit code.
func (m *Manager) Wait(ctx context.Context, c *store.Container) (int, error) {
	return 0, errTODO
}

// ExecOptions are docker exec's.
type ExecOptions struct {
	Args          []string
	Env           []string
	User, Workdir string
	Tty           bool
	Stdin         io.Reader // nil unless -i
	Stdout        io.Writer
	Stderr        io.Writer
}

// Exec runs another process in c, which must be running, and returns its
// exit code.
func (m *Manager) Exec(ctx context.Context, c *store.Container, o ExecOptions) (int, error) {
	return 0, errTODO
}
