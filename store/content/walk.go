package content

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The one reference walk: from a root descriptor (an index.json entry, an
// archive's index, a registry's manifest list) through nested indexes to
// image manifests, and from each manifest to its config and layers. Every
// "what does this refer to" question asks it — usage and GC, kiln doctor,
// the image list, load and pull — each with its own Fetch: the store's
// blobs, a tar being loaded, a registry.

// MaxDepth is how many indexes may nest below a root: a manifest listed
// that deep ends the walk with ErrTooDeep.
const MaxDepth = 8

// SkipChildren, returned by a WalkFunc, skips what the node refers to
// (like filepath.SkipDir). The walk goes on with the node's siblings.
var SkipChildren = errors.New("skip the children of this descriptor")

// ErrTooDeep ends a walk through indexes nested deeper than MaxDepth (or
// an index that lists itself).
var ErrTooDeep = errors.New("nested too deep")

// Fetch returns the bytes of the blob desc names. It is only called for
// nodes whose bytes the walk or its WalkFunc needs: an index or manifest
// whose children are walked, and a blob the WalkFunc asks for.
type Fetch func(ctx context.Context, desc ocispec.Descriptor) ([]byte, error)

// Role says what a node is to its parent.
type Role int

const (
	// RoleManifest: a root, or what an index lists — an image manifest or
	// another index.
	RoleManifest Role = iota
	// RoleConfig: a manifest's config.
	RoleConfig
	// RoleLayer: one of a manifest's layers.
	RoleLayer
)

// WalkFunc is called for each node, parents before their children. It
// returns SkipChildren to leave out what the node refers to, another error
// to end the walk with it, or nil.
type WalkFunc func(ctx context.Context, n *Node) error

// Node is one descriptor the walk reached.
type Node struct {
	Descriptor ocispec.Descriptor
	Role       Role
	Parent     *Node // nil for a root
	// Depth counts the indexes above the node.
	Depth int
	// Index is the position among the parent's manifests or layers.
	Index int

	fetch   Fetch
	fetched bool
	blob    []byte
	err     error
	refs    *Refs
	refsErr error
}

// Refs is what an index or a manifest refers to.
type Refs struct {
	MediaType string               `json:"mediaType"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

// Blob fetches the node's bytes, once.
func (n *Node) Blob(ctx context.Context) ([]byte, error) {
	if !n.fetched {
		n.blob, n.err = n.fetch(ctx, n.Descriptor)
		n.fetched = true
	}
	return n.blob, n.err
}

// Refs reads what the node (an index or manifest) refers to.
func (n *Node) Refs(ctx context.Context) (*Refs, error) {
	if n.refs != nil || n.refsErr != nil {
		return n.refs, n.refsErr
	}
	b, err := n.Blob(ctx)
	if err != nil {
		return nil, err
	}
	var r Refs
	if err := json.Unmarshal(b, &r); err != nil {
		n.refsErr = err
		return nil, err
	}
	n.refs = &r
	return n.refs, nil
}

// IsIndex reports whether the node is an index (manifest list): by its
// descriptor's media type, else by its content's.
func (n *Node) IsIndex(ctx context.Context) bool {
	if mt := n.Descriptor.MediaType; mt != "" {
		return IsIndexType(mt)
	}
	r, err := n.Refs(ctx)
	if err != nil {
		return false
	}
	return IsIndexType(r.MediaType) || r.MediaType == "" && r.Manifests != nil
}

// IsIndexType reports whether mt is an OCI index's or a docker manifest
// list's media type.
func IsIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

// Walk visits roots and, depth first, what each refers to. An index or
// manifest whose bytes cannot be fetched or parsed has no children: fn
// sees the error from Blob or Refs if it asks. The walk stops at the first
// error fn returns (other than SkipChildren), at ErrTooDeep and when ctx
// ends.
func Walk(ctx context.Context, fetch Fetch, roots []ocispec.Descriptor, fn WalkFunc) error {
	for i, r := range roots {
		if err := walk(ctx, &Node{Descriptor: r, Role: RoleManifest, Index: i, fetch: fetch}, fn); err != nil {
			return err
		}
	}
	return nil
}

func walk(ctx context.Context, n *Node, fn WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.Depth > MaxDepth {
		return fmt.Errorf("index %s: %w", n.Parent.Descriptor.Digest, ErrTooDeep)
	}
	switch err := fn(ctx, n); {
	case errors.Is(err, SkipChildren):
		return nil
	case err != nil:
		return err
	}
	if n.Role != RoleManifest {
		return nil
	}
	r, err := n.Refs(ctx)
	if err != nil {
		return nil
	}
	child := func(d ocispec.Descriptor, role Role, depth, i int) *Node {
		return &Node{Descriptor: d, Role: role, Parent: n, Depth: depth, Index: i, fetch: n.fetch}
	}
	if n.IsIndex(ctx) {
		for i, m := range r.Manifests {
			if err := walk(ctx, child(m, RoleManifest, n.Depth+1, i), fn); err != nil {
				return err
			}
		}
		return nil
	}
	if r.Config != nil {
		if err := walk(ctx, child(*r.Config, RoleConfig, n.Depth, 0), fn); err != nil {
			return err
		}
	}
	for i, l := range r.Layers {
		if err := walk(ctx, child(l, RoleLayer, n.Depth, i), fn); err != nil {
			return err
		}
	}
	return nil
}

// FetchBlobs is a Fetch over the store's blobs, verified against their
// digests.
func (s *Store) FetchBlobs(_ context.Context, desc ocispec.Descriptor) ([]byte, error) {
	return s.ReadBlob(desc.Digest)
}

// FetchBlobsUnverified is a Fetch over the store's blobs that reads them as
// they are, for walks that must find what a damaged image still refers to.
func (s *Store) FetchBlobsUnverified(_ context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, err
	}
	return os.ReadFile(s.BlobPath(desc.Digest))
}
