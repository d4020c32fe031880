package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// What refers to what in the store, which is what both kiln df and the GC
// walk:
//
//	index.json entry (tagged or not) → manifest → config, layers
//	cache record (cache/<key>)        → layers
//	layer (diffID)                    → its blob, its snapshot, its notes
//	                                    (content.Store.Notes: compressed
//	                                    copies with the blobs they name,
//	                                    registry sources)
//	cache mount (cachemounts/<h>)     → nothing refers to it; it is cache
//
// Everything else — blobs, snapshots and mappings no image or record leads
// to, uncommitted snapshots, temp files — is unreferenced.
//
// A layer's cost on disk is what all of that takes: the uncompressed blob,
// the unpacked snapshot and any compressed copies. Sizes are apparent sizes
// counted like `du -sb` (directories and symlinks included, hardlinks once),
// so that kiln df adds up to du of the store, give or take its metadata
// (index.json, journals, stat caches, directories).

// Usage is the store's disk use, attributed like docker system df.
// The four totals partition the store's data: Images + Cache + Mounts +
// History is what is on disk, metadata aside.
type Usage struct {
	Images  []ImageUsage
	Records []RecordUsage
	Mounts  []MountUsage
	// Builds are the build journals (build history), newest first.
	Builds []BuildUsage

	// ImagesSize: what any image (tagged or not) refers to, layers with
	// their snapshots included. ImagesReclaimable: what removing every
	// image without a tag would free (kiln image prune -a).
	ImagesSize, ImagesReclaimable int64
	// ActiveImages counts images with a name (docker's "in use").
	ActiveImages int
	// CacheSize: layers only cache records refer to, the records
	// themselves and unreferenced data; kiln prune removes all of it.
	CacheSize int64
	// Unreferenced is the part of CacheSize nothing refers to.
	Unreferenced int64
	// MountsSize: RUN --mount=type=cache directories. MountsReclaimable
	// leaves out those a running build has locked.
	MountsSize, MountsReclaimable int64
	ActiveMounts                  int
	// HistorySize: the build journals (records and step logs) and the
	// trees their key components name. (Trees only cache records name are
	// in CacheSize.)
	// HistoryReclaimable: the logs of finished builds, which kiln prune
	// removes. ActiveBuilds counts journal directories without a record:
	// builds running now, and any a killed kiln left (usage cannot tell
	// them apart without the store to itself; kiln doctor reports those,
	// the next collection removes them).
	HistorySize, HistoryReclaimable int64
	ActiveBuilds                    int
	// Budgeted is what the cache budget limits: everything but the data
	// of images with a name.
	Budgeted int64
}

// ImageUsage is one image (config digest) with all its names.
type ImageUsage struct {
	ID        digest.Digest
	Names     []string // full names, "" for none
	Manifests []digest.Digest
	Created   time.Time
	// Size counts every layer (blob, snapshot, compressed copies),
	// manifest and config of the image; SharedSize the part other images
	// refer to as well; UniqueSize the rest.
	Size, SharedSize, UniqueSize int64
}

// RecordUsage is one build cache record.
type RecordUsage struct {
	Key        digest.Digest
	Components []record.Component
	Created    time.Time
	LastUsed   time.Time
	// Size is what the step's own layer (its topmost) takes on disk;
	// Shared is set when an image or another record refers to that layer
	// too, so removing this record alone does not free it.
	Size   int64
	Shared bool
}

// MountUsage is one cache mount directory.
type MountUsage struct {
	Dir      string // cachemounts/<Dir>
	CacheID  string // the id (or target) it was mounted with, when a record says
	Size     int64
	LastUsed time.Time
	InUse    bool
}

// DiskUsage measures the store. It needs no exclusive lock: what running
// builds add meanwhile may or may not be counted.
func (s *Store) DiskUsage(ctx context.Context) (*Usage, error) {
	g, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	return g.usage(), nil
}

type objKind int

const (
	objBlob objKind = iota
	objSnapshot
	objMapping
	objRecord
	objMount
	objBuildRecord // a journal's directory with its record (buildhistory.go)
	objBuildLog    // a journal's step log, or a running build's directory
	objTree        // a context digest's tree (trees.go)
	objJunk        // uncommitted or orphaned snapshots, stale entries, temp files
)

// object is one thing on disk that is removed as a whole.
type object struct {
	kind    objKind
	path    string
	size    int64
	snapID  string // objSnapshot, and objJunk snapshots
	rank    int    // removal order among freed objects: referrers first
	holders []*holder
}

type holderKind int

const (
	holdImage holderKind = iota
	holdRecord
	holdMount
	holdBuildRecord // buildhistory.go
	holdBuildLogs
	holdBuildRunning
	holdContainer // a container: what its image's layers need, never evicted
)

// holder is what keeps objects: an image, a cache record or a cache mount.
type holder struct {
	kind     holderKind
	lastUsed time.Time
	objs     []*object
	seen     map[*object]bool

	// images
	id            digest.Digest
	names         []string
	manifests     []digest.Digest
	created       time.Time
	named, tagged bool
	// records
	rec *record.Record
	top []*object // the objects of the record's own (topmost) layer
	// mounts
	dir     string
	cacheID string
	inUse   bool
	// build history: the build's ID
	build string
}

func (h *holder) hold(o *object) {
	if o == nil || h.seen[o] {
		return
	}
	if h.seen == nil {
		h.seen = map[*object]bool{}
	}
	h.seen[o] = true
	h.objs = append(h.objs, o)
	o.holders = append(o.holders, h)
}

// graph is one scan of the store.
type graph struct {
	objs    []*object
	holders []*holder

	blobs     map[string]*object        // hex → blob
	snaps     map[digest.Digest]*object // diffID → committed snapshot
	mappings  map[digest.Digest][]*object
	mapBlobs  map[*object]*object // mapping → the compressed blob it names
	mountByID map[string]string   // cachemounts dir → cache id, from records
	// newestBuild is the record holder of the newest finished build.
	newestBuild *holder
}

func (g *graph) add(o *object) *object {
	g.objs = append(g.objs, o)
	return o
}

// layer makes h hold everything that makes up layer d.
func (g *graph) layer(h *holder, d digest.Digest) {
	if d.Validate() != nil {
		return
	}
	for _, o := range g.layerObjects(d) {
		h.hold(o)
	}
}

func (g *graph) layerObjects(d digest.Digest) []*object {
	if d.Validate() != nil {
		return nil
	}
	var out []*object
	if b := g.blobs[d.Encoded()]; b != nil {
		out = append(out, b)
	}
	if sn := g.snaps[d]; sn != nil {
		out = append(out, sn)
	}
	for _, m := range g.mappings[d] {
		out = append(out, m)
		if b := g.mapBlobs[m]; b != nil {
			out = append(out, b)
		}
	}
	return out
}

// scan reads the whole store into a graph.
func (s *Store) scan(ctx context.Context) (*graph, error) {
	g := &graph{
		blobs:     map[string]*object{},
		snaps:     map[digest.Digest]*object{},
		mappings:  map[digest.Digest][]*object{},
		mapBlobs:  map[*object]*object{},
		mountByID: map[string]string{},
	}
	if err := s.scanBlobs(g); err != nil {
		return nil, err
	}
	if err := s.scanSnapshots(ctx, g); err != nil {
		return nil, err
	}
	if err := s.scanNotes(g); err != nil {
		return nil, err
	}
	if err := s.scanImages(g); err != nil {
		return nil, err
	}
	if err := s.scanRecords(g); err != nil {
		return nil, err
	}
	if err := s.scanMounts(ctx, g); err != nil {
		return nil, err
	}
	if err := s.scanContainers(g); err != nil {
		return nil, err
	}
	if err := s.scanBuilds(g); err != nil {
		return nil, err
	}
	if err := s.scanTrees(g); err != nil {
		return nil, err
	}
	return g, ctx.Err()
}

func (s *Store) scanBlobs(g *graph) error {
	dir := filepath.Join(s.Content.Dir(), "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		o := &object{kind: objBlob, path: filepath.Join(dir, e.Name()), size: fi.Size(), rank: 5}
		if atomicfile.IsTemp(e.Name()) || e.IsDir() {
			o.kind = objJunk
			if e.IsDir() {
				o.size, _ = du(o.path)
			}
			g.add(o)
			continue
		}
		g.blobs[e.Name()] = g.add(o)
	}
	return nil
}

// scanSnapshots sizes every snapshot directory. Committed snapshots never
// change, so their sizes are remembered in <root>/usage.json and measured
// only once.
func (s *Store) scanSnapshots(ctx context.Context, g *graph) error {
	dir := s.Snapshots.Dir()
	ids, err := s.Snapshots.IDs()
	if err != nil {
		return err
	}
	memo := s.readSizeMemo()
	type todo struct {
		o   *object
		key string // memo key, "" for snapshots that may still change
	}
	var measure []todo
	newMemo := map[string]int64{}
	for _, id := range ids {
		o := &object{kind: objJunk, path: filepath.Join(dir, id), snapID: id, rank: 3}
		d, err := s.Snapshots.DiffIDOf(id)
		key := ""
		if err == nil {
			// committed, if the diffids entry agrees (an entry left by a
			// removal that crashed half way does not)
			if got, err := s.Snapshots.Lookup(d); err == nil && got == id {
				o.kind = objSnapshot
				g.snaps[d] = o
				key = id + " " + string(d)
			}
		}
		g.add(o)
		if n, ok := memo[key]; ok && key != "" {
			o.size = n
			newMemo[key] = n
			continue
		}
		measure = append(measure, todo{o, key})
	}
	// Stale diffids entries (their snapshot gone or not confirming them).
	known := func(d digest.Digest) bool { return g.snaps[d] != nil }
	if stale, err := s.Snapshots.StaleEntries(known); err == nil {
		for _, e := range stale {
			g.add(&object{kind: objJunk, path: e.Path, size: 0, rank: 2})
		}
	}
	// du of the new ones, a few at a time (each is one directory walk).
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	for _, t := range measure {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				return
			}
			n, err := du(t.o.path)
			t.o.size = n
			if err == nil && t.key != "" {
				mu.Lock()
				newMemo[t.key] = n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(newMemo) != len(memo) || len(measure) > 0 {
		s.writeSizeMemo(newMemo)
	}
	return ctx.Err()
}

// sizeMemoPath remembers the size of each committed snapshot, keyed by
// "<id> <diffID>" (ids are reused after removal, diffIDs never lie).
func (s *Store) sizeMemoPath() string { return filepath.Join(s.Root, "usage.json") }

func (s *Store) readSizeMemo() map[string]int64 {
	m := map[string]int64{}
	if b, err := os.ReadFile(s.sizeMemoPath()); err == nil {
		json.Unmarshal(b, &m)
	}
	return m
}

// writeSizeMemo is best effort: a memo lost to a concurrent writer or a
// read-only store only means measuring again.
func (s *Store) writeSizeMemo(m map[string]int64) {
	if b, err := json.Marshal(m); err == nil {
		atomicfile.WriteFile(s.sizeMemoPath(), b, 0o600)
	}
}

// scanNotes finds the layer notes (content.Store.Notes), which live and
// die with their layer; a compressed-copy note also keeps the compressed
// blob it names. A temp file or any other name among them is junk.
func (s *Store) scanNotes(g *graph) error {
	notes, err := s.Content.Notes()
	if err != nil {
		return err
	}
	for _, n := range notes {
		o := g.add(&object{kind: objMapping, path: n.Path, size: n.Size, rank: 2})
		if n.DiffID == "" {
			o.kind = objJunk
			continue
		}
		g.mappings[n.DiffID] = append(g.mappings[n.DiffID], o)
		if n.Kind == content.NoteSources {
			continue
		}
		if c, err := n.CompressedTarget(); err == nil && c.Algorithm() == digest.SHA256 {
			g.mapBlobs[o] = g.blobs[c.Encoded()]
		}
	}
	return nil
}

type configish struct {
	Created *time.Time `json:"created"`
	RootFS  struct {
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

// scanImages groups index.json entries by image ID (config digest), like
// kiln images. A damaged image holds whatever of it can still be found, so
// that nothing it refers to is collected before kiln doctor looks at it.
func (s *Store) scanImages(g *graph) error {
	entries, err := s.Content.Images()
	if err != nil {
		return err
	}
	byID := map[digest.Digest]*holder{}
	byManifest := map[digest.Digest]*holder{}
	for _, e := range entries {
		d := e.Descriptor.Digest
		h := byManifest[d]
		if h == nil {
			var f followed
			id := s.followManifest(g, &f, d)
			if id == "" {
				id = d // unreadable: known by its manifest
			}
			if h = byID[id]; h == nil {
				h = &holder{kind: holdImage, id: id, created: f.created}
				byID[id] = h
				g.holders = append(g.holders, h)
			}
			for _, o := range f.objs {
				h.hold(o)
			}
			h.manifests = append(h.manifests, d)
			if b := g.blobs[d.Encoded()]; b != nil {
				if fi, err := os.Stat(b.path); err == nil && fi.ModTime().After(h.lastUsed) {
					h.lastUsed = fi.ModTime()
				}
			}
			byManifest[d] = h
		}
		if e.Name != "" {
			h.named = true
			if !contains(h.names, e.Name) {
				h.names = append(h.names, e.Name)
			}
			if ref, err := reference.ParseNormalizedNamed(e.Name); err == nil {
				if _, ok := ref.(reference.NamedTagged); ok {
					h.tagged = true
				}
			}
		}
	}
	return nil
}

// walkUsed is content.Walk for the questions of what is still used (usage,
// GC, RemoveUnreferencedBlobs): an index at content.MaxDepth keeps what was
// reached and the walk goes on with its siblings, where ErrTooDeep would end
// it. Ending it would leave whatever the rest of the image refers to
// unreferenced, and GC would delete blobs that an entry of index.json still
// reaches.
func walkUsed(ctx context.Context, fetch content.Fetch, root ocispec.Descriptor, fn content.WalkFunc) {
	content.Walk(ctx, fetch, []ocispec.Descriptor{root}, func(ctx context.Context, n *content.Node) error {
		err := fn(ctx, n)
		if err == nil && n.Role == content.RoleManifest && n.Depth == content.MaxDepth && n.IsIndex(ctx) {
			return content.SkipChildren
		}
		return err
	})
}

// followed collects what a manifest refers to.
type followed struct {
	objs    []*object
	created time.Time
}

func (f *followed) hold(o *object) { f.objs = append(f.objs, o) }

// followManifest collects manifest (or index) d and what it refers to into
// f, and returns the image ID (config digest) found: of an index, the
// first image's. What cannot be read adds nothing.
func (s *Store) followManifest(g *graph, f *followed, d digest.Digest) digest.Digest {
	blob := func(d digest.Digest) *object {
		if d.Validate() != nil {
			return nil
		}
		return g.blobs[d.Encoded()]
	}
	fetch := func(_ context.Context, desc ocispec.Descriptor) ([]byte, error) {
		b := blob(desc.Digest)
		if b == nil {
			return nil, fs.ErrNotExist
		}
		return os.ReadFile(b.path)
	}
	var id digest.Digest
	walkUsed(context.Background(), fetch, ocispec.Descriptor{Digest: d}, func(ctx context.Context, n *content.Node) error {
		switch n.Role {
		case content.RoleLayer:
			for _, o := range g.layerObjects(n.Descriptor.Digest) {
				f.hold(o)
			}
			return nil
		case content.RoleConfig:
			if n.Descriptor.Digest.Validate() != nil {
				return nil
			}
			if id == "" {
				id = n.Descriptor.Digest
			}
			cb := blob(n.Descriptor.Digest)
			if cb == nil {
				return nil
			}
			cb.rank = 1
			f.hold(cb)
			var c configish
			if b, err := n.Blob(ctx); err != nil || json.Unmarshal(b, &c) != nil {
				return nil
			}
			for _, diffID := range c.RootFS.DiffIDs {
				for _, o := range g.layerObjects(diffID) {
					f.hold(o)
				}
			}
			if c.Created != nil && f.created.IsZero() {
				f.created = *c.Created
			}
			return nil
		}
		mb := blob(n.Descriptor.Digest)
		if mb == nil {
			return content.SkipChildren
		}
		mb.rank = 0
		f.hold(mb)
		return nil
	})
	return id
}

func (s *Store) scanRecords(g *graph) error {
	ents, err := s.Records.Entries()
	if err != nil {
		return err
	}
	for _, e := range ents {
		o := g.add(&object{kind: objRecord, path: e.Path, size: e.Size, rank: 4})
		if e.Temp || e.Dir || e.Damaged {
			o.kind = objJunk // a damaged record is a miss for the solver, garbage for us
			continue
		}
		if e.Record == nil {
			continue // unreadable
		}
		r := e.Record
		h := &holder{kind: holdRecord, rec: r, lastUsed: e.ModTime}
		h.hold(o)
		for _, l := range r.Layers {
			g.layer(h, l.DiffID)
		}
		if n := len(r.Layers); n > 0 {
			h.top = g.layerObjects(r.Layers[n-1].DiffID)
		}
		g.holders = append(g.holders, h)
		if s.CacheMountIDs != nil {
			for _, id := range s.CacheMountIDs(r.Components) {
				g.mountByID[CacheMountDir(id)] = id
			}
		}
	}
	return nil
}

func (s *Store) scanMounts(ctx context.Context, g *graph) error {
	ents, err := os.ReadDir(s.cacheMountsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	locked := lockedInodes()
	for _, e := range ents {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m := s.cacheMountAt(e.Name())
		size, _ := du(m.Dir)
		o := g.add(&object{kind: objMount, path: m.Dir, size: size, rank: 4})
		if !e.IsDir() || atomicfile.IsTemp(e.Name()) || strings.HasPrefix(e.Name(), ".") {
			o.kind = objJunk // e.g. a removal a crash interrupted
			continue
		}
		h := &holder{kind: holdMount, dir: e.Name(), cacheID: g.mountByID[e.Name()]}
		for _, p := range []string{m.DataDir(), m.Dir} {
			if fi, err := os.Stat(p); err == nil {
				h.lastUsed = fi.ModTime()
				break
			}
		}
		var st unix.Stat_t
		if unix.Stat(m.LockPath(), &st) == nil && locked[st.Ino] {
			h.inUse = true
		}
		h.hold(o)
		g.holders = append(g.holders, h)
	}
	return nil
}

// lockedInodes lists the inodes that have a flock on them now
// (/proc/locks), which tells which cache mounts a running build holds
// without touching their locks.
func lockedInodes() map[uint64]bool {
	out := map[uint64]bool{}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  READ  1234 08:01:56789 0 EOF"
		fields := strings.Fields(sc.Text())
		for _, fl := range fields {
			parts := strings.Split(fl, ":")
			if len(parts) == 3 {
				if ino, err := strconv.ParseUint(parts[2], 10, 64); err == nil {
					out[ino] = true
				}
			}
		}
	}
	return out
}

// du is `du -sb`: apparent sizes of everything under p (p included),
// hardlinked files once. Entries that vanish meanwhile are skipped.
func du(p string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(q, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := [2]uint64{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Size
		return nil
	})
	return total, err
}

// usage attributes the graph's objects.
func (g *graph) usage() *Usage {
	u := &Usage{}
	imagesOf := func(o *object) (n int, named, tagged bool) {
		for _, h := range o.holders {
			if h.kind == holdImage {
				n++
				named = named || h.named
				tagged = tagged || h.tagged
			}
		}
		return n, named, tagged
	}
	for _, o := range g.objs {
		nImages, named, tagged := imagesOf(o)
		switch {
		case o.kind == objMount:
			u.MountsSize += o.size
		case o.kind == objBuildRecord || o.kind == objBuildLog:
			// historyUsage
		case o.kind == objTree && heldByBuild(o):
			u.HistorySize += o.size // not per build: builds share trees
		case nImages > 0:
			u.ImagesSize += o.size
			if !tagged && len(o.holders) == nImages {
				u.ImagesReclaimable += o.size // only untagged images refer to it
			}
		default:
			u.CacheSize += o.size
			if len(o.holders) == 0 {
				u.Unreferenced += o.size
			}
		}
		if !named {
			u.Budgeted += o.size
		}
	}
	for _, h := range g.holders {
		switch h.kind {
		case holdImage:
			iu := ImageUsage{ID: h.id, Names: h.names, Manifests: h.manifests, Created: h.created}
			for _, o := range h.objs {
				iu.Size += o.size
				if n, _, _ := imagesOf(o); n > 1 {
					iu.SharedSize += o.size
				}
			}
			iu.UniqueSize = iu.Size - iu.SharedSize
			if h.named {
				u.ActiveImages++
			}
			u.Images = append(u.Images, iu)
		case holdRecord:
			ru := RecordUsage{Key: h.rec.Key, Components: h.rec.Components, Created: h.rec.Created, LastUsed: h.lastUsed}
			for _, o := range h.top {
				ru.Size += o.size
				if len(o.holders) > 1 {
					ru.Shared = true
				}
			}
			u.Records = append(u.Records, ru)
		case holdMount:
			mu := MountUsage{Dir: h.dir, CacheID: h.cacheID, LastUsed: h.lastUsed, InUse: h.inUse}
			for _, o := range h.objs {
				mu.Size += o.size
			}
			if h.inUse {
				u.ActiveMounts++
			} else {
				u.MountsReclaimable += mu.Size
			}
			u.Mounts = append(u.Mounts, mu)
		}
	}
	g.historyUsage(u)
	sort.SliceStable(u.Images, func(i, j int) bool { return u.Images[i].Created.After(u.Images[j].Created) })
	sort.SliceStable(u.Records, func(i, j int) bool { return u.Records[i].LastUsed.After(u.Records[j].LastUsed) })
	sort.SliceStable(u.Mounts, func(i, j int) bool { return u.Mounts[i].LastUsed.After(u.Mounts[j].LastUsed) })
	return u
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
