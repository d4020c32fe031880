package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/store/content"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var testCreated = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

type tarEntry struct {
	name     string
	data     string
	typeflag byte
	linkname string
}

func mkTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typeflag, Linkname: e.linkname, Mode: 0o644, ModTime: testCreated}
		switch e.typeflag {
		case 0, tar.TypeReg:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func rootfs(t *testing.T, marker string) []byte {
	return mkTar(t, []tarEntry{
		{name: "etc/", typeflag: tar.TypeDir},
		{name: "etc/hello.txt", data: "hello " + marker + "\n"},
		{name: "bin/", typeflag: tar.TypeDir},
		{name: "bin/sh", data: "#!/not/really\n"},
	})
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openStore(t *testing.T) *content.Store {
	t.Helper()
	s, err := content.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// importImage imports a rootfs and tags it with names.
func importImage(t *testing.T, s *content.Store, marker string, names ...string) ocispec.Descriptor {
	t.Helper()
	desc, err := Import(context.Background(), bytes.NewReader(rootfs(t, marker)), s, ImportOptions{Created: testCreated})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := s.Tag(n, desc); err != nil {
			t.Fatal(err)
		}
	}
	return desc
}

func save(t *testing.T, s *content.Store, images ...SaveImage) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Save(context.Background(), &buf, s, images); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readTar(t *testing.T, b []byte) (names []string, files map[string][]byte, hdrs []*tar.Header) {
	t.Helper()
	files = map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		hdrs = append(hdrs, h)
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	plain := rootfs(t, "x")
	var descs []ocispec.Descriptor
	for _, in := range [][]byte{plain, gz(t, plain), zst(t, plain)} {
		d, err := Import(ctx, bytes.NewReader(in), s, ImportOptions{Created: testCreated})
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	if descs[0].Digest != descs[1].Digest || descs[0].Digest != descs[2].Digest {
		t.Fatalf("plain, gzip and zstd imports differ: %v", descs)
	}
	im, err := s.ReadImage(descs[0])
	if err != nil {
		t.Fatal(err)
	}
	if im.Config.OS != "linux" || im.Config.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", im.Config.OS, im.Config.Architecture)
	}
	if !im.Config.Created.Equal(testCreated) || len(im.Config.History) != 1 || im.Config.History[0].CreatedBy != "kiln import" {
		t.Errorf("config %+v", im.Config)
	}
	if want := digest.FromBytes(plain); len(im.Config.RootFS.DiffIDs) != 1 || im.Config.RootFS.DiffIDs[0] != want || im.Manifest.Layers[0].Digest != want {
		t.Errorf("diff_ids %v, want [%s]", im.Config.RootFS.DiffIDs, want)
	}
	if _, err := Import(ctx, strings.NewReader("this is not a tar archive, not at all, no"+strings.Repeat(".", 600)), s, ImportOptions{Created: testCreated}); err == nil {
		t.Error("importing garbage succeeded")
	}
	if _, err := Import(ctx, strings.NewReader(""), s, ImportOptions{Created: testCreated}); err == nil {
		t.Error("importing nothing succeeded")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := openStore(t)
	a := importImage(t, src, "a", "docker.io/library/app:1.0", "example.com/team/app:2")
	b := importImage(t, src, "b")
	srcA, err := src.ReadImage(a)
	if err != nil {
		t.Fatal(err)
	}
	tarball := save(t, src,
		SaveImage{Names: []string{"docker.io/library/app:1.0", "example.com/team/app:2"}, Manifest: a},
		SaveImage{Manifest: b})

	// The same archive without manifest.json, so that index.json is used.
	var ociOnly []tarEntry
	names, files, hdrs := readTar(t, tarball)
	for i, n := range names {
		if n == "manifest.json" || n == "repositories" {
			continue
		}
		ociOnly = append(ociOnly, tarEntry{name: n, data: string(files[n]), typeflag: hdrs[i].Typeflag})
	}

	for _, in := range [][]byte{tarball, gz(t, tarball), zst(t, tarball), mkTar(t, ociOnly)} {
		dst := openStore(t)
		loaded, err := Load(ctx, bytes.NewReader(in), dst)
		if err != nil {
			t.Fatal(err)
		}
		if len(loaded) != 2 {
			t.Fatalf("loaded %d images: %+v", len(loaded), loaded)
		}
		if loaded[0].ID != srcA.ID() {
			t.Errorf("image ID changed: %s → %s", srcA.ID(), loaded[0].ID)
		}
		if got := strings.Join(loaded[0].Names, ","); got != "docker.io/library/app:1.0,example.com/team/app:2" {
			t.Errorf("names %s", got)
		}
		if len(loaded[1].Names) != 0 {
			t.Errorf("unnamed image got names %v", loaded[1].Names)
		}
		for _, n := range loaded[0].Names {
			d, err := dst.Resolve(n)
			if err != nil {
				t.Fatal(err)
			}
			im, err := dst.ReadImage(d)
			if err != nil {
				t.Fatal(err)
			}
			if im.ID() != srcA.ID() || im.Manifest.Layers[0].Digest != srcA.Manifest.Layers[0].Digest {
				t.Errorf("%s: loaded image differs", n)
			}
		}
		imgs, err := dst.Images()
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 3 {
			t.Errorf("index has %d entries, want 3 (two names, one dangling)", len(imgs))
		}
		// Loading again is idempotent.
		if _, err := Load(ctx, bytes.NewReader(in), dst); err != nil {
			t.Fatal(err)
		}
		if imgs2, _ := dst.Images(); len(imgs2) != 3 {
			t.Errorf("after second load index has %d entries", len(imgs2))
		}
	}
}

func TestSaveFormat(t *testing.T) {
	src := openStore(t)
	a := importImage(t, src, "a", "docker.io/library/app:1.0")
	b := importImage(t, src, "b", "docker.io/library/other:latest")
	imgs := []SaveImage{
		{Names: []string{"docker.io/library/app:1.0"}, Manifest: a},
		{Names: []string{"docker.io/library/other:latest"}, Manifest: b},
	}
	first := save(t, src, imgs...)
	if second := save(t, src, imgs...); !bytes.Equal(first, second) {
		t.Fatal("two saves of the same images differ")
	}
	names, files, hdrs := readTar(t, first)
	if names[0] != "oci-layout" || names[1] != "blobs/" || names[2] != "blobs/sha256/" {
		t.Errorf("entries start %v", names[:3])
	}
	seen := map[string]bool{}
	for _, h := range hdrs {
		if seen[h.Name] {
			t.Errorf("%s written twice", h.Name)
		}
		seen[h.Name] = true
		if h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v owner %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		if want := map[byte]int64{tar.TypeDir: 0o755, tar.TypeReg: 0o444}[h.Typeflag]; h.Mode != want {
			t.Errorf("%s: mode %o", h.Name, h.Mode)
		}
		if d, ok := blobNameDigest(h.Name); ok && digest.FromBytes(files[h.Name]) != d {
			t.Errorf("%s: content does not match", h.Name)
		}
	}
	// Blobs: 2 layers, 2 configs, 2 manifests.
	if n := len(names) - 3 - 3; n != 6 {
		t.Errorf("%d blobs: %v", n, names)
	}

	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 || idx.Manifests[0].Annotations[content.AnnotationImageName] != "docker.io/library/app:1.0" ||
		idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "1.0" || idx.Manifests[0].Digest != a.Digest ||
		idx.Manifests[0].MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("index.json: %s", files["index.json"])
	}
	var dm []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &dm); err != nil {
		t.Fatal(err)
	}
	if len(dm) != 2 || dm[0].RepoTags[0] != "app:1.0" || dm[1].RepoTags[0] != "other:latest" || len(dm[0].Layers) != 1 ||
		!seen[dm[0].Config] || !seen[dm[0].Layers[0]] {
		t.Errorf("manifest.json: %s", files["manifest.json"])
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(files["repositories"], &repos); err != nil || repos["app"]["1.0"] == "" {
		t.Errorf("repositories: %s (%v)", files["repositories"], err)
	}
}

// dockerSaveTar builds an old-style docker-save archive (<id>/layer.tar,
// <config hex>.json) with gzip-compressed layers: one image whose layer is
// real, and a second one whose layer.tar is a symlink to the first's.
func dockerSaveTar(t *testing.T, layer []byte, diffIDs []digest.Digest) (tarball []byte, configID digest.Digest) {
	cfg := dockerspec.DockerOCIImage{}
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}
	cb, _ := json.Marshal(cfg)
	configID = digest.FromBytes(cb)
	cfg2 := cfg
	cfg2.Author = "someone else"
	cb2, _ := json.Marshal(cfg2)
	id1, id2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	manifest, _ := json.Marshal([]dockerManifestEntry{
		{Config: configID.Encoded() + ".json", RepoTags: []string{"busybox:1", "busybox:latest"}, Layers: []string{id1 + "/layer.tar"}},
		{Config: digest.FromBytes(cb2).Encoded() + ".json", RepoTags: nil, Layers: []string{id2 + "/layer.tar"}},
	})
	return mkTar(t, []tarEntry{
		{name: id1 + "/", typeflag: tar.TypeDir},
		{name: id1 + "/VERSION", data: "1.0"},
		{name: id1 + "/json", data: `{"id":"` + id1 + `"}`},
		{name: id1 + "/layer.tar", data: string(gz(t, layer))},
		{name: id2 + "/", typeflag: tar.TypeDir},
		{name: id2 + "/layer.tar", typeflag: tar.TypeSymlink, linkname: "../" + id1 + "/layer.tar"},
		{name: configID.Encoded() + ".json", data: string(cb)},
		{name: digest.FromBytes(cb2).Encoded() + ".json", data: string(cb2)},
		{name: "repositories", data: `{"busybox":{"1":"` + id1 + `"}}`},
		{name: "manifest.json", data: string(manifest)},
	}), configID
}

func TestLoadDockerSaveGzipLayers(t *testing.T) {
	layer := rootfs(t, "docker")
	diffID := digest.FromBytes(layer)
	tarball, configID := dockerSaveTar(t, layer, []digest.Digest{diffID})
	s := openStore(t)
	loaded, err := Load(context.Background(), bytes.NewReader(tarball), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 2 || loaded[0].ID != configID || strings.Join(loaded[0].Names, ",") != "docker.io/library/busybox:1,docker.io/library/busybox:latest" {
		t.Fatalf("loaded %+v", loaded)
	}
	for _, l := range loaded {
		im, err := s.ReadImage(l.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifest.Layers) != 1 || im.Manifest.Layers[0].Digest != diffID || im.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
			t.Fatalf("layers %+v", im.Manifest.Layers)
		}
		stored, err := os.ReadFile(s.BlobPath(diffID))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stored, layer) {
			t.Fatal("stored layer is not the uncompressed tar")
		}
	}
	if _, err := s.Resolve("docker.io/library/busybox:latest"); err != nil {
		t.Error(err)
	}
}

func TestLoadDiffIDMismatchTagsNothing(t *testing.T) {
	layer := rootfs(t, "docker")
	tarball, _ := dockerSaveTar(t, layer, []digest.Digest{digest.FromString("something else")})
	s := openStore(t)
	_, err := Load(context.Background(), bytes.NewReader(tarball), s)
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") || !strings.Contains(err.Error(), "layer.tar") {
		t.Fatalf("err = %v", err)
	}
	if imgs, _ := s.Images(); len(imgs) != 0 {
		t.Errorf("failed load left %d index entries", len(imgs))
	}
}

// ociTar builds a BuildKit-style OCI layout tar: index.json → image index
// (amd64, arm64, an attestation) → manifests with zstd/gzip layers.
func ociTar(t *testing.T, corrupt bool) (tarball []byte, wantConfig digest.Digest, layer []byte) {
	var entries []tarEntry
	blob := func(mt string, b []byte) ocispec.Descriptor {
		d := digest.FromBytes(b)
		data := string(b)
		if corrupt && mt == ocispec.MediaTypeImageLayerZstd {
			data = string(zst(t, []byte("not the layer")))
		}
		entries = append(entries, tarEntry{name: "blobs/sha256/" + d.Encoded(), data: data})
		return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
	}
	image := func(arch string, marker string) (ocispec.Descriptor, digest.Digest, []byte) {
		l := rootfs(t, marker)
		cfg := dockerspec.DockerOCIImage{}
		cfg.OS, cfg.Architecture = "linux", arch
		cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(l)}}
		cb, _ := json.Marshal(cfg)
		cd := blob(ocispec.MediaTypeImageConfig, cb)
		ld := blob(ocispec.MediaTypeImageLayerZstd, zst(t, l))
		mb, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
		md := blob(ocispec.MediaTypeImageManifest, mb)
		md.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		return md, cd.Digest, l
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	mine, cfg, layer := image(runtime.GOARCH, "mine")
	theirs, _, _ := image(other, "theirs")
	att := blob(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2}`))
	att.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	att.Annotations = map[string]string{"vnd.docker.reference.type": "attestation-manifest"}
	ib, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{theirs, mine, att}})
	id := blob(ocispec.MediaTypeImageIndex, ib)
	id.Annotations = map[string]string{content.AnnotationImageName: "docker.io/library/multi:v1", ocispec.AnnotationRefName: "v1"}
	top, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{id}})
	entries = append([]tarEntry{{name: "oci-layout", data: `{"imageLayoutVersion":"1.0.0"}`}}, entries...)
	entries = append(entries, tarEntry{name: "index.json", data: string(top)})
	return mkTar(t, entries), cfg, layer
}

func TestLoadOCINestedIndexZstd(t *testing.T) {
	tarball, cfg, layer := ociTar(t, false)
	s := openStore(t)
	loaded, err := Load(context.Background(), bytes.NewReader(tarball), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].ID != cfg || loaded[0].Names[0] != "docker.io/library/multi:v1" {
		t.Fatalf("loaded %+v", loaded)
	}
	im, err := s.ReadImage(loaded[0].Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if im.Manifest.Layers[0].Digest != digest.FromBytes(layer) {
		t.Error("layer not stored uncompressed")
	}

	bad, _, _ := ociTar(t, true)
	s2 := openStore(t)
	_, err = Load(context.Background(), bytes.NewReader(bad), s2)
	if err == nil || !strings.Contains(err.Error(), "load: layer blobs/sha256/") || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("err = %v", err)
	}
	if imgs, _ := s2.Images(); len(imgs) != 0 {
		t.Errorf("failed load left %d index entries", len(imgs))
	}
}

func TestLoadHostileNames(t *testing.T) {
	src := openStore(t)
	a := importImage(t, src, "a", "docker.io/library/app:1.0")
	good := save(t, src, SaveImage{Names: []string{"docker.io/library/app:1.0"}, Manifest: a})
	_, files, _ := readTar(t, good)

	// Same image, with hostile extras in front.
	var entries []tarEntry
	for _, n := range []string{"../../evil", "/tmp/kiln-archive-test-evil", "blobs/../../../evil2", "./../evil3"} {
		entries = append(entries, tarEntry{name: n, data: "pwned"})
	}
	entries = append(entries, tarEntry{name: "../../evil-link", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"})
	names, _, _ := readTar(t, good)
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			continue
		}
		entries = append(entries, tarEntry{name: n, data: string(files[n])})
	}
	root := t.TempDir()
	storeDir := filepath.Join(root, "a", "b", "store")
	s, err := content.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if _, err := Load(context.Background(), bytes.NewReader(mkTar(t, entries)), s); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if strings.Contains(d.Name(), "evil") {
			t.Errorf("%s written", p)
		}
		if !d.IsDir() && !strings.HasPrefix(p, storeDir+string(filepath.Separator)) {
			t.Errorf("%s written outside the store", p)
		}
		return nil
	})
	if _, err := os.Lstat("/tmp/kiln-archive-test-evil"); err == nil {
		t.Error("/tmp/kiln-archive-test-evil written")
	}
	for _, p := range []string{filepath.Join(wd, "..", "..", "evil"), filepath.Join(wd, "evil3")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s written", p)
		}
	}
}

func TestLoadTruncatedAndInvalid(t *testing.T) {
	src := openStore(t)
	a := importImage(t, src, "a", "docker.io/library/app:1.0")
	good := save(t, src, SaveImage{Names: []string{"docker.io/library/app:1.0"}, Manifest: a})

	for _, cut := range []int{len(good) / 2, 700, 100} {
		s := openStore(t)
		_, err := Load(context.Background(), bytes.NewReader(good[:cut]), s)
		if err == nil || !strings.Contains(err.Error(), "load: truncated archive") || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: err = %v", cut, err)
		}
		if imgs, _ := s.Images(); len(imgs) != 0 {
			t.Errorf("cut at %d: %d index entries", cut, len(imgs))
		}
	}
	// A gzip'd archive cut short.
	gzd := gz(t, good)
	if _, err := Load(context.Background(), bytes.NewReader(gzd[:len(gzd)/2]), openStore(t)); err == nil || !strings.Contains(err.Error(), "truncated archive") {
		t.Errorf("truncated gzip: err = %v", err)
	}

	// Cut inside a compressed layer.
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 200000)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	for _, c := range []func(*testing.T, []byte) []byte{gz, zst} {
		layer := c(t, mkTar(t, []tarEntry{{name: "noise", data: string(big)}}))
		tb := mkTar(t, []tarEntry{{name: "blobs/sha256/" + digest.FromBytes(layer).Encoded(), data: string(layer)}, {name: "index.json", data: "{}"}})
		_, err := Load(context.Background(), bytes.NewReader(tb[:len(tb)/2]), openStore(t))
		if err == nil || !strings.Contains(err.Error(), "load: truncated archive") {
			t.Errorf("cut inside a compressed layer: err = %v", err)
		}
	}

	_, err := Load(context.Background(), bytes.NewReader(nil), openStore(t))
	if err == nil || !strings.Contains(err.Error(), "empty input") {
		t.Errorf("empty input: err = %v", err)
	}
	_, err = Load(context.Background(), bytes.NewReader(mkTar(t, []tarEntry{{name: "hello.txt", data: "hi"}})), openStore(t))
	if err == nil || err.Error() != "load: not an image archive: no manifest.json or index.json" {
		t.Errorf("err = %v", err)
	}
	_, err = Load(context.Background(), strings.NewReader(strings.Repeat("not a tar ", 100)), openStore(t))
	if err == nil || !strings.Contains(err.Error(), "not a tar archive") {
		t.Errorf("err = %v", err)
	}
}

// requireTool finds an external tool, skipping the test without it unless
// running in CI.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: %v", name, err)
		}
		t.Skipf("%s not found", name)
	}
	return p
}

// extractTar unpacks a Save tarball (flat: files and directories only).
func extractTar(t *testing.T, b []byte, dir string) {
	t.Helper()
	names, files, hdrs := readTar(t, b)
	for i, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if hdrs[i].Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSkopeoAndUmociReadSave(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	umoci := requireTool(t, "umoci")

	src := openStore(t)
	a := importImage(t, src, "umoci", "docker.io/library/app:1.0")
	b := importImage(t, src, "other", "docker.io/library/other:2.0")
	tarball := save(t, src,
		SaveImage{Names: []string{"docker.io/library/app:1.0"}, Manifest: a},
		SaveImage{Names: []string{"docker.io/library/other:2.0"}, Manifest: b})
	dir := t.TempDir()
	file := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(file, tarball, 0o644); err != nil {
		t.Fatal(err)
	}

	// index.json has two entries, so skopeo needs the ref.name.
	cmd := exec.Command(skopeo, "--insecure-policy", "inspect", "oci-archive:"+file+":1.0")
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("skopeo inspect: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var info struct {
		Layers       []string
		Architecture string
		Os           string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("skopeo output: %v\n%s", err, out)
	}
	im, _ := src.ReadImage(a)
	if len(info.Layers) != 1 || info.Layers[0] != im.Manifest.Layers[0].Digest.String() || info.Os != "linux" || info.Architecture != runtime.GOARCH {
		t.Errorf("skopeo inspect: %s", out)
	}

	layout := filepath.Join(dir, "layout")
	extractTar(t, tarball, layout)
	bundle := filepath.Join(dir, "bundle")
	args := []string{"unpack", "--image", layout + ":1.0", bundle}
	if os.Geteuid() != 0 {
		args = append([]string{"unpack", "--rootless"}, args[1:]...)
	}
	if out, err := exec.Command(umoci, args...).CombinedOutput(); err != nil {
		t.Fatalf("umoci %v: %v\n%s", args, err, out)
	}
	got, err := os.ReadFile(filepath.Join(bundle, "rootfs", "etc", "hello.txt"))
	if err != nil || string(got) != "hello umoci\n" {
		t.Errorf("bundle/rootfs/etc/hello.txt: %q, %v", got, err)
	}
}
