package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/layer"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// fillLayer writes a small tree with a bit of everything into dir.
func fillLayer(t *testing.T, dir, variant string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "etc", "hostname"), "kiln-"+variant)
	writeFile(t, filepath.Join(dir, "usr", "bin", "tool"), "#!/bin/sh\necho "+variant+"\n")
	must(t, os.Chmod(filepath.Join(dir, "usr", "bin", "tool"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "var", "empty"), 0o700))
	must(t, os.Symlink("../usr/bin/tool", filepath.Join(dir, "etc", "tool-link")))
	writeFile(t, filepath.Join(dir, "big"), strings.Repeat("0123456789", 10000))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		must(t, err)
		ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

// describeTree lists every entry below dir with type, mode, owner, size,
// mtime and content or link target.
func describeTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		rel, err := filepath.Rel(dir, p)
		must(t, err)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		fmt.Fprintf(&b, "%s mode=%o uid=%d gid=%d size=%d mtime=%d", rel, st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec)
		switch {
		case d.Type().IsRegular():
			c, err := os.ReadFile(p)
			must(t, err)
			fmt.Fprintf(&b, " sha=%s", digest.FromBytes(c).Encoded()[:12])
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			must(t, err)
			fmt.Fprintf(&b, " -> %s", target)
		}
		b.WriteString("\n")
		return nil
	}))
	return b.String()
}

func TestCommitSnapshotThenSnapshotRoundTrips(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := t.Context()
	id, err := s.Snapshots.New()
	must(t, err)
	fillLayer(t, s.Snapshots.FS(id), "a")
	want := describeTree(t, s.Snapshots.FS(id))

	lay, committed, err := s.CommitSnapshot(ctx, id, time.Time{})
	must(t, err)
	if committed != id {
		t.Errorf("CommitSnapshot returned snapshot %s, want %s", committed, id)
	}
	// The blob is the layer tar, named by its diffID.
	size, ok := s.Content.Has(lay.DiffID)
	if !ok || size != lay.Size {
		t.Fatalf("blob %s: has=%v size=%d, want size %d", lay.DiffID, ok, size, lay.Size)
	}
	f, err := s.Content.Open(lay.DiffID)
	must(t, err)
	got, err := digest.FromReader(f)
	f.Close()
	must(t, err)
	if got != lay.DiffID {
		t.Errorf("blob content hashes to %s, want its diffID %s", got, lay.DiffID)
	}
	if l, err := s.Snapshots.Lookup(lay.DiffID); err != nil || l != id {
		t.Errorf("Lookup(diffID) = %s, %v, want %s", l, err, id)
	}
	if ids, err := s.Snapshots.Uncommitted(); err != nil || len(ids) != 0 {
		t.Errorf("Uncommitted = %v, %v", ids, err)
	}
	if tmp := tempFilesIn(t, filepath.Join(s.Content.Dir(), "blobs", "sha256")); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}

	// Once committed, Snapshot finds it without unpacking.
	if again, err := s.Snapshot(ctx, lay.DiffID); err != nil || again != id {
		t.Errorf("Snapshot of a committed layer = %s, %v, want %s", again, err, id)
	}

	// Gone from disk: Snapshot unpacks the blob into a new snapshot.
	must(t, s.Snapshots.Remove(id))
	unpacked, err := s.Snapshot(ctx, lay.DiffID)
	must(t, err)
	if got := describeTree(t, s.Snapshots.FS(unpacked)); got != want {
		t.Errorf("unpacked snapshot differs:\n got:\n%s\nwant:\n%s", got, want)
	}
	if l, err := s.Snapshots.Lookup(lay.DiffID); err != nil || l != unpacked {
		t.Errorf("Lookup after unpack = %s, %v, want %s", l, err, unpacked)
	}

	// And it tars back to the same bytes.
	d, n, err := layer.WriteTar(ctx, s.Snapshots.FS(unpacked), io.Discard, layer.WriteOptions{})
	must(t, err)
	if d != lay.DiffID || n != lay.Size {
		t.Errorf("the unpacked snapshot tars to %s (%d bytes), want %s (%d bytes)", d, n, lay.DiffID, lay.Size)
	}
}

func TestCommitSnapshotOfIdenticalContentSharesOneSnapshot(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := t.Context()
	var ids []string
	var layers []record.Layer
	for i := 0; i < 2; i++ {
		id, err := s.Snapshots.New()
		must(t, err)
		fillLayer(t, s.Snapshots.FS(id), "same")
		lay, committed, err := s.CommitSnapshot(ctx, id, time.Time{})
		must(t, err)
		ids = append(ids, committed)
		layers = append(layers, lay)
	}
	if layers[0] != layers[1] {
		t.Errorf("identical trees gave layers %+v and %+v", layers[0], layers[1])
	}
	if ids[0] != ids[1] {
		t.Errorf("identical layers committed as %s and %s, want one shared snapshot", ids[0], ids[1])
	}
	ents, err := os.ReadDir(s.Snapshots.Dir())
	must(t, err)
	n := 0
	for _, e := range ents {
		if e.Name() != "diffids" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("snapshots dir has %d snapshots, want 1", n)
	}
}

func TestCommitSnapshotClampsMtimes(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := t.Context()
	clamp := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	var diffIDs []digest.Digest
	for _, mtime := range []time.Time{time.Now(), time.Now().Add(time.Hour)} {
		id, err := s.Snapshots.New()
		must(t, err)
		p := filepath.Join(s.Snapshots.FS(id), "f")
		writeFile(t, p, "x")
		must(t, os.Chtimes(p, mtime, mtime))
		must(t, os.Chtimes(s.Snapshots.FS(id), mtime, mtime))
		lay, _, err := s.CommitSnapshot(ctx, id, clamp)
		must(t, err)
		diffIDs = append(diffIDs, lay.DiffID)
	}
	if diffIDs[0] != diffIDs[1] {
		t.Errorf("files differing only in mtimes after the clamp gave %s and %s", diffIDs[0], diffIDs[1])
	}
}

func TestSnapshotOfMissingBlobIsErrNotFound(t *testing.T) {
	s := openStore(t, t.TempDir())
	_, err := s.Snapshot(t.Context(), digest.FromString("no such layer"))
	if !errors.Is(err, content.ErrNotFound) {
		t.Errorf("Snapshot = %v, want content.ErrNotFound", err)
	}
	if ids, err := s.Snapshots.Uncommitted(); err != nil || len(ids) != 0 {
		t.Errorf("Uncommitted = %v, %v; a failed unpack left a snapshot", ids, err)
	}
}

func TestSnapshotOfCorruptedBlobFailsAndLeavesNoSnapshot(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := t.Context()
	id, err := s.Snapshots.New()
	must(t, err)
	fillLayer(t, s.Snapshots.FS(id), "a")
	lay, _, err := s.CommitSnapshot(ctx, id, time.Time{})
	must(t, err)
	must(t, s.Snapshots.Remove(id))

	// Flip one byte of the file content inside the tar: still a valid tar.
	p := s.Content.BlobPath(lay.DiffID)
	b, err := os.ReadFile(p)
	must(t, err)
	i := strings.Index(string(b), "kiln-a")
	if i < 0 {
		t.Fatal("test setup: content not found in the tar")
	}
	b[i] = 'K'
	must(t, os.Chmod(p, 0o644))
	must(t, os.WriteFile(p, b, 0o644))

	if got, err := s.Snapshot(ctx, lay.DiffID); err == nil {
		t.Fatalf("Snapshot of a corrupted blob = %s, want an error", got)
	}
	if _, err := s.Snapshots.Lookup(lay.DiffID); err == nil {
		t.Error("a corrupted layer was registered under its diffID")
	}
	if ids, err := s.Snapshots.Uncommitted(); err != nil || len(ids) != 0 {
		t.Errorf("Uncommitted = %v, %v; the failed unpack left a snapshot", ids, err)
	}
}

func TestConcurrentSnapshotOfOneLayerUnpacksOnce(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := t.Context()
	id, err := s.Snapshots.New()
	must(t, err)
	fillLayer(t, s.Snapshots.FS(id), "a")
	lay, _, err := s.CommitSnapshot(ctx, id, time.Time{})
	must(t, err)
	must(t, s.Snapshots.Remove(id))

	got := make([]string, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = s.Snapshot(ctx, lay.DiffID)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != got[0] {
			t.Errorf("goroutine %d: %s, %v; goroutine 0: %s", i, got[i], errs[i], got[0])
		}
	}
	ents, err := os.ReadDir(s.Snapshots.Dir())
	must(t, err)
	var snaps []string
	for _, e := range ents {
		if e.Name() != "diffids" {
			snaps = append(snaps, e.Name())
		}
	}
	if len(snaps) != 1 {
		t.Errorf("snapshots on disk: %q, want one", snaps)
	}
}

func TestSnapshotStackResolvesEveryLayerInOrder(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := t.Context()
	var layers []record.Layer
	var want []string
	for i := 0; i < 4; i++ {
		id, err := s.Snapshots.New()
		must(t, err)
		writeFile(t, filepath.Join(s.Snapshots.FS(id), fmt.Sprintf("f%d", i)), fmt.Sprint(i))
		lay, _, err := s.CommitSnapshot(ctx, id, time.Time{})
		must(t, err)
		layers = append(layers, lay)
		want = append(want, fmt.Sprintf("f%d", i))
		if i%2 == 0 { // half of them need unpacking
			must(t, s.Snapshots.Remove(id))
		}
	}
	ids, err := s.SnapshotStack(ctx, layers)
	must(t, err)
	if len(ids) != len(layers) {
		t.Fatalf("SnapshotStack returned %d ids for %d layers", len(ids), len(layers))
	}
	for i, id := range ids {
		if !exists(filepath.Join(s.Snapshots.FS(id), want[i])) {
			t.Errorf("layer %d resolved to snapshot %s without %s", i, id, want[i])
		}
	}

	bad := append(append([]record.Layer{}, layers...), record.Layer{DiffID: digest.FromString("missing")})
	if _, err := s.SnapshotStack(ctx, bad); !errors.Is(err, content.ErrNotFound) {
		t.Errorf("SnapshotStack with a missing layer = %v, want content.ErrNotFound", err)
	}
}
