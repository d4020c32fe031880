package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/store/content"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// rawLayer is a layer whose compressed bytes are given as is.
type rawLayer struct {
	compressed, uncompressed []byte
	mt                       types.MediaType
}

func sha(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func (l rawLayer) Digest() (v1.Hash, error) { return sha(l.compressed), nil }
func (l rawLayer) DiffID() (v1.Hash, error) { return sha(l.uncompressed), nil }
func (l rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l rawLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.uncompressed)), nil
}
func (l rawLayer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l rawLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// tarOf makes a tar holding files (name → content).
func tarOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(c))
	}
	tw.Close()
	return buf.Bytes()
}

func newLayer(t testing.TB, comp string, files map[string]string) rawLayer {
	t.Helper()
	u := tarOf(t, files)
	var c bytes.Buffer
	switch comp {
	case "gzip":
		zw := gzip.NewWriter(&c)
		zw.Write(u)
		zw.Close()
		return rawLayer{c.Bytes(), u, types.OCILayer}
	case "zstd":
		zw, _ := zstd.NewWriter(&c)
		zw.Write(u)
		zw.Close()
		return rawLayer{c.Bytes(), u, types.OCILayerZStd}
	case "docker-gzip":
		zw := gzip.NewWriter(&c)
		zw.Write(u)
		zw.Close()
		return rawLayer{c.Bytes(), u, types.DockerLayer}
	}
	return rawLayer{u, u, types.OCIUncompressedLayer}
}

func newImage(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Cmd = []string{"/bin/sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushToRegistry(t testing.TB, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func openStore(t testing.TB) *content.Store {
	t.Helper()
	cs, err := content.Open(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// blobFiles lists everything in blobs/sha256, temp files included.
func blobFiles(t testing.TB, cs *content.Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(cs.Dir(), "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

func TestPullCompressionsAndUpToDate(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	layers := []rawLayer{
		newLayer(t, "none", map[string]string{"a.txt": "plain"}),
		newLayer(t, "gzip", map[string]string{"b.txt": "gzipped"}),
		newLayer(t, "zstd", map[string]string{"c.txt": "zstd'd"}),
		newLayer(t, "docker-gzip", map[string]string{"d.txt": "docker gzip"}),
		newLayer(t, "gzip", map[string]string{"b.txt": "gzipped"}), // the same diffID twice
	}
	var ls []v1.Layer
	for _, l := range layers {
		ls = append(ls, l)
	}
	img := newImage(t, runtime.GOARCH, ls...)
	ref := reg.Ref("team/app:1")
	pushToRegistry(t, ref, img)
	wantDigest, _ := img.Digest()
	rawCfg, _ := img.RawConfigFile()

	cs := openStore(t)
	var progress bytes.Buffer
	res, err := Pull(context.Background(), cs, ref, PullOptions{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != ref || !res.Updated || res.Fetched != 4 {
		t.Errorf("result: name %q updated %v fetched %d", res.Name, res.Updated, res.Fetched)
	}
	if res.Digest.String() != wantDigest.String() || res.RepoDigest != reg.Addr+"/team/app@"+wantDigest.String() {
		t.Errorf("digest %s repo digest %s, want %s", res.Digest, res.RepoDigest, wantDigest)
	}
	// Every layer is stored uncompressed under its diffID; the config byte for byte.
	for i, l := range layers {
		b, err := cs.ReadBlob(digest.FromBytes(l.uncompressed))
		if err != nil || !bytes.Equal(b, l.uncompressed) {
			t.Errorf("layer %d not stored uncompressed: %v", i, err)
		}
	}
	if b, err := cs.ReadBlob(digest.FromBytes(rawCfg)); err != nil || !bytes.Equal(b, rawCfg) {
		t.Errorf("config not kept byte for byte: %v", err)
	}
	si, err := cs.ReadImage(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(si.Manifest.Layers) != 5 || si.Config.Architecture != runtime.GOARCH {
		t.Errorf("stored image: %d layers, arch %s", len(si.Manifest.Layers), si.Config.Architecture)
	}
	desc, err := cs.Resolve(ref)
	if err != nil || desc.Digest != res.Manifest.Digest {
		t.Fatalf("tag: %v %v", desc.Digest, err)
	}
	if desc.Annotations[content.AnnotationRepoDigest] != res.RepoDigest {
		t.Errorf("annotations: %v", desc.Annotations)
	}
	out := progress.String()
	for _, w := range []string{"1: Pulling from team/app", "Pull complete", "Digest: " + wantDigest.String(), "Status: Downloaded newer image for " + ref} {
		if !strings.Contains(out, w) {
			t.Errorf("progress lacks %q:\n%s", w, out)
		}
	}

	// Again: nothing fetched, up to date.
	progress.Reset()
	res, err = Pull(context.Background(), cs, ref, PullOptions{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Updated || res.Fetched != 0 {
		t.Errorf("second pull: updated %v fetched %d", res.Updated, res.Fetched)
	}
	if !strings.Contains(progress.String(), "Already exists") || !strings.Contains(progress.String(), "Status: Image is up to date for "+ref) {
		t.Errorf("second pull progress:\n%s", progress.String())
	}

	// By digest: tagged under the digest name.
	dref := reg.Addr + "/team/app@" + wantDigest.String()
	res, err = Pull(context.Background(), cs, dref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != dref || res.Fetched != 0 {
		t.Errorf("pull by digest: name %s fetched %d", res.Name, res.Fetched)
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	host := newImage(t, runtime.GOARCH, newLayer(t, "gzip", map[string]string{"host": runtime.GOARCH}))
	other := newImage(t, otherArch(), newLayer(t, "gzip", map[string]string{"other": otherArch()}))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch()}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref := reg.Ref("multi:1")
	res := pullIndexWantingImage(t, ref, idx, host)
	idxDigest, _ := idx.Digest()
	if res.Digest.String() != idxDigest.String() {
		t.Errorf("repo digest is %s, want the index's %s", res.Digest, idxDigest)
	}

	// No image for the platform: the error lists what there is.
	_, err := Pull(context.Background(), openStore(t), ref, PullOptions{Arch: "s390x"})
	if err == nil || !strings.Contains(err.Error(), "no image for linux/s390x") ||
		!strings.Contains(err.Error(), "linux/"+runtime.GOARCH) || !strings.Contains(err.Error(), "linux/"+otherArch()) {
		t.Errorf("pull for s390x: %v", err)
	}
}

func TestPullTLSAuth(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Users: map[string]string{"alice": "s3cret"}})
	cfg := Config{CAFiles: []string{reg.CACert}}
	tr, err := cfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	img := newImage(t, runtime.GOARCH, newLayer(t, "gzip", map[string]string{"secret": "data"}))
	ref := reg.Ref("private/app:1")
	pushToRegistry(t, ref, img, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))

	for _, tc := range []struct{ name, user, pass string }{{"wrong password", "alice", "nope"}, {"no credentials", "", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.user != "" {
				dir = testenv.DockerConfig(t, reg.Addr, tc.user, tc.pass)
			}
			t.Setenv("DOCKER_CONFIG", dir)
			cs := openStore(t)
			before := blobFiles(t, cs)
			_, err := Pull(context.Background(), cs, ref, PullOptions{Registry: cfg})
			if err == nil || err.Error() != "pull "+ref+": unauthorized: authentication required" {
				t.Errorf("error: %v", err)
			}
			if after := blobFiles(t, cs); len(after) != len(before) {
				t.Errorf("blobs written: %v", after)
			}
			if imgs, _ := cs.Images(); len(imgs) != 0 {
				t.Errorf("images after a failed pull: %v", imgs)
			}
		})
	}

	t.Run("untrusted CA", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", testenv.DockerConfig(t, reg.Addr, "alice", "s3cret"))
		_, err := Pull(context.Background(), openStore(t), ref, PullOptions{})
		if err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "--registry-ca") {
			t.Errorf("error: %v", err)
		}
	})

	t.Setenv("DOCKER_CONFIG", testenv.DockerConfig(t, reg.Addr, "alice", "s3cret"))
	cs := openStore(t)
	res, err := Pull(context.Background(), cs, ref, PullOptions{Registry: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 1 {
		t.Errorf("fetched %d layers", res.Fetched)
	}
}

func TestPullDiffIDMismatchLeavesNothing(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	good := newLayer(t, "gzip", map[string]string{"x": "1"})
	img := newImage(t, runtime.GOARCH, good)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = sha([]byte("something else"))
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("bad:1")
	pushToRegistry(t, ref, img)
	cs := openStore(t)
	_, err = Pull(context.Background(), cs, ref, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not match rootfs.diff_id") {
		t.Errorf("error: %v", err)
	}
	if files := blobFiles(t, cs); len(files) != 0 {
		t.Errorf("left in the store: %v", files)
	}
	if _, err := cs.Resolve(ref); !errors.Is(err, content.ErrNotFound) {
		t.Errorf("tagged after a failed pull: %v", err)
	}
}

func TestPullCanceledLeavesNoTempFiles(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	img := newImage(t, runtime.GOARCH, newLayer(t, "none", map[string]string{"big": string(big)}))
	ref := reg.Ref("big:1")
	pushToRegistry(t, ref, img)
	cs := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel as soon as the first progress bytes would be written.
	w := writerFunc(func(p []byte) (int, error) { cancel(); return len(p), nil })
	_, err := Pull(ctx, cs, ref, PullOptions{Progress: w})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error: %v", err)
	}
	for _, f := range blobFiles(t, cs) {
		if atomicfile.IsTemp(f) {
			t.Errorf("temp file left: %s", f)
		}
	}
	if imgs, _ := cs.Images(); len(imgs) != 0 {
		t.Errorf("images after a canceled pull: %v", imgs)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestRefusesPlainHTTPToRemoteHosts(t *testing.T) {
	cfg := Config{}
	if cfg.AllowsHTTP("registry.example.com") || cfg.AllowsHTTP("192.168.1.5:5000") {
		t.Error("plain HTTP allowed for a remote host")
	}
	if !cfg.AllowsHTTP("127.0.0.1:5000") || !cfg.AllowsHTTP("localhost:80") || !cfg.AllowsHTTP("[::1]:5000") {
		t.Error("plain HTTP refused for loopback")
	}
	// The transport refuses before sending anything.
	tr, err := cfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://192.168.1.5:5000/v2/", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("plain HTTP to a private address: %v", err)
	}
	cfg.Insecure = []string{"registry.example.com"}
	if !cfg.AllowsHTTP("registry.example.com:5000") {
		t.Error("--insecure-registry host refused")
	}
	r, err := cfg.Parse("registry.example.com/x:1")
	if err != nil || r.Context().Scheme() != "http" {
		t.Errorf("insecure host parses as %v (%v)", r, err)
	}
	r, err = Config{}.Parse("busybox")
	if err != nil || r.Name() != "index.docker.io/library/busybox:latest" {
		t.Errorf("busybox parses as %v (%v)", r, err)
	}
}

func TestPullNestedIndexFollowsThePlatformsPath(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	host := newImage(t, runtime.GOARCH, newLayer(t, "gzip", map[string]string{"host": runtime.GOARCH}))
	other := newImage(t, otherArch(), newLayer(t, "gzip", map[string]string{"other": otherArch()}))
	inner := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	outer := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch()}}},
		mutate.IndexAddendum{Add: inner, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	pullIndexWantingImage(t, reg.Ref("nested:1"), outer, host)
}

// pullIndexWantingImage writes idx to ref, pulls ref into a new store and
// checks that the image stored is want (by its config digest).
func pullIndexWantingImage(t *testing.T, ref string, idx v1.ImageIndex, want v1.Image) *PullResult {
	t.Helper()
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	cs := openStore(t)
	res, err := Pull(context.Background(), cs, ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantID, _ := want.ConfigName()
	si, err := cs.ReadImage(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if si.ID().String() != wantID.String() {
		t.Errorf("pulled config %s, want %s", si.ID(), wantID)
	}
	return res
}
