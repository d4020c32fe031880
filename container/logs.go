package container

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/kiln-build/kiln/store"
)

// CopyLog writes c's output so far to w; with follow it goes on writing
// what the process writes until it stops (or ctx ends).
func CopyLog(ctx context.Context, m *Manager, c *store.Container, w io.Writer, follow bool) error {
	f, err := os.Open(m.Store.ContainerLog(c.ID))
	if errors.Is(err, fs.ErrNotExist) {
		if !follow {
			return nil
		}
		if !m.Running(c) {
			return nil
		}
		for f == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			f, _ = os.Open(m.Store.ContainerLog(c.ID))
		}
	} else if err != nil {
		return err
	}
	defer f.Close()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		if !m.Running(c) {
			_, err := io.Copy(w, f) // what it wrote last
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
