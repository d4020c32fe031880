package store

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/store/lock"
	"github.com/kiln-build/kiln/store/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(root)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s
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

func TestOpenCreatesTheStoreLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "kiln")
	s := openStore(t, root)
	if s.Root != root {
		t.Errorf("Root = %q, want %q", s.Root, root)
	}
	for _, p := range []string{
		"content/oci-layout", "content/index.json", "content/blobs/sha256",
		"snapshots/diffids", "cache", "statcache", "run", "lock",
	} {
		if !exists(filepath.Join(root, p)) {
			t.Errorf("%s missing", p)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "content", "oci-layout"))
	must(t, err)
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(b, &layout); err != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout = %s (%v)", b, err)
	}
	b, err = os.ReadFile(filepath.Join(root, "content", "index.json"))
	must(t, err)
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil || idx.SchemaVersion != 2 {
		t.Errorf("index.json = %s (%v)", b, err)
	}
	if s.RunDir() != filepath.Join(root, "run") || s.StatCacheDir() != filepath.Join(root, "statcache") {
		t.Errorf("RunDir %q, StatCacheDir %q", s.RunDir(), s.StatCacheDir())
	}
}

func TestOpenMakesRootAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s := openStore(t, "store")
	if s.Root != filepath.Join(dir, "store") {
		t.Errorf("Root = %q, want %q", s.Root, filepath.Join(dir, "store"))
	}
}

func TestOpenKeepsExistingContent(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	desc, err := s.Content.Write(t.Context(), strings.NewReader("blob"), "")
	must(t, err)
	must(t, s.Content.Tag("docker.io/library/app:latest", desc))
	key := record.NewKey([]record.Component{{Name: "op", Value: "x"}})
	must(t, s.Records.Put(&record.Record{Key: key.Digest}))
	must(t, s.Close())

	s = openStore(t, root)
	if d, err := s.Content.Resolve("docker.io/library/app:latest"); err != nil || d.Digest != desc.Digest {
		t.Errorf("tag after reopen: %v, %v", d.Digest, err)
	}
	if _, err := s.Records.Get(key.Digest); err != nil {
		t.Errorf("record after reopen: %v", err)
	}
}

// leftovers is what a killed kiln process leaves in a store.
type leftovers struct {
	mounts    []string // mount points under run/
	runFiles  []string
	tempFiles []string
	scratch   string // an uncommitted snapshot
	committed string // a committed snapshot, which must survive
	diffID    digest.Digest
	blob      digest.Digest // a committed blob, which must survive
	recordKey digest.Digest
}

// makeLeftovers creates, through s, the state a process killed in the middle
// of a RUN step leaves behind: an overlay mount of the step's rootfs (and a
// tmpfs mounted inside it), its bundle, half-written files and the step's
// uncommitted upper snapshot.
func makeLeftovers(t *testing.T, s *Store) leftovers {
	t.Helper()
	var l leftovers
	ctx := t.Context()

	base, err := s.Snapshots.New()
	must(t, err)
	writeFile(t, filepath.Join(s.Snapshots.FS(base), "etc", "os-release"), "base")
	lay, committed, err := s.CommitSnapshot(ctx, base, time.Time{})
	must(t, err)
	l.committed, l.diffID, l.blob = committed, lay.DiffID, lay.DiffID
	l.recordKey = record.NewKey([]record.Component{{Name: "op", Value: "run"}}).Digest
	must(t, s.Records.Put(&record.Record{Key: l.recordKey, Layers: []record.Layer{{DiffID: l.diffID}}}))

	l.scratch, err = s.Snapshots.New()
	must(t, err)
	writeFile(t, filepath.Join(s.Snapshots.FS(l.scratch), "half-done"), "x")

	step := filepath.Join(s.RunDir(), "0123abcd")
	rootfs := filepath.Join(step, "rootfs")
	must(t, os.MkdirAll(rootfs, 0o755))
	must(t, s.Snapshots.Mount(rootfs, []string{l.committed}, l.scratch))
	l.mounts = append(l.mounts, rootfs)
	proc := filepath.Join(rootfs, "proc")
	must(t, os.MkdirAll(proc, 0o755))
	must(t, unix.Mount("tmpfs", proc, "tmpfs", 0, "size=1m"))
	l.mounts = append(l.mounts, proc)
	other := filepath.Join(s.RunDir(), "4567ef", "rootfs")
	must(t, os.MkdirAll(other, 0o755))
	must(t, unix.Mount("tmpfs", other, "tmpfs", 0, "size=1m"))
	writeFile(t, filepath.Join(other, "inside-tmpfs"), "x")
	l.mounts = append(l.mounts, other)
	t.Cleanup(func() {
		for i := len(l.mounts) - 1; i >= 0; i-- {
			unix.Unmount(l.mounts[i], unix.MNT_DETACH)
		}
	})

	for _, p := range []string{
		filepath.Join(step, "config.json"),
		filepath.Join(s.RunDir(), "runc", "0123abcd", "state.json"),
		filepath.Join(s.RunDir(), "stray-file"),
	} {
		writeFile(t, p, "{}")
		l.runFiles = append(l.runFiles, p)
	}
	for _, dir := range []string{
		filepath.Join(s.Content.Dir(), "blobs", "sha256"),
		s.Content.Dir(),
		filepath.Join(s.Root, "cache"),
		s.StatCacheDir(),
		filepath.Join(s.Snapshots.Dir(), "diffids"),
	} {
		p := filepath.Join(dir, atomicfile.TempPrefix+"killed-123")
		writeFile(t, p, "partial")
		l.tempFiles = append(l.tempFiles, p)
	}
	// An ingest abandoned by a killed process, through the real writer.
	w, err := s.Content.NewWriter()
	must(t, err)
	t.Cleanup(func() { w.Close() })
	_, err = w.Write([]byte("half a layer"))
	must(t, err)
	tmpBlobs := tempFilesIn(t, filepath.Join(s.Content.Dir(), "blobs", "sha256"))
	if len(tmpBlobs) != 2 {
		t.Fatalf("test setup: temp blobs %q", tmpBlobs)
	}
	l.tempFiles = append(l.tempFiles, tmpBlobs...)
	return l
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

func tempFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range ents {
		if atomicfile.IsTemp(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	// Read mountinfo directly rather than trust MountsUnder, which repair uses.
	b, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4]+"/", dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// assertRepaired checks that l is gone except what must survive.
func assertRepaired(t *testing.T, s *Store, l leftovers) {
	t.Helper()
	if m := mountsUnder(t, s.Root); len(m) != 0 {
		t.Errorf("mounts left under the store: %q", m)
	}
	ents, err := os.ReadDir(s.RunDir())
	must(t, err)
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("run/ not empty: %q", names)
	}
	for _, p := range l.tempFiles {
		if exists(p) {
			t.Errorf("temp file %s left", p)
		}
	}
	if exists(filepath.Join(s.Snapshots.Dir(), l.scratch)) {
		t.Errorf("uncommitted snapshot %s left", l.scratch)
	}
	if ids, err := s.Snapshots.Uncommitted(); err != nil || len(ids) != 0 {
		t.Errorf("Uncommitted = %v, %v", ids, err)
	}
	// What was committed survives, untouched by the removal of the mount.
	if id, err := s.Snapshots.Lookup(l.diffID); err != nil || id != l.committed {
		t.Errorf("committed snapshot: Lookup = %s, %v, want %s", id, err, l.committed)
	}
	if got := readString(t, filepath.Join(s.Snapshots.FS(l.committed), "etc", "os-release")); got != "base" {
		t.Errorf("committed snapshot content = %q", got)
	}
	if _, err := s.Content.ReadBlob(l.blob); err != nil {
		t.Errorf("committed blob: %v", err)
	}
	if _, err := s.Records.Get(l.recordKey); err != nil {
		t.Errorf("cache record: %v", err)
	}
}

// assertNotRepaired checks that l is all still there.
func assertNotRepaired(t *testing.T, s *Store, l leftovers) {
	t.Helper()
	got := mountsUnder(t, s.RunDir())
	for _, m := range l.mounts {
		if !strings.Contains(strings.Join(got, "\n")+"\n", m+"\n") {
			t.Errorf("mount %s was removed (mounts: %q)", m, got)
		}
	}
	for _, p := range append(append([]string{}, l.runFiles...), l.tempFiles...) {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	if !exists(filepath.Join(s.Snapshots.FS(l.scratch), "half-done")) {
		t.Errorf("uncommitted snapshot %s was removed", l.scratch)
	}
}

func TestOpenRepairsWhatAKilledProcessLeft(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	s := openStore(t, root)
	l := makeLeftovers(t, s)
	must(t, s.Close())

	s2 := openStore(t, root)
	assertRepaired(t, s2, l)
}

func TestOpenThroughASymlinkRepairsMounts(t *testing.T) {
	testenv.RequireRoot(t)
	real := filepath.Join(t.TempDir(), "real")
	must(t, os.Mkdir(real, 0o700))
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink(real, link))

	s := openStore(t, link)
	l := makeLeftovers(t, s)
	must(t, s.Close())

	s2, err := Open(link)
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	defer s2.Close()
	if m := mountsUnder(t, real); len(m) != 0 {
		t.Errorf("mounts left under the store: %q", m)
	}
	if ents, err := os.ReadDir(s2.RunDir()); err != nil || len(ents) != 0 {
		t.Errorf("run/ holds %d entries (%v)", len(ents), err)
	}
	if exists(filepath.Join(s2.Snapshots.Dir(), l.scratch)) {
		t.Errorf("uncommitted snapshot %s left", l.scratch)
	}
	if got := readString(t, filepath.Join(s2.Snapshots.FS(l.committed), "etc", "os-release")); got != "base" {
		t.Errorf("committed snapshot content = %q", got)
	}
}

func TestOpenDoesNotRepairWhileAnotherStoreIsOpen(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	running := openStore(t, root) // a build in progress: it owns the leftovers
	l := makeLeftovers(t, running)

	other := openStore(t, root)
	assertNotRepaired(t, other, l)
	must(t, other.Close())
	assertNotRepaired(t, running, l)

	// Once the build is gone, the next Open cleans up.
	must(t, running.Close())
	s := openStore(t, root)
	assertRepaired(t, s, l)
}

func TestStoresShareTheLock(t *testing.T) {
	root := t.TempDir()
	a := openStore(t, root)
	b := openStore(t, root) // a shared lock does not block another shared lock
	lf, err := lock.OpenExisting(filepath.Join(root, "lock"))
	must(t, err)
	defer lf.Close()
	if ok, _ := lf.TryLock(lock.Exclusive); ok {
		t.Error("exclusive lock granted while two stores are open")
	}
	must(t, a.Close())
	must(t, b.Close())
	if ok, err := lf.TryLock(lock.Exclusive); !ok {
		t.Errorf("exclusive lock refused after both stores closed: %v", err)
	}
}

func TestRepairDoesNotTouchMountsOutsideRun(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	s := openStore(t, root)
	// A mount elsewhere in the store is not a step's leftover.
	other := filepath.Join(root, "statcache", "m")
	must(t, os.Mkdir(other, 0o755))
	must(t, unix.Mount("tmpfs", other, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { unix.Unmount(other, unix.MNT_DETACH) })
	must(t, s.Close())

	s = openStore(t, root)
	if m := mountsUnder(t, other); len(m) != 1 {
		t.Errorf("mount outside run/ was touched: %q", m)
	}
	if m, err := snapshot.MountsUnder(s.RunDir()); err != nil || len(m) != 0 {
		t.Errorf("MountsUnder(run) = %q, %v", m, err)
	}
}
