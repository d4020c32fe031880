package compression

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/store/content"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParse(t *testing.T) {
	cases := []struct {
		alg, level string
		want       Options
		err        string
	}{
		{"", "", Options{Gzip, 6}, ""},
		{"gzip", "", Options{Gzip, 6}, ""},
		{"GZIP", "9", Options{Gzip, 9}, ""},
		{"gzip", "0", Options{Gzip, 0}, ""},
		{"zstd", "", Options{Zstd, 3}, ""},
		{"zstd", "19", Options{Zstd, 19}, ""},
		{"uncompressed", "", Options{Uncompressed, 0}, ""},
		{"gzip", "10", Options{}, "gzip levels are 0 to 9"},
		{"zstd", "0", Options{}, "zstd levels are 1 to 22"},
		{"zstd", "x", Options{}, "not a number"},
		{"uncompressed", "3", Options{}, "no level"},
		{"estargz", "", Options{}, "not supported"},
		{"lz4", "", Options{}, "unknown compression"},
	}
	for _, c := range cases {
		got, err := Parse(c.alg, c.level)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%q, %q) = %v, %v; want error %q", c.alg, c.level, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Parse(%q, %q) = %v, %v; want %v", c.alg, c.level, got, err, c.want)
		}
	}
	for o, mt := range map[Options]string{
		{Gzip, 6}:         ocispec.MediaTypeImageLayerGzip,
		{Zstd, 3}:         ocispec.MediaTypeImageLayerZstd,
		{Uncompressed, 0}: ocispec.MediaTypeImageLayer,
	} {
		if o.MediaType() != mt {
			t.Errorf("%v: media type %s", o, o.MediaType())
		}
	}
}

// testData is a few MiB, half random (incompressible) and half repetitive,
// so that pgzip and zstd cut it into several blocks and jobs.
func testData() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 9<<20+12345)
	for i := range b {
		if (i>>20)%2 == 0 {
			b[i] = byte(r.Uint32())
		} else {
			b[i] = "kiln layer "[i%11]
		}
	}
	return b
}

func compress(t *testing.T, data []byte, o Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, bytes.NewReader(data), o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The output must not depend on the number of CPUs: the digest of a
// compressed layer is the same on every machine.
func TestWriteIsDeterministicAndRoundTrips(t *testing.T) {
	data := testData()
	for _, o := range []Options{{Gzip, 6}, {Gzip, 1}, {Zstd, 3}, {Zstd, 19}} {
		var outs [][]byte
		for _, procs := range []int{1, 2, 7} {
			prev := runtime.GOMAXPROCS(procs)
			outs = append(outs, compress(t, data, o))
			runtime.GOMAXPROCS(prev)
		}
		for i := 1; i < len(outs); i++ {
			if !bytes.Equal(outs[0], outs[i]) {
				t.Errorf("%v: output differs with another GOMAXPROCS", o)
			}
		}
		var r io.Reader
		switch o.Algorithm {
		case Gzip:
			zr, err := gzip.NewReader(bytes.NewReader(outs[0]))
			if err != nil {
				t.Fatal(err)
			}
			if zr.Name != "" || !zr.ModTime.IsZero() && zr.ModTime.Unix() != 0 {
				t.Errorf("gzip header: name %q mtime %v", zr.Name, zr.ModTime)
			}
			r = zr
		case Zstd:
			zr, err := zstd.NewReader(bytes.NewReader(outs[0]))
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			r = zr
		}
		back, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(back, data) {
			t.Errorf("%v: round trip: %v, %d bytes back of %d", o, err, len(back), len(data))
		}
		if len(outs[0]) >= len(data) {
			t.Errorf("%v: %d bytes compressed to %d", o, len(data), len(outs[0]))
		}
	}
	// gzip header bytes: magic, deflate, no flags, mtime 0.
	if h := compress(t, []byte("x"), Options{Gzip, 6})[:8]; !bytes.Equal(h, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}) {
		t.Errorf("gzip header % x", h)
	}
}

func TestCacheCompressesOnceAndRecoversFromAMissingBlob(t *testing.T) {
	cs, err := content.Open(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := testData()[:3<<20]
	layer, err := cs.Write(ctx, bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	c := New(cs)
	o := Options{Gzip, 6}
	if _, ok := c.Lookup(layer.Digest, o); ok {
		t.Fatal("lookup before any compression")
	}
	d1, err := c.Compress(ctx, layer.Digest, o)
	if err != nil {
		t.Fatal(err)
	}
	if d1.MediaType != ocispec.MediaTypeImageLayerGzip || d1.Digest == layer.Digest {
		t.Errorf("descriptor %+v", d1)
	}
	if b, err := cs.ReadBlob(d1.Digest); err != nil || !bytes.Equal(b, compress(t, data, o)) || int64(len(b)) != d1.Size {
		t.Errorf("compressed blob: %v", err)
	}
	mapping := filepath.Join(cs.Dir(), "compressed", "gzip-6", layer.Digest.Encoded())
	if c.MappingPath(layer.Digest, o) != mapping {
		t.Errorf("mapping path %s", c.MappingPath(layer.Digest, o))
	}
	if m, err := os.ReadFile(mapping); err != nil || strings.TrimSpace(string(m)) != d1.Digest.String() {
		t.Fatalf("mapping: %q %v", m, err)
	}
	st1, _ := os.Stat(mapping)

	// Remembered: the mapping is not rewritten, the blob not remade.
	d2, err := c.Compress(ctx, layer.Digest, o)
	if err != nil || !reflect.DeepEqual(d2, d1) {
		t.Errorf("second compress %+v %v, first %+v", d2, err, d1)
	}
	if st2, _ := os.Stat(mapping); !st2.ModTime().Equal(st1.ModTime()) {
		t.Errorf("mapping rewritten")
	}

	// Another level is another mapping.
	d3, err := c.Compress(ctx, layer.Digest, Options{Gzip, 1})
	if err != nil || d3.Digest == d1.Digest {
		t.Errorf("level 1: %+v %v", d3, err)
	}
	if _, err := os.Stat(filepath.Join(cs.Dir(), "compressed", "gzip-1", layer.Digest.Encoded())); err != nil {
		t.Error(err)
	}

	// The blob gone (a GC): compressed again, to the same digest.
	cs.Delete(d1.Digest)
	if _, ok := c.Lookup(layer.Digest, o); ok {
		t.Error("lookup finds a mapping whose blob is gone")
	}
	d4, err := c.Compress(ctx, layer.Digest, o)
	if err != nil || !reflect.DeepEqual(d4, d1) {
		t.Errorf("after delete: %+v %v, want %+v", d4, err, d1)
	}

	// Uncompressed is the layer itself; nothing is written.
	d5, err := c.Compress(ctx, layer.Digest, Options{Algorithm: Uncompressed})
	if err != nil || d5.Digest != layer.Digest || d5.MediaType != ocispec.MediaTypeImageLayer || d5.Size != int64(len(data)) {
		t.Errorf("uncompressed: %+v %v", d5, err)
	}

	// A missing layer, and a damaged one, are errors that leave nothing.
	if _, err := c.Compress(ctx, digest.FromString("nope"), o); err == nil {
		t.Error("missing layer compressed")
	}
	bad := digest.FromString("something else")
	os.WriteFile(cs.BlobPath(bad), data[:1000], 0o444)
	if _, err := c.Compress(ctx, bad, o); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("damaged layer: %v", err)
	}
	if _, err := os.Stat(c.MappingPath(bad, o)); !os.IsNotExist(err) {
		t.Errorf("mapping written for a damaged layer")
	}

	// A cancelled context stops a compression without leaving a mapping.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Compress(cctx, layer.Digest, Options{Zstd, 5}); err == nil {
		t.Error("compression ran with a cancelled context")
	}
	if _, err := os.Stat(c.MappingPath(layer.Digest, Options{Zstd, 5})); !os.IsNotExist(err) {
		t.Error("mapping left by a cancelled compression")
	}
	ents, _ := os.ReadDir(filepath.Join(cs.Dir(), "blobs", "sha256"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}
