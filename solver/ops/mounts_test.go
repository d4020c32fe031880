package ops

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-build/kiln/store"
)

func testWorker(t *testing.T) *Worker {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return NewWorker(s, "")
}

func TestCacheMountSharingModes(t *testing.T) {
	w := testWorker(t)
	ctx := context.Background()
	m := Mount{Type: "cache", CacheID: "deps", Mode: 0o755}

	// shared: two users at once get the same directory
	m.Sharing = "shared"
	a, doneA, err := w.cacheMount(ctx, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, doneB, err := w.cacheMount(ctx, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("shared cache mounts differ: %s %s", a, b)
	}
	doneA()
	doneB()

	// private: the second concurrent user gets its own, throwaway dir
	m.Sharing = "private"
	p1, done1, err := w.cacheMount(ctx, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2, done2, err := w.cacheMount(ctx, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != a {
		t.Errorf("the first private user should get the shared dir %s, got %s", a, p1)
	}
	if p2 == p1 {
		t.Errorf("a concurrent private user got the same dir %s", p2)
	}
	done2()
	if _, err := os.Stat(p2); !os.IsNotExist(err) {
		t.Errorf("throwaway private dir %s not removed", p2)
	}
	done1()

	// locked: the second user waits for the first
	m.Sharing = "locked"
	_, doneL, err := w.cacheMount(ctx, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		_, d, err := w.cacheMount(ctx, m, nil)
		if err == nil {
			d()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a locked cache mount was handed out twice at once")
	case <-time.After(200 * time.Millisecond): // long enough for a broken lock to show
	}
	doneL()
	<-got
}
