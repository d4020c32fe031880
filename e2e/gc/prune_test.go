package gc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// kiln prune as a user types it: --filter until= spares what was just
// used, --keep-storage removes least recently used records until the
// build cache fits, a plain prune removes every record, and tagged images
// are never touched.
func TestPruneFlagsFromTheCommandLine(t *testing.T) {
	s := e2etest.NewStore(t)
	for i := 0; i < 3; i++ {
		ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN head -c 3000000 /dev/urandom > /r%d\n", i)})
		s.MustKiln("build", "--progress", "plain", "-t", fmt.Sprintf("keep-%d:1", i), ctx)
		s.MustKiln("rmi", fmt.Sprintf("keep-%d:1", i)) // now only build cache holds the layer
	}
	s.MustKiln("build", "--progress", "plain", "-t", "tagged:1",
		e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 1000000 /dev/urandom > /t\n"}))
	cacheBytes := func() int64 { return dfRows(s)["Build Cache"].SizeBytes }
	start := cacheBytes()
	if start < 9_000_000 {
		t.Fatalf("build cache is %d bytes after three 3 MB RUNs", start)
	}

	// (unreferenced data — here the removed images' manifests and
	// configs — always goes)
	out := s.MustKiln("prune", "-f", "--filter", "until=1h")
	if reclaimed(t, out) > 100_000 || strings.Contains(out, "Deleted build cache objects") || cacheBytes() < start-100_000 {
		t.Errorf("prune --filter until=1h removed what was used a moment ago:\n%s", out)
	}
	out = s.MustKiln("prune", "-f", "--keep-storage", "5MB")
	if got := cacheBytes(); got > 5_000_000 || got == 0 {
		t.Errorf("after prune --keep-storage 5MB the build cache is %d bytes, want (0, 5 MB]:\n%s", got, out)
	}
	if !strings.HasPrefix(out, "Deleted build cache objects:\n") || reclaimed(t, out) < start-5_000_000 {
		t.Errorf("prune --keep-storage output:\n%s", out)
	}
	out = s.MustKiln("prune", "-f")
	if got := cacheBytes(); got != 0 {
		t.Errorf("after prune the build cache is %d bytes:\n%s", got, out)
	}
	if got := s.MustKiln("run", "tagged:1", "sh", "-c", "wc -c < /t"); got != "1000000\n" {
		t.Errorf("the tagged image after prunes: %q", got)
	}
	s.AssertDoctorClean()
	assertDFAddsUp(s)
}

// image prune -a removes images that have a digest name but no tag (what
// `pull NAME@DIGEST` leaves), which plain image prune keeps, and says so
// in docker's words.
func TestImagePruneAllRemovesDigestOnlyImages(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	src := e2etest.NewStore(t)
	ref := reg.Ref("library/bb:1")
	e2etest.PushWithSkopeo(t, src, "busybox:latest", ref)
	s := e2etest.EmptyStore(t)
	s.MustKiln("pull", ref)
	digested := s.Inspect(ref)["RepoDigests"].([]any)[0].(string)
	s.MustKiln("rmi", ref)
	s.MustKiln("pull", digested)
	id := s.Inspect(digested)["Id"].(string)

	if out := s.MustKiln("image", "prune", "-f"); strings.Contains(out, "deleted:") {
		t.Errorf("image prune removed an image with a digest name:\n%s", out)
	}
	out := s.MustKiln("image", "prune", "-a", "-f")
	want := "Deleted Images:\nuntagged: " + digested + "\ndeleted: " + id + "\n"
	if !strings.HasPrefix(out, want) || reclaimed(t, out) == 0 {
		t.Errorf("image prune -a printed:\n%s\nwant it to start with:\n%s", out, want)
	}
	if got := strings.TrimSpace(s.MustKiln("images", "-a", "-q")); got != "" {
		t.Errorf("images left after image prune -a: %s", got)
	}
	s.AssertDoctorClean()
}
