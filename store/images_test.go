package store

import (
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/store/content"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestImagesGroupsNamesByImageID(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "app:1", "a")
	b := addTestImage(t, s, "other:1", "b")
	full, err := content.NormalizeName("app:latest")
	must(t, err)
	must(t, s.Content.Tag(full, a.manifest))
	imgs, err := s.Images(nil)
	must(t, err)
	if len(imgs) != 2 {
		t.Fatalf("Images = %d images, want 2", len(imgs))
	}
	for _, im := range imgs {
		switch im.ID {
		case a.config:
			if tags := im.Tags(); !slices.Equal(tags, []string{"app:1", "app:latest"}) {
				t.Errorf("tags of app = %q", tags)
			}
		case b.config:
			if tags := im.Tags(); !slices.Equal(tags, []string{"other:1"}) {
				t.Errorf("tags of other = %q", tags)
			}
		default:
			t.Errorf("unexpected image %s", im.ID)
		}
	}
}

func TestFindImageByNameIDPrefixAndManifestDigest(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "app:1", "a")
	imgs, err := s.Images(nil)
	must(t, err)
	for _, ref := range []string{"app:1", string(a.config), a.config.Encoded()[:5], ShortID(string(a.config)), a.manifest.Digest.Encoded()} {
		im, err := FindImage(imgs, ref)
		if err != nil || im.ID != a.config {
			t.Errorf("FindImage(%q) = %v, %v", ref, im, err)
		}
	}
	if _, err := FindImage(imgs, "nothere:1"); err == nil || err.Error() != "no such image: nothere:1" {
		t.Errorf("FindImage of a missing name = %v", err)
	}
	if si, err := s.LookupImage("app:1"); err != nil || si.ID() != a.config {
		t.Errorf("LookupImage = %v, %v", si, err)
	}
}

func TestRemoveImageFollowsDockersRules(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "app:1", "a")
	two, err := content.NormalizeName("web:2")
	must(t, err)
	must(t, s.Content.Tag(two, a.manifest))

	// By ID, with names in two repositories: only with force.
	_, err = s.RemoveImage(ShortID(string(a.config)), false)
	if err == nil || !strings.Contains(err.Error(), "must be forced") {
		t.Fatalf("RemoveImage by ID without force = %v", err)
	}
	// By name: untagged; the image stays while it has another name.
	lines, err := s.RemoveImage("web:2", false)
	must(t, err)
	if !slices.Equal(lines, []string{"Untagged: web:2"}) {
		t.Errorf("RemoveImage(web:2) = %q", lines)
	}
	// Its last name: untagged and deleted.
	lines, err = s.RemoveImage("app:1", false)
	must(t, err)
	if !slices.Equal(lines, []string{"Untagged: app:1", "Deleted: " + string(a.config)}) {
		t.Errorf("RemoveImage(app:1) = %q", lines)
	}
	if imgs, err := s.Images(nil); err != nil || len(imgs) != 0 {
		t.Errorf("after removing every name Images = %d, %v", len(imgs), err)
	}
}

func TestManifestNamesAreTheManifestsTagsAndRepoDigests(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "app:1", "a")
	addTestImage(t, s, "other:1", "b")
	byDigest, err := content.NormalizeName("app@" + a.manifest.Digest.String())
	must(t, err)
	must(t, s.Content.Tag(byDigest, a.manifest))
	pushed, err := content.NormalizeName("app:2")
	must(t, err)
	rd := "registry.example/app@" + a.manifest.Digest.String()
	must(t, s.Content.TagWith(pushed, a.manifest, map[string]string{content.AnnotationRepoDigest: rd}))
	tags, rds, err := s.ManifestNames(a.manifest.Digest)
	must(t, err)
	if !slices.Equal(tags, []string{"app:1", "app:2"}) {
		t.Errorf("tags = %q, want app:1 and app:2 (not the digest reference)", tags)
	}
	if !slices.Equal(rds, []string{rd}) {
		t.Errorf("repo digests = %q, want %q", rds, rd)
	}
	tags, rds, err = s.ManifestNames(digest.FromString("nothing"))
	must(t, err)
	if tags == nil || rds == nil || len(tags)+len(rds) != 0 {
		t.Errorf("unknown manifest: %q, %q; want two empty lists", tags, rds)
	}
}

// writeManifest stores an image's manifest and config without naming it,
// as import does.
func writeManifest(t *testing.T, s *Store, osName string) ocispec.Descriptor {
	t.Helper()
	cfg := dockerspec.DockerOCIImage{}
	cfg.OS, cfg.Architecture = osName, "amd64"
	cfg.RootFS.Type = "layers"
	desc, err := s.Content.WriteImage(cfg, nil)
	must(t, err)
	return desc
}

func TestAddImageNamesOrKeepsAnUntaggedImage(t *testing.T) {
	for _, tc := range []struct {
		name, tag string
		want      []string // tags listed afterwards
	}{
		{"a name tags the image", "docker.io/library/imported:1", []string{"imported:1"}},
		{"no name keeps it untagged", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			desc := writeManifest(t, s, "linux")
			si, err := s.AddImage(desc, tc.tag)
			must(t, err)
			if si.ManifestDesc.Digest != desc.Digest || si.Config.OS != "linux" {
				t.Errorf("AddImage read back manifest %s (os %q), want %s", si.ManifestDesc.Digest, si.Config.OS, desc.Digest)
			}
			imgs, err := s.Images(nil)
			must(t, err)
			if len(imgs) != 1 || imgs[0].ID != si.ID() || !slices.Equal(imgs[0].Tags(), tc.want) {
				t.Fatalf("after AddImage images = %v, want one %s tagged %q", imgs, si.ID(), tc.want)
			}
		})
	}
}

func TestLookupImageNamedKeepsOnlyTheNameTyped(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "app:1", "a")
	full, err := content.NormalizeName("app:latest")
	must(t, err)
	must(t, s.Content.Tag(full, a.manifest))
	for _, tc := range []struct {
		name, ref string
		want      []string
	}{
		{"a name keeps that name only", "app:latest", []string{"docker.io/library/app:latest"}},
		{"an image ID keeps none", string(a.config), nil},
		{"an ID prefix keeps none", a.config.Encoded()[:6], nil},
		{"a manifest digest keeps none", a.manifest.Digest.Encoded(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si, names, err := s.LookupImageNamed(tc.ref)
			must(t, err)
			if si.ID() != a.config || !slices.Equal(names, tc.want) {
				t.Errorf("LookupImageNamed(%q) = %s %q, want %s %q", tc.ref, si.ID(), names, a.config, tc.want)
			}
		})
	}
	if _, _, err := s.LookupImageNamed("nothere:1"); err == nil || err.Error() != "no such image: nothere:1" {
		t.Errorf("LookupImageNamed of a missing name = %v", err)
	}
}
