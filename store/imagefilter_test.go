package store

import (
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
)

// listed is an image as Images returns it, made in memory: full names, and
// a creation time of day N (newer with N).
func listed(id string, day int, labels map[string]string, names ...string) *Image {
	si := &content.StoredImage{}
	si.Config.Config.Labels = labels
	si.Manifest.Config.Digest = digest.FromString(id)
	im := &Image{ID: si.ID(), Image: si, Created: time.Date(2024, 1, day, 0, 0, 0, 0, time.UTC), HasCreated: true}
	for _, n := range names {
		if strings.Contains(n, "@") {
			im.RepoDigests = append(im.RepoDigests, n)
		} else {
			im.Names = append(im.Names, n)
		}
	}
	return im
}

const repoDigest = "sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"

// testImages is a listing newest first: app (two tags, a label), a pulled
// busybox with its registry digest, and a dangling image.
func testImages() []*Image {
	return []*Image{
		listed("app", 3, map[string]string{"team": "a", "tier": "web"}, "docker.io/library/app:2", "docker.io/library/app:1"),
		listed("busybox", 2, nil, "docker.io/library/busybox:latest", "docker.io/library/busybox@"+repoDigest),
		listed("dangling", 1, map[string]string{"team": "b"}),
	}
}

// rowText is each row as "REPO:TAG@DIGEST".
func rowText(rows []ImageRow) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Repository+":"+r.Tag+"@"+r.Digest)
	}
	return strings.Join(out, " ")
}

func TestSelectImagesFollowsDockersFilters(t *testing.T) {
	for _, tc := range []struct {
		name    string
		filters []string
		opts    SelectOptions
		want    string
	}{
		{"no filter lists a row per tag and <none>:<none> for an image without names", nil, SelectOptions{},
			"app:1@<none> app:2@<none> busybox:latest@<none> <none>:<none>@<none>"},
		{"-a lists the same: kiln keeps no intermediate images", nil, SelectOptions{All: true},
			"app:1@<none> app:2@<none> busybox:latest@<none> <none>:<none>@<none>"},
		{"the digest column shows a repository's registry digest on its tags", nil, SelectOptions{DigestColumn: true},
			"app:1@<none> app:2@<none> busybox:latest@" + repoDigest + " <none>:<none>@<none>"},
		{"reference matches the familiar repo:tag", []string{"reference=app:1"}, SelectOptions{}, "app:1@<none>"},
		{"reference matches the familiar name", []string{"reference=busy*"}, SelectOptions{}, "busybox:latest@<none>"},
		{"repeated reference matches any", []string{"reference=app:2", "reference=busybox"}, SelectOptions{}, "app:2@<none> busybox:latest@<none>"},
		{"reference never matches an image without names", []string{"reference=*"}, SelectOptions{},
			"app:1@<none> app:2@<none> busybox:latest@<none>"},
		{"dangling=true keeps only images without tags", []string{"dangling=true"}, SelectOptions{}, "<none>:<none>@<none>"},
		{"dangling=false drops them", []string{"dangling=false"}, SelectOptions{}, "app:1@<none> app:2@<none> busybox:latest@<none>"},
		{"dangling=true wins over dangling=false", []string{"dangling=false", "dangling=true"}, SelectOptions{}, "<none>:<none>@<none>"},
		{"label KEY needs the label", []string{"label=team"}, SelectOptions{}, "app:1@<none> app:2@<none> <none>:<none>@<none>"},
		{"label KEY=VALUE needs that value", []string{"label=team=b"}, SelectOptions{}, "<none>:<none>@<none>"},
		{"repeated label must all hold", []string{"label=team", "label=tier=web"}, SelectOptions{}, "app:1@<none> app:2@<none>"},
		{"before is strictly older than the image named", []string{"before=busybox"}, SelectOptions{}, "<none>:<none>@<none>"},
		{"since is strictly newer than the image named", []string{"since=busybox:latest"}, SelectOptions{}, "app:1@<none> app:2@<none>"},
		{"different keys must all match", []string{"since=busybox", "reference=app:1"}, SelectOptions{}, "app:1@<none>"},
		{"keys are case-insensitive and trimmed", []string{" Reference = app:2"}, SelectOptions{}, "app:2@<none>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imgs := testImages()
			f, err := ParseImageFilter(tc.filters, imgs)
			if err != nil {
				t.Fatal(err)
			}
			if got := rowText(SelectImages(imgs, f, tc.opts)); got != tc.want {
				t.Errorf("rows = %s\nwant   %s", got, tc.want)
			}
		})
	}
}

func TestSelectImagesListsRepoDigestsWithoutTags(t *testing.T) {
	im := listed("pulled", 1, nil, "docker.io/library/alpine@"+repoDigest)
	imgs := []*Image{im}
	f, err := ParseImageFilter(nil, imgs)
	must(t, err)
	if got, want := rowText(SelectImages(imgs, f, SelectOptions{})), "alpine:<none>@"; got != want {
		t.Errorf("without --digests rows = %s, want %s", got, want)
	}
	if got, want := rowText(SelectImages(imgs, f, SelectOptions{DigestColumn: true, DigestRows: true})), "alpine:<none>@"+repoDigest; got != want {
		t.Errorf("with --digests rows = %s, want %s", got, want)
	}
	if got, want := rowText(SelectImages(imgs, mustFilter(t, "dangling=true"), SelectOptions{})), "alpine:<none>@"; got != want {
		t.Errorf("dangling=true rows = %s, want %s (a digest without a tag is dangling)", got, want)
	}
}

func TestParseImageFilterFindsBeforeAndSinceByIDPrefix(t *testing.T) {
	imgs := testImages()
	f, err := ParseImageFilter([]string{"before=" + imgs[0].ID.Encoded()[:8], "since=" + string(imgs[2].ID)}, imgs)
	must(t, err)
	if got, want := rowText(SelectImages(imgs, f, SelectOptions{})), "busybox:latest@<none>"; got != want {
		t.Errorf("rows = %s, want %s", got, want)
	}
}

func mustFilter(t *testing.T, args ...string) *ImageFilter {
	t.Helper()
	f, err := ParseImageFilter(args, nil)
	must(t, err)
	return f
}

func TestParseImageFilterErrorsAreDockers(t *testing.T) {
	for _, tc := range []struct {
		name, filter, want string
	}{
		{"a filter without =", "dangling", `bad format of filter "dangling" (expected name=value)`},
		{"an unknown key", "color=red", "invalid filter 'color'"},
		{"dangling neither true nor false", "dangling=maybe", "invalid filter 'dangling=maybe' (true or false)"},
		{"a bad reference pattern", "reference=[", "invalid filter 'reference=[': syntax error in pattern"},
		{"before an image not stored", "before=nothere:1", "no such image: nothere:1"},
		{"since an image not stored", "since=nothere:1", "no such image: nothere:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseImageFilter([]string{tc.filter}, testImages())
			if err == nil || err.Error() != tc.want {
				t.Errorf("ParseImageFilter(%q) = %v, want %q", tc.filter, err, tc.want)
			}
		})
	}
}

func TestListImagesMeasuresSizeAndFilters(t *testing.T) {
	s := openStore(t, t.TempDir())
	addTestImage(t, s, "app:1", "a")
	addTestImage(t, s, "other:1", "b")
	rows, err := s.ListImages([]string{"reference=app"}, SelectOptions{}, nil)
	must(t, err)
	if len(rows) != 1 || rows[0].Repository != "app" || rows[0].Tag != "1" {
		t.Fatalf("rows = %s, want app:1", rowText(rows))
	}
	if rows[0].Image.Size == 0 {
		t.Errorf("app:1 has no SIZE")
	}
	if _, err := s.ListImages([]string{"color=red"}, SelectOptions{}, nil); err == nil {
		t.Errorf("a bad filter listed images")
	}
}
