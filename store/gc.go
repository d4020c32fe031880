package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/lock"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Garbage collection. Everything here removes data, so it runs only while
// this process holds the store lock exclusively — no other kiln process,
// and so no running build, can be using what it removes. Removal is
// crash-safe: references go first (index entries, cache records), then
// what they referred to (manifests before configs, mappings before the
// compressed blobs they name, snapshots' diffids entries before their
// directories, blobs last). A crash in between leaves unreferenced data,
// which the next collection removes, never a reference to missing data.

// ErrBusy means other kiln processes are using the store, so a collection
// that must not wait was skipped.
var ErrBusy = errors.New("other kiln processes are using the store")

// MaxDefaultBudget caps the default cache budget.
const MaxDefaultBudget = 20_000_000_000

// DefaultBudget is the cache budget when none is set: 10% of the
// filesystem holding root, at most 20 GB.
func DefaultBudget(root string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(root, &st) != nil {
		return MaxDefaultBudget
	}
	b := int64(st.Blocks) * int64(st.Bsize) / 10
	if b <= 0 || b > MaxDefaultBudget {
		return MaxDefaultBudget
	}
	return b
}

// GCOptions say what a collection may remove and when it stops.
type GCOptions struct {
	// What may be removed: build cache records, images without any name
	// (dangling), images without a tag (also those named only by digest),
	// cache mounts. Images with a tag never are.
	Records, DanglingImages, UntaggedImages, Mounts bool
	// Build history: the step logs of finished builds, their records
	// (the rest of their journals). A running build's never goes, nor,
	// with SpareNewestBuild, the newest build's.
	BuildLogs, BuildRecords, SpareNewestBuild bool
	// All removes every candidate. Otherwise candidates go, least recently
	// used first (cache mounts after everything else), until what the
	// collection measures — the data of the kinds it may remove, plus
	// unreferenced data — is at most Keep bytes.
	All  bool
	Keep int64
	// Until spares candidates used within that long.
	Until time.Duration
	// Protect spares these manifests (the image a build just made).
	Protect []digest.Digest
}

// GCReport says what a collection removed.
type GCReport struct {
	Records []digest.Digest
	Images  []PrunedImage
	Mounts  []MountUsage
	Builds  []PrunedBuild
	// Objects counts the removed blobs, snapshots, mappings and leftovers.
	Objects   int
	Reclaimed int64
	// Before and After are the measured usage (see GCOptions.Keep) before
	// and, as planned, after the collection; Budget the limit applied.
	Before, After, Budget int64
	// Took is how long the collection took, measuring included.
	Took time.Duration
}

// PrunedImage is an image a collection removed, with the names (digest
// references) it had.
type PrunedImage struct {
	ID    digest.Digest
	Names []string
}

// OpenExclusive opens the store for commands that remove what builds use
// (kiln prune, kiln image prune): it waits until no other kiln process
// has the store open — calling waiting once if that takes more than a
// second; ctx ends the wait — repairs it like Open, and keeps the lock
// exclusive until Close. New kiln commands wait meanwhile.
func OpenExclusive(ctx context.Context, root string, waiting func()) (*Store, error) {
	return open(root, func(l *lock.File) error { return l.Wait(ctx, lock.Exclusive, time.Second, waiting) })
}

// tryExclusive turns this process's shared lock exclusive if no other
// kiln process holds the store, without waiting (two processes waiting
// to convert would wait for each other). It reports whether it did; if
// not, the lock is shared again (flock(2) converts by unlocking first, so
// a failed conversion held nothing for a moment: re-taking it may wait
// for a collection another process started then).
func (s *Store) tryExclusive() (bool, error) {
	if s.exclusive {
		return true, nil
	}
	ok, err := s.lock.TryLock(lock.Exclusive)
	if ok {
		s.exclusive = true
		return true, nil
	}
	if e := s.lock.Lock(lock.Shared); e != nil {
		return false, e
	}
	return false, err
}

func (s *Store) backToShared() error {
	s.exclusive = false
	return s.lock.Lock(lock.Shared)
}

// CollectOverBudget is the collection at the end of a build: if the build
// cache — everything but the data of images with a name — exceeds budget
// (<= 0: DefaultBudget), it removes cache records and images without a
// name, least recently used first, then cache mounts as a last resort,
// until it fits. The measuring needs only the shared lock; removing needs
// the store to itself, so when other kiln processes are at work it
// returns ErrBusy and leaves the job to the last one to finish. protect
// names manifests to keep whatever happens (the build's own image).
func (s *Store) CollectOverBudget(ctx context.Context, budget int64, protect ...digest.Digest) (rep *GCReport, err error) {
	start := time.Now()
	defer func() {
		if rep != nil {
			rep.Took = time.Since(start)
		}
	}()
	if budget <= 0 {
		budget = DefaultBudget(s.Root)
	}
	opts := GCOptions{Records: true, DanglingImages: true, Mounts: true, Keep: budget, Protect: protect,
		BuildLogs: true, BuildRecords: true, SpareNewestBuild: true}
	g, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	p := g.plan(opts, time.Now())
	if p.before <= budget {
		return &GCReport{Before: p.before, After: p.before, Budget: budget}, nil
	}
	if !s.exclusive {
		ok, err := s.tryExclusive()
		if err != nil {
			return nil, err
		}
		if !ok {
			return &GCReport{Before: p.before, After: p.before, Budget: budget}, ErrBusy
		}
		defer s.backToShared()
	}
	return s.Collect(ctx, opts)
}

// Collect removes what opts allow and then every unreferenced blob,
// snapshot, mapping, tree and leftover. The store must be held exclusively
// (OpenExclusive).
func (s *Store) Collect(ctx context.Context, opts GCOptions) (*GCReport, error) {
	start := time.Now()
	if !s.exclusive {
		return nil, errors.New("garbage collection needs the store to itself (store.OpenExclusive)")
	}
	g, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	p := g.plan(opts, time.Now())
	rep := &GCReport{Before: p.before, After: p.after, Budget: opts.Keep}
	err = s.apply(ctx, p, rep)
	rep.Took = time.Since(start)
	return rep, err
}

type gcPlan struct {
	evict         []*holder
	free          []*object
	before, after int64
}

// plan picks what to remove. Holders of kinds opts does not allow protect
// what they hold (and it is not measured); candidates go least recently
// used first until the rest fits; an object is freed once nothing that
// stays holds it. Then, most recently used first, whatever can come back
// within the limit does: a record whose layers all belong to tagged images
// costs a few hundred bytes and keeps their rebuilds cached, so it is not
// worth removing just because it is old.
func (g *graph) plan(opts GCOptions, now time.Time) gcPlan {
	protect := map[digest.Digest]bool{}
	for _, d := range opts.Protect {
		protect[d] = true
	}
	// As docker's image prune: an image a container was made from stays,
	// even without a name, as long as the container does.
	usedByContainer := map[digest.Digest]bool{}
	for _, h := range g.holders {
		if h.kind == holdContainer {
			usedByContainer[h.id] = true
		}
	}
	eligible := func(h *holder) bool {
		switch h.kind {
		case holdRecord:
			return opts.Records
		case holdMount:
			return opts.Mounts
		case holdContainer:
			return false // a container keeps its image's layers, whatever its tags
		case holdBuildRecord, holdBuildLogs, holdBuildRunning:
			return g.historyEligible(h, opts)
		}
		if usedByContainer[h.id] {
			return false
		}
		return opts.DanglingImages && !h.named || opts.UntaggedImages && !h.tagged
	}
	var p gcPlan
	kept := map[*object]bool{}
	var cands []*holder
	for _, h := range g.holders {
		if !eligible(h) {
			for _, o := range h.objs {
				kept[o] = true
			}
			continue
		}
		if opts.Until > 0 && now.Sub(h.lastUsed) < opts.Until {
			continue
		}
		spared := g.sparedBuild(h, opts)
		for _, m := range h.manifests {
			spared = spared || protect[m]
		}
		if !spared {
			cands = append(cands, h)
		}
	}
	refs := map[*object]int{}
	for _, o := range g.objs {
		refs[o] = len(o.holders)
		if !kept[o] {
			p.before += o.size
		}
	}
	p.after = p.before
	freed := map[*object]bool{}
	free := func(o *object) {
		freed[o] = true
		p.after -= o.size
	}
	for _, o := range g.objs {
		if len(o.holders) == 0 {
			free(o)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if ca, cb := evictClass(a), evictClass(b); ca != cb {
			return ca < cb
		}
		return a.lastUsed.Before(b.lastUsed)
	})
	for _, h := range cands {
		if !opts.All && p.after <= opts.Keep {
			break
		}
		p.evict = append(p.evict, h)
		for _, o := range h.objs {
			if refs[o]--; refs[o] == 0 && !kept[o] {
				free(o)
			}
		}
	}
	if !opts.All {
		evicted := p.evict
		p.evict = nil
		for i := len(evicted) - 1; i >= 0; i-- {
			h := evicted[i]
			var cost int64
			for _, o := range h.objs {
				if freed[o] {
					cost += o.size
				}
			}
			if p.after+cost > opts.Keep {
				p.evict = append(p.evict, h)
				continue
			}
			p.after += cost
			for _, o := range h.objs {
				refs[o]++
				delete(freed, o)
			}
		}
		sort.SliceStable(p.evict, func(i, j int) bool { return p.evict[i].lastUsed.Before(p.evict[j].lastUsed) })
	}
	for _, o := range g.objs {
		if freed[o] {
			p.free = append(p.free, o)
		}
	}
	return p
}

// apply removes what p says, references first.
func (s *Store) apply(ctx context.Context, p gcPlan, rep *GCReport) error {
	var images, records, mounts, builds []*holder
	for _, h := range p.evict {
		switch h.kind {
		case holdBuildRecord, holdBuildLogs:
			builds = append(builds, h)
		case holdImage:
			images = append(images, h)
		case holdRecord:
			records = append(records, h)
		case holdMount:
			mounts = append(mounts, h)
		}
	}
	if len(images) > 0 {
		if err := s.removeIndexEntries(images); err != nil {
			return err // nothing removed yet
		}
		for _, h := range images {
			rep.Images = append(rep.Images, PrunedImage{ID: h.id, Names: h.names})
		}
	}
	for _, h := range records {
		if err := s.Records.Delete(h.rec.Key); err != nil {
			return err
		}
		rep.Records = append(rep.Records, h.rec.Key)
	}
	gone := map[*object]bool{}
	for _, h := range mounts {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := removeCacheMount(s.cacheMountAt(h.dir))
		if err != nil {
			return err
		}
		if n < 0 {
			continue // in use after all
		}
		for _, o := range h.objs {
			gone[o] = true
		}
		rep.Reclaimed += n
		rep.Mounts = append(rep.Mounts, MountUsage{Dir: h.dir, CacheID: h.cacheID, Size: n, LastUsed: h.lastUsed})
	}
	free := append([]*object(nil), p.free...)
	sort.SliceStable(free, func(i, j int) bool { return free[i].rank < free[j].rank })
	var firstErr error
	for _, o := range free {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if o.kind == objMount || gone[o] {
			continue // cache mounts went above, each with its lock
		}
		var err error
		switch {
		case o.snapID != "":
			err = s.Snapshots.Remove(o.snapID)
		case o.kind == objBlob || o.kind == objMapping || o.kind == objRecord:
			err = os.Remove(o.path)
		default:
			err = removeTree(o.path)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		rep.Objects++
		rep.Reclaimed += o.size
	}
	rep.Builds = prunedBuilds(builds, p.free)
	return firstErr
}

// removeIndexEntries drops every index.json entry of the images, in one
// atomic update. The images were chosen for having no name (or no tag);
// if the index says otherwise now, nothing is changed.
func (s *Store) removeIndexEntries(images []*holder) error {
	byManifest := map[digest.Digest]*holder{}
	for _, h := range images {
		for _, m := range h.manifests {
			byManifest[m] = h
		}
	}
	return s.Content.UpdateIndex(func(idx *ocispec.Index) error {
		out := idx.Manifests[:0:0]
		for _, m := range idx.Manifests {
			h := byManifest[m.Digest]
			if h == nil {
				out = append(out, m)
				continue
			}
			if name := m.Annotations[content.AnnotationImageName]; name != "" && !contains(h.names, name) {
				return fmt.Errorf("image %s was named %s meanwhile; not removed", h.id, name)
			}
			if m.Annotations[content.AnnotationImageName] != "" && h.tagged {
				return fmt.Errorf("image %s is tagged; not removed", h.id)
			}
		}
		idx.Manifests = out
		return nil
	})
}

// removeCacheMount removes a cache mount's directory unless a build holds
// its lock (it returns -1 then) and returns the bytes it took. The
// directory is first renamed to a temp name, so that a crash half way
// leaves a leftover the next collection removes, never a half-emptied
// cache that a build would mount.
func removeCacheMount(m CacheMount) (int64, error) {
	dir := m.Dir
	lf, err := lock.OpenExisting(m.LockPath())
	if err == nil {
		defer lf.Close()
		if ok, _ := lf.TryLock(lock.Exclusive); !ok {
			return -1, nil
		}
	}
	n, _ := du(dir)
	tmp := filepath.Join(filepath.Dir(dir), ".tmp-gc-"+filepath.Base(dir))
	if err := os.Rename(dir, tmp); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	return n, removeTree(tmp)
}

// removeTree is os.RemoveAll that also gets through read-only directories
// (a Go module cache has them).
func removeTree(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		return err
	}
	filepath.Walk(p, func(q string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
