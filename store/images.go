package store

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The image model: index.json entries (one per name, plus untagged ones)
// seen as docker sees images — one image per ID (config digest) with every
// name that refers to it, found by name, ID or ID prefix, and removed by
// docker's rules.

// Image is one image as docker lists it: an image ID (config digest) with
// every name that refers to it, whichever manifests they point at.
type Image struct {
	ID          digest.Digest
	Image       *content.StoredImage // read from the first manifest seen
	Manifests   []digest.Digest
	Names       []string // full names: tags and NAME@DIGEST references
	RepoDigests []string // REPOSITORY@DIGEST a pulled image came from
	Created     time.Time
	HasCreated  bool
	Size        int64 // layer contents; set by the caller that measures it
}

// Tags are the image's tagged names, familiar form ("app:1").
func (im *Image) Tags() []string {
	var out []string
	for _, n := range im.Names {
		if ref, err := reference.ParseNormalizedNamed(n); err == nil {
			if _, ok := ref.(reference.NamedTagged); ok {
				out = append(out, reference.FamiliarString(ref))
			}
		}
	}
	return out
}

// Images reads index.json into images, newest first. An entry whose
// manifest or config cannot be read is reported to warn (if not nil) and
// skipped, so a damaged image does not hide the others.
func (s *Store) Images(warn func(string)) ([]*Image, error) {
	entries, err := s.Content.Images()
	if err != nil {
		return nil, err
	}
	read := map[digest.Digest]*content.StoredImage{}
	byID := map[digest.Digest]*Image{}
	var out []*Image
	for _, e := range entries {
		d := e.Descriptor.Digest
		si, seen := read[d]
		if !seen {
			si, err = s.Content.ReadImage(e.Descriptor)
			if err != nil {
				si = nil
				if warn != nil {
					name := "<none>"
					if e.Name != "" {
						name = content.FamiliarName(e.Name)
					}
					warn(fmt.Sprintf("image %s (manifest %s) is damaged: %v (run kiln doctor)", name, d, err))
				}
			}
			read[d] = si
		}
		if si == nil {
			continue
		}
		im := byID[si.ID()]
		if im == nil {
			im = &Image{ID: si.ID(), Image: si}
			if si.Config.Created != nil {
				im.Created, im.HasCreated = *si.Config.Created, true
			}
			byID[im.ID] = im
			out = append(out, im)
		}
		if !slices.Contains(im.Manifests, d) {
			im.Manifests = append(im.Manifests, d)
		}
		if e.Name != "" && !slices.Contains(im.Names, e.Name) {
			im.Names = append(im.Names, e.Name)
		}
		if rd := e.Descriptor.Annotations[content.AnnotationRepoDigest]; rd != "" && !slices.Contains(im.RepoDigests, rd) {
			im.RepoDigests = append(im.RepoDigests, rd)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// LookupImage resolves what a user typed — a name, a full or short image
// ID (config digest), or a manifest digest — to a stored image.
func (s *Store) LookupImage(ref string) (*content.StoredImage, error) {
	if name, err := content.NormalizeName(ref); err == nil {
		if desc, err := s.Content.Resolve(name); err == nil {
			return s.Content.ReadImage(desc)
		}
	}
	imgs, err := s.Images(nil)
	if err != nil {
		return nil, err
	}
	im, err := FindImage(imgs, ref)
	if err != nil {
		return nil, err
	}
	return im.Image, nil
}

// LookupImageNamed finds ref as LookupImage does, with the names the image
// keeps when written out under ref (save): ref's full name when it is a name
// of that very manifest, none when ref is an image ID or a digest.
func (s *Store) LookupImageNamed(ref string) (*content.StoredImage, []string, error) {
	si, err := s.LookupImage(ref)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	if name, err := content.NormalizeName(ref); err == nil {
		if d, err := s.Content.Resolve(name); err == nil && d.Digest == si.ManifestDesc.Digest {
			names = []string{name}
		}
	}
	return si, names, nil
}

// AddImage makes desc, a manifest already in the content store (import
// writes one), an image: named name (a full tagged name, see
// content.NormalizeTag), or without a name when name is "". It returns the
// image as stored.
func (s *Store) AddImage(desc ocispec.Descriptor, name string) (*content.StoredImage, error) {
	if name != "" {
		if err := s.Content.Tag(name, desc); err != nil {
			return nil, err
		}
	} else if err := s.Content.AddUntagged(desc); err != nil {
		return nil, err
	}
	return s.Content.ReadImage(desc)
}

var hexPrefix = regexp.MustCompile(`^(sha256:)?[0-9a-f]{1,64}$`)

// FindImage finds what a user typed among imgs: a name (tag or
// NAME@DIGEST), a full image ID or an unambiguous prefix of one (docker
// accepts any length), or a full manifest digest. An ambiguous prefix is an
// error naming the images it matches.
func FindImage(imgs []*Image, ref string) (*Image, error) {
	if name, err := content.NormalizeName(ref); err == nil {
		for _, im := range imgs {
			if slices.Contains(im.Names, name) {
				return im, nil
			}
		}
	}
	if !hexPrefix.MatchString(ref) {
		return nil, fmt.Errorf("no such image: %s", ref)
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	var found []*Image
	for _, im := range imgs {
		if strings.HasPrefix(im.ID.Encoded(), hex) {
			found = append(found, im)
			continue
		}
		for _, m := range im.Manifests {
			if m.Encoded() == hex {
				found = append(found, im)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no such image: %s", ref)
	case 1:
		return found[0], nil
	}
	var desc []string
	for _, im := range found {
		d := ShortID(string(im.ID))
		if tags := im.Tags(); len(tags) > 0 {
			d += " (" + strings.Join(tags, ", ") + ")"
		}
		desc = append(desc, d)
	}
	return nil, fmt.Errorf("image ID prefix %q is ambiguous: it matches %s", ref, strings.Join(desc, ", "))
}

// ShortID is docker's short form of an ID: its first 12 hex digits.
func ShortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// RemoveImage follows docker's ImageDelete: a name is untagged, and the
// image deleted when that was its last name; an ID (or unambiguous
// prefix) deletes the image with all its names, but only with force when
// several repositories refer to it. The decision is taken and applied in
// one update of index.json, so a concurrent build tagging the same image
// never loses its tag to a stale view. It returns what it did as docker
// prints it ("Untagged: app:1", "Deleted: sha256:…"). Layers and cache stay
// until prune or GC collects them.
func (s *Store) RemoveImage(ref string, force bool) ([]string, error) {
	imgs, err := s.Images(nil)
	if err != nil {
		return nil, err
	}
	target, err := FindImage(imgs, ref)
	if err != nil {
		return nil, err
	}
	byName := ""
	if name, err := content.NormalizeName(ref); err == nil && !isIDPrefix(target.ID, ref) {
		for _, n := range target.Names {
			if n == name {
				byName = name
			}
		}
	}
	configs := map[digest.Digest]digest.Digest{} // manifest → image ID
	for _, im := range imgs {
		for _, m := range im.Manifests {
			configs[m] = im.ID
		}
	}
	configOf := func(m digest.Digest) digest.Digest {
		if id, ok := configs[m]; ok {
			return id
		}
		configs[m] = s.configOf(m)
		return configs[m]
	}

	user, userRunning := s.containerUsing(target.ID)
	var lines []string
	err = s.Content.UpdateIndex(func(idx *ocispec.Index) error {
		lines = nil
		id := target.ID
		var keep []ocispec.Descriptor
		var names []string // of the image, in the index now
		for _, m := range idx.Manifests {
			if n := m.Annotations[content.AnnotationImageName]; n != "" && configOf(m.Digest) == id {
				names = append(names, n)
			}
		}
		if byName != "" {
			// As docker: the last name of an image a container uses is
			// only removed with force, so the image does not turn
			// dangling under the container unasked.
			if !force && user != nil && singleReference(names) {
				return fmt.Errorf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s",
					ref, user.ShortID(), ShortID(string(id)))
			}
			found := false
			for _, m := range idx.Manifests {
				if m.Annotations[content.AnnotationImageName] == byName {
					found = true
					continue
				}
				keep = append(keep, m)
			}
			if !found {
				return fmt.Errorf("no such image: %s", ref)
			}
			lines = append(lines, "Untagged: "+content.FamiliarName(byName))
			names = without(names, byName)
			// As docker: once no tag of that repository is left, the
			// repository's digest references go too.
			if repo, tagged := repoOf(byName); tagged {
				if !hasTagIn(names, repo) {
					for _, n := range names {
						if r, t := repoOf(n); r == repo && !t {
							keep = removeName(keep, n)
							names = without(names, n)
							lines = append(lines, "Untagged: "+content.FamiliarName(n))
						}
					}
				}
			}
			if len(names) > 0 {
				idx.Manifests = keep
				return nil
			}
			if userRunning {
				// The name goes; the image a running container uses
				// stays, without a name (docker's quiet conflict).
				var others []ocispec.Descriptor
				for _, m := range keep {
					if configOf(m.Digest) != id {
						others = append(others, m)
					}
				}
				idx.Manifests = append(others, unnamed(idx.Manifests, id, configOf)...)
				return nil
			}
		} else {
			if !force && !singleReference(names) {
				var fam []string
				for _, n := range names {
					fam = append(fam, content.FamiliarName(n))
				}
				return fmt.Errorf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories: %s",
					ShortID(string(id)), strings.Join(fam, ", "))
			}
			if user != nil {
				if userRunning {
					return fmt.Errorf("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s",
						ShortID(string(id)), user.ShortID())
				}
				if !force {
					return fmt.Errorf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s",
						ShortID(string(id)), user.ShortID())
				}
			}
			for _, n := range names {
				lines = append(lines, "Untagged: "+content.FamiliarName(n))
			}
			keep = idx.Manifests
		}
		// No name left: the image goes, with every entry of its ID.
		out := keep[:0:0]
		for _, m := range keep {
			if configOf(m.Digest) != id {
				out = append(out, m)
			}
		}
		idx.Manifests = out
		lines = append(lines, "Deleted: "+string(id))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lines, nil
}

// unnamed is one index entry, without a name, for each manifest of image
// id in entries: what keeps an image listed once its last name is gone.
func unnamed(entries []ocispec.Descriptor, id digest.Digest, configOf func(digest.Digest) digest.Digest) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, m := range entries {
		if configOf(m.Digest) == id && !seen[m.Digest] {
			seen[m.Digest] = true
			d := m
			d.Annotations = nil
			out = append(out, d)
		}
	}
	return out
}

// containerUsing is a container made from image id, a running one if
// any runs, and whether it runs: docker's rmi refuses to take an image
// from under it.
func (s *Store) containerUsing(id digest.Digest) (*Container, bool) {
	cs, _ := s.Containers()
	var stopped *Container
	for _, c := range cs {
		if c.ImageID != id {
			continue
		}
		if s.ContainerRunning(c.ID) {
			return c, true
		}
		if stopped == nil {
			stopped = c
		}
	}
	return stopped, false
}

// ManifestNames are the names index.json gives manifest m, as docker
// inspect shows them: its tags in familiar form (NAME@DIGEST references
// left out) and, each once, the repository digests it was pulled or pushed
// as. Both are empty, not nil, for an image without names.
func (s *Store) ManifestNames(m digest.Digest) (tags, repoDigests []string, err error) {
	entries, err := s.Content.Images()
	if err != nil {
		return nil, nil, err
	}
	tags, repoDigests = []string{}, []string{}
	for _, e := range entries {
		if e.Descriptor.Digest != m {
			continue
		}
		if e.Name != "" && !strings.Contains(e.Name, "@") {
			tags = append(tags, content.FamiliarName(e.Name))
		}
		if rd := e.Descriptor.Annotations[content.AnnotationRepoDigest]; rd != "" && !slices.Contains(repoDigests, content.FamiliarName(rd)) {
			repoDigests = append(repoDigests, content.FamiliarName(rd))
		}
	}
	return tags, repoDigests, nil
}

// configOf is the config digest of manifest m, "" if it cannot be read.
func (s *Store) configOf(m digest.Digest) digest.Digest {
	var id digest.Digest
	content.Walk(context.Background(), s.Content.FetchBlobs, []ocispec.Descriptor{{Digest: m}}, func(_ context.Context, n *content.Node) error {
		switch {
		case n.Role == content.RoleConfig:
			id = n.Descriptor.Digest
		case n.Depth > 0:
			return content.SkipChildren // an index's images are not it
		}
		return nil
	})
	return id
}

// isIDPrefix is docker's isImageIDPrefix: ref names the image by its ID.
func isIDPrefix(id digest.Digest, ref string) bool {
	return hexPrefix.MatchString(ref) && strings.HasPrefix(string(id), "sha256:"+strings.TrimPrefix(ref, "sha256:"))
}

// repoOf returns the repository of a full name and whether it is a tag
// (rather than a NAME@DIGEST reference).
func repoOf(name string) (string, bool) {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name, false
	}
	_, tagged := ref.(reference.NamedTagged)
	return ref.Name(), tagged
}

func hasTagIn(names []string, repo string) bool {
	for _, n := range names {
		if r, t := repoOf(n); t && r == repo {
			return true
		}
	}
	return false
}

// singleReference is docker's isSingleReference: at most one tag, and
// digest references only of that tag's repository.
func singleReference(names []string) bool {
	tagRepo, tags := "", 0
	repos := map[string]bool{}
	for _, n := range names {
		r, t := repoOf(n)
		if t {
			tags++
			tagRepo = r
		} else {
			repos[r] = true
		}
	}
	if tags > 1 {
		return false
	}
	if tags == 1 {
		return len(repos) == 0 || len(repos) == 1 && repos[tagRepo]
	}
	return len(repos) <= 1
}

func without(names []string, n string) []string {
	out := names[:0:0]
	for _, x := range names {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}

func removeName(ms []ocispec.Descriptor, name string) []ocispec.Descriptor {
	out := ms[:0:0]
	for _, m := range ms {
		if m.Annotations[content.AnnotationImageName] != name {
			out = append(out, m)
		}
	}
	return out
}

// LayerSizes measures layers as docker's SIZE columns do (see
// content.Store.LayerContentSize), each layer once.
type LayerSizes struct {
	s    *Store
	memo map[digest.Digest]int64
}

// NewLayerSizes starts measuring the store's layers.
func (s *Store) NewLayerSizes() *LayerSizes {
	return &LayerSizes{s: s, memo: map[digest.Digest]int64{}}
}

// Of is layer's content size; a layer that cannot be read counts its
// blob size, so a damaged layer still shows something.
func (ls *LayerSizes) Of(layer ocispec.Descriptor) int64 {
	if n, ok := ls.memo[layer.Digest]; ok {
		return n
	}
	n, err := ls.s.Content.LayerContentSize(layer.Digest)
	if err != nil {
		n = layer.Size
	}
	ls.memo[layer.Digest] = n
	return n
}

// Image is the content size of all of si's layers.
func (ls *LayerSizes) Image(si *content.StoredImage) int64 {
	var n int64
	for _, l := range si.Manifest.Layers {
		n += ls.Of(l)
	}
	return n
}
