package content

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobs is an in-memory Fetch that counts what it was asked for.
type blobs struct {
	m       map[digest.Digest][]byte
	fetched []digest.Digest
}

func (b *blobs) add(t *testing.T, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(raw)
	b.m[d] = raw
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(raw))}
}

func (b *blobs) fetch(_ context.Context, desc ocispec.Descriptor) ([]byte, error) {
	b.fetched = append(b.fetched, desc.Digest)
	raw, ok := b.m[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, ErrNotFound)
	}
	return raw, nil
}

func layerDesc(s string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString(s)}
}

// image adds a config and a manifest over the named layers.
func (b *blobs) image(t *testing.T, layers ...string) ocispec.Descriptor {
	t.Helper()
	cfg := b.add(t, ocispec.MediaTypeImageConfig, map[string]any{"architecture": "amd64", "os": "linux", "layers": layers})
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{}}
	for _, l := range layers {
		m.Layers = append(m.Layers, layerDesc(l))
	}
	return b.add(t, ocispec.MediaTypeImageManifest, m)
}

func (b *blobs) index(t *testing.T, ms ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	return b.add(t, ocispec.MediaTypeImageIndex, ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: ms})
}

// visit walks roots and records each node as "role:digest" (layers by
// name), in order.
func visit(t *testing.T, b *blobs, roots []ocispec.Descriptor, fn WalkFunc) ([]string, error) {
	t.Helper()
	names := map[digest.Digest]string{}
	for _, l := range []string{"a", "b", "c", "d"} {
		names[digest.FromString(l)] = l
	}
	var got []string
	err := Walk(context.Background(), b.fetch, roots, func(ctx context.Context, n *Node) error {
		switch n.Role {
		case RoleLayer:
			got = append(got, "layer:"+names[n.Descriptor.Digest])
		case RoleConfig:
			got = append(got, "config")
		default:
			if n.IsIndex(ctx) {
				got = append(got, fmt.Sprintf("index@%d", n.Depth))
			} else {
				got = append(got, fmt.Sprintf("manifest@%d", n.Depth))
			}
		}
		if fn != nil {
			return fn(ctx, n)
		}
		return nil
	})
	return got, err
}

func TestWalkVisitsIndexesManifestsConfigsAndLayersInOrder(t *testing.T) {
	b := &blobs{m: map[digest.Digest][]byte{}}
	one := b.image(t, "a", "b")
	two := b.image(t, "c")
	root := b.index(t, one, b.index(t, two))
	got, err := visit(t, b, []ocispec.Descriptor{root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"index@0", "manifest@1", "config", "layer:a", "layer:b", "index@1", "manifest@2", "config", "layer:c"}
	if !slices.Equal(got, want) {
		t.Errorf("walk order\n got %q\nwant %q", got, want)
	}
}

func TestWalkSkipChildrenSkipsOnlyThatSubtreeAndFetchesNothingOfIt(t *testing.T) {
	b := &blobs{m: map[digest.Digest][]byte{}}
	one := b.image(t, "a")
	two := b.image(t, "b")
	root := b.index(t, one, two)
	got, err := visit(t, b, []ocispec.Descriptor{root}, func(ctx context.Context, n *Node) error {
		if n.Role == RoleManifest && n.Descriptor.Digest == one.Digest {
			return SkipChildren
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"index@0", "manifest@1", "manifest@1", "config", "layer:b"}
	if !slices.Equal(got, want) {
		t.Errorf("walk\n got %q\nwant %q", got, want)
	}
	if slices.Contains(b.fetched, one.Digest) {
		t.Error("the skipped manifest was fetched")
	}
}

func TestWalkStopsAtTheFirstErrorOfTheWalkFunc(t *testing.T) {
	b := &blobs{m: map[digest.Digest][]byte{}}
	stop := errors.New("stop")
	got, err := visit(t, b, []ocispec.Descriptor{b.image(t, "a", "b", "c")}, func(ctx context.Context, n *Node) error {
		if n.Role == RoleLayer && n.Index == 1 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Walk = %v, want the WalkFunc's error", err)
	}
	if want := []string{"manifest@0", "config", "layer:a", "layer:b"}; !slices.Equal(got, want) {
		t.Errorf("walk\n got %q\nwant %q", got, want)
	}
}

func TestWalkEndsWithErrTooDeepBelowMaxDepth(t *testing.T) {
	b := &blobs{m: map[digest.Digest][]byte{}}
	d := b.image(t, "a")
	for range MaxDepth {
		d = b.index(t, d)
	}
	if _, err := visit(t, b, []ocispec.Descriptor{d}, nil); err != nil {
		t.Fatalf("%d nested indexes: %v", MaxDepth, err)
	}
	d = b.index(t, d)
	got, err := visit(t, b, []ocispec.Descriptor{d}, nil)
	if !errors.Is(err, ErrTooDeep) {
		t.Fatalf("%d nested indexes: Walk = %v, want ErrTooDeep", MaxDepth+1, err)
	}
	if slices.Contains(got, "config") {
		t.Error("the manifest below the depth limit was visited")
	}
}

func TestWalkEndsACycleWithErrTooDeep(t *testing.T) {
	// Digests make a real cycle impossible, but a Fetch that does not
	// verify what it returns can serve one.
	b := &blobs{m: map[digest.Digest][]byte{}}
	self := digest.FromString("self")
	raw, _ := json.Marshal(ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageIndex, Digest: self}}})
	b.m[self] = raw
	_, err := visit(t, b, []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageIndex, Digest: self}}, nil)
	if !errors.Is(err, ErrTooDeep) {
		t.Fatalf("Walk of an index listing itself = %v, want ErrTooDeep", err)
	}
}

func TestWalkGoesOnPastMissingAndUnreadableBlobs(t *testing.T) {
	b := &blobs{m: map[digest.Digest][]byte{}}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("missing")}
	garbage := digest.FromString("garbage")
	b.m[garbage] = []byte("not json")
	root := b.index(t, missing, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: garbage}, b.image(t, "d"))
	var errs []error
	got, err := visit(t, b, []ocispec.Descriptor{root}, func(ctx context.Context, n *Node) error {
		if n.Role == RoleManifest && n.Depth == 1 {
			_, err := n.Refs(ctx)
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"index@0", "manifest@1", "manifest@1", "manifest@1", "config", "layer:d"}; !slices.Equal(got, want) {
		t.Errorf("walk\n got %q\nwant %q", got, want)
	}
	if len(errs) != 3 || !errors.Is(errs[0], ErrNotFound) || errs[1] == nil || errs[2] != nil {
		t.Errorf("Refs errors = %v, want not found, a parse error, nil", errs)
	}
}

func TestWalkTellsAnIndexWithoutMediaTypeByItsContent(t *testing.T) {
	b := &blobs{m: map[digest.Digest][]byte{}}
	m := b.image(t, "a")
	idx := b.add(t, "", map[string]any{"schemaVersion": 2, "manifests": []ocispec.Descriptor{m}})
	got, err := visit(t, b, []ocispec.Descriptor{{Digest: idx.Digest}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"index@0", "manifest@1", "config", "layer:a"}; !slices.Equal(got, want) {
		t.Errorf("walk\n got %q\nwant %q", got, want)
	}
}

func TestWalkOverTheStoreFindsStoredImages(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := s.Write(ctx, strings.NewReader("layer"), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := s.WriteJSON(map[string]string{"os": "linux"}, ocispec.MediaTypeImageConfig)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.WriteManifest(cfg, []ocispec.Descriptor{l}, ocispec.Platform{OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []digest.Digest
	err = Walk(ctx, s.FetchBlobs, []ocispec.Descriptor{m}, func(ctx context.Context, n *Node) error {
		seen = append(seen, n.Descriptor.Digest)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []digest.Digest{m.Digest, cfg.Digest, l.Digest}; !slices.Equal(seen, want) {
		t.Errorf("walk = %v, want %v", seen, want)
	}
}
