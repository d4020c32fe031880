package lock

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func open(t *testing.T, p string) *File {
	t.Helper()
	l, err := Open(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func try(t *testing.T, l *File, m Mode) bool {
	t.Helper()
	ok, err := l.TryLock(m)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestSharedLocksCoexistAndExcludeExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	a, b, c := open(t, p), open(t, p), open(t, p)
	if !try(t, a, Shared) || !try(t, b, Shared) {
		t.Fatal("a second shared lock was refused")
	}
	if try(t, c, Exclusive) {
		t.Fatal("exclusive lock granted while shared locks are held")
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !try(t, c, Exclusive) {
		t.Fatal("exclusive lock refused after the shared ones were released")
	}
	if try(t, a, Shared) {
		t.Fatal("shared lock granted while an exclusive one is held")
	}
	if c.Held() != Exclusive || a.Held() != Unlocked {
		t.Errorf("Held = %v, %v; want exclusive, unlocked", c.Held(), a.Held())
	}
}

func TestFailedConversionHoldsNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	a, b := open(t, p), open(t, p)
	if !try(t, a, Shared) || !try(t, b, Shared) {
		t.Fatal("shared locks refused")
	}
	if try(t, a, Exclusive) {
		t.Fatal("conversion to exclusive granted while another shared lock is held")
	}
	if a.Held() != Unlocked {
		t.Errorf("after a failed conversion Held = %v, want unlocked", a.Held())
	}
	if err := a.Lock(Shared); err != nil {
		t.Fatal(err)
	}
	if a.Held() != Shared {
		t.Errorf("Held = %v, want shared", a.Held())
	}
}

func TestWaitCallsWaitingOnceAfterPatienceAndGetsTheLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	holder, waiter := open(t, p), open(t, p)
	if !try(t, holder, Shared) {
		t.Fatal("shared lock refused")
	}
	var calls atomic.Int32
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- waiter.Wait(context.Background(), Exclusive, 200*time.Millisecond, func() { calls.Add(1) })
	}()
	time.Sleep(500 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Errorf("waiting called %d times after its patience, want 1", n)
	}
	select {
	case err := <-done:
		t.Fatalf("Wait returned (%v) while the lock was held", err)
	default:
	}
	holder.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still waiting after the lock was released")
	}
	if calls.Load() != 1 {
		t.Errorf("waiting called %d times, want 1", calls.Load())
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Error("Wait returned before the lock was released")
	}
	if waiter.Held() != Exclusive {
		t.Errorf("Held = %v, want exclusive", waiter.Held())
	}
}

func TestWaitDoesNotCallWaitingWhenTheLockIsFree(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "lock"))
	if err := l.Wait(context.Background(), Exclusive, 0, func() { t.Error("waiting called for a free lock") }); err != nil {
		t.Fatal(err)
	}
}

func TestWaitStopsWhenTheContextEnds(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	holder, waiter := open(t, p), open(t, p)
	if !try(t, holder, Exclusive) {
		t.Fatal("exclusive lock refused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	err := waiter.Wait(ctx, Shared, time.Hour, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want the context's error", err)
	}
	if waiter.Held() != Unlocked {
		t.Errorf("Held = %v after a canceled wait, want unlocked", waiter.Held())
	}
}

func TestOpenExistingDoesNotCreate(t *testing.T) {
	_, err := OpenExisting(filepath.Join(t.TempDir(), "lock"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenExisting of a missing file = %v, want ErrNotExist", err)
	}
}
