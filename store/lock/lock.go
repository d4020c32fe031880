// Package lock is kiln's one file lock: flock(2) on a lock file, shared or
// exclusive, taken at once, tried, or waited for under a context. Every lock
// kiln takes goes through it: the store-wide <root>/lock (commands shared,
// GC and kiln doctor exclusive), content/index.lock around index.json
// updates and each cache mount's lock.
//
// A flock belongs to an open file, not to a process: two Files on the same
// path exclude each other in one process as they do across processes, and
// closing a File releases its lock.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Mode says how a lock is held.
type Mode int

const (
	// Unlocked: the File holds no lock.
	Unlocked Mode = iota
	// Shared locks are held by any number of Files at once.
	Shared
	// Exclusive is held by one File while no other holds any lock.
	Exclusive
)

func (m Mode) String() string {
	switch m {
	case Shared:
		return "shared"
	case Exclusive:
		return "exclusive"
	}
	return "unlocked"
}

func (m Mode) how() int {
	if m == Exclusive {
		return unix.LOCK_EX
	}
	return unix.LOCK_SH
}

// pollInterval is how often Wait tries again.
const pollInterval = 50 * time.Millisecond

// File is an open lock file.
type File struct {
	f    *os.File
	held Mode
}

// Open opens the lock file at path, creating it with perm if needed. The
// File holds no lock yet.
func Open(path string, perm os.FileMode) (*File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, perm)
	if err != nil {
		return nil, err
	}
	return &File{f: f}, nil
}

// OpenExisting opens the lock file at path without creating it: a missing
// file is an error satisfying errors.Is(err, fs.ErrNotExist).
func OpenExisting(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &File{f: f}, nil
}

// Inherited wraps an open file a parent process handed on (exec.Cmd's
// ExtraFiles) whose lock it took in mode m: a flock belongs to the open
// file, so the child holds the lock from its start and keeps it after the
// parent closes its own copy. This is how a lock passes to a process that
// outlives its starter with no moment where nobody holds it.
func Inherited(f *os.File, m Mode) *File { return &File{f: f, held: m} }

// OSFile is the open lock file, to hand to a child process (Inherited).
func (l *File) OSFile() *os.File { return l.f }

// Held is the mode the File holds its lock in.
func (l *File) Held() Mode { return l.held }

// Lock takes the lock in mode m, blocking until it is granted; for short
// critical sections only (Wait is the interruptible form). Taking a lock
// already held converts it (see TryLock on conversions).
func (l *File) Lock(m Mode) error {
	if err := l.flock(m.how()); err != nil {
		return fmt.Errorf("lock %s: %w", l.f.Name(), err)
	}
	l.held = m
	return nil
}

// TryLock takes the lock in mode m if no other File prevents it, without
// waiting, and reports whether it did. A conversion (shared to exclusive)
// that fails has released the lock held before: flock(2) converts by
// unlocking first, so the File then holds nothing.
func (l *File) TryLock(m Mode) (bool, error) {
	err := l.flock(m.how() | unix.LOCK_NB)
	switch {
	case err == nil:
		l.held = m
		return true, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		l.held = Unlocked
		return false, nil
	}
	return false, fmt.Errorf("lock %s: %w", l.f.Name(), err)
}

// Wait takes the lock in mode m, trying again until it is granted or ctx
// ends (then it returns ctx.Err() and holds nothing). If the lock is not
// granted within patience, it calls waiting once, so that a command can say
// what it is waiting for; waiting may be nil.
func (l *File) Wait(ctx context.Context, m Mode, patience time.Duration, waiting func()) error {
	start := time.Now()
	for {
		ok, err := l.TryLock(m)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if ok {
			return nil
		}
		if waiting != nil && time.Since(start) >= patience {
			waiting()
			waiting = nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// Unlock releases the lock; the file stays open.
func (l *File) Unlock() error {
	if err := l.flock(unix.LOCK_UN); err != nil {
		return fmt.Errorf("unlock %s: %w", l.f.Name(), err)
	}
	l.held = Unlocked
	return nil
}

// Close releases the lock and closes the file.
func (l *File) Close() error {
	l.held = Unlocked
	return l.f.Close()
}

func (l *File) flock(how int) error {
	for {
		err := unix.Flock(int(l.f.Fd()), how)
		if err != unix.EINTR || how&unix.LOCK_NB != 0 {
			return err
		}
	}
}
