package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/lock"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testImage is an image put together through the store's own API: one
// committed layer (blob and snapshot), a config, a manifest, a tag and a
// cache record for the layer.
type testImage struct {
	name     string
	manifest ocispec.Descriptor
	config   digest.Digest
	layer    record.Layer
	snapshot string
	record   digest.Digest
}

func addTestImage(t *testing.T, s *Store, name, variant string) testImage {
	t.Helper()
	id, err := s.Snapshots.New()
	must(t, err)
	fillLayer(t, s.Snapshots.FS(id), variant)
	l, snap, err := s.CommitSnapshot(t.Context(), id, time.Time{})
	must(t, err)
	cfg := dockerspec.DockerOCIImage{}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.DiffID}}
	desc, err := s.Content.WriteImage(cfg, []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: l.DiffID, Size: l.Size}})
	must(t, err)
	full, err := content.NormalizeName(name)
	must(t, err)
	must(t, s.Content.Tag(full, desc))
	key := record.NewKey([]record.Component{{Name: "image", Value: name}}).Digest
	must(t, s.Records.Put(&record.Record{Key: key, Layers: []record.Layer{l}}))
	si, err := s.Content.ReadImage(desc)
	must(t, err)
	return testImage{name: name, manifest: desc, config: si.ID(), layer: l, snapshot: snap, record: key}
}

func check(t *testing.T, s *Store, opts CheckOptions) *Report {
	t.Helper()
	r, err := Check(t.Context(), s, opts)
	must(t, err)
	return r
}

// findings lists a report as "severity kind subject: problem [repaired]"
// lines, for assertions and failure messages.
func findings(r *Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		sev := map[Severity]string{Problem: "PROBLEM", Stale: "stale", Leftover: "leftover"}[f.Severity]
		b.WriteString(sev + " " + f.Kind + " " + f.Subject + ": " + f.Problem)
		if f.Repaired != "" {
			b.WriteString(" [" + f.Repaired + "]")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func assertFinding(t *testing.T, r *Report, sev Severity, kind string, parts ...string) {
	t.Helper()
	for _, f := range r.Findings {
		if f.Severity != sev || f.Kind != kind {
			continue
		}
		line := f.Subject + ": " + f.Problem
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no %v %s finding with %q in:\n%s", sev, kind, parts, findings(r))
}

func assertConsistent(t *testing.T, s *Store) {
	t.Helper()
	r := check(t, s, CheckOptions{Deep: true})
	if !r.Consistent() || len(r.Findings) != 0 {
		t.Errorf("store not clean:\n%s", findings(r))
	}
}

func TestCheckFindsNothingWrongWithAHealthyStore(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	addTestImage(t, s, "b:1", "b")
	// The same layer unpacked from its blob, as for a pulled image.
	must(t, s.Snapshots.Remove(a.snapshot))
	_, err := s.Snapshot(t.Context(), a.layer.DiffID)
	must(t, err)
	r := check(t, s, CheckOptions{Deep: true})
	if len(r.Findings) != 0 || !r.Consistent() {
		t.Errorf("findings in a healthy store:\n%s", findings(r))
	}
	if r.Blobs != 6 || r.Images != 2 || r.Records != 2 || r.Snapshots != 2 {
		t.Errorf("checked %d blobs, %d images, %d records, %d snapshots", r.Blobs, r.Images, r.Records, r.Snapshots)
	}
	if r.Unreferenced != 0 {
		t.Errorf("%d unreferenced blobs", r.Unreferenced)
	}
}

func TestCheckReportsACorruptBlobAndRepairDropsWhatNeededIt(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	b := addTestImage(t, s, "b:1", "b")
	p := s.Content.BlobPath(a.layer.DiffID)
	must(t, os.Chmod(p, 0o644))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	f.WriteString("bit rot")
	f.Close()

	r := check(t, s, CheckOptions{})
	if r.Consistent() {
		t.Errorf("a corrupt layer passed:\n%s", findings(r))
	}
	assertFinding(t, r, Problem, "blob", string(a.layer.DiffID), "does not match its digest")
	assertFinding(t, r, Problem, "image", "a:1", "is corrupt")
	assertFinding(t, r, Stale, "record", a.record.Encoded())
	if _, err := os.Stat(p); err != nil {
		t.Errorf("Check without Repair changed the store: %v", err)
	}

	r = check(t, s, CheckOptions{Repair: true})
	if !r.Consistent() {
		t.Errorf("not all repaired:\n%s", findings(r))
	}
	assertFinding(t, r, Problem, "image", "a:1")
	if _, ok := s.Content.Has(a.layer.DiffID); ok {
		t.Error("the corrupt blob is still there")
	}
	if _, err := s.Content.Resolve("docker.io/library/a:1"); err == nil {
		t.Error("a:1 still tagged")
	}
	if _, err := s.Records.Get(a.record); err == nil {
		t.Error("the record of the lost layer is still there")
	}
	if _, err := s.Snapshots.Lookup(a.layer.DiffID); err == nil {
		t.Error("the snapshot of a layer whose blob is gone is still registered")
	}
	// b is untouched.
	if d, err := s.Content.Resolve("docker.io/library/b:1"); err != nil || d.Digest != b.manifest.Digest {
		t.Errorf("b:1: %v", err)
	}
	assertConsistent(t, s)
}

func TestCheckDropsImagesWhoseManifestConfigOrLayerIsMissing(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	m := addTestImage(t, s, "m:1", "m")
	c := addTestImage(t, s, "c:1", "c")
	l := addTestImage(t, s, "l:1", "l")
	ok := addTestImage(t, s, "ok:1", "ok")
	must(t, s.Content.Delete(m.manifest.Digest))
	must(t, s.Content.Delete(c.config))
	must(t, s.Content.Delete(l.layer.DiffID))

	r := check(t, s, CheckOptions{Repair: true})
	assertFinding(t, r, Problem, "image", "m:1", "manifest", "is missing")
	assertFinding(t, r, Problem, "image", "c:1", "config", "is missing")
	assertFinding(t, r, Problem, "image", "l:1", "layer", "is missing")
	imgs, err := s.Content.Images()
	must(t, err)
	if len(imgs) != 1 || imgs[0].Name != "docker.io/library/ok:1" || imgs[0].Descriptor.Digest != ok.manifest.Digest {
		t.Errorf("index after repair: %+v", imgs)
	}
	assertConsistent(t, s)
}

func TestCheckFindsSnapshotsThatDifferFromTheirLayer(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	fs := s.Snapshots.FS(a.snapshot)
	writeFile(t, filepath.Join(fs, "etc", "hostname"), "kiln-X")
	must(t, os.Chmod(filepath.Join(fs, "usr", "bin", "tool"), 0o777))
	writeFile(t, filepath.Join(fs, "extra"), "x")

	if r := check(t, s, CheckOptions{}); len(r.Findings) != 0 {
		t.Errorf("a shallow check read snapshot contents:\n%s", findings(r))
	}
	r := check(t, s, CheckOptions{Deep: true, Repair: true})
	assertFinding(t, r, Problem, "snapshot", a.snapshot, "etc/hostname: content differs")
	assertFinding(t, r, Problem, "snapshot", a.snapshot, "usr/bin/tool: mode 777, the layer has 755")
	assertFinding(t, r, Problem, "snapshot", a.snapshot, "extra: not in the layer")
	if !r.Consistent() {
		t.Errorf("not repaired:\n%s", findings(r))
	}
	// Repaired by removal: the next use unpacks the layer again.
	id, err := s.Snapshot(t.Context(), a.layer.DiffID)
	must(t, err)
	if got := readString(t, filepath.Join(s.Snapshots.FS(id), "etc", "hostname")); got != "kiln-a" {
		t.Errorf("re-unpacked hostname = %q", got)
	}
	assertConsistent(t, s)
}

func TestCheckReportsStaleEntriesAndRepairRemovesThem(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	diffids := filepath.Join(s.Snapshots.Dir(), "diffids")
	// An entry whose snapshot does not confirm it (a crash between the two
	// writes of Commit, then the id reused).
	bogus := digest.FromString("bogus")
	writeFile(t, filepath.Join(diffids, bogus.Encoded()), a.snapshot)
	// A second committed snapshot of a's layer (a race of two builds).
	dup, err := s.Snapshots.New()
	must(t, err)
	writeFile(t, filepath.Join(s.Snapshots.Dir(), dup, "diffid"), string(a.layer.DiffID))
	// A record for a layer the store lacks (imported from a cache, or GC'd).
	gone := record.NewKey([]record.Component{{Name: "gone"}}).Digest
	must(t, s.Records.Put(&record.Record{Key: gone, Layers: []record.Layer{{DiffID: digest.FromString("nope")}}}))
	// A damaged record file.
	damaged := record.NewKey([]record.Component{{Name: "damaged"}}).Digest
	writeFile(t, filepath.Join(s.Root, "cache", damaged.Encoded()), "{not json")
	// A compressed-layer mapping whose blob is gone.
	mapping := filepath.Join(s.Content.Dir(), "compressed", "gzip-6", a.layer.DiffID.Encoded())
	writeFile(t, mapping, digest.FromString("compressed").String()+"\n")

	r := check(t, s, CheckOptions{})
	if !r.Consistent() {
		t.Errorf("stale entries are not problems:\n%s", findings(r))
	}
	assertFinding(t, r, Stale, "snapshot", "diffids/"+bogus.Encoded())
	assertFinding(t, r, Stale, "snapshot", dup, "never used")
	assertFinding(t, r, Stale, "record", gone.Encoded(), "is missing")
	assertFinding(t, r, Stale, "record", damaged.Encoded(), "unreadable")
	assertFinding(t, r, Stale, "compressed", "gzip-6")

	r = check(t, s, CheckOptions{Repair: true})
	for _, f := range r.Findings {
		if f.Repaired == "" {
			t.Errorf("not repaired: %s %s: %s", f.Kind, f.Subject, f.Problem)
		}
	}
	for _, p := range []string{filepath.Join(diffids, bogus.Encoded()), filepath.Join(s.Snapshots.Dir(), dup), mapping} {
		if exists(p) {
			t.Errorf("%s still there", p)
		}
	}
	if id, err := s.Snapshots.Lookup(a.layer.DiffID); err != nil || id != a.snapshot {
		t.Errorf("a's snapshot: %s, %v", id, err)
	}
	if _, err := s.Records.Get(a.record); err != nil {
		t.Errorf("a's record: %v", err)
	}
	assertConsistent(t, s)
}

func TestCheckCallsARecordWithoutAKeyStale(t *testing.T) {
	s := openStore(t, t.TempDir())
	// JSON that decodes to a record of no key (it once made Check panic).
	name := record.NewKey([]record.Component{{Name: "keyless"}}).Digest.Encoded()
	writeFile(t, filepath.Join(s.Records.Dir(), name), "{}")
	r := check(t, s, CheckOptions{})
	assertFinding(t, r, Stale, "record", name, "unreadable")
}

func TestCheckCleansUpAfterAKilledProcess(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	running := openStore(t, root)
	l := makeLeftovers(t, running)
	// Another command opened the store while the "killed" one still held
	// it, so Open did not repair; Check waits for the lock and does.
	s := openStore(t, root)
	waited := make(chan struct{})
	done := make(chan *Report)
	go func() {
		r, err := Check(t.Context(), s, CheckOptions{Waiting: func() { close(waited) }})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Check did not wait for the other process")
	}
	must(t, running.Close())
	r := <-done
	assertRepaired(t, s, l)
	assertFinding(t, r, Leftover, "leftover", "killed process")
	if !r.Consistent() {
		t.Errorf("findings:\n%s", findings(r))
	}
	// The shared lock is back: another store opens without waiting.
	other := openStore(t, root)
	must(t, other.Close())
}

func TestCheckRepairsTheLayoutFile(t *testing.T) {
	s := openStore(t, t.TempDir())
	p := filepath.Join(s.Content.Dir(), ocispec.ImageLayoutFile)
	writeFile(t, p, "garbage")
	r := check(t, s, CheckOptions{Repair: true})
	assertFinding(t, r, Problem, "layout", "oci-layout")
	var l ocispec.ImageLayout
	if err := json.Unmarshal([]byte(readString(t, p)), &l); err != nil || l.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout after repair: %s (%v)", readString(t, p), err)
	}
}

func TestRemoveUnreferencedBlobsKeepsWhatIsUsed(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	s := openStore(t, root)
	a := addTestImage(t, s, "a:1", "a")
	junk, err := s.Content.Write(t.Context(), strings.NewReader("junk"), "")
	must(t, err)

	// While another kiln process runs, nothing is removed.
	other := openStore(t, root)
	n, err := s.RemoveUnreferencedBlobs([]digest.Digest{junk.Digest, a.layer.DiffID, a.config})
	must(t, err)
	if n != 0 {
		t.Errorf("removed %d blobs while the store was in use", n)
	}
	must(t, other.Close())

	n, err = s.RemoveUnreferencedBlobs([]digest.Digest{junk.Digest, a.layer.DiffID, a.config, a.manifest.Digest})
	must(t, err)
	if n != 1 {
		t.Errorf("removed %d blobs, want 1 (the junk)", n)
	}
	if _, ok := s.Content.Has(junk.Digest); ok {
		t.Error("junk blob kept")
	}
	assertConsistent(t, s)
	// The shared lock is held again after both calls.
	if err := tryLockExclusive(root); err == nil {
		t.Error("the store's shared lock was lost")
	}
}

// tryLockExclusive tries, from a new file description, to take the store
// lock exclusively (it must fail while a store is open).
func tryLockExclusive(root string) error {
	f, err := lock.OpenExisting(filepath.Join(root, "lock"))
	if err != nil {
		return err
	}
	defer f.Close()
	if ok, err := f.TryLock(lock.Exclusive); !ok {
		return fmt.Errorf("store lock is held (%v)", err)
	}
	return nil
}
