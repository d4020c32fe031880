package testenv

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// FileEntry is one path of a flattened image filesystem.
type FileEntry struct {
	Path   string      // clean, relative: "etc/passwd"
	Type   string      // "file", "dir", "symlink", "hardlink", "char", "block", "fifo"
	Mode   os.FileMode // permission bits plus os.ModeSetuid/ModeSetgid/ModeSticky
	UID    int
	GID    int
	Size   int64  // files (and hardlinks: the target's size)
	SHA256 string // hex digest of the content of files (and hardlinks)
	Link   string // symlink target as written, or the hardlink's target path (clean, relative)
}

// HealthConfig is the image's HEALTHCHECK, as in the Docker image config.
type HealthConfig struct {
	Test        []string      `json:",omitempty"`
	Interval    time.Duration `json:",omitempty"`
	Timeout     time.Duration `json:",omitempty"`
	StartPeriod time.Duration `json:",omitempty"`
	Retries     int           `json:",omitempty"`
}

// ImageConfig holds the run-time parts of an image config that a Dockerfile
// can set. Empty lists and maps are nil, so equal configs are DeepEqual.
type ImageConfig struct {
	Env          []string
	Cmd          []string
	Entrypoint   []string
	WorkingDir   string
	User         string
	ExposedPorts []string // sorted keys, e.g. "80/tcp"
	Volumes      []string // sorted keys
	Labels       map[string]string
	StopSignal   string
	// Docker-specific fields (not in the OCI spec, kept by BuildKit's docker
	// exporter and docker save).
	Shell       []string
	OnBuild     []string
	Healthcheck *HealthConfig
}

// ImageSummary is an image flattened into its final filesystem plus config.
type ImageSummary struct {
	Files  map[string]FileEntry // key: clean path without leading "/"
	Config ImageConfig
}

// ReadImageTar reads a tarball written by `docker save` (manifest.json naming
// each image's config and layer files) or an OCI image layout tar
// (oci-layout, index.json and blobs). If both manifest.json and index.json
// exist, manifest.json is used. It picks the first image, or with ref != ""
// the one whose RepoTags (docker save) or ref-name annotations (OCI) match ref
// ("busybox" matches "docker.io/library/busybox:latest"; "sha256:HEX" matches
// the config digest). Layers may be plain, gzip or zstd tars (detected by
// their magic bytes). The layers are applied in order, honouring whiteouts
// (".wh.NAME" removes NAME and everything below it; ".wh..wh..opq" in D hides
// everything the lower layers had below D, wherever it appears in the layer).
// Parent directories that a layer does not list are added as 0755 root
// directories. A hardlink is recorded as Type "hardlink" with Link set to its
// target and Size, SHA256, Mode, UID and GID copied from the target as it was
// when the link was made (Diff treats it as a plain file). The archive itself
// may be gzip-compressed.
func ReadImageTar(path, ref string) (*ImageSummary, error) {
	a, err := openArchive(path)
	if err != nil {
		return nil, err
	}
	defer a.close()

	var configBlob []byte
	var layers []string
	switch {
	case a.has("manifest.json"):
		configBlob, layers, err = a.dockerImage(ref)
	case a.has("index.json"):
		configBlob, layers, err = a.ociImage(ref)
	default:
		err = errors.New("neither manifest.json (docker save) nor index.json (OCI layout) found")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := parseImageConfig(configBlob)
	if err != nil {
		return nil, fmt.Errorf("%s: image config: %w", path, err)
	}
	fs := &layerFS{files: map[string]*FileEntry{}}
	for _, l := range layers {
		r, err := a.open(l)
		if err != nil {
			return nil, fmt.Errorf("%s: layer %s: %w", path, l, err)
		}
		if err := fs.applyCompressed(r); err != nil {
			return nil, fmt.Errorf("%s: layer %s: %w", path, l, err)
		}
	}
	sum := &ImageSummary{Files: make(map[string]FileEntry, len(fs.files)), Config: cfg}
	for k, e := range fs.files {
		sum.Files[k] = *e
	}
	return sum, nil
}

// ---------------------------------------------------------------------------
// The outer archive: indexed once, members read in place.

type archive struct {
	f       *os.File
	tmp     string // decompressed copy of a gzipped archive, removed by close
	members map[string]*tar.Header
	offsets map[string]int64
}

func openArchive(p string) (*archive, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	a := &archive{f: f, members: map[string]*tar.Header{}, offsets: map[string]int64{}}
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		a.close()
		return nil, err
	}
	if n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		if err := a.decompressToTemp(); err != nil {
			a.close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	tr := tar.NewReader(a.f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			a.close()
			return nil, fmt.Errorf("%s: reading tar: %w", p, err)
		}
		name := cleanName(hdr.Name)
		if name == "" {
			continue
		}
		// archive/tar does not read ahead, so the file position is the
		// start of this member's data.
		off, err := a.f.Seek(0, io.SeekCurrent)
		if err != nil {
			a.close()
			return nil, err
		}
		a.members[name] = hdr
		a.offsets[name] = off
	}
	return a, nil
}

func (a *archive) decompressToTemp() error {
	zr, err := gzip.NewReader(a.f)
	if err != nil {
		return err
	}
	t, err := os.CreateTemp("", "kiln-image-*.tar")
	if err != nil {
		return err
	}
	a.tmp = t.Name()
	if _, err := io.Copy(t, zr); err != nil {
		t.Close()
		return err
	}
	if _, err := t.Seek(0, io.SeekStart); err != nil {
		t.Close()
		return err
	}
	a.f.Close()
	a.f = t
	return nil
}

func (a *archive) close() {
	a.f.Close()
	if a.tmp != "" {
		os.Remove(a.tmp)
	}
}

func (a *archive) has(name string) bool {
	_, ok := a.members[cleanName(name)]
	return ok
}

// open returns the content of member name, following symlinks and hardlinks
// inside the archive (docker save links repeated layers).
func (a *archive) open(name string) (io.Reader, error) {
	name = cleanName(name)
	for hops := 0; hops < 16; hops++ {
		hdr, ok := a.members[name]
		if !ok {
			return nil, fmt.Errorf("%s not in archive", name)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			return io.NewSectionReader(a.f, a.offsets[name], hdr.Size), nil
		case tar.TypeSymlink:
			if path.IsAbs(hdr.Linkname) {
				name = cleanName(hdr.Linkname)
			} else {
				name = cleanName(path.Join(path.Dir(name), hdr.Linkname))
			}
		case tar.TypeLink:
			name = cleanName(hdr.Linkname)
		default:
			return nil, fmt.Errorf("%s is not a regular file (type %q)", name, hdr.Typeflag)
		}
	}
	return nil, fmt.Errorf("%s: too many links", name)
}

func (a *archive) readAll(name string) ([]byte, error) {
	r, err := a.open(name)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// ---------------------------------------------------------------------------
// docker save

func (a *archive) dockerImage(ref string) ([]byte, []string, error) {
	b, err := a.readAll("manifest.json")
	if err != nil {
		return nil, nil, err
	}
	var ms []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(ms) == 0 {
		return nil, nil, errors.New("manifest.json lists no image")
	}
	pick := -1
	if ref == "" {
		pick = 0
	} else {
		var cands [][]string
		for _, m := range ms {
			names := append([]string(nil), m.RepoTags...)
			names = append(names, "sha256:"+digestHexFromPath(m.Config))
			cands = append(cands, names)
		}
		pick = matchRef(ref, cands)
		if pick < 0 {
			var all []string
			for _, m := range ms {
				all = append(all, m.RepoTags...)
			}
			return nil, nil, fmt.Errorf("no image %q in manifest.json (tags: %v)", ref, all)
		}
	}
	m := ms[pick]
	cfg, err := a.readAll(m.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return cfg, m.Layers, nil
}

// digestHexFromPath gets HEX from "HEX.json" or "blobs/sha256/HEX".
func digestHexFromPath(p string) string {
	return strings.TrimSuffix(path.Base(p), ".json")
}

// ---------------------------------------------------------------------------
// OCI image layout

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

type ociIndexOrManifest struct {
	MediaType string          `json:"mediaType"`
	Manifests []ociDescriptor `json:"manifests"`
	Config    *ociDescriptor  `json:"config"`
	Layers    []ociDescriptor `json:"layers"`
}

func (a *archive) blob(digest string) ([]byte, error) {
	alg, hexd, ok := strings.Cut(digest, ":")
	if !ok {
		return nil, fmt.Errorf("bad digest %q", digest)
	}
	return a.readAll("blobs/" + alg + "/" + hexd)
}

func blobPath(digest string) string {
	alg, hexd, _ := strings.Cut(digest, ":")
	return "blobs/" + alg + "/" + hexd
}

func (a *archive) ociImage(ref string) ([]byte, []string, error) {
	b, err := a.readAll("index.json")
	if err != nil {
		return nil, nil, err
	}
	var idx ociIndexOrManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, nil, fmt.Errorf("index.json: %w", err)
	}
	if len(idx.Manifests) == 0 {
		return nil, nil, errors.New("index.json lists no manifest")
	}
	pick := 0
	if ref != "" {
		var cands [][]string
		for _, d := range idx.Manifests {
			var names []string
			for _, k := range []string{"org.opencontainers.image.ref.name", "io.containerd.image.name"} {
				if v := d.Annotations[k]; v != "" {
					names = append(names, v)
				}
			}
			names = append(names, d.Digest)
			cands = append(cands, names)
		}
		pick = matchRef(ref, cands)
		if pick < 0 {
			// Maybe ref names the config digest.
			for i, d := range idx.Manifests {
				if m, err := a.resolveManifest(d, 0); err == nil && m.Config != nil && m.Config.Digest == ref {
					pick = i
					break
				}
			}
		}
		if pick < 0 {
			return nil, nil, fmt.Errorf("no image %q in index.json", ref)
		}
	}
	m, err := a.resolveManifest(idx.Manifests[pick], 0)
	if err != nil {
		return nil, nil, err
	}
	if m.Config == nil {
		return nil, nil, errors.New("manifest has no config")
	}
	cfg, err := a.blob(m.Config.Digest)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	var layers []string
	for _, l := range m.Layers {
		layers = append(layers, blobPath(l.Digest))
	}
	return cfg, layers, nil
}

// resolveManifest follows nested indexes (multi-platform images) down to an
// image manifest, preferring this machine's platform and skipping
// attestation manifests.
func (a *archive) resolveManifest(d ociDescriptor, depth int) (*ociIndexOrManifest, error) {
	if depth > 8 {
		return nil, errors.New("index nesting too deep")
	}
	b, err := a.blob(d.Digest)
	if err != nil {
		return nil, err
	}
	var m ociIndexOrManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", d.Digest, err)
	}
	if m.Config != nil || len(m.Manifests) == 0 {
		return &m, nil
	}
	best := -1
	for i, c := range m.Manifests {
		if c.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		if c.Platform != nil && (c.Platform.OS != runtime.GOOS || c.Platform.Architecture != runtime.GOARCH) {
			if best < 0 {
				best = i
			}
			continue
		}
		best = i
		break
	}
	if best < 0 {
		best = 0
	}
	return a.resolveManifest(m.Manifests[best], depth+1)
}

// normalizeRef makes "busybox", "library/busybox:latest" and
// "docker.io/library/busybox:latest" equal.
func normalizeRef(r string) string {
	for _, p := range []string{"docker.io/", "index.docker.io/"} {
		r = strings.TrimPrefix(r, p)
	}
	r = strings.TrimPrefix(r, "library/")
	if !strings.Contains(r, "@") {
		last := r[strings.LastIndex(r, "/")+1:]
		if !strings.Contains(last, ":") {
			r += ":latest"
		}
	}
	return r
}

// matchRef returns the index of the first candidate name list matching ref:
// exactly or after normalization; failing that, a bare tag name ("latest",
// as OCI ref.name annotations often are) equal to ref's tag.
func matchRef(ref string, cands [][]string) int {
	nref := normalizeRef(ref)
	for i, names := range cands {
		for _, n := range names {
			if n == ref || (!strings.HasPrefix(n, "sha256:") && normalizeRef(n) == nref) {
				return i
			}
		}
	}
	tag := ""
	if !strings.Contains(nref, "@") {
		tag = nref[strings.LastIndex(nref, ":")+1:]
	}
	for i, names := range cands {
		for _, n := range names {
			if tag != "" && n == tag {
				return i
			}
		}
	}
	return -1
}

// ---------------------------------------------------------------------------
// Image config

func parseImageConfig(b []byte) (ImageConfig, error) {
	var raw struct {
		Config struct {
			Env          []string
			Cmd          []string
			Entrypoint   []string
			WorkingDir   string
			User         string
			ExposedPorts map[string]json.RawMessage
			Volumes      map[string]json.RawMessage
			Labels       map[string]string
			StopSignal   string
			Shell        []string
			OnBuild      []string
			Healthcheck  *HealthConfig
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return ImageConfig{}, err
	}
	c := raw.Config
	out := ImageConfig{
		Env:          nilIfEmpty(c.Env),
		Cmd:          nilIfEmpty(c.Cmd),
		Entrypoint:   nilIfEmpty(c.Entrypoint),
		WorkingDir:   c.WorkingDir,
		User:         c.User,
		ExposedPorts: sortedKeys(c.ExposedPorts),
		Volumes:      sortedKeys(c.Volumes),
		StopSignal:   c.StopSignal,
		Shell:        nilIfEmpty(c.Shell),
		OnBuild:      nilIfEmpty(c.OnBuild),
		Healthcheck:  c.Healthcheck,
	}
	if len(c.Labels) > 0 {
		out.Labels = c.Labels
	}
	return out, nil
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---------------------------------------------------------------------------
// Layer application

type layerFS struct {
	files map[string]*FileEntry
}

// cleanName turns a tar member name into a map key: clean, no leading "/"
// or "./", "" for the root.
func cleanName(n string) string {
	c := path.Clean("/" + n)
	if c == "/" {
		return ""
	}
	return c[1:]
}

// decompress detects gzip and zstd by magic bytes; anything else is read as
// a plain tar.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

func (fs *layerFS) applyCompressed(r io.Reader) error {
	dr, done, err := decompress(r)
	if err != nil {
		return err
	}
	defer done()
	return fs.apply(dr)
}

func tarMode(m int64) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// unixMode converts back to the octal form used in messages (e.g. 04755).
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// removeTree deletes p (unless onlyBelow) and everything below it.
func (fs *layerFS) removeTree(p string, onlyBelow bool) {
	if p == "" {
		for k := range fs.files {
			delete(fs.files, k)
		}
		return
	}
	if !onlyBelow {
		delete(fs.files, p)
	}
	prefix := p + "/"
	for k := range fs.files {
		if strings.HasPrefix(k, prefix) {
			delete(fs.files, k)
		}
	}
}

// apply reads one layer tar. Whiteouts affect only lower layers, so they are
// collected first and applied before this layer's entries.
func (fs *layerFS) apply(r io.Reader) error {
	tr := tar.NewReader(r)
	var (
		entries   []FileEntry
		opaque    []string
		whiteouts []string
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := cleanName(hdr.Name)
		if name == "" {
			continue // the root directory itself
		}
		dir, base := path.Dir(name), path.Base(name)
		if dir == "." {
			dir = ""
		}
		switch {
		case base == ".wh..wh..opq":
			opaque = append(opaque, dir)
			continue
		case strings.HasPrefix(base, ".wh..wh."):
			continue // other aufs metadata
		case strings.HasPrefix(base, ".wh."):
			whiteouts = append(whiteouts, path.Join(dir, base[len(".wh."):]))
			continue
		}
		e := FileEntry{
			Path: name,
			Mode: tarMode(hdr.Mode),
			UID:  hdr.Uid,
			GID:  hdr.Gid,
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
			// (archive/tar already turns the old TypeRegA into TypeReg,
			// or TypeDir for names ending in "/".)
			e.Type = "file"
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
			e.Size = n
			e.SHA256 = hex.EncodeToString(h.Sum(nil))
		case tar.TypeDir:
			e.Type = "dir"
		case tar.TypeSymlink:
			e.Type = "symlink"
			e.Link = hdr.Linkname
		case tar.TypeLink:
			e.Type = "hardlink"
			e.Link = cleanName(hdr.Linkname)
		case tar.TypeChar:
			e.Type = "char"
		case tar.TypeBlock:
			e.Type = "block"
		case tar.TypeFifo:
			e.Type = "fifo"
		default:
			continue // pax/GNU extension headers are consumed by archive/tar
		}
		entries = append(entries, e)
	}

	for _, d := range opaque {
		fs.removeTree(d, true)
	}
	for _, w := range whiteouts {
		fs.removeTree(w, false)
	}
	for i := range entries {
		e := entries[i]
		fs.ensureParents(e.Path)
		if old, ok := fs.files[e.Path]; ok && old.Type == "dir" && e.Type != "dir" {
			fs.removeTree(e.Path, true)
		}
		if e.Type == "hardlink" {
			if t, ok := fs.files[e.Link]; ok {
				e.Size, e.SHA256 = t.Size, t.SHA256
				e.Mode, e.UID, e.GID = t.Mode, t.UID, t.GID
			}
		}
		fs.files[e.Path] = &e
	}
	return nil
}

// ensureParents adds missing ancestors of p as plain directories.
func (fs *layerFS) ensureParents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := fs.files[d]; ok {
			// An existing ancestor (a directory, or a non-directory that
			// the layer writes through) ends the walk.
			return
		}
		fs.files[d] = &FileEntry{Path: d, Type: "dir", Mode: 0o755}
	}
}

// ---------------------------------------------------------------------------
// Diff

// ignored reports whether p (a summary key) matches a pattern: a path.Match
// glob against the whole path, or, for a pattern ending in "/", the directory
// itself and everything below it. Leading "/" in patterns is ignored.
func ignored(p string, patterns []string) bool {
	for _, pat := range patterns {
		pat = strings.TrimLeft(pat, "/")
		if strings.HasSuffix(pat, "/") {
			if p == strings.TrimSuffix(pat, "/") || strings.HasPrefix(p, pat) || pat == "" {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
	}
	return false
}

// comparable normalizes an entry for Diff: a hardlink is a file with its
// target's content; a symlink's mode is meaningless on Linux; a directory
// has no size.
func comparable(e FileEntry) FileEntry {
	switch e.Type {
	case "hardlink":
		e.Type = "file"
		e.Link = ""
	case "symlink":
		e.Mode = 0
	case "dir":
		e.Size = 0
	}
	return e
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "-"
	}
	return h
}

// Diff compares two summaries and returns one human-readable line per
// difference, sorted; empty means identical. For each path present on one
// side only: "/p: only in a" (or b). For paths on both sides, one line per
// differing field: type, mode (octal, with setuid/setgid/sticky), uid, gid,
// size, sha256, link. Hardlinks compare as files with their target's content,
// so builders may pick different first names; symlink modes and all
// timestamps are never compared. Then config differences: "config.FIELD: a
// != b". Paths matching any ignore pattern (path.Match glob on the path
// without leading "/", or a prefix ending in "/") are skipped.
func Diff(a, b *ImageSummary, ignore ...string) []string {
	var out []string
	keys := map[string]bool{}
	for k := range a.Files {
		keys[k] = true
	}
	for k := range b.Files {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		if !ignored(k, ignore) {
			sorted = append(sorted, k)
		}
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		ea, inA := a.Files[k]
		eb, inB := b.Files[k]
		p := "/" + k
		switch {
		case !inB:
			out = append(out, fmt.Sprintf("%s: only in a (%s)", p, ea.Type))
			continue
		case !inA:
			out = append(out, fmt.Sprintf("%s: only in b (%s)", p, eb.Type))
			continue
		}
		ca, cb := comparable(ea), comparable(eb)
		if ca.Type != cb.Type {
			out = append(out, fmt.Sprintf("%s: type %s != %s", p, ca.Type, cb.Type))
		}
		if ca.Mode != cb.Mode {
			out = append(out, fmt.Sprintf("%s: mode %04o != %04o", p, unixMode(ca.Mode), unixMode(cb.Mode)))
		}
		if ca.UID != cb.UID {
			out = append(out, fmt.Sprintf("%s: uid %d != %d", p, ca.UID, cb.UID))
		}
		if ca.GID != cb.GID {
			out = append(out, fmt.Sprintf("%s: gid %d != %d", p, ca.GID, cb.GID))
		}
		if ca.Size != cb.Size {
			out = append(out, fmt.Sprintf("%s: size %d != %d", p, ca.Size, cb.Size))
		}
		if ca.SHA256 != cb.SHA256 {
			out = append(out, fmt.Sprintf("%s: sha256 %s != %s", p, shortHash(ca.SHA256), shortHash(cb.SHA256)))
		}
		if ca.Link != cb.Link {
			out = append(out, fmt.Sprintf("%s: link %q != %q", p, ca.Link, cb.Link))
		}
	}
	return append(out, diffConfig(a.Config, b.Config)...)
}

func diffConfig(a, b ImageConfig) []string {
	var out []string
	field := func(name string, x, y any) {
		jx, _ := json.Marshal(x)
		jy, _ := json.Marshal(y)
		if !bytes.Equal(jx, jy) {
			out = append(out, fmt.Sprintf("config.%s: %s != %s", name, jx, jy))
		}
	}
	field("Env", nilIfEmpty(a.Env), nilIfEmpty(b.Env))
	field("Cmd", nilIfEmpty(a.Cmd), nilIfEmpty(b.Cmd))
	field("Entrypoint", nilIfEmpty(a.Entrypoint), nilIfEmpty(b.Entrypoint))
	field("WorkingDir", a.WorkingDir, b.WorkingDir)
	field("User", a.User, b.User)
	field("ExposedPorts", nilIfEmpty(a.ExposedPorts), nilIfEmpty(b.ExposedPorts))
	field("Volumes", nilIfEmpty(a.Volumes), nilIfEmpty(b.Volumes))
	la, lb := a.Labels, b.Labels
	if len(la) == 0 {
		la = nil
	}
	if len(lb) == 0 {
		lb = nil
	}
	field("Labels", la, lb) // encoding/json sorts map keys
	field("StopSignal", a.StopSignal, b.StopSignal)
	field("Shell", nilIfEmpty(a.Shell), nilIfEmpty(b.Shell))
	field("OnBuild", nilIfEmpty(a.OnBuild), nilIfEmpty(b.OnBuild))
	field("Healthcheck", a.Healthcheck, b.Healthcheck)
	return out
}
