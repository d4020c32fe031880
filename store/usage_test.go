package store

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fixture builds store contents in-process: layers (blob + snapshot),
// images, cache records, compressed copies and cache mounts.
type fixture struct {
	t *testing.T
	s *Store
	n int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return &fixture{t: t, s: openStore(t, filepath.Join(t.TempDir(), "kiln"))}
}

// layer commits a snapshot holding one file of size random bytes.
func (f *fixture) layer(size int) record.Layer {
	f.t.Helper()
	f.n++
	id, err := f.s.Snapshots.New()
	must(f.t, err)
	b := make([]byte, size)
	rand.Read(b)
	must(f.t, os.WriteFile(filepath.Join(f.s.Snapshots.FS(id), "file"+strconv.Itoa(f.n)), b, 0o644))
	l, _, err := f.s.CommitSnapshot(context.Background(), id, time.Time{})
	must(f.t, err)
	return l
}

// image stores an image over layers, tagged as name ("" for dangling),
// and returns its manifest descriptor.
func (f *fixture) image(name string, layers ...record.Layer) ocispec.Descriptor {
	f.t.Helper()
	f.n++
	var cfg dockerspec.DockerOCIImage
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Labels = map[string]string{"n": strconv.Itoa(f.n)}
	cfg.RootFS.Type = "layers"
	var descs []ocispec.Descriptor
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.DiffID, Size: l.Size})
	}
	desc, err := f.s.Content.WriteImage(cfg, descs)
	must(f.t, err)
	if name == "" {
		must(f.t, f.s.Content.AddUntagged(desc))
	} else {
		must(f.t, f.s.Content.Tag(name, desc))
	}
	return desc
}

// record stores a cache record over layers, last used at used.
func (f *fixture) record(used time.Time, layers ...record.Layer) digest.Digest {
	f.t.Helper()
	f.n++
	key := record.NewKey([]record.Component{{Name: "op", Value: "exec"}, {Name: "n", Value: strconv.Itoa(f.n)}})
	must(f.t, f.s.Records.Put(&record.Record{Key: key.Digest, Components: key.Components, Layers: layers, Created: used}))
	must(f.t, os.Chtimes(filepath.Join(f.s.Root, "cache", key.Digest.Encoded()), used, used))
	return key.Digest
}

// compressed stores a fake compressed copy of l with its mapping file, as
// exporter/compression does, and returns the copy's digest.
func (f *fixture) compressed(l record.Layer, size int) digest.Digest {
	f.t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	desc, _, err := f.s.Content.WriteJSON(b, "application/octet-stream")
	must(f.t, err)
	writeFile(f.t, filepath.Join(f.s.Content.Dir(), "compressed", "gzip-6", l.DiffID.Encoded()), desc.Digest.String()+"\n")
	return desc.Digest
}

// mount makes a cache mount directory as solver/ops does, last used at used.
func (f *fixture) mount(id string, size int, used time.Time) string {
	f.t.Helper()
	dir := filepath.Join(f.s.Root, "cachemounts", CacheMountDir(id))
	b := make([]byte, size)
	rand.Read(b)
	writeFile(f.t, filepath.Join(dir, "data", "sub", "blob"), string(b))
	writeFile(f.t, filepath.Join(dir, "lock"), "")
	must(f.t, os.Chtimes(filepath.Join(dir, "data"), used, used))
	return dir
}

func (f *fixture) usage() *Usage {
	f.t.Helper()
	u, err := f.s.DiskUsage(context.Background())
	must(f.t, err)
	return u
}

func (f *fixture) blobExists(d digest.Digest) bool {
	_, ok := f.s.Content.Has(d)
	return ok
}

func (f *fixture) snapshotExists(d digest.Digest) bool {
	_, err := f.s.Snapshots.Lookup(d)
	return err == nil
}

// duSB is `du -sb` of p.
func duSB(t *testing.T, p string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-sb", p).Output()
	must(t, err)
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	must(t, err)
	return n
}

// layerCost is what a layer of f takes on disk: its blob and its snapshot.
func (f *fixture) layerCost(l record.Layer) int64 {
	f.t.Helper()
	id, err := f.s.Snapshots.Lookup(l.DiffID)
	must(f.t, err)
	return l.Size + duSB(f.t, filepath.Join(f.s.Snapshots.Dir(), id))
}

func TestDiskUsageAddsUpToWhatIsOnDisk(t *testing.T) {
	f := newFixture(t)
	old := time.Now().Add(-time.Hour)
	base := f.layer(300_000)
	app := f.layer(200_000)
	gone := f.layer(100_000) // only a record keeps it
	f.image("base:1", base)
	f.image("app:1", base, app)
	dangling := f.layer(150_000)
	f.image("", base, dangling)
	f.record(old, base, app)
	f.record(old, base, gone)
	gz := f.compressed(app, 50_000)
	f.mount("/root/.cache", 70_000, old)
	// unreferenced: a stray blob and a snapshot whose diffids entry is gone
	stray, err := f.s.Content.Write(context.Background(), strings.NewReader(strings.Repeat("x", 40_000)), "")
	must(t, err)
	orphan := f.layer(60_000)
	id, _ := f.s.Snapshots.Lookup(orphan.DiffID)
	must(t, os.Remove(filepath.Join(f.s.Snapshots.Dir(), "diffids", orphan.DiffID.Encoded())))
	must(t, f.s.Content.Delete(orphan.DiffID))

	u := f.usage()
	total := u.ImagesSize + u.CacheSize + u.MountsSize
	onDisk := duSB(t, f.s.Root)
	if total > onDisk || onDisk-total > 64<<10 {
		t.Errorf("df total %d, du -sb %d: differ by more than the metadata", total, onDisk)
	}
	if len(u.Images) != 3 || u.ActiveImages != 2 || len(u.Records) != 2 || len(u.Mounts) != 1 {
		t.Fatalf("counts: %d images (%d active), %d records, %d mounts", len(u.Images), u.ActiveImages, len(u.Records), len(u.Mounts))
	}
	orphanSize := duSB(t, filepath.Join(f.s.Snapshots.Dir(), id))
	if want := stray.Size + orphanSize; u.Unreferenced != want {
		t.Errorf("Unreferenced = %d, want %d (stray blob + orphaned snapshot)", u.Unreferenced, want)
	}
	recFiles := duSB(t, filepath.Join(f.s.Root, "cache")) - 4096
	if want := f.layerCost(gone) + recFiles + u.Unreferenced; abs(u.CacheSize-want) > 0 {
		t.Errorf("CacheSize = %d, want %d (the record-only layer, the records, unreferenced)", u.CacheSize, want)
	}
	mountSize := duSB(t, filepath.Join(f.s.Root, "cachemounts", CacheMountDir("/root/.cache")))
	if u.MountsSize != mountSize || u.Mounts[0].CacheID != "" {
		t.Errorf("MountsSize = %d, want %d", u.MountsSize, mountSize)
	}
	// The dangling image's own layer is all removing it would free.
	var danglingImage ImageUsage
	for _, im := range u.Images {
		if len(im.Names) == 0 {
			danglingImage = im
		}
	}
	if u.ImagesReclaimable < f.layerCost(dangling) || u.ImagesReclaimable > f.layerCost(dangling)+4096 {
		t.Errorf("ImagesReclaimable = %d, want the dangling layer %d (+ manifest and config)", u.ImagesReclaimable, f.layerCost(dangling))
	}
	if danglingImage.SharedSize != f.layerCost(base) || danglingImage.UniqueSize != u.ImagesReclaimable {
		t.Errorf("dangling image: shared %d (want base %d), unique %d (want %d)", danglingImage.SharedSize, f.layerCost(base), danglingImage.UniqueSize, u.ImagesReclaimable)
	}
	// A record's size is its own layer; the app layer is in an image too.
	for _, r := range u.Records {
		if r.Size == f.layerCost(gone) && r.Shared {
			t.Errorf("record of the record-only layer: Shared")
		}
	}
	// The budget counts everything but what named images hold.
	gzSize, _ := f.s.Content.Has(gz)
	mapping := int64(len(gz.String()) + 1)
	named := f.layerCost(base) + f.layerCost(app) + gzSize + mapping // and app's compressed copy
	if u.Budgeted < total-named-8192 || u.Budgeted > total-named {
		t.Errorf("Budgeted = %d, want about %d", u.Budgeted, total-named)
	}
}

func TestDiskUsageNamesCacheMountsFromRecords(t *testing.T) {
	f := newFixture(t)
	f.mount("gomod", 1000, time.Now())
	// the ops read their own keys (ops.CacheMountIDs); this one knows one record
	f.s.CacheMountIDs = func(comps []record.Component) []string {
		for _, c := range comps {
			if c.Name == "mounts" && strings.Contains(c.Value, `"id":"gomod"`) {
				return []string{"gomod"}
			}
		}
		return nil
	}
	key := record.NewKey([]record.Component{{Name: "op", Value: "exec"}, {Name: "mounts", Value: `[{"type":"cache","target":"/go/pkg/mod","id":"gomod"}]`}})
	must(t, f.s.Records.Put(&record.Record{Key: key.Digest, Components: key.Components}))
	u := f.usage()
	if len(u.Mounts) != 1 || u.Mounts[0].CacheID != "gomod" {
		t.Errorf("mounts = %+v, want one named gomod", u.Mounts)
	}
}

func TestDiskUsageRemembersSnapshotSizes(t *testing.T) {
	f := newFixture(t)
	l := f.layer(10_000)
	f.image("a:1", l)
	first := f.usage()
	b, err := os.ReadFile(filepath.Join(f.s.Root, "usage.json"))
	must(t, err)
	if !strings.Contains(string(b), string(l.DiffID)) {
		t.Fatalf("usage.json = %s, want the snapshot of %s", b, l.DiffID)
	}
	if again := f.usage(); again.ImagesSize != first.ImagesSize {
		t.Errorf("second df %d, first %d", again.ImagesSize, first.ImagesSize)
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
