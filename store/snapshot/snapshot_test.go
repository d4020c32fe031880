package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "snapshots"))
	must(t, err)
	return s
}

func newSnapshot(t *testing.T, s *Store) string {
	t.Helper()
	id, err := s.New()
	must(t, err)
	return id
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func uncommitted(t *testing.T, s *Store) []string {
	t.Helper()
	ids, err := s.Uncommitted()
	must(t, err)
	sort.Strings(ids)
	return ids
}

func TestNewCreatesEmptyUncommittedSnapshotsWithUniqueNumericIDs(t *testing.T) {
	s := openStore(t)
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		id := newSnapshot(t, s)
		if seen[id] {
			t.Fatalf("New returned %s twice", id)
		}
		seen[id] = true
		if _, err := strconv.Atoi(id); err != nil {
			t.Errorf("id %q is not a short number", id)
		}
		for _, d := range []string{s.FS(id), s.Work(id)} {
			ents, err := os.ReadDir(d)
			if err != nil || len(ents) != 0 {
				t.Errorf("%s: %d entries, %v; want an empty dir", d, len(ents), err)
			}
		}
	}
	if got := uncommitted(t, s); len(got) != 5 {
		t.Errorf("Uncommitted = %v, want the 5 new snapshots", got)
	}
}

func TestNewNeverReturnsAnIDInUse(t *testing.T) {
	s := openStore(t)
	a := newSnapshot(t, s)
	b := newSnapshot(t, s)
	must(t, s.Remove(a))
	c := newSnapshot(t, s)
	if c == a || c == b {
		t.Errorf("New after removing %s returned %s (existing: %s)", a, c, b)
	}
}

func TestNewGivesUniqueIDsConcurrently(t *testing.T) {
	const goroutines, each = 8, 10
	dir := openStore(t).Dir()
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Store values, as separate processes would have.
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < each; i++ {
				id, err := s.New()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[id]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct ids from %d calls", len(seen), goroutines*each)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("id %s handed out %d times", id, n)
		}
	}
}

func TestCommitRegistersSnapshotUnderItsDiffID(t *testing.T) {
	s := openStore(t)
	id := newSnapshot(t, s)
	other := newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(id), "f"), "x")
	// What an overlay mount leaves in its work dir.
	must(t, os.MkdirAll(filepath.Join(s.Work(id), "work", "junk"), 0o755))
	diffID := digest.FromString("layer")

	got, err := s.Commit(id, diffID)
	must(t, err)
	if got != id {
		t.Errorf("Commit = %s, want %s", got, id)
	}
	if l, err := s.Lookup(diffID); err != nil || l != id {
		t.Errorf("Lookup = %s, %v, want %s", l, err, id)
	}
	if ids := uncommitted(t, s); len(ids) != 1 || ids[0] != other {
		t.Errorf("Uncommitted = %v, want only %s", ids, other)
	}
	ents, err := os.ReadDir(s.Work(id))
	if err != nil || len(ents) != 0 {
		t.Errorf("work dir after Commit: %d entries, %v; want empty", len(ents), err)
	}
	if !exists(filepath.Join(s.FS(id), "f")) {
		t.Error("Commit lost the layer's files")
	}
	// Idempotent.
	if again, err := s.Commit(id, diffID); err != nil || again != id {
		t.Errorf("second Commit = %s, %v, want %s", again, err, id)
	}
}

func TestCommitOfSameDiffIDKeepsFirstSnapshotAndRemovesSecond(t *testing.T) {
	s := openStore(t)
	diffID := digest.FromString("layer")
	first := newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(first), "f"), "x")
	_, err := s.Commit(first, diffID)
	must(t, err)

	second := newSnapshot(t, s)
	writeFile(t, filepath.Join(s.FS(second), "f"), "x")
	got, err := s.Commit(second, diffID)
	must(t, err)
	if got != first {
		t.Errorf("Commit of a duplicate = %s, want the existing %s", got, first)
	}
	if exists(filepath.Join(s.Dir(), second)) {
		t.Errorf("duplicate snapshot %s was not removed", second)
	}
	if l, err := s.Lookup(diffID); err != nil || l != first {
		t.Errorf("Lookup = %s, %v, want %s", l, err, first)
	}
	if !exists(filepath.Join(s.FS(first), "f")) {
		t.Error("the kept snapshot lost its files")
	}
}

func TestLookupOfUnknownDiffIDIsErrNotFound(t *testing.T) {
	s := openStore(t)
	if id, err := s.Lookup(digest.FromString("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup = %s, %v, want ErrNotFound", id, err)
	}
}

func TestLookupOfDiffIDWhoseSnapshotVanishedIsErrNotFound(t *testing.T) {
	s := openStore(t)
	id := newSnapshot(t, s)
	diffID := digest.FromString("layer")
	_, err := s.Commit(id, diffID)
	must(t, err)
	must(t, os.RemoveAll(filepath.Join(s.Dir(), id)))
	if got, err := s.Lookup(diffID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup = %s, %v, want ErrNotFound", got, err)
	}
}

func TestRemoveDeletesSnapshotAndItsDiffIDEntry(t *testing.T) {
	s := openStore(t)
	id := newSnapshot(t, s)
	// Layers often hold read-only dirs (dr-xr-xr-x /proc).
	writeFile(t, filepath.Join(s.FS(id), "ro", "f"), "x")
	must(t, os.Chmod(filepath.Join(s.FS(id), "ro"), 0o500))
	diffID := digest.FromString("layer")
	_, err := s.Commit(id, diffID)
	must(t, err)

	must(t, s.Remove(id))
	if exists(filepath.Join(s.Dir(), id)) {
		t.Error("snapshot dir still there")
	}
	if _, err := s.Lookup(diffID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup after Remove = %v, want ErrNotFound", err)
	}
	if exists(filepath.Join(s.Dir(), "diffids", diffID.Encoded())) {
		t.Error("diffids entry still there")
	}
	must(t, s.Remove(id)) // removing twice is fine
}

func TestRemoveOfStaleCopyKeepsOtherSnapshotsDiffIDEntry(t *testing.T) {
	s := openStore(t)
	diffID := digest.FromString("layer")
	owner := newSnapshot(t, s)
	_, err := s.Commit(owner, diffID)
	must(t, err)
	// A snapshot that claims the same diffID but does not own the entry
	// (e.g. a process died between writing its diffid and losing a race).
	stale := newSnapshot(t, s)
	writeFile(t, filepath.Join(s.Dir(), stale, "diffid"), string(diffID))

	must(t, s.Remove(stale))
	if got, err := s.Lookup(diffID); err != nil || got != owner {
		t.Errorf("Lookup after removing a stale copy = %s, %v, want %s", got, err, owner)
	}
}

func TestUncommittedListsOnlyUncommittedSnapshots(t *testing.T) {
	s := openStore(t)
	a := newSnapshot(t, s)
	b := newSnapshot(t, s)
	c := newSnapshot(t, s)
	_, err := s.Commit(b, digest.FromString("b"))
	must(t, err)
	// Non-snapshot entries of the directory are not snapshots.
	must(t, os.MkdirAll(filepath.Join(s.Dir(), "empty"), 0o755))
	writeFile(t, filepath.Join(s.Dir(), ".tmp-123"), "")

	want := []string{a, c}
	sort.Strings(want)
	if got := uncommitted(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Uncommitted = %v, want %v", got, want)
	}
}

func TestStaleEntriesAreThoseTheirSnapshotDoesNotConfirm(t *testing.T) {
	s := openStore(t)
	kept, gone := newSnapshot(t, s), newSnapshot(t, s)
	dKept, dGone := digest.FromString("kept"), digest.FromString("gone")
	_, err := s.Commit(kept, dKept)
	must(t, err)
	_, err = s.Commit(gone, dGone)
	must(t, err)
	if d, err := s.DiffIDOf(kept); err != nil || d != dKept {
		t.Errorf("DiffIDOf(%s) = %s, %v; want %s", kept, d, err, dKept)
	}
	if _, err := s.DiffIDOf(newSnapshot(t, s)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DiffIDOf of an uncommitted snapshot: %v, want ErrNotExist", err)
	}
	if ids, err := s.IDs(); err != nil || len(ids) != 3 {
		t.Errorf("IDs = %v, %v; want 3 snapshots", ids, err)
	}
	if stale, err := s.StaleEntries(nil); err != nil || len(stale) != 0 {
		t.Fatalf("StaleEntries of a consistent store = %v, %v", stale, err)
	}
	// The snapshot goes but its entry stays, as after a crash mid-removal.
	must(t, os.RemoveAll(filepath.Join(s.Dir(), gone)))
	stale, err := s.StaleEntries(nil)
	must(t, err)
	if len(stale) != 1 || stale[0].DiffID != dGone || stale[0].ID != gone || !exists(stale[0].Path) {
		t.Errorf("StaleEntries = %+v, want the entry of %s naming snapshot %s", stale, dGone, gone)
	}
	if stale, err := s.StaleEntries(func(d digest.Digest) bool { return d == dGone }); err != nil || len(stale) != 0 {
		t.Errorf("StaleEntries skipping the known %s = %v, %v", dGone, stale, err)
	}
}
