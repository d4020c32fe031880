package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/readers"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/layer"
	"github.com/kiln-build/kiln/store/lock"
	"github.com/kiln-build/kiln/store/snapshot"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Severity says how much a finding of Check matters.
type Severity int

const (
	// Problem: a command would fail on it or give a wrong result (a blob
	// that does not match its digest, an image whose layer is missing, a
	// snapshot that differs from its layer).
	Problem Severity = iota
	// Stale: every command already ignores it (a cache record whose layers
	// are gone is a miss, a snapshot nothing points at is never mounted),
	// but it is left over and takes space.
	Stale
	// Leftover: what a killed kiln process left (mounts, containers, temp
	// files, uncommitted snapshots). Check always removes it, as every
	// kiln command does when it finds the store idle.
	Leftover
)

// Finding is one thing Check found.
type Finding struct {
	Severity Severity
	// Kind groups findings: "blob", "image", "record", "snapshot",
	// "compressed", "layout", "leftover", "build", "container".
	Kind string
	// Subject names what is wrong: a digest, an image name, a path.
	Subject string
	Problem string
	// Repaired says what Check did about it ("" = nothing).
	Repaired string
}

// CheckOptions tune Check.
type CheckOptions struct {
	// Deep compares every committed snapshot, file by file, with its layer
	// blob (reads every layer twice).
	Deep bool
	// Repair fixes what can be fixed without guessing: corrupt blobs and
	// broken snapshots are removed (a snapshot is unpacked again when
	// needed), images whose manifest, config or layers are missing or
	// corrupt are dropped from index.json, stale records, snapshots and
	// index entries are removed, and so are build journals that are
	// damaged or were left by a build that never finished.
	Repair bool
	// Waiting, if set, is called when other kiln processes are using the
	// store and Check has to wait for them to finish.
	Waiting func()
}

// Report is what Check found.
type Report struct {
	Blobs, Images, Records, Snapshots int
	// Containers counts the containers checked.
	Containers int
	// Unreferenced counts blobs nothing refers to (an rmi'd image's, a
	// failed load's): not a fault, prune and GC collect them.
	Unreferenced     int
	UnreferencedSize int64
	Findings         []Finding
}

// Consistent reports whether no problem is left unrepaired.
func (r *Report) Consistent() bool {
	for _, f := range r.Findings {
		if f.Severity == Problem && f.Repaired == "" {
			return false
		}
	}
	return true
}

// Check verifies the whole store: every blob against its digest; every
// image in index.json down to its manifest, config and layers; every cache
// record's layers; every snapshot against its diffID entry (and with Deep,
// its files against its layer). It holds the store lock exclusively while
// it runs, so it sees no half-done work of other processes and repairs
// safely; it first removes what killed processes left, as Open does.
func Check(ctx context.Context, s *Store, opts CheckOptions) (*Report, error) {
	c := &checker{s: s, opts: opts, r: &Report{}, blobs: map[digest.Digest]blobState{}, referenced: map[digest.Digest]bool{}}
	err := s.withExclusiveLock(ctx, opts.Waiting, func() error {
		steps := []func(context.Context) error{c.leftovers, c.layout, c.checkBlobs, c.images, c.records, c.compressed, c.snapshots, c.containers, c.builds}
		for _, step := range steps {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := step(ctx); err != nil {
				return err
			}
		}
		for d, st := range c.blobs {
			if st.ok && !c.referenced[d] {
				c.r.Unreferenced++
				c.r.UnreferencedSize += st.size
			}
		}
		return nil
	})
	return c.r, err
}

// withExclusiveLock makes the store lock exclusive for fn and shared
// again afterwards. It waits (ctx, Ctrl-C, ends the wait) and calls
// waiting once if other kiln processes hold the store. (A failed
// conversion drops the shared lock, see flock(2): while it waits, this
// process holds nothing, which is right for a command not yet at work.)
func (s *Store) withExclusiveLock(ctx context.Context, waiting func(), fn func() error) error {
	defer s.lock.Lock(lock.Shared)
	if err := s.lock.Wait(ctx, lock.Exclusive, 0, waiting); err != nil {
		return err
	}
	return fn()
}

// RemoveUnreferencedBlobs deletes those of candidates that nothing in the
// store refers to, if no other kiln process is using the store right now
// (then it does nothing: prune and GC collect them later). A command that
// failed half way, such as a load of a broken archive, uses it to leave the
// store as it found it. It returns how many blobs it removed.
func (s *Store) RemoveUnreferencedBlobs(candidates []digest.Digest) (int, error) {
	if len(candidates) == 0 {
		return 0, nil
	}
	defer s.lock.Lock(lock.Shared)
	if ok, err := s.lock.TryLock(lock.Exclusive); !ok {
		return 0, err
	}
	refs, err := s.referencedBlobs()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range candidates {
		if refs[d] {
			continue
		}
		if _, ok := s.Content.Has(d); !ok {
			continue
		}
		if err := s.Content.Delete(d); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// referencedBlobs is every blob something refers to: what the entries of
// index.json lead to (indexes, manifests, configs, layers), cache records' layers and
// remembered compressed layers. Blobs that cannot be read add nothing.
func (s *Store) referencedBlobs() (map[digest.Digest]bool, error) {
	refs := map[digest.Digest]bool{}
	imgs, err := s.Content.Images()
	if err != nil {
		return nil, err
	}
	for _, im := range imgs {
		walkUsed(context.Background(), s.Content.FetchBlobsUnverified, im.Descriptor, func(_ context.Context, n *content.Node) error {
			refs[n.Descriptor.Digest] = true
			return nil
		})
	}
	recs, err := s.Records.All()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		for _, l := range r.Layers {
			refs[l.DiffID] = true
		}
	}
	for _, n := range compressedNotes(s.Content) {
		if d, err := n.CompressedTarget(); err == nil {
			refs[d] = true
		}
	}
	return refs, nil
}

type blobState struct {
	ok   bool // present and matching its digest
	size int64
	bad  bool // present but corrupt
}

type checker struct {
	s          *Store
	opts       CheckOptions
	r          *Report
	blobs      map[digest.Digest]blobState
	referenced map[digest.Digest]bool
}

func (c *checker) add(f Finding) { c.r.Findings = append(c.r.Findings, f) }

// fix runs a repair when asked to and records the outcome on f.
func (c *checker) fix(f Finding, what string, repair func() error) {
	if c.opts.Repair {
		if err := repair(); err != nil {
			f.Problem += fmt.Sprintf(" (repair failed: %v)", err)
		} else {
			f.Repaired = what
		}
	}
	c.add(f)
}

// builds checks the build history: a journal directory without its
// record was left by a build that never finished (Check holds the store
// exclusively, so none is running), one whose record cannot be read drops
// out of kiln builds.
func (c *checker) builds(context.Context) error {
	dir := c.s.BuildsDir()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		remove := func() error { return os.RemoveAll(p) }
		subject := "builds/" + e.Name()
		var rec struct{}
		switch err := ReadBuildRecord(p, &rec); {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			c.fix(Finding{Severity: Stale, Kind: "build", Subject: subject, Problem: "no " + BuildRecordFile + ": left by a build that never finished (kiln was killed)"}, "removed", remove)
		default:
			c.fix(Finding{Severity: Problem, Kind: "build", Subject: subject, Problem: BuildRecordFile + ": " + err.Error() + " (kiln builds does not list it)"}, "removed", remove)
		}
	}
	return nil
}

func (c *checker) leftovers(context.Context) error {
	done, err := c.s.repair()
	for _, d := range done {
		c.add(Finding{Severity: Leftover, Kind: "leftover", Subject: "killed process", Problem: "left behind", Repaired: d})
	}
	if err != nil {
		c.add(Finding{Severity: Problem, Kind: "leftover", Subject: c.s.RunDir(), Problem: "cannot clean up: " + err.Error()})
	}
	// Only run/ holds kiln's mounts; a filesystem mounted elsewhere in the
	// store (the store on its own disk) is none of its business.
	mounts, err := snapshot.MountsUnder(c.s.RunDir())
	if err != nil {
		return err
	}
	for _, m := range mounts {
		c.add(Finding{Severity: Problem, Kind: "leftover", Subject: m, Problem: "still mounted"})
	}
	return nil
}

func (c *checker) layout(context.Context) error {
	dir := c.s.Content.Dir()
	p := filepath.Join(dir, ocispec.ImageLayoutFile)
	var l ocispec.ImageLayout
	b, err := os.ReadFile(p)
	if err == nil {
		err = json.Unmarshal(b, &l)
	}
	if err == nil && l.Version != ocispec.ImageLayoutVersion {
		err = fmt.Errorf("version %q, want %q", l.Version, ocispec.ImageLayoutVersion)
	}
	if err != nil {
		c.fix(Finding{Severity: Problem, Kind: "layout", Subject: "content/oci-layout", Problem: err.Error()}, "rewritten", func() error {
			b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
			return atomicfile.WriteFile(p, b, 0o644)
		})
	}
	return nil
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkBlobs hashes every blob, a few at a time.
func (c *checker) checkBlobs(ctx context.Context) error {
	dir := filepath.Join(c.s.Content.Dir(), "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type result struct {
		d    digest.Digest
		size int64
		err  error
	}
	work := make(chan digest.Digest)
	results := make(chan result)
	var wg sync.WaitGroup
	for i := 0; i < max(2, runtime.NumCPU()); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				size, err := verifyFile(ctx, c.s.Content.BlobPath(d), d)
				results <- result{d, size, err}
			}
		}()
	}
	var todo []digest.Digest
	for _, e := range ents {
		name := e.Name()
		if atomicfile.IsTemp(name) {
			continue
		}
		if !hex64.MatchString(name) || !e.Type().IsRegular() {
			c.fix(Finding{Severity: Stale, Kind: "blob", Subject: "content/blobs/sha256/" + name, Problem: "not a blob"}, "removed", func() error {
				return os.RemoveAll(filepath.Join(dir, name))
			})
			continue
		}
		todo = append(todo, digest.NewDigestFromEncoded(digest.SHA256, name))
	}
	go func() {
		defer close(work)
		for _, d := range todo {
			select {
			case work <- d:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()
	var bad []result
	for res := range results {
		c.r.Blobs++
		if res.err != nil {
			bad = append(bad, res)
			c.blobs[res.d] = blobState{bad: true}
			continue
		}
		c.blobs[res.d] = blobState{ok: true, size: res.size}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].d < bad[j].d })
	for _, res := range bad {
		d := res.d
		c.fix(Finding{Severity: Problem, Kind: "blob", Subject: string(d), Problem: res.err.Error()}, "removed", func() error {
			return c.s.Content.Delete(d)
		})
	}
	return nil
}

// verifyFile hashes the file at p and compares it with d.
func verifyFile(ctx context.Context, p string, d digest.Digest) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, readers.WithContext(ctx, f))
	if err != nil {
		return n, fmt.Errorf("read: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Encoded() {
		return n, fmt.Errorf("content does not match its digest (it is sha256:%s)", got)
	}
	return n, nil
}

// blobProblem says what is wrong with a blob an image or record needs.
func (c *checker) blobProblem(kind string, d digest.Digest) string {
	st := c.blobs[d]
	switch {
	case st.ok:
		return ""
	case st.bad:
		return fmt.Sprintf("%s %s is corrupt", kind, d)
	}
	return fmt.Sprintf("%s %s is missing", kind, d)
}

func (c *checker) images(ctx context.Context) error {
	imgs, err := c.s.Content.Images()
	if err != nil {
		c.add(Finding{Severity: Problem, Kind: "layout", Subject: "content/index.json", Problem: err.Error() + " (restore it from a backup, or remove it to start with no tags)"})
		return nil
	}
	drop := map[digest.Digest]bool{}
	for _, im := range imgs {
		c.r.Images++
		problem := c.checkImage(ctx, im.Descriptor)
		if problem == "" {
			continue
		}
		name := "<none>:<none>"
		if im.Name != "" {
			name = content.FamiliarName(im.Name)
		}
		d := im.Descriptor.Digest
		c.fix(Finding{Severity: Problem, Kind: "image", Subject: fmt.Sprintf("%s (manifest %s)", name, d), Problem: problem},
			"removed from index.json: the image is lost, build or pull it again", func() error {
				drop[d] = true
				return nil
			})
	}
	if len(drop) == 0 {
		return nil
	}
	return c.s.Content.UpdateIndex(func(idx *ocispec.Index) error {
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if !drop[m.Digest] {
				out = append(out, m)
			}
		}
		idx.Manifests = out
		return nil
	})
}

// checkImage follows a manifest down to its layers and says what is wrong:
// the first problem found. Whatever it refers to counts as referenced.
func (c *checker) checkImage(ctx context.Context, desc ocispec.Descriptor) string {
	problem := ""
	found := func(p string) {
		if problem == "" {
			problem = p
		}
	}
	var manifest *content.Refs
	var diffIDs []digest.Digest
	content.Walk(ctx, c.s.Content.FetchBlobsUnverified, []ocispec.Descriptor{desc}, func(ctx context.Context, n *content.Node) error {
		d := n.Descriptor.Digest
		c.referenced[d] = true
		switch n.Role {
		case content.RoleManifest:
			if p := c.blobProblem("manifest", d); p != "" {
				found(p)
				return content.SkipChildren
			}
			if size := c.blobs[d].size; desc.Size != 0 && desc.Size != size {
				found(fmt.Sprintf("index.json says the manifest has %d bytes, it has %d", desc.Size, size))
				return content.SkipChildren
			}
			r, err := n.Refs(ctx)
			if err != nil {
				found(fmt.Sprintf("manifest %s: %v", d, err))
				return content.SkipChildren
			}
			if r.MediaType != "" && r.MediaType != ocispec.MediaTypeImageManifest && r.MediaType != content.MediaTypeDockerManifest {
				found(fmt.Sprintf("manifest %s has media type %s", d, r.MediaType))
				return content.SkipChildren
			}
			if r.Config == nil {
				c.referenced[""] = true
				found(c.blobProblem("config", ""))
			}
			manifest = r
		case content.RoleConfig:
			if p := c.blobProblem("config", d); p != "" {
				found(p)
				return nil
			}
			var cfg dockerspec.DockerOCIImage
			b, err := n.Blob(ctx)
			if err == nil {
				err = json.Unmarshal(b, &cfg)
			}
			if err != nil {
				found(fmt.Sprintf("config %s: %v", d, err))
				return nil
			}
			if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
				found(fmt.Sprintf("%d layers but %d diff_ids in config %s", len(manifest.Layers), len(cfg.RootFS.DiffIDs), d))
				return nil
			}
			diffIDs = cfg.RootFS.DiffIDs
		case content.RoleLayer:
			if problem != "" {
				return nil
			}
			if p := c.blobProblem("layer", d); p != "" {
				found(p)
				return nil
			}
			// Layers are stored uncompressed: the blob is the diffID.
			if i := n.Index; d != diffIDs[i] {
				found(fmt.Sprintf("layer %d is blob %s but the config's diff_id is %s", i, d, diffIDs[i]))
			}
		}
		return nil
	})
	return problem
}

func (c *checker) records(context.Context) error {
	ents, err := c.s.Records.Entries()
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Temp {
			continue
		}
		c.r.Records++
		p := e.Path
		remove := func() error { return os.Remove(p) }
		if e.Record == nil {
			c.fix(Finding{Severity: Stale, Kind: "record", Subject: e.Name, Problem: "unreadable (a cache miss): " + e.Err.Error()}, "removed", remove)
			continue
		}
		problem := ""
		for _, l := range e.Record.Layers {
			c.referenced[l.DiffID] = true
			if problem == "" {
				problem = c.blobProblem("layer", l.DiffID)
			}
		}
		if problem != "" {
			c.fix(Finding{Severity: Stale, Kind: "record", Subject: e.Name, Problem: problem + " (a cache miss)"}, "removed", remove)
		}
	}
	return nil
}

// compressedNotes are the store's compressed-copy notes
// (content.NoteCompressed).
func compressedNotes(cs *content.Store) []content.Note {
	notes, _ := cs.Notes()
	var out []content.Note
	for _, n := range notes {
		if n.Kind != content.NoteSources && n.DiffID != "" {
			out = append(out, n)
		}
	}
	return out
}

func (c *checker) compressed(context.Context) error {
	for _, n := range compressedNotes(c.s.Content) {
		rel, _ := filepath.Rel(c.s.Root, n.Path)
		d, err := n.CompressedTarget()
		problem := ""
		if err != nil {
			problem = "unreadable: " + err.Error()
		} else {
			c.referenced[d] = true
			problem = c.blobProblem("compressed layer", d)
		}
		if problem != "" {
			p := n.Path
			c.fix(Finding{Severity: Stale, Kind: "compressed", Subject: rel, Problem: problem + " (compressed again when needed)"}, "removed", func() error {
				return os.Remove(p)
			})
		}
	}
	return nil
}

func (c *checker) snapshots(ctx context.Context) error {
	sn := c.s.Snapshots
	ents, err := os.ReadDir(sn.Dir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == "diffids":
			continue
		case name == "empty" || name == "empty2":
			c.checkEmpty(name)
			continue
		}
		if _, err := strconv.Atoi(name); err != nil {
			c.add(Finding{Severity: Stale, Kind: "snapshot", Subject: "snapshots/" + name, Problem: "not a snapshot"})
			continue
		}
		c.r.Snapshots++
		if err := c.checkSnapshot(ctx, name); err != nil {
			return err
		}
	}
	// Index entries whose snapshot does not confirm them: Lookup already
	// ignores them.
	stale, err := sn.StaleEntries(nil)
	if err != nil {
		return err
	}
	for _, e := range stale {
		p := e.Path
		c.fix(Finding{Severity: Stale, Kind: "snapshot", Subject: "snapshots/diffids/" + e.DiffID.Encoded(), Problem: fmt.Sprintf("points at snapshot %q, which does not hold that layer", e.ID)}, "removed", func() error {
			return os.Remove(p)
		})
	}
	return nil
}

func (c *checker) checkSnapshot(ctx context.Context, id string) error {
	sn := c.s.Snapshots
	subject := id
	remove := func() error { return sn.Remove(id) }
	d, err := sn.DiffIDOf(id)
	if errors.Is(err, os.ErrNotExist) {
		// Open's repair removes these when the store is idle; Check holds
		// it idle, so this one appeared since or could not be removed.
		c.fix(Finding{Severity: Stale, Kind: "snapshot", Subject: subject, Problem: "uncommitted"}, "removed", remove)
		return nil
	}
	if err != nil {
		c.fix(Finding{Severity: Stale, Kind: "snapshot", Subject: subject, Problem: fmt.Sprintf("unreadable diffid file (%v)", err)}, "removed", remove)
		return nil
	}
	subject += " (layer " + string(d) + ")"
	if got, err := sn.Lookup(d); err != nil || got != id {
		c.fix(Finding{Severity: Stale, Kind: "snapshot", Subject: subject, Problem: "not the layer's registered snapshot: never used"}, "removed", remove)
		return nil
	}
	if fi, err := os.Lstat(sn.FS(id)); err != nil || !fi.IsDir() {
		c.fix(Finding{Severity: Problem, Kind: "snapshot", Subject: subject, Problem: "its fs directory is missing"}, "removed: unpacked again from the layer when needed", remove)
		return nil
	}
	if !c.blobs[d].ok {
		// Nothing can use it: an image or cache hit needs the blob too.
		// Should the layer come back, it is unpacked again from the new
		// blob rather than trusted unchecked.
		c.fix(Finding{Severity: Stale, Kind: "snapshot", Subject: subject, Problem: "its layer blob is " + strings.TrimPrefix(c.blobProblem("layer", d), "layer "+string(d)+" is ")}, "removed", remove)
		return nil
	}
	if !c.opts.Deep {
		return nil
	}
	f, err := os.Open(c.s.Content.BlobPath(d))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := layer.Verify(ctx, f, sn.FS(id)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.fix(Finding{Severity: Problem, Kind: "snapshot", Subject: subject, Problem: err.Error()}, "removed: unpacked again from the layer when needed", remove)
	}
	return nil
}

// checkEmpty: the always-empty lower dirs of read-only and single-layer
// mounts must stay empty, or every such mount would show their content.
func (c *checker) checkEmpty(name string) {
	dir := filepath.Join(c.s.Snapshots.Dir(), name)
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return
	}
	c.fix(Finding{Severity: Problem, Kind: "snapshot", Subject: "snapshots/" + name, Problem: fmt.Sprintf("must be empty, holds %d entries", len(ents))}, "emptied", func() error {
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
		return nil
	})
}

// containers checks every container: its record and state parse, the
// layers of its image are in the store, it has its name and every name
// is a container's, and one recorded as running has its monitor (repair,
// run before, already records those whose monitor died as exited).
func (c *checker) containers(context.Context) error {
	dir := c.s.ContainersDir()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !isContainerID(e.Name()) {
			continue
		}
		c.r.Containers++
		id := e.Name()
		short := id[:12]
		ct, err := c.s.ReadContainer(id)
		if err != nil {
			// Containers() fails on it: kiln ps and the GC with it.
			c.fix(Finding{Severity: Problem, Kind: "container", Subject: short, Problem: "config.json: " + strings.TrimPrefix(err.Error(), "container "+id+": config.json: ") + " (the container's record is lost: every container command fails on it)"},
				"removed the container (its writable layer with it)", func() error { return c.removeBrokenContainer(id) })
			continue
		}
		subject := short + " (" + ct.Name + ")"
		for _, l := range ct.Layers {
			c.referenced[l.DiffID] = true
		}
		for _, l := range ct.Layers {
			if p := c.blobProblem("layer", l.DiffID); p != "" {
				c.add(Finding{Severity: Problem, Kind: "container", Subject: subject, Problem: "its image's " + p + ": it cannot start (pull or build its image " + ct.Image + " again, or kiln rm it)"})
				break
			}
		}
		st, err := c.s.ReadContainerState(id)
		switch {
		case err != nil:
			c.fix(Finding{Severity: Problem, Kind: "container", Subject: subject, Problem: "state.json: " + strings.TrimPrefix(err.Error(), "container "+id+": state.json: ")},
				"recorded as exited", func() error { return c.resetContainerState(id) })
		case st.Status == StatusRunning && !c.s.ContainerRunning(id):
			c.fix(Finding{Severity: Problem, Kind: "container", Subject: subject, Problem: "recorded as running but its monitor is gone"},
				"recorded as exited", func() error {
					if ok, err := c.s.ReapContainer(id); err != nil || !ok {
						return errors.Join(err, errors.New("its lock is held"))
					}
					return nil
				})
		}
		link := filepath.Join(c.s.namesDir(), ct.Name)
		switch target, err := os.Readlink(link); {
		case errors.Is(err, fs.ErrNotExist):
			c.fix(Finding{Severity: Problem, Kind: "container", Subject: subject, Problem: "its name has no link in containers/names: kiln cannot find it by name, and another container could take the name"},
				"linked", func() error { return os.Symlink(id, link) })
		case err != nil:
			c.add(Finding{Severity: Problem, Kind: "container", Subject: subject, Problem: "containers/names/" + ct.Name + ": " + err.Error()})
		case target != id:
			if !c.s.staleName(target) {
				c.add(Finding{Severity: Problem, Kind: "container", Subject: subject, Problem: "its name " + ct.Name + " links to container " + target + " (two containers with one name: kiln rm one)"})
				break
			}
			c.fix(Finding{Severity: Problem, Kind: "container", Subject: subject, Problem: "its name links to " + target + ", which does not exist"},
				"linked", func() error {
					if err := os.Remove(link); err != nil {
						return err
					}
					return os.Symlink(id, link)
				})
		}
	}
	return c.nameLinks()
}

// nameLinks finds names/ entries that are no container's name.
func (c *checker) nameLinks() error {
	ents, err := os.ReadDir(c.s.namesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		link := filepath.Join(c.s.namesDir(), e.Name())
		subject := "containers/names/" + e.Name()
		remove := func() error { return os.Remove(link) }
		target, err := os.Readlink(link)
		if err != nil {
			c.fix(Finding{Severity: Stale, Kind: "container", Subject: subject, Problem: "not a name link"}, "removed", func() error { return os.RemoveAll(link) })
			continue
		}
		if !isContainerID(target) || c.s.staleName(target) {
			c.fix(Finding{Severity: Stale, Kind: "container", Subject: subject, Problem: fmt.Sprintf("links to %q, which is no container (the name is free)", target)}, "removed", remove)
			continue
		}
		if ct, err := c.s.ReadContainer(target); err == nil && ct.Name != e.Name() {
			c.fix(Finding{Severity: Stale, Kind: "container", Subject: subject, Problem: "links to container " + target[:12] + ", which is named " + ct.Name}, "removed", remove)
		}
	}
	return nil
}

// removeBrokenContainer removes container id, whose record is lost, if
// nothing runs in it.
func (c *checker) removeBrokenContainer(id string) error {
	// Its state may be as broken as its record: only the lock matters.
	if ok, err := c.s.ReapContainer(id); !ok {
		return errors.Join(err, errors.New("it is running"))
	}
	if m, _ := snapshot.MountsUnder(c.s.ContainerRootfs(id)); len(m) > 0 {
		return errors.New("its rootfs is still mounted")
	}
	gone := filepath.Join(c.s.ContainersDir(), ".removing-"+id)
	if err := os.Rename(c.s.ContainerDir(id), gone); err != nil {
		return err
	}
	ents, _ := os.ReadDir(c.s.namesDir())
	for _, e := range ents {
		link := filepath.Join(c.s.namesDir(), e.Name())
		if t, err := os.Readlink(link); err == nil && t == id {
			os.Remove(link)
		}
	}
	return removeTree(gone)
}

// resetContainerState replaces an unreadable state.json, if nothing runs
// in the container: what happened to its process is lost.
func (c *checker) resetContainerState(id string) error {
	l, err := c.s.ContainerLock(id)
	if err != nil {
		return err
	}
	defer l.Close()
	if ok, err := l.TryLock(lock.Exclusive); err != nil {
		return err
	} else if !ok {
		return errors.New("it is running")
	}
	return c.s.WriteContainerState(id, ContainerState{Status: StatusExited, ExitCode: LostExitCode, Error: "its state was lost (kiln doctor --repair)"})
}
