package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/store/content"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testImage stores a small two-layer image in a new content store.
func testImage(t *testing.T) (*content.Store, ocispec.Descriptor, []digest.Digest) {
	t.Helper()
	cs, err := content.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	for i, body := range []string{"first layer\n", strings.Repeat("second layer, compressible\n", 5000)} {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)})
		tw.Write([]byte(body))
		tw.Close()
		d, err := cs.Write(context.Background(), bytes.NewReader(b.Bytes()), "")
		if err != nil {
			t.Fatal(err)
		}
		d.MediaType = ocispec.MediaTypeImageLayer
		layers = append(layers, d)
		diffIDs = append(diffIDs, d.Digest)
	}
	var cfg dockerspec.DockerOCIImage
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}
	desc, err := cs.WriteImage(cfg, layers)
	if err != nil {
		t.Fatal(err)
	}
	return cs, desc, diffIDs
}

func TestSourcesNewestFirstDedupedAndBounded(t *testing.T) {
	cs, _, diffIDs := testImage(t)
	d := diffIDs[0]
	if got := Sources(cs, d, ""); len(got) != 0 {
		t.Fatalf("no records yet, got %v", got)
	}
	base := time.Unix(1000, 0)
	for i := 0; i < 20; i++ {
		if err := RememberSources(cs, d, Source{Registry: "r:5000", Repository: fmt.Sprintf("repo%d", i), Digest: digest.FromString("x"), Time: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	// Seen again, later: moves to the front instead of being added twice.
	RememberSources(cs, d, Source{Registry: "r:5000", Repository: "repo19", Digest: digest.FromString("x"), Time: base.Add(time.Hour)})
	RememberSources(cs, d, Source{Registry: "other:1", Repository: "elsewhere", Digest: digest.FromString("y")})
	got := Sources(cs, d, "r:5000")
	if len(got) != maxSources-1 || got[0].Repository != "repo19" || got[1].Repository != "repo18" {
		t.Fatalf("sources: %d, first %+v", len(got), got[:2])
	}
	if all := Sources(cs, d, ""); len(all) != maxSources || all[0].Registry != "other:1" {
		t.Errorf("all registries: %d, first %+v", len(all), all[0])
	}
	if got := Sources(cs, diffIDs[1], ""); len(got) != 0 {
		t.Errorf("another layer has records: %v", got)
	}
}

func TestExplainNetworkErrorsInOneLine(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("Post \"http://h/v2/x/blobs/uploads/?_state=abc\": dial tcp: %w", syscall.ECONNREFUSED), "cannot connect to the registry at h:1: connection refused"},
		{fmt.Errorf("Patch \"http://h/...\": write: %w", syscall.EPIPE), "connection to the registry at h:1 lost (broken pipe)"},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), "connection to the registry at h:1 lost (unexpected EOF)"},
		{errors.New("something else"), "something else"},
	}
	for _, c := range cases {
		if got := explain(c.err, "h:1").Error(); got != c.want {
			t.Errorf("explain(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	// Already explained errors pass unchanged.
	e := explain(fmt.Errorf("x: %w", syscall.ECONNREFUSED), "h:1")
	if got := explain(fmt.Errorf("upload interrupted: %w", e), "h:1").Error(); got != "upload interrupted: cannot connect to the registry at h:1: connection refused" {
		t.Errorf("re-explained: %q", got)
	}
}

func TestPushReusesRegistryBlobsWithoutCompressing(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	ctx := context.Background()

	// Store A pushes: layers compressed (and remembered), all uploaded.
	a, desc, diffIDs := testImage(t)
	res, err := Push(ctx, a, desc, reg.Ref("a/x:1"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pushed != 2 || res.Existed != 0 || res.Mounted != 0 {
		t.Fatalf("first push: %+v", res)
	}
	gz := compression.Options{Algorithm: compression.Gzip, Level: compression.DefaultGzipLevel}
	var blobs []ocispec.Descriptor
	for _, d := range diffIDs {
		c, ok := compression.New(a).Lookup(d, gz)
		if !ok {
			t.Fatalf("layer %s: compression not remembered", d)
		}
		blobs = append(blobs, c)
	}
	// Again: nothing is sent; the manifest is the same.
	res2, err := Push(ctx, a, desc, reg.Ref("a/x:1"), PushOptions{})
	if err != nil || res2.Existed != 2 || res2.Digest != res.Digest {
		t.Fatalf("second push: %+v, %v", res2, err)
	}

	// Store B has the same image but no compressed copy, only the note
	// that the registry holds the layers in a/x (what a pull records).
	b, descB, _ := testImage(t)
	if descB.Digest != desc.Digest {
		t.Fatalf("the two stores differ: %s %s", descB.Digest, desc.Digest)
	}
	for i, d := range diffIDs {
		RememberSources(b, d, Source{Registry: reg.Addr, Repository: "a/x", Digest: blobs[i].Digest, Size: blobs[i].Size, MediaType: blobs[i].MediaType})
	}
	var progress bytes.Buffer
	res3, err := Push(ctx, b, descB, reg.Ref("b/y:2"), PushOptions{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res3.Mounted != 2 || res3.Digest != res.Digest {
		t.Errorf("push from B: %+v (A's manifest %s)\n%s", res3, res.Digest, progress.String())
	}
	if strings.Count(progress.String(), ": Mounted from a/x") != 2 {
		t.Errorf("progress:\n%s", progress.String())
	}
	for _, d := range diffIDs {
		if _, ok := compression.New(b).Lookup(d, gz); ok {
			t.Errorf("layer %s was compressed in B although the registry has it", d)
		}
	}

	// force-compression compresses anyway (kiln's gzip is deterministic:
	// the same blobs, which the repository then has).
	res4, err := Push(ctx, b, descB, reg.Ref("b/y:2"), PushOptions{ForceCompression: true})
	if err != nil || res4.Existed != 2 || res4.Digest != res.Digest {
		t.Errorf("forced push: %+v, %v", res4, err)
	}
	for _, d := range diffIDs {
		if _, ok := compression.New(b).Lookup(d, gz); !ok {
			t.Errorf("layer %s not compressed by a forced push", d)
		}
	}

	// A note about a blob the registry lost is only a hint: the layer is
	// compressed and uploaded.
	c, descC, _ := testImage(t)
	for _, d := range diffIDs {
		RememberSources(c, d, Source{Registry: reg.Addr, Repository: "gone/repo", Digest: digest.FromString("lost " + d.String()), Size: 10, MediaType: ocispec.MediaTypeImageLayerGzip})
	}
	res5, err := Push(ctx, c, descC, reg.Ref("c/z:3"), PushOptions{})
	if err != nil || res5.Pushed+res5.Mounted+res5.Existed != 2 || res5.Digest != res.Digest {
		t.Errorf("push with stale notes: %+v, %v", res5, err)
	}
	if _, err := os.Stat(reg.Dir); err != nil {
		t.Fatal(err)
	}
}
