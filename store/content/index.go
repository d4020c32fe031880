package content

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store/lock"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Annotations naming a manifest in index.json, as containerd and docker
// write them, so that other tools see the same names.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = ocispec.AnnotationRefName
	// AnnotationRepoDigest records where a pulled image came from:
	// "REPOSITORY@sha256:..." with the manifest (or index) digest in that
	// registry, which is what docker shows as RepoDigests.
	AnnotationRepoDigest = "io.kiln.repo.digest"
)

// Image is one entry of index.json: a manifest and the name it is tagged as
// ("" for a dangling image, which docker shows as <none>:<none>).
type Image struct {
	Name       string
	Descriptor ocispec.Descriptor
}

func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

// Images lists index.json. Readers never lock: index.json is replaced
// atomically, so they see the old or the new index, never a mix.
func (s *Store) Images() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		out = append(out, Image{Name: d.Annotations[AnnotationImageName], Descriptor: d})
	}
	return out, nil
}

// Resolve returns the manifest descriptor tagged as name.
func (s *Store) Resolve(name string) (ocispec.Descriptor, error) {
	imgs, err := s.Images()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, im := range imgs {
		if im.Name == name {
			return im.Descriptor, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("image %q: %w", name, ErrNotFound)
}

// Tag points name at desc. The image name previously held by name keeps an
// untagged (dangling) entry if no other name refers to it, like docker.
// Idempotent; atomic.
func (s *Store) Tag(name string, desc ocispec.Descriptor) error {
	return s.TagWith(name, desc, nil)
}

// TagWith is Tag with extra annotations on the new index entry (such as
// AnnotationRepoDigest); desc's own annotations are not kept.
func (s *Store) TagWith(name string, desc ocispec.Descriptor, extra map[string]string) error {
	return s.updateIndex(func(idx *ocispec.Index) {
		idx.Manifests = untag(idx.Manifests, name, true)
		idx.Manifests = removeDangling(idx.Manifests, desc.Digest)
		d := desc
		d.Annotations = map[string]string{}
		for k, v := range extra {
			d.Annotations[k] = v
		}
		d.Annotations[AnnotationImageName] = name
		d.Annotations[AnnotationRefName] = refName(name)
		idx.Manifests = append(idx.Manifests, d)
	})
}

// RecordRepoDigest notes on name's entry, if name (as a user typed it)
// still points at manifest m, that the image is repoDigest
// ("REPOSITORY@sha256:...") in a registry now, like docker after a push
// (RepoDigests). It does nothing for a name that is not a tag of m.
func (s *Store) RecordRepoDigest(name string, m digest.Digest, repoDigest string) error {
	full, err := NormalizeName(name)
	if err != nil {
		return nil
	}
	cur, err := s.Resolve(full)
	if err != nil || cur.Digest != m {
		return nil
	}
	return s.TagWith(full, cur, map[string]string{AnnotationRepoDigest: repoDigest})
}

// AddUntagged records an image with no name (a build without -t), unless
// the manifest is already in the index.
func (s *Store) AddUntagged(desc ocispec.Descriptor) error {
	return s.updateIndex(func(idx *ocispec.Index) {
		for _, d := range idx.Manifests {
			if d.Digest == desc.Digest {
				return
			}
		}
		d := desc
		d.Annotations = nil
		idx.Manifests = append(idx.Manifests, d)
	})
}

// Untag removes name. The image stays (dangling) when keepImage is set and
// nothing else names it; otherwise its last entry goes too.
func (s *Store) Untag(name string, keepImage bool) error {
	found := false
	err := s.updateIndex(func(idx *ocispec.Index) {
		for _, m := range idx.Manifests {
			if m.Annotations[AnnotationImageName] == name {
				found = true
			}
		}
		idx.Manifests = untag(idx.Manifests, name, keepImage)
	})
	if err == nil && !found {
		return fmt.Errorf("image %q: %w", name, ErrNotFound)
	}
	return err
}

// RemoveImage drops every entry (tagged or not) for the manifest digest.
func (s *Store) RemoveImage(d digest.Digest) error {
	return s.updateIndex(func(idx *ocispec.Index) {
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if m.Digest != d {
				out = append(out, m)
			}
		}
		idx.Manifests = out
	})
}

func untag(ms []ocispec.Descriptor, name string, keepDangling bool) []ocispec.Descriptor {
	var old digest.Digest
	out := make([]ocispec.Descriptor, 0, len(ms)+1)
	for _, m := range ms {
		if m.Annotations[AnnotationImageName] == name {
			old = m.Digest
			continue
		}
		out = append(out, m)
	}
	if old == "" || !keepDangling {
		return out
	}
	for _, m := range out {
		if m.Digest == old {
			return out
		}
	}
	for _, m := range ms {
		if m.Digest == old {
			d := m
			d.Annotations = nil
			return append(out, d)
		}
	}
	return out
}

func removeDangling(ms []ocispec.Descriptor, d digest.Digest) []ocispec.Descriptor {
	out := ms[:0]
	for _, m := range ms {
		if m.Digest == d && m.Annotations[AnnotationImageName] == "" {
			continue
		}
		out = append(out, m)
	}
	return out
}

// refName is the tag part of a name, which is what the OCI layout's
// ref.name annotation conventionally holds.
func refName(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return "latest"
}

func (s *Store) readIndex() (*ocispec.Index, error) {
	b, err := os.ReadFile(s.indexPath())
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", s.indexPath(), err)
	}
	return &idx, nil
}

func (s *Store) writeIndex(idx *ocispec.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.indexPath(), b, 0o644)
}

// updateIndex runs a read-modify-write of index.json under an exclusive
// flock, so concurrent taggers do not lose each other's updates.
func (s *Store) updateIndex(fn func(*ocispec.Index)) error {
	return s.UpdateIndex(func(idx *ocispec.Index) error { fn(idx); return nil })
}

// UpdateIndex applies fn to index.json as one read-modify-write under the
// index lock, for changes that must decide on what the index holds at that
// moment (rmi, repair). Atomic: if fn returns an error nothing is written,
// and readers see the old or the new index, never a mix.
func (s *Store) UpdateIndex(fn func(*ocispec.Index) error) error {
	lf, err := lock.Open(filepath.Join(s.dir, "index.lock"), 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := lf.Lock(lock.Exclusive); err != nil {
		return err
	}
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		return err
	}
	return s.writeIndex(idx)
}
