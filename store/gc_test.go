package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// exclusive reopens the fixture's store exclusively (closing the shared one).
func (f *fixture) exclusive() *Store {
	f.t.Helper()
	root := f.s.Root
	f.s.Close()
	s, err := OpenExclusive(context.Background(), root, nil)
	must(f.t, err)
	f.t.Cleanup(func() { s.Close() })
	f.s = s
	return s
}

func (f *fixture) collect(opts GCOptions) *GCReport {
	f.t.Helper()
	rep, err := f.s.Collect(context.Background(), opts)
	must(f.t, err)
	return rep
}

// assertLayer checks that l's blob and snapshot are both there, or both gone.
func (f *fixture) assertLayer(name string, l record.Layer, want bool) {
	f.t.Helper()
	if got := f.blobExists(l.DiffID); got != want {
		f.t.Errorf("%s: blob present = %v, want %v", name, got, want)
	}
	if got := f.snapshotExists(l.DiffID); got != want {
		f.t.Errorf("%s: snapshot present = %v, want %v", name, got, want)
	}
}

func (f *fixture) hasRecord(key digest.Digest) bool {
	_, err := os.Stat(filepath.Join(f.s.Root, "cache", key.Encoded()))
	return err == nil
}

func TestCollectNeedsTheStoreToItself(t *testing.T) {
	f := newFixture(t)
	if _, err := f.s.Collect(context.Background(), GCOptions{Records: true, All: true}); err == nil {
		t.Fatal("Collect with a shared lock: no error")
	}
}

func TestPruneRemovesRecordsAndWhatOnlyTheyHeldButNeverImages(t *testing.T) {
	f := newFixture(t)
	old := time.Now().Add(-time.Hour)
	base, app, danglingLayer, cacheOnly := f.layer(1000), f.layer(1000), f.layer(1000), f.layer(1000)
	f.image("base:1", base)
	f.image("app:1", base, app)
	f.image("", base, danglingLayer)
	gz := f.compressed(cacheOnly, 500)
	gzApp := f.compressed(app, 500)
	r1 := f.record(old, base, app)
	r2 := f.record(old, base, cacheOnly)
	r3 := f.record(old, base, danglingLayer)
	before := f.usage()
	f.exclusive()

	rep := f.collect(GCOptions{Records: true, All: true})
	if len(rep.Records) != 3 || f.hasRecord(r1) || f.hasRecord(r2) || f.hasRecord(r3) {
		t.Errorf("removed records %v; all three should be gone", rep.Records)
	}
	f.assertLayer("base", base, true)
	f.assertLayer("app", app, true)
	f.assertLayer("dangling image's layer", danglingLayer, true)
	f.assertLayer("cache-only layer", cacheOnly, false)
	if f.blobExists(gz) || exists(filepath.Join(f.s.Content.Dir(), "compressed", "gzip-6", cacheOnly.DiffID.Encoded())) {
		t.Error("the cache-only layer's compressed copy or its mapping is left")
	}
	if !f.blobExists(gzApp) {
		t.Error("the tagged image's compressed layer was removed")
	}
	after := f.usage()
	if len(after.Images) != 3 {
		t.Errorf("%d images left, want 3", len(after.Images))
	}
	if after.CacheSize != 0 {
		t.Errorf("build cache after prune: %d bytes", after.CacheSize)
	}
	if rep.Reclaimed != before.CacheSize {
		t.Errorf("reclaimed %d, df said the build cache was %d", rep.Reclaimed, before.CacheSize)
	}
}

func TestPruneKeepStorageRemovesLeastRecentlyUsedFirst(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	var layers []record.Layer
	var keys []digest.Digest
	for i := 0; i < 4; i++ {
		l := f.layer(100_000)
		layers = append(layers, l)
		keys = append(keys, f.record(now.Add(time.Duration(i-10)*time.Minute), l)) // keys[0] least recently used
	}
	one := f.layerCost(layers[0])
	f.exclusive()
	rep := f.collect(GCOptions{Records: true, Keep: 2*one + one/2})
	if len(rep.Records) != 2 || rep.Records[0] != keys[0] || rep.Records[1] != keys[1] {
		t.Errorf("removed %v, want the two least recently used %v", rep.Records, keys[:2])
	}
	for i, l := range layers {
		f.assertLayer("layer "+string(rune('0'+i)), l, i >= 2)
	}
	if u := f.usage(); u.CacheSize > 2*one+one/2 {
		t.Errorf("build cache %d after keeping %d", u.CacheSize, 2*one+one/2)
	}
}

func TestPruneUntilSparesRecentlyUsedRecords(t *testing.T) {
	f := newFixture(t)
	oldL, newL := f.layer(1000), f.layer(1000)
	oldK := f.record(time.Now().Add(-48*time.Hour), oldL)
	newK := f.record(time.Now(), newL)
	f.exclusive()
	f.collect(GCOptions{Records: true, All: true, Until: 24 * time.Hour})
	if f.hasRecord(oldK) || !f.hasRecord(newK) {
		t.Errorf("old record kept = %v, new kept = %v; want false, true", f.hasRecord(oldK), f.hasRecord(newK))
	}
	f.assertLayer("old", oldL, false)
	f.assertLayer("new", newL, true)
}

func TestPruneAllRemovesCacheMounts(t *testing.T) {
	f := newFixture(t)
	dir := f.mount("npm", 1000, time.Now())
	f.exclusive()
	f.collect(GCOptions{Records: true, All: true})
	if !exists(dir) {
		t.Fatal("prune without --all removed a cache mount")
	}
	rep := f.collect(GCOptions{Records: true, Mounts: true, All: true})
	if exists(dir) || len(rep.Mounts) != 1 {
		t.Errorf("prune --all: mount left = %v, reported %v", exists(dir), rep.Mounts)
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	if len(ents) != 0 {
		t.Errorf("cachemounts/ holds %d entries after removal", len(ents))
	}
}

func TestImagePruneRemovesDanglingImagesOnly(t *testing.T) {
	f := newFixture(t)
	base, l1, l2, l3 := f.layer(1000), f.layer(1000), f.layer(1000), f.layer(1000)
	f.image("base:1", base)
	tagged := f.image("app:1", base, l1)
	dangling := f.image("", base, l2)
	byDigest := f.image("docker.io/library/app@sha256:"+digest.FromString("x").Encoded(), base, l3)
	f.exclusive()

	rep := f.collect(GCOptions{DanglingImages: true, All: true})
	if len(rep.Images) != 1 || len(rep.Images[0].Names) != 0 {
		t.Fatalf("removed %+v, want the one dangling image", rep.Images)
	}
	f.assertLayer("dangling image's layer", l2, false)
	if f.blobExists(dangling.Digest) {
		t.Error("the dangling image's manifest is left")
	}
	f.assertLayer("tagged", l1, true)
	f.assertLayer("digest-named", l3, true)
	f.assertLayer("base", base, true)

	rep = f.collect(GCOptions{DanglingImages: true, UntaggedImages: true, All: true})
	if len(rep.Images) != 1 || len(rep.Images[0].Names) != 1 {
		t.Fatalf("-a removed %+v, want the image named by digest", rep.Images)
	}
	f.assertLayer("digest-named", l3, false)
	if !f.blobExists(tagged.Digest) || f.blobExists(byDigest.Digest) {
		t.Error("manifests: tagged one gone, or digest-named one left")
	}
	f.assertLayer("tagged", l1, true)
	imgs, err := f.s.Content.Images()
	must(t, err)
	if len(imgs) != 2 {
		t.Errorf("index holds %d entries, want base:1 and app:1", len(imgs))
	}
}

func TestImagePruneKeepsLayersThatRecordsUse(t *testing.T) {
	f := newFixture(t)
	l := f.layer(1000)
	f.image("", l)
	f.record(time.Now(), l)
	f.exclusive()
	rep := f.collect(GCOptions{DanglingImages: true, All: true})
	if len(rep.Images) != 1 {
		t.Fatalf("removed %d images", len(rep.Images))
	}
	f.assertLayer("layer a record uses", l, true)
}

func TestCollectOverBudgetKeepsTaggedImagesAndFits(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	base := f.layer(50_000)
	f.image("base:1", base)
	one := int64(0)
	var tagged, untagged []record.Layer
	var taggedRecords []digest.Digest
	for i := 0; i < 6; i++ {
		l := f.layer(100_000)
		if one == 0 {
			one = f.layerCost(l)
		}
		if i%2 == 0 {
			f.image("app:"+string(rune('a'+i)), base, l)
			tagged = append(tagged, l)
		} else {
			f.image("", base, l)
			untagged = append(untagged, l)
		}
		k := f.record(now.Add(time.Duration(i-10)*time.Minute), base, l)
		if i%2 == 0 {
			taggedRecords = append(taggedRecords, k)
		}
	}
	budget := one + one/2
	rep, err := f.s.CollectOverBudget(context.Background(), budget)
	must(t, err)
	if rep.Before <= budget || rep.Reclaimed == 0 {
		t.Fatalf("report %+v: expected a collection", rep)
	}
	if u := f.usage(); u.Budgeted > budget {
		t.Errorf("usage %d over the budget %d after the collection", u.Budgeted, budget)
	}
	for _, l := range tagged {
		f.assertLayer("tagged", l, true)
	}
	f.assertLayer("base", base, true)
	// The least recently used untagged images went; the newest fits.
	f.assertLayer("untagged 0", untagged[0], false)
	f.assertLayer("untagged 1", untagged[1], false)
	f.assertLayer("untagged 2", untagged[2], true)
	// Records of tagged images cost next to nothing, however old: they
	// stay, so that rebuilding those images stays cached.
	for _, k := range taggedRecords {
		if !f.hasRecord(k) {
			t.Errorf("record %s of a tagged image was removed", k)
		}
	}
	// The shared lock is back: another store can open shared at once.
	s2, err := Open(f.s.Root)
	must(t, err)
	s2.Close()
}

func TestCollectOverBudgetNeverRemovesTheProtectedImage(t *testing.T) {
	f := newFixture(t)
	l := f.layer(100_000)
	d := f.image("", l)
	f.mount("m", 100_000, time.Now())
	rep, err := f.s.CollectOverBudget(context.Background(), 1000, d.Digest)
	must(t, err)
	f.assertLayer("protected", l, true)
	if len(rep.Mounts) != 1 {
		t.Errorf("the cache mount (last resort) was not removed: %+v", rep)
	}
}

func TestCollectOverBudgetIsSkippedWhileAnotherProcessUsesTheStore(t *testing.T) {
	f := newFixture(t)
	l := f.layer(100_000)
	f.image("", l)
	other := openStore(t, f.s.Root) // another process (a second open file description)
	rep, err := f.s.CollectOverBudget(context.Background(), 1000)
	if !errors.Is(err, ErrBusy) || rep == nil || rep.Before <= 1000 {
		t.Fatalf("CollectOverBudget = %+v, %v; want ErrBusy with the usage", rep, err)
	}
	f.assertLayer("layer", l, true)
	// Still shared: an exclusive open must not get in.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if s, err := OpenExclusive(ctx, f.s.Root, nil); err == nil {
		s.Close()
		t.Fatal("OpenExclusive succeeded while two stores hold the lock")
	}
	other.Close()
	// The last one to finish collects.
	rep, err = f.s.CollectOverBudget(context.Background(), 1000)
	must(t, err)
	f.assertLayer("layer", l, false)
}

func TestOpenExclusiveWaitsForOtherProcesses(t *testing.T) {
	root := filepath.Join(t.TempDir(), "kiln")
	shared := openStore(t, root)
	var waited atomic.Bool
	done := make(chan error, 1)
	go func() {
		s, err := OpenExclusive(context.Background(), root, func() { waited.Store(true) })
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("OpenExclusive returned (%v) while another store was open", err)
	case <-time.After(1500 * time.Millisecond):
	}
	if !waited.Load() {
		t.Error("waiting was not called after a second")
	}
	shared.Close()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("OpenExclusive still waiting after the other store closed")
	}
}

func TestOpenExclusiveStopsWaitingWhenCanceled(t *testing.T) {
	root := filepath.Join(t.TempDir(), "kiln")
	openStore(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := OpenExclusive(ctx, root, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
}

// A collection killed half way leaves only unreferenced data; the next one
// removes it.
func TestCollectRemovesWhatAnInterruptedCollectionLeft(t *testing.T) {
	f := newFixture(t)
	keep := f.layer(1000)
	f.image("keep:1", keep)
	// a snapshot whose diffids entry went, a blob with nothing pointing at
	// it, a mapping whose layer is gone, a half-removed cache mount
	half := f.layer(1000)
	must(t, os.Remove(filepath.Join(f.s.Snapshots.Dir(), "diffids", half.DiffID.Encoded())))
	gz := f.compressed(half, 100)
	must(t, os.MkdirAll(filepath.Join(f.s.Root, "cachemounts", ".tmp-gc-0123", "data", "x"), 0o755))
	f.exclusive()
	f.collect(GCOptions{})
	if f.blobExists(half.DiffID) || f.blobExists(gz) {
		t.Error("unreferenced blobs left")
	}
	ents, _ := os.ReadDir(f.s.Snapshots.Dir())
	for _, e := range ents {
		if id, _ := f.s.Snapshots.Lookup(keep.DiffID); e.Name() != id && e.Name() != "diffids" {
			t.Errorf("snapshots/%s left", e.Name())
		}
	}
	if exists(filepath.Join(f.s.Root, "cachemounts", ".tmp-gc-0123")) {
		t.Error("half-removed cache mount left")
	}
	if exists(filepath.Join(f.s.Content.Dir(), "compressed", "gzip-6", half.DiffID.Encoded())) {
		t.Error("mapping of a removed layer left")
	}
	f.assertLayer("kept", keep, true)
}

// nestedIndex stores an index over ms and returns its descriptor.
func (f *fixture) nestedIndex(ms ...ocispec.Descriptor) ocispec.Descriptor {
	f.t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: ms}
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	d, _, err := f.s.Content.WriteJSON(idx, ocispec.MediaTypeImageIndex)
	must(f.t, err)
	return d
}

// An index nested deeper than a walk goes ends that branch only: what the
// index's other manifests refer to is still held, as before the one walk.
func TestPruneKeepsTheSiblingsOfAnIndexNestedTooDeep(t *testing.T) {
	f := newFixture(t)
	l := f.layer(1000)
	img := f.image("", l)
	deep := f.nestedIndex()
	for range content.MaxDepth {
		deep = f.nestedIndex(deep)
	}
	root := f.nestedIndex(deep, img)
	must(t, f.s.Content.Tag("multi:1", root))
	must(t, f.s.Content.RemoveImage(img.Digest))
	imgs, err := f.s.Content.Images()
	must(t, err)
	if len(imgs) != 1 || imgs[0].Descriptor.Digest != root.Digest {
		t.Fatalf("index.json holds %+v, want only the index", imgs)
	}
	n, err := f.s.RemoveUnreferencedBlobs([]digest.Digest{l.DiffID, img.Digest})
	must(t, err)
	if n != 0 {
		t.Errorf("RemoveUnreferencedBlobs removed %d blobs the index refers to", n)
	}
	f.exclusive()

	f.collect(GCOptions{Records: true, DanglingImages: true, All: true})
	f.assertLayer("the layer of the index's second image", l, true)
	if !f.blobExists(img.Digest) {
		t.Error("the index's second manifest was removed")
	}
}
