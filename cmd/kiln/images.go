package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

// docker's default formats (docker/cli cli/command/formatter/image.go).
const (
	imagesTableFormat           = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	imagesTableFormatWithDigest = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	imagesRawFormat             = "repository: {{ .Repository }}\ntag: {{.Tag}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n"
	imagesRawFormatWithDigest   = "repository: {{ .Repository }}\ntag: {{.Tag}}\ndigest: {{.Digest}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n"
)

func imagesCmd() *cobra.Command {
	var (
		all, quiet, noTrunc, digests bool
		filters                      []string
		format                       string
	)
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Long: `List images like docker images: one row per name, newest image first;
an image without a name (its tag moved to a newer build) is <none>:<none>.

Filters (-f, repeatable; different keys must all match, the same key
repeated matches any of its values, except label which must all match):
  dangling=true|false   only images without / with a name
  reference=PATTERN     names matching PATTERN (path.Match on "repo:tag" and "repo")
  before=IMAGE          images created before IMAGE
  since=IMAGE           images created after IMAGE
  label=KEY[=VALUE]     images with that label

--format takes a Go template over .ID .Repository .Tag .Digest .CreatedSince
.CreatedAt .Size .VirtualSize .SharedSize .UniqueSize .Containers, "table
TEMPLATE" for columns with headers, or "json" for one JSON object per line.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				filters = append(filters, "reference="+args[0])
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			imgs, err := st.Images(func(msg string) { fmt.Fprintln(os.Stderr, "WARNING:", msg) })
			if err != nil {
				return err
			}
			// SIZE is measured here, not in st.Images, which finding an
			// image by ID (run, tag, rmi...) uses too
			sizes := st.NewLayerSizes()
			for _, im := range imgs {
				im.Size = sizes.Image(im.Image)
			}
			f, err := parseImageFilters(filters, imgs)
			if err != nil {
				return err
			}
			format = imagesFormat(format, quiet, digests)
			showDigests := digests || strings.Contains(format, "{{.Digest}}")
			return writeImages(os.Stdout, format, f.rows(imgs, showDigests, digests, !noTrunc))
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "show all images (kiln keeps no intermediate images: the same as without -a)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	fl.BoolVar(&digests, "digests", false, "show the registry digest of pulled images")
	fl.StringArrayVarP(&filters, "filter", "f", nil, "filter output based on conditions provided")
	fl.StringVar(&format, "format", "", `format output: "table", "table TEMPLATE", "json" or a Go TEMPLATE`)
	return cmd
}

// imageFilter is a parsed set of --filter values, with docker's semantics
// (moby daemon/images: Images).
type imageFilter struct {
	danglingOnly, noDangling bool
	refs                     []string
	labels                   []string
	before, since            *store.Image
}

func parseImageFilters(args []string, imgs []*store.Image) (*imageFilter, error) {
	f := &imageFilter{}
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
		if f.before, err = store.FindImage(imgs, before); err != nil {
			return nil, err
		}
	}
	if since != "" {
		if f.since, err = store.FindImage(imgs, since); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// matchRef is docker's reference.FamiliarMatch against every pattern: the
// familiar string ("app:1") or the familiar name ("app") must match.
func (f *imageFilter) matchRef(name string) bool {
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
func (f *imageFilter) matchLabels(labels map[string]string) bool {
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

// rows applies the filters and expands images into listing rows like
// docker: one per repository and tag, a <none>:<none> row for an image
// without names, and with digests shown a row per registry digest.
func (f *imageFilter) rows(imgs []*store.Image, needDigest, digestRows, trunc bool) []*imageContext {
	var out []*imageContext
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
			out = append(out, &imageContext{img: im, repo: "<none>", tag: "<none>", digest: "<none>", trunc: trunc})
			continue
		}
		if f.danglingOnly && len(repoTags) > 0 {
			continue
		}
		add := func(repo, tag, dg string) {
			out = append(out, &imageContext{img: im, repo: repo, tag: tag, digest: dg, trunc: trunc})
		}
		for _, repo := range sortedKeys(repoTags) {
			digests := repoDigests[repo]
			delete(repoDigests, repo)
			if !needDigest {
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
			if !digestRows {
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

// imagesFormat picks the template like docker's NewImageFormat.
func imagesFormat(format string, quiet, digests bool) string {
	switch format {
	case "", "table":
		switch {
		case quiet:
			return "{{.ID}}"
		case digests:
			return imagesTableFormatWithDigest
		}
		return imagesTableFormat
	case "raw":
		switch {
		case quiet:
			return "image_id: {{.ID}}"
		case digests:
			return imagesRawFormatWithDigest
		}
		return imagesRawFormat
	}
	if strings.HasPrefix(format, "table") && digests && !strings.Contains(format, "{{.Digest}}") {
		format += "\t{{.Digest}}"
	}
	return format
}

// imageContext is one row; its methods are the template fields, named and
// computed as docker's (cli/command/formatter/image.go).
type imageContext struct {
	img               *store.Image
	repo, tag, digest string
	trunc             bool
}

func (c *imageContext) ID() string {
	if c.trunc {
		return shortID(string(c.img.ID))
	}
	return string(c.img.ID)
}
func (c *imageContext) Repository() string { return c.repo }
func (c *imageContext) Tag() string        { return c.tag }
func (c *imageContext) Digest() string     { return c.digest }
func (c *imageContext) CreatedSince() string {
	if !c.img.HasCreated {
		return ""
	}
	return ago(c.img.Created)
}
func (c *imageContext) CreatedAt() string {
	if !c.img.HasCreated {
		return time.Unix(0, 0).String()
	}
	return time.Unix(c.img.Created.Unix(), 0).String()
}
func (c *imageContext) Size() string        { return humanSize(c.img.Size) }
func (c *imageContext) VirtualSize() string { return units.HumanSize(float64(c.img.Size)) }
func (c *imageContext) SharedSize() string  { return "N/A" }
func (c *imageContext) UniqueSize() string  { return "N/A" }
func (c *imageContext) Containers() string  { return "N/A" }

// MarshalJSON is what {{json .}} and --format json print: every field, as
// docker does (keys sorted, "<" escaped as \u003c).
func (c *imageContext) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"ID": c.ID(), "Repository": c.Repository(), "Tag": c.Tag(), "Digest": c.Digest(),
		"CreatedSince": c.CreatedSince(), "CreatedAt": c.CreatedAt(), "Size": c.Size(),
		"VirtualSize": c.VirtualSize(), "SharedSize": c.SharedSize(), "UniqueSize": c.UniqueSize(),
		"Containers": c.Containers(),
	})
}

var imageHeaders = map[string]string{
	"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
	"CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "SIZE",
	"SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS",
}

// writeImages renders rows with format like docker's formatter.
func writeImages(w io.Writer, format string, rows []*imageContext) error {
	return writeFormatted(w, format, rows, imageHeaders)
}
