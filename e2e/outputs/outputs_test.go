package outputs

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// outputsDockerfile makes a three-layer image (busybox + two RUNs) whose
// RUN layers hold a whiteout (bin/vi), an opaque directory (/keep, removed
// and made again), a symlink, a hardlink and a directory owned by 1000.
const outputsDockerfile = `FROM busybox
RUN mkdir /keep && echo old > /keep/old
RUN echo hi > /hi && rm /bin/vi && ln -s /hi /link && ln /hi /hard && mkdir /d && chown 1000:1000 /d && rm -rf /keep && mkdir /keep && echo new > /keep/new
`

func outputsContext(t *testing.T) string {
	return e2etest.WriteContext(t, map[string][]byte{"Dockerfile": []byte(outputsDockerfile)})
}

func TestOutputLocalAndTarHoldTheFinalRootfs(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := outputsContext(t)
	work := t.TempDir()
	dest := filepath.Join(work, "rootfs") // missing: created
	short := filepath.Join(work, "short") // -o DIR
	rootTar := filepath.Join(work, "rootfs.tar")
	s.MustKiln("build", "-t", "outputs:1",
		"-o", "type=local,dest="+dest, "-o", short, "-o", "type=tar,dest="+rootTar, ctx)
	s.AssertClean()

	// The image is still stored and tagged as usual.
	if out := s.MustKiln("run", "--rm", "outputs:1", "cat", "/hi"); out != "hi\n" {
		t.Errorf("kiln run cat /hi: %q", out)
	}

	for _, root := range []string{dest, short} {
		checkRootfsDir(t, root)
	}

	// type=tar: the same tree, as one tar in sorted order.
	names, hdrs := tarListing(t, rootTar)
	if !slices.IsSorted(names) {
		t.Errorf("rootfs tar is not in sorted order")
	}
	dirNames := dirListing(t, dest)
	if !slices.Equal(names, dirNames) {
		t.Errorf("tar and local output differ:\ntar:   %v\nlocal: %v", diffNames(names, dirNames), diffNames(dirNames, names))
	}
	for _, n := range []string{"bin/vi", "keep/old", "./hi", "/hi"} {
		if hdrs[n] != nil {
			t.Errorf("rootfs tar has %s", n)
		}
	}
	if h := hdrs["hard"]; h == nil || h.Typeflag != tar.TypeReg {
		t.Errorf("rootfs tar: hard = %+v (want the file; hi links to it)", h)
	} else if h2 := hdrs["hi"]; h2 == nil || h2.Typeflag != tar.TypeLink || h2.Linkname != "hard" {
		t.Errorf("rootfs tar: hi = %+v, want a hardlink to hard", h2)
	}
	if h := hdrs["link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/hi" {
		t.Errorf("rootfs tar: link = %+v", h)
	}
	if h := hdrs["d/"]; h == nil || h.Typeflag != tar.TypeDir || h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("rootfs tar: d/ = %+v", h)
	}
	if hdrs["keep/new"] == nil || hdrs["bin/sh"] == nil {
		t.Errorf("rootfs tar lacks keep/new or bin/sh")
	}

	// dest=- writes the tar to stdout; the output is deterministic.
	out, stderr, err := s.Kiln("build", "--progress", "quiet", "-o", "type=tar,dest=-", ctx)
	if err != nil {
		t.Fatalf("build -o type=tar,dest=-: %v\n%s", err, stderr)
	}
	want, _ := os.ReadFile(rootTar)
	if !bytes.Equal([]byte(out), want) {
		t.Errorf("tar on stdout (%d bytes) differs from the tar file (%d bytes)", len(out), len(want))
	}
}

func checkRootfsDir(t *testing.T, root string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(root, "hi")); err != nil || string(b) != "hi\n" {
		t.Errorf("%s/hi: %q %v", root, b, err)
	}
	if l, err := os.Readlink(filepath.Join(root, "link")); err != nil || l != "/hi" {
		t.Errorf("%s/link: %q %v", root, l, err)
	}
	var a, b syscall.Stat_t
	if syscall.Lstat(filepath.Join(root, "hi"), &a) != nil || syscall.Lstat(filepath.Join(root, "hard"), &b) != nil || a.Ino != b.Ino {
		t.Errorf("%s: hi and hard are not one hardlinked file", root)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(root, "d"), &st); err != nil || st.Uid != 1000 || st.Gid != 1000 || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		t.Errorf("%s/d: uid %d gid %d mode %o, %v", root, st.Uid, st.Gid, st.Mode, err)
	}
	for _, gone := range []string{"bin/vi", "keep/old"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s/%s exists (%v)", root, gone, err)
		}
	}
	for _, p := range []string{"keep/new", "bin/sh", "bin/busybox"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s/%s: %v", root, p, err)
		}
	}
	// No whiteout devices or .wh. files: a plain directory.
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if strings.HasPrefix(fi.Name(), ".wh.") {
			t.Errorf("whiteout file in local output: %s", p)
		}
		if fi.Mode()&os.ModeCharDevice != 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
				t.Errorf("overlay whiteout device in local output: %s", p)
			}
		}
		return nil
	})
}

// tarListing returns a tar's entry names in order, and the headers by name.
func tarListing(t *testing.T, p string) ([]string, map[string]*tar.Header) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	hdrs := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		hdrs[h.Name] = h
	}
	return names, hdrs
}

// dirListing names everything below root the way a rootfs tar does:
// relative, directories with a trailing "/", sorted.
func dirListing(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if fi.IsDir() {
			rel += "/"
		}
		names = append(names, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func diffNames(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			out = append(out, n)
		}
	}
	return out
}

// ociImage reads an OCI layout tar: index.json, the manifest it names and
// the blobs by digest.
type ociImage struct {
	index struct {
		Manifests []struct {
			MediaType   string
			Digest      string
			Annotations map[string]string
		}
	}
	manifest struct {
		MediaType string
		Config    struct{ MediaType, Digest string }
		Layers    []struct {
			MediaType string
			Digest    string
			Size      int64
		}
	}
	config struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	blobs map[string][]byte
}

func readOCITar(t *testing.T, p string) *ociImage {
	t.Helper()
	files := e2etest.TarFiles(t, p)
	img := &ociImage{blobs: map[string][]byte{}}
	for name, b := range files {
		if hex, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
			img.blobs["sha256:"+hex] = b
		}
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Fatalf("%s: no oci-layout", p)
	}
	if err := json.Unmarshal(files["index.json"], &img.index); err != nil || len(img.index.Manifests) == 0 {
		t.Fatalf("%s: index.json: %v %s", p, err, files["index.json"])
	}
	if err := json.Unmarshal(img.blobs[img.index.Manifests[0].Digest], &img.manifest); err != nil {
		t.Fatalf("%s: manifest: %v", p, err)
	}
	if err := json.Unmarshal(img.blobs[img.manifest.Config.Digest], &img.config); err != nil {
		t.Fatalf("%s: config: %v", p, err)
	}
	return img
}

func (img *ociImage) layerDigests() []string {
	var out []string
	for _, l := range img.manifest.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func TestOutputOCICompressesLayersOnce(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := outputsContext(t)
	work := t.TempDir()
	ociTar := filepath.Join(work, "oci.tar")
	s.MustKiln("build", "-t", "outputs:oci", "-o", "type=oci,dest="+ociTar, ctx)
	s.AssertClean()

	img := readOCITar(t, ociTar)
	if img.manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %q", img.manifest.MediaType)
	}
	ann := img.index.Manifests[0].Annotations
	if ann["io.containerd.image.name"] != "docker.io/library/outputs:oci" || ann["org.opencontainers.image.ref.name"] != "oci" {
		t.Errorf("index.json annotations: %v", ann)
	}
	insp := s.Inspect("outputs:oci")
	wantDiffIDs := e2etest.ToStrings(insp["RootFS"].(map[string]any)["Layers"])
	if !slices.Equal(img.config.RootFS.DiffIDs, wantDiffIDs) {
		t.Errorf("diff_ids %v, store has %v", img.config.RootFS.DiffIDs, wantDiffIDs)
	}
	if img.manifest.Config.Digest != insp["Id"] {
		t.Errorf("config %s, store's image ID %s: the config must be unchanged", img.manifest.Config.Digest, insp["Id"])
	}
	if len(img.manifest.Layers) != 3 {
		t.Fatalf("%d layers, want 3", len(img.manifest.Layers))
	}
	for i, l := range img.manifest.Layers {
		b := img.blobs[l.Digest]
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" || len(b) < 3 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
			t.Errorf("layer %d: media type %s, magic % x", i, l.MediaType, b[:min(len(b), 3)])
		}
		if int64(len(b)) != l.Size {
			t.Errorf("layer %d: size %d in manifest, %d in tar", i, l.Size, len(b))
		}
		// No mtime and no name in the gzip header: deterministic.
		if b[4] != 0 || b[5] != 0 || b[6] != 0 || b[7] != 0 || b[3]&0x08 != 0 {
			t.Errorf("layer %d: gzip header % x has an mtime or a name", i, b[:10])
		}
		mapping := filepath.Join(s.Root, "content", "compressed", "gzip-6", strings.TrimPrefix(wantDiffIDs[i], "sha256:"))
		if m, err := os.ReadFile(mapping); err != nil || strings.TrimSpace(string(m)) != l.Digest {
			t.Errorf("mapping %s: %q %v, want %s", mapping, m, err, l.Digest)
		}
	}
	skopeo := testenv.RequireCommand(t, "skopeo")
	raw, err := exec.Command(skopeo, "inspect", "oci-archive:"+ociTar+":oci").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, raw)
	}
	var info struct{ Layers []string }
	if err := json.Unmarshal(raw, &info); err != nil || !slices.Equal(info.Layers, img.layerDigests()) {
		t.Errorf("skopeo inspect layers %v (%v), want %v", info.Layers, err, img.layerDigests())
	}

	// A second build with the same output reuses the compressed blobs:
	// same digests, mapping files untouched.
	mappingDir := filepath.Join(s.Root, "content", "compressed", "gzip-6")
	before := mtimes(t, mappingDir)
	second := filepath.Join(work, "again.tar")
	s.MustKiln("build", "-t", "outputs:oci", "-o", "type=oci,dest="+second, ctx)
	if got := readOCITar(t, second).layerDigests(); !slices.Equal(got, img.layerDigests()) {
		t.Errorf("second export: layers %v, first %v", got, img.layerDigests())
	}
	if after := mtimes(t, mappingDir); !mapsEqual(before, after) {
		t.Errorf("mapping files rewritten: before %v after %v", before, after)
	}

	// Compression is deterministic: without the mappings and the
	// compressed blobs, the same digests come out again.
	for _, d := range img.layerDigests() {
		os.Remove(filepath.Join(s.Root, "content", "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
	}
	os.RemoveAll(mappingDir)
	third := filepath.Join(work, "fresh.tar")
	s.MustKiln("build", "-t", "outputs:oci", "-o", "type=oci,dest="+third, ctx)
	if got := readOCITar(t, third).layerDigests(); !slices.Equal(got, img.layerDigests()) {
		t.Errorf("recompressed layers %v, first %v", got, img.layerDigests())
	}

	// zstd, with a level.
	zst := filepath.Join(work, "zstd.tar")
	s.MustKiln("build", "-t", "outputs:oci", "-o", "type=oci,dest="+zst+",compression=zstd,compression-level=9", ctx)
	zimg := readOCITar(t, zst)
	for i, l := range zimg.manifest.Layers {
		b := zimg.blobs[l.Digest]
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" || !bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			t.Errorf("zstd layer %d: media type %s, magic % x", i, l.MediaType, b[:min(len(b), 4)])
		}
		if _, err := os.Stat(filepath.Join(s.Root, "content", "compressed", "zstd-9", strings.TrimPrefix(wantDiffIDs[i], "sha256:"))); err != nil {
			t.Errorf("zstd mapping: %v", err)
		}
	}
	if !slices.Equal(zimg.config.RootFS.DiffIDs, wantDiffIDs) {
		t.Errorf("zstd diff_ids %v", zimg.config.RootFS.DiffIDs)
	}
	if raw, err := exec.Command(skopeo, "inspect", "oci-archive:"+zst+":oci").CombinedOutput(); err != nil {
		t.Errorf("skopeo inspect zstd: %v\n%s", err, raw)
	}

	// uncompressed: the stored layers as they are.
	unc := filepath.Join(work, "plain.tar")
	s.MustKiln("build", "-t", "outputs:oci", "-o", "type=oci,dest="+unc+",compression=uncompressed", ctx)
	if got := readOCITar(t, unc).layerDigests(); !slices.Equal(got, wantDiffIDs) {
		t.Errorf("uncompressed layers %v, want the diff IDs %v", got, wantDiffIDs)
	}

	// kiln load reads the compressed tar back.
	other := &e2etest.Store{T: t, Root: filepath.Join(t.TempDir(), "other")}
	other.MustKiln("load", "-i", ociTar)
	if out := other.MustKiln("run", "--rm", "outputs:oci", "cat", "/keep/new"); out != "new\n" {
		t.Errorf("loaded image: cat /keep/new = %q", out)
	}
}

func mtimes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.ModTime().UnixNano()
	}
	return out
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestOutputDockerLoadsAndRunsInDocker(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := outputsContext(t)
	dockerTar := filepath.Join(t.TempDir(), "docker.tar")
	s.MustKiln("build", "-t", "kiln-outputs:docker", "-o", "type=docker,dest="+dockerTar, ctx)

	names, _ := tarListing(t, dockerTar)
	for _, want := range []string{"manifest.json", "repositories"} {
		if !slices.Contains(names, want) {
			t.Errorf("docker output lacks %s: %v", want, names)
		}
	}
	d := testenv.SharedDockerd(t)
	if out, err := d.Docker("load", "-i", dockerTar); err != nil || !strings.Contains(out, "kiln-outputs:docker") {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	out, err := d.Docker("run", "--rm", "--network", "none", "kiln-outputs:docker", "sh", "-c", "cat /hi /keep/new; ls /keep; test -e /bin/vi || echo vi gone; stat -c %u:%g /d")
	if err != nil {
		t.Fatalf("docker run: %v", err)
	}
	if want := "hi\nnew\nnew\nvi gone\n1000:1000\n"; out != want {
		t.Errorf("docker run printed %q, want %q", out, want)
	}
}

func TestMetadataFileMatchesInspect(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := outputsContext(t)
	md := filepath.Join(t.TempDir(), "md.json")
	s.MustKiln("build", "-t", "meta:1", "-t", "meta:2", "--metadata-file", md, ctx)
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ConfigDigest string `json:"containerimage.config.digest"`
		Digest       string `json:"containerimage.digest"`
		ImageName    string `json:"image.name"`
		Descriptor   struct {
			MediaType string
			Digest    string
			Size      int64
		} `json:"containerimage.descriptor"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("metadata file: %v\n%s", err, b)
	}
	insp := s.Inspect("meta:1")
	if got.ConfigDigest != insp["Id"] {
		t.Errorf("containerimage.config.digest %s, inspect Id %s", got.ConfigDigest, insp["Id"])
	}
	if got.Digest != insp["ManifestDigest"] || got.Descriptor.Digest != got.Digest {
		t.Errorf("containerimage.digest %s, descriptor %s, inspect ManifestDigest %s", got.Digest, got.Descriptor.Digest, insp["ManifestDigest"])
	}
	if got.ImageName != "meta:1,meta:2" {
		t.Errorf("image.name %q", got.ImageName)
	}
	manifest, err := os.ReadFile(filepath.Join(s.Root, "content", "blobs", "sha256", strings.TrimPrefix(got.Digest, "sha256:")))
	if err != nil || int64(len(manifest)) != got.Descriptor.Size || got.Descriptor.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("descriptor %+v; manifest blob %d bytes, %v", got.Descriptor, len(manifest), err)
	}
}

func TestPlatformOtherThanHostFailsBeforeAnything(t *testing.T) {
	testenv.RequireRoot(t)
	other := "linux/arm64"
	if runtime.GOARCH == "arm64" {
		other = "linux/amd64"
	}
	ctx := outputsContext(t)
	fresh := &e2etest.Store{T: t, Root: filepath.Join(t.TempDir(), "never")}
	_, stderr, err := fresh.Kiln("build", "--platform", other, ctx)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v\n%s", err, stderr)
	}
	want := "--platform " + other + ": kiln builds only for the host platform linux/" + runtime.GOARCH
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q lacks %q", stderr, want)
	}
	if _, err := os.Stat(fresh.Root); !os.IsNotExist(err) {
		t.Errorf("the store was opened before the platform was checked: %v", err)
	}

	s := e2etest.NewStore(t)
	for _, p := range []string{"linux/" + runtime.GOARCH, "local"} {
		s.MustKiln("build", "--platform", p, "-t", "plat:1", ctx)
	}
	if arch := s.Inspect("plat:1")["Architecture"]; arch != runtime.GOARCH {
		t.Errorf("Architecture %v", arch)
	}
}

func TestFailedBuildLeavesNoOutput(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nRUN echo hi > /hi\nRUN exit 7\n"), 0o644)
	work := t.TempDir()
	dests := map[string]string{
		"local":  filepath.Join(work, "dir"),
		"tar":    filepath.Join(work, "rootfs.tar"),
		"oci":    filepath.Join(work, "oci.tar"),
		"docker": filepath.Join(work, "docker.tar"),
	}
	md := filepath.Join(work, "md.json")
	args := []string{"build", "-t", "failed:1", "--metadata-file", md}
	for typ, d := range dests {
		args = append(args, "-o", "type="+typ+",dest="+d)
	}
	_, stderr, err := s.Kiln(append(args, ctx)...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v\n%s", err, stderr)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("a failed build left %v in the output directory", names)
	}
	s.AssertClean()

	// A bad -o fails before the build runs.
	for _, o := range []string{"type=nope,dest=x", "type=oci,dest=x,compression=lz4", "type=tar,dest=" + work, "type=local"} {
		_, stderr, err := s.Kiln("build", "-o", o, ctx)
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Contains(stderr, "RUN") {
			t.Errorf("-o %s: want exit 1 before any step, got %v\n%s", o, err, stderr)
		}
	}
}
