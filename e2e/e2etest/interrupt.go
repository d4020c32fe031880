package e2etest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// KilnInterrupted runs kiln on this store with args, sends it SIGINT
// (Ctrl-C) as soon as its stderr contains marker, and returns its stderr
// and how it exited. The test fails if marker does not show within a
// minute, or kiln does not stop within 30 seconds of the signal.
func (s *Store) KilnInterrupted(marker string, args ...string) (string, error) {
	s.T.Helper()
	cmd := exec.Command(kilnBin, append([]string{"--root", s.Root}, args...)...)
	w := &markerWriter{marker: marker, seen: make(chan struct{})}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		s.T.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-w.seen:
	case err := <-done:
		s.T.Fatalf("kiln %s ended before %q showed: %v\n%s", strings.Join(args, " "), marker, err, w.String())
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		s.T.Fatalf("%q never showed:\n%s", marker, w.String())
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		return w.String(), err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		s.T.Fatalf("kiln did not stop after SIGINT:\n%s", w.String())
	}
	return "", nil
}

// markerWriter keeps what is written and closes seen once marker is in it.
type markerWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	seen   chan struct{}
	closed bool
}

func (w *markerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.closed && strings.Contains(w.buf.String(), w.marker) {
		w.closed = true
		close(w.seen)
	}
	return len(p), nil
}

func (w *markerWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
