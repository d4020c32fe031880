package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	_ "crypto/sha512" // blobs/sha512/... names in OCI layouts
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"runtime"
	"strings"

	"github.com/kiln-build/kiln/internal/readers"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/layer"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Loaded is one image Load brought into the store.
type Loaded struct {
	Names    []string           // full names it was tagged as; none for a dangling image
	Manifest ocispec.Descriptor // the manifest written to the store
	ID       digest.Digest      // config digest: docker's IMAGE ID
}

// Limits on what Load keeps in memory: small JSON files (configs,
// manifests, index.json, manifest.json) are held by entry name; anything
// bigger, or past the total, goes to the store and is read back from there.
const (
	maxMemEntry   = 4 << 20
	maxMemTotal   = 256 << 20
	maxSmallEntry = 512      // VERSION files and the like, whatever they hold
	maxMetadata   = 64 << 20 // largest manifest/config/index Load will parse
	maxLinkDepth  = 32
)

// entry is what Load learnt about one regular file of the archive.
type entry struct {
	name       string
	raw        digest.Digest // the bytes as they are in the archive, hashed with the algorithm its blob name uses (sha256 otherwise)
	compressed layer.Compression
	stored     digest.Digest // uncompressed content in the store; "" while only in memory
	storedSize int64
	data       []byte // uncompressed content, for small files kept in memory
}

type loader struct {
	ctx     context.Context
	store   *content.Store
	entries map[string]*entry
	links   map[string]string // symlinks and hard links: entry key → target key
	mem     int64
	// noEndMarker is set when the archive stopped at an entry boundary
	// without the end-of-archive blocks: perhaps complete, perhaps cut.
	noEndMarker bool
}

// eofTracker notes whether its reader ever came to its end.
type eofTracker struct {
	r   io.Reader
	eof bool
}

func (t *eofTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n == 0 && err == io.EOF {
		t.eof = true
	}
	return n, err
}

// Load reads an image tarball from r and brings its images into store. It
// reads OCI layout tars (as Save, BuildKit's -o type=oci and docker 25+
// docker save write them) and docker-save tars (manifest.json, including the
// older <id>/layer.tar form). The archive itself may be gzip or zstd
// compressed.
//
// It makes one streaming pass: every regular entry is ingested into the
// store as it is read (entry names are only keys, never paths on disk) and
// gzip and zstd layers are decompressed on the fly; small JSON files (and
// tiny files such as VERSION) are kept in memory instead, and only those an
// image refers to (its config) are written to the store afterwards. Then it resolves manifest.json (preferred) or index.json,
// checks every blob against its name and every layer against the config's
// diff_ids, writes the manifests and finally tags the images. On error no
// tag is written.
func Load(ctx context.Context, r io.Reader, store *content.Store) ([]Loaded, error) {
	l := &loader{ctx: ctx, store: store, entries: map[string]*entry{}, links: map[string]string{}}
	if err := l.read(r); err != nil {
		return nil, loadError(err)
	}
	var (
		imgs []pendingImage
		err  error
	)
	switch {
	case l.has(dockerManifestFile):
		imgs, err = l.fromDockerManifest()
	case l.has(indexFile):
		imgs, err = l.fromIndex()
	default:
		err = errors.New("load: not an image archive: no manifest.json or index.json")
	}
	if err != nil {
		if l.noEndMarker {
			// Most likely cut short at an entry boundary.
			return nil, fmt.Errorf("load: truncated archive: %w (no end-of-archive marker; %s)",
				io.ErrUnexpectedEOF, strings.TrimPrefix(err.Error(), "load: "))
		}
		return nil, loadError(err)
	}

	// Every image checked out and its manifest is written: now tag.
	out := make([]Loaded, 0, len(imgs))
	for _, im := range imgs {
		if len(im.names) == 0 {
			if err := store.AddUntagged(im.manifest); err != nil {
				return out, fmt.Errorf("load: %w", err)
			}
		}
		for _, n := range im.names {
			if err := store.Tag(n, im.manifest); err != nil {
				return out, fmt.Errorf("load: tag %s: %w", n, err)
			}
		}
		out = append(out, Loaded{Names: im.names, Manifest: im.manifest, ID: im.id})
	}
	return out, nil
}

// loadError gives errors a "load:" prefix and says plainly when the archive
// ended early.
func loadError(err error) error {
	if strings.HasPrefix(err.Error(), "load: ") {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("load: truncated archive: %w", err)
	}
	return fmt.Errorf("load: %w", err)
}

// entryKey turns an entry name into the key it is known by: a clean,
// relative, slash-separated path. It is never used to touch the filesystem.
func entryKey(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// read makes the one pass over the archive.
func (l *loader) read(r io.Reader) error {
	br := bufio.NewReaderSize(readers.WithContext(l.ctx, r), 1<<20)
	if c := layer.DetectCompression(br); c != layer.Uncompressed {
		dr, err := layer.Decompress(c, br)
		if err != nil {
			return err
		}
		defer dr.Close()
		r = dr
	} else {
		r = br
	}
	// The tar reader never reads past the end-of-archive blocks, so if it
	// meets the end of the input, those blocks were missing.
	et := &eofTracker{r: r}
	tr := tar.NewReader(et)
	for first := true; ; first = false {
		if err := l.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if first && et.eof {
				return errors.New("load: not an image archive: empty input")
			}
			l.noEndMarker = et.eof
			return nil
		}
		if err != nil {
			if first && !errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("load: not a tar archive: %w", err)
			}
			return err
		}
		key := entryKey(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			e, err := l.ingest(key, hdr.Size, tr)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("load: truncated archive: %w (in entry %q)", io.ErrUnexpectedEOF, hdr.Name)
			}
			if err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			delete(l.links, key)
			l.entries[key] = e
		case tar.TypeSymlink:
			// docker save links a layer shared by several images:
			// <id>/layer.tar → ../<other id>/layer.tar.
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir("/"+key), target)
			}
			l.link(key, entryKey(target))
		case tar.TypeLink:
			l.link(key, entryKey(hdr.Linkname))
		}
	}
}

func (l *loader) link(key, target string) {
	if key == target {
		return
	}
	delete(l.entries, key)
	l.links[key] = target
}

// lookup finds the entry called name, following links.
func (l *loader) lookup(name string) (*entry, bool) {
	key := entryKey(name)
	for i := 0; i < maxLinkDepth; i++ {
		if e, ok := l.entries[key]; ok {
			return e, true
		}
		t, ok := l.links[key]
		if !ok {
			return nil, false
		}
		key = t
	}
	return nil, false
}

func (l *loader) has(name string) bool {
	_, ok := l.lookup(name)
	return ok
}

var blobNameRE = regexp.MustCompile(`^blobs/([a-z0-9]+)/([a-zA-Z0-9=_-]+)$`)

// blobNameDigest is the digest an entry named blobs/<alg>/<encoded> must
// have, if its name has that form and a known algorithm.
func blobNameDigest(key string) (digest.Digest, bool) {
	m := blobNameRE.FindStringSubmatch(key)
	if m == nil {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2])
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// ingest reads one regular entry: small JSON into memory, everything else
// (decompressed) into the store.
func (l *loader) ingest(key string, size int64, r io.Reader) (*entry, error) {
	e := &entry{name: key}
	br := bufio.NewReaderSize(r, 64<<10)
	e.compressed = layer.DetectCompression(br)
	alg := digest.SHA256
	nameDigest, isBlob := blobNameDigest(key)
	if isBlob {
		alg = nameDigest.Algorithm()
	}

	if e.compressed == layer.Uncompressed {
		if size <= maxMemEntry && l.mem+size <= maxMemTotal && (size <= maxSmallEntry || looksLikeJSON(br)) {
			b, err := io.ReadAll(br)
			if err != nil {
				return nil, err
			}
			e.data = b
			e.raw = alg.FromBytes(b)
			l.mem += int64(len(b))
			return e, nil
		}
		if isBlob && alg == digest.SHA256 {
			if _, ok := l.store.Has(nameDigest); ok {
				// Already stored: just check the bytes are what the name says.
				dg := alg.Digester()
				n, err := io.Copy(dg.Hash(), br)
				if err != nil {
					return nil, err
				}
				e.raw = dg.Digest()
				if e.raw == nameDigest {
					e.stored, e.storedSize = e.raw, n
				}
				return e, nil
			}
		}
	}

	w, err := l.store.NewWriter()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var src io.Reader = br
	var rawDigester digest.Digester
	if e.compressed != layer.Uncompressed || alg != digest.SHA256 {
		rawDigester = alg.Digester()
		src = io.TeeReader(br, rawDigester.Hash())
	}
	if e.compressed == layer.Uncompressed {
		if _, err := io.Copy(w, src); err != nil {
			return nil, err
		}
	} else {
		dr, err := layer.Decompress(e.compressed, src)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(w, dr)
		dr.Close()
		if err != nil {
			if !strings.HasPrefix(err.Error(), e.compressed.String()) {
				err = fmt.Errorf("%s: %w", e.compressed, err)
			}
			return nil, err
		}
		// Whatever follows the compressed stream still counts for the
		// digest of the entry as it is in the archive.
		if _, err := io.Copy(io.Discard, src); err != nil {
			return nil, err
		}
	}
	desc, err := w.Commit("", content.UnknownSize)
	if err != nil {
		return nil, err
	}
	e.stored, e.storedSize = desc.Digest, desc.Size
	if rawDigester != nil {
		e.raw = rawDigester.Digest()
	} else {
		e.raw = desc.Digest
	}
	return e, nil
}

// looksLikeJSON peeks at the first non-blank byte.
func looksLikeJSON(br *bufio.Reader) bool {
	b, _ := br.Peek(512)
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

// dataOf returns the (uncompressed) content of a small entry.
func (l *loader) dataOf(e *entry) ([]byte, error) {
	if e.data != nil {
		return e.data, nil
	}
	if e.stored == "" {
		return nil, fmt.Errorf("%s: content does not match its name", e.name)
	}
	if e.storedSize > maxMetadata {
		return nil, fmt.Errorf("%s: too large (%d bytes)", e.name, e.storedSize)
	}
	return l.store.ReadBlob(e.stored)
}

// ensureStored writes an entry kept in memory to the store.
func (l *loader) ensureStored(e *entry) error {
	if e.stored != "" {
		return nil
	}
	if e.data == nil {
		return fmt.Errorf("%s: content does not match its name", e.name)
	}
	desc, err := l.store.Write(l.ctx, bytes.NewReader(e.data), digest.FromBytes(e.data))
	if err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	e.stored, e.storedSize = desc.Digest, desc.Size
	return nil
}

// pendingImage is an image whose blobs and manifest are in the store, not
// yet tagged.
type pendingImage struct {
	names    []string
	manifest ocispec.Descriptor
	id       digest.Digest
}

// image checks an image's config and layers and writes its manifest.
// configName and layerNames are entry names; want holds the digest each
// layer entry must have as archived ("" when its name does not say).
func (l *loader) image(configName string, configWant digest.Digest, layers []layerRef) (pendingImage, error) {
	ce, ok := l.lookup(configName)
	if !ok {
		return pendingImage{}, fmt.Errorf("load: config %s: missing from archive", configName)
	}
	if ce.compressed != layer.Uncompressed {
		return pendingImage{}, fmt.Errorf("load: config %s: is %s compressed", configName, ce.compressed)
	}
	if configWant != "" && ce.raw != configWant {
		return pendingImage{}, fmt.Errorf("load: config %s: digest mismatch: content is %s", configName, ce.raw)
	}
	cb, err := l.dataOf(ce)
	if err != nil {
		return pendingImage{}, fmt.Errorf("load: config %s: %w", configName, err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return pendingImage{}, fmt.Errorf("load: config %s: %w", configName, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return pendingImage{}, fmt.Errorf("load: config %s: %d layers but %d rootfs.diff_ids", configName, len(layers), len(diffIDs))
	}
	descs := make([]ocispec.Descriptor, len(layers))
	for i, lr := range layers {
		le, ok := l.lookup(lr.name)
		if !ok {
			// A layer left out of the archive is fine if the store has it.
			if size, ok := l.store.Has(diffIDs[i]); ok && lr.want == diffIDs[i] {
				descs[i] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffIDs[i], Size: size}
				continue
			}
			return pendingImage{}, fmt.Errorf("load: layer %s: missing from archive", lr.name)
		}
		if lr.want != "" && le.raw != lr.want {
			return pendingImage{}, fmt.Errorf("load: layer %s: digest mismatch: content is %s, expected %s", lr.name, le.raw, lr.want)
		}
		if err := l.ensureStored(le); err != nil {
			return pendingImage{}, fmt.Errorf("load: layer %w", err)
		}
		if le.stored != diffIDs[i] {
			return pendingImage{}, fmt.Errorf("load: layer %s: digest mismatch: uncompressed content is %s, config rootfs.diff_ids[%d] is %s", lr.name, le.stored, i, diffIDs[i])
		}
		if err := l.checkLayer(le.stored); err != nil {
			return pendingImage{}, fmt.Errorf("load: layer %s: %w", lr.name, err)
		}
		descs[i] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffIDs[i], Size: le.storedSize}
	}
	if err := l.ensureStored(ce); err != nil {
		return pendingImage{}, fmt.Errorf("load: config %w", err)
	}
	mdesc, err := l.store.WriteManifest(
		ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: ce.stored, Size: ce.storedSize},
		descs,
		ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion},
	)
	if err != nil {
		return pendingImage{}, fmt.Errorf("load: %w", err)
	}
	return pendingImage{manifest: mdesc, id: ce.stored}, nil
}

// checkLayer refuses a stored layer blob that could not be unpacked
// safely (layer.Check), so a hostile image is rejected by load, as docker
// load rejects it, instead of failing on first use.
func (l *loader) checkLayer(d digest.Digest) error {
	f, err := l.store.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return layer.Check(f)
}

type layerRef struct {
	name string
	want digest.Digest
}

// nameWant is the digest an entry name promises: blobs/<alg>/<hex>, or
// <hex>.json for the configs of older docker-save archives.
func nameWant(name string) digest.Digest {
	key := entryKey(name)
	if d, ok := blobNameDigest(key); ok {
		return d
	}
	if hex, ok := strings.CutSuffix(key, ".json"); ok {
		if d := digest.NewDigestFromEncoded(digest.SHA256, hex); d.Validate() == nil {
			return d
		}
	}
	return ""
}

// fromDockerManifest resolves a docker-save manifest.json.
func (l *loader) fromDockerManifest() ([]pendingImage, error) {
	e, _ := l.lookup(dockerManifestFile)
	b, err := l.dataOf(e)
	if err != nil {
		return nil, err
	}
	var m []dockerManifestEntry
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("load: manifest.json: %w", err)
	}
	if len(m) == 0 {
		return nil, errors.New("load: manifest.json lists no images")
	}
	var out []pendingImage
	for _, dm := range m {
		names, err := normalizeNames(dm.RepoTags)
		if err != nil {
			return nil, fmt.Errorf("load: manifest.json: %w", err)
		}
		layers := make([]layerRef, len(dm.Layers))
		for i, ln := range dm.Layers {
			layers[i] = layerRef{name: ln, want: nameWant(ln)}
		}
		im, err := l.image(dm.Config, nameWant(dm.Config), layers)
		if err != nil {
			return nil, err
		}
		im.names = names
		out = merge(out, im)
	}
	return out, nil
}

// merge adds im to imgs, folding its names into an earlier entry for the
// same manifest.
func merge(imgs []pendingImage, im pendingImage) []pendingImage {
	for i := range imgs {
		if imgs[i].manifest.Digest == im.manifest.Digest {
			for _, n := range im.names {
				if !contains(imgs[i].names, n) {
					imgs[i].names = append(imgs[i].names, n)
				}
			}
			return imgs
		}
	}
	return append(imgs, im)
}

func normalizeNames(in []string) ([]string, error) {
	var out []string
	for _, n := range in {
		full, err := content.NormalizeName(n)
		if err != nil {
			return nil, err
		}
		if _, err := tagged(full); err != nil {
			continue // pinned by digest only: nothing to tag
		}
		if !contains(out, full) {
			out = append(out, full)
		}
	}
	return out, nil
}

// blobEntry finds the blob a descriptor points at and checks it.
func (l *loader) blobEntry(kind string, d ocispec.Descriptor) (*entry, string, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, "", fmt.Errorf("load: %s %q: %w", kind, d.Digest, err)
	}
	name := blobPath(d.Digest)
	e, ok := l.lookup(name)
	if !ok {
		return nil, name, fmt.Errorf("load: %s %s: missing from archive", kind, name)
	}
	if e.raw != d.Digest {
		return nil, name, fmt.Errorf("load: %s %s: digest mismatch: content is %s", kind, name, e.raw)
	}
	return e, name, nil
}

// readJSONBlob reads and decodes a manifest or index blob.
func (l *loader) readJSONBlob(kind string, d ocispec.Descriptor, v any) error {
	b, err := l.readBlob(kind, d)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("load: %s %s: %w", kind, blobPath(d.Digest), err)
	}
	return nil
}

// readBlob reads a manifest, index or config blob.
func (l *loader) readBlob(kind string, d ocispec.Descriptor) ([]byte, error) {
	e, name, err := l.blobEntry(kind, d)
	if err != nil {
		return nil, err
	}
	if e.compressed != layer.Uncompressed {
		return nil, fmt.Errorf("load: %s %s: is %s compressed", kind, name, e.compressed)
	}
	b, err := l.dataOf(e)
	if err != nil {
		return nil, fmt.Errorf("load: %s %s: %w", kind, name, err)
	}
	return b, nil
}

// fromIndex resolves an OCI layout's index.json.
func (l *loader) fromIndex() ([]pendingImage, error) {
	e, _ := l.lookup(indexFile)
	b, err := l.dataOf(e)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("load: index.json: %w", err)
	}
	if len(idx.Manifests) == 0 {
		return nil, errors.New("load: index.json lists no images")
	}
	var out []pendingImage
	for _, d := range idx.Manifests {
		names, err := annotatedNames(d.Annotations)
		if err != nil {
			return nil, fmt.Errorf("load: index.json: %w", err)
		}
		md, err := l.pickManifest(d)
		if err != nil {
			return nil, err
		}
		var m ocispec.Manifest
		if err := l.readJSONBlob("manifest", md, &m); err != nil {
			return nil, err
		}
		if err := m.Config.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("load: manifest %s: config: %w", md.Digest, err)
		}
		layers := make([]layerRef, len(m.Layers))
		for i, ld := range m.Layers {
			if err := ld.Digest.Validate(); err != nil {
				return nil, fmt.Errorf("load: manifest %s: layer %d: %w", md.Digest, i, err)
			}
			layers[i] = layerRef{name: blobPath(ld.Digest), want: ld.Digest}
		}
		im, err := l.image(blobPath(m.Config.Digest), m.Config.Digest, layers)
		if err != nil {
			return nil, err
		}
		im.names = names
		out = merge(out, im)
	}
	return out, nil
}

// annotatedNames is the name an index.json entry is tagged with: the
// containerd image name, or else ref.name when it holds a whole name rather
// than a bare tag.
func annotatedNames(a map[string]string) ([]string, error) {
	if n := a[content.AnnotationImageName]; n != "" {
		return normalizeNames([]string{n})
	}
	if n := a[content.AnnotationRefName]; n != "" && looksLikeName(n) {
		return normalizeNames([]string{n})
	}
	return nil, nil
}

// kindOf names a manifest-or-index blob in errors: by its media type, and
// "manifest" while that is unknown.
func kindOf(d ocispec.Descriptor) string {
	if content.IsIndexType(d.MediaType) {
		return "index"
	}
	return "manifest"
}

// pickManifest descends through (nested) indexes to the image manifest for
// this machine: the only one, or the linux/GOARCH one.
func (l *loader) pickManifest(root ocispec.Descriptor) (ocispec.Descriptor, error) {
	fetch := func(_ context.Context, d ocispec.Descriptor) ([]byte, error) { return l.readBlob(kindOf(d), d) }
	chosen := map[*content.Node]int{} // index → the position of its pick
	var picked ocispec.Descriptor
	err := content.Walk(l.ctx, fetch, []ocispec.Descriptor{root}, func(ctx context.Context, n *content.Node) error {
		if n.Role != content.RoleManifest {
			return content.SkipChildren
		}
		if n.Parent != nil && chosen[n.Parent] != n.Index {
			return content.SkipChildren
		}
		d := n.Descriptor
		r, err := n.Refs(ctx)
		if d.MediaType == "" && err != nil {
			return readError(kindOf(d), d, err) // telling by the content
		}
		if !n.IsIndex(ctx) {
			picked = d
			return content.SkipChildren
		}
		if err != nil {
			return readError("index", d, err)
		}
		i, err := pickForMachine(d, r.Manifests)
		chosen[n] = i
		return err
	})
	if errors.Is(err, content.ErrTooDeep) {
		return ocispec.Descriptor{}, fmt.Errorf("load: %w", err)
	}
	return picked, err
}

// readError is a Fetch's error as it reaches the user: readBlob's already
// says what and where, a parse error gets that said.
func readError(kind string, d ocispec.Descriptor, err error) error {
	if strings.HasPrefix(err.Error(), "load: ") {
		return err
	}
	return fmt.Errorf("load: %s %s: %w", kind, blobPath(d.Digest), err)
}

// pickForMachine returns the position in an index's manifests of the image
// for this machine: the only candidate, or the linux/GOARCH one.
func pickForMachine(d ocispec.Descriptor, ms []ocispec.Descriptor) (int, error) {
	var cands []int
	for i, m := range ms {
		if m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		if m.Platform != nil && m.Platform.OS == "unknown" {
			continue
		}
		cands = append(cands, i)
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	var have []string
	for _, i := range cands {
		m := ms[i]
		if m.Platform == nil {
			have = append(have, "?")
			continue
		}
		if m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
			return i, nil
		}
		p := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			p += "/" + m.Platform.Variant
		}
		have = append(have, p)
	}
	return -1, fmt.Errorf("load: index %s: no image for linux/%s (has %s)", blobPath(d.Digest), runtime.GOARCH, strings.Join(have, ", "))
}
