package store

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/distribution/reference"
)

// What `images` lists: docker's --filter values (moby daemon/images:
// Images) and the rows an image expands into (one per repository and
// tag, <none>:<none> for an image without names).

// ImageFilter is a parsed set of `images --filter` values. Different keys
// must all match; the same key repeated matches any of its values, except
// label, whose values must all match.
type ImageFilter struct {
	danglingOnly, noDangling bool
	refs                     []string
	labels                   []string
	before, since            *Image
}

// ParseImageFilter parses KEY=VALUE filters: dangling=true|false,
// reference=PATTERN, label=KEY[=VALUE], before=IMAGE and since=IMAGE, the
// last two found among imgs. The errors are docker's.
func ParseImageFilter(args []string, imgs []*Image) (*ImageFilter, error) {
	f := &ImageFilter{}
	var dangling []string
	var before, since string
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter %q (expected name=value)", a)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "dangling":
			dangling = append(dangling, v)
		case "reference":
			if _, err := path.Match(v, ""); err != nil {
				return nil, fmt.Errorf("invalid filter 'reference=%s': %v", v, err)
			}
			f.refs = append(f.refs, v)
		case "label":
			f.labels = append(f.labels, v)
		case "before":
			before = v
		case "since":
			since = v
		default:
			return nil, fmt.Errorf("invalid filter '%s'", k)
		}
	}
	switch {
	case len(dangling) == 0:
	case slices.Contains(dangling, "true"):
		f.danglingOnly = true
	case slices.Contains(dangling, "false"):
		f.noDangling = true
	default:
		return nil, fmt.Errorf("invalid filter 'dangling=%s' (true or false)", strings.Join(dangling, ","))
	}
	var err error
	if before != "" {
		if f.before, err = FindImage(imgs, before); err != nil {
			return nil, err
		}
	}
	if since != "" {
		if f.since, err = FindImage(imgs, since); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// matchRef is docker's reference.FamiliarMatch against every pattern: the
// familiar string ("app:1") or the familiar name ("app") must match.
func (f *ImageFilter) matchRef(name string) bool {
	if len(f.refs) == 0 {
		return true
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return false
	}
	for _, p := range f.refs {
		if ok, _ := path.Match(p, reference.FamiliarString(ref)); ok {
			return true
		}
		if ok, _ := path.Match(p, reference.FamiliarName(ref)); ok {
			return true
		}
	}
	return false
}

// matchLabels: every label filter must hold (docker's MatchKVList).
func (f *ImageFilter) matchLabels(labels map[string]string) bool {
	if len(f.labels) == 0 {
		return true
	}
	if len(labels) == 0 {
		return false
	}
	for _, l := range f.labels {
		k, v, hasValue := strings.Cut(l, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != v {
			return false
		}
	}
	return true
}

// SelectOptions say which rows a listing shows besides the filters.
type SelectOptions struct {
	// All is docker's -a (intermediate images too). kiln keeps no
	// intermediate images, so it selects what a listing without it does.
	All bool
	// DigestColumn fills ImageRow.Digest of tagged rows with the
	// registry digests of their repository (--digests, or a format
	// that shows {{.Digest}}).
	DigestColumn bool
	// DigestRows lists every registry digest of a repository without
	// tags as its own row (--digests).
	DigestRows bool
}

// ImageRow is one line of an image listing.
type ImageRow struct {
	Image      *Image
	Repository string // familiar name, or "<none>"
	Tag        string // or "<none>"
	Digest     string // registry digest, "<none>", or "" when not asked for
}

// SelectImages applies f to imgs and expands what matches into rows like
// docker: one per repository and tag, a <none>:<none> row for an image
// without names, and with opts.DigestColumn a row per tag and registry
// digest. Rows keep the order of imgs.
func SelectImages(imgs []*Image, f *ImageFilter, opts SelectOptions) []ImageRow {
	var out []ImageRow
	for _, im := range imgs {
		if f.before != nil && !im.Created.Before(f.before.Created) {
			continue
		}
		if f.since != nil && !im.Created.After(f.since.Created) {
			continue
		}
		if !f.matchLabels(im.Image.Config.Config.Labels) {
			continue
		}
		repoTags := map[string][]string{}
		repoDigests := map[string][]string{}
		for _, n := range append(append([]string(nil), im.Names...), im.RepoDigests...) {
			if !f.matchRef(n) {
				continue
			}
			ref, err := reference.ParseNormalizedNamed(n)
			if err != nil {
				continue
			}
			repo := reference.FamiliarName(ref)
			if t, ok := ref.(reference.NamedTagged); ok && !slices.Contains(repoTags[repo], t.Tag()) {
				repoTags[repo] = append(repoTags[repo], t.Tag())
			}
			if c, ok := ref.(reference.Canonical); ok && !slices.Contains(repoDigests[repo], c.Digest().String()) {
				repoDigests[repo] = append(repoDigests[repo], c.Digest().String())
			}
		}
		if len(repoTags) == 0 && len(repoDigests) == 0 {
			if f.noDangling || len(f.refs) > 0 {
				continue
			}
			out = append(out, ImageRow{Image: im, Repository: "<none>", Tag: "<none>", Digest: "<none>"})
			continue
		}
		if f.danglingOnly && len(repoTags) > 0 {
			continue
		}
		add := func(repo, tag, dg string) {
			out = append(out, ImageRow{Image: im, Repository: repo, Tag: tag, Digest: dg})
		}
		for _, repo := range sortedKeys(repoTags) {
			digests := repoDigests[repo]
			delete(repoDigests, repo)
			if !opts.DigestColumn {
				digests = nil
			}
			tags := repoTags[repo]
			sort.Strings(tags)
			for _, tag := range tags {
				if len(digests) == 0 {
					add(repo, tag, "<none>")
				}
				for _, dg := range digests {
					add(repo, tag, dg)
				}
			}
		}
		for _, repo := range sortedKeys(repoDigests) {
			if !opts.DigestRows {
				add(repo, "<none>", "")
				continue
			}
			for _, dg := range repoDigests[repo] {
				add(repo, "<none>", dg)
			}
		}
	}
	return out
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ListImages is `images`: the stored images (a damaged one reported to
// warn and skipped, see Images) with their SIZE measured, filtered by
// filters and expanded into rows, newest image first.
func (s *Store) ListImages(filters []string, opts SelectOptions, warn func(string)) ([]ImageRow, error) {
	imgs, err := s.Images(warn)
	if err != nil {
		return nil, err
	}
	// measured here, not in Images, which finding an image by ID (run,
	// tag, rmi...) uses too
	sizes := s.NewLayerSizes()
	for _, im := range imgs {
		im.Size = sizes.Image(im.Image)
	}
	f, err := ParseImageFilter(filters, imgs)
	if err != nil {
		return nil, err
	}
	return SelectImages(imgs, f, opts), nil
}
