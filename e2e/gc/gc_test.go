package gc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/e2e/e2etest"
)

// dfRows runs kiln df --format json: TYPE → row.
func dfRows(s *e2etest.Store) map[string]struct {
	TotalCount, Active          string
	SizeBytes, ReclaimableBytes int64
} {
	s.T.Helper()
	out := s.MustKiln("df", "--format", "json")
	rows := map[string]struct {
		TotalCount, Active          string
		SizeBytes, ReclaimableBytes int64
	}{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Type                        string
			TotalCount, Active          string
			SizeBytes, ReclaimableBytes int64
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			s.T.Fatalf("kiln df --format json: %v\n%s", err, out)
		}
		rows[r.Type] = struct {
			TotalCount, Active          string
			SizeBytes, ReclaimableBytes int64
		}{r.TotalCount, r.Active, r.SizeBytes, r.ReclaimableBytes}
	}
	return rows
}

func dfTotal(s *e2etest.Store) int64 {
	var total int64
	for _, r := range dfRows(s) {
		total += r.SizeBytes
	}
	return total
}

// du is `du -sb` of p (0 if p does not exist).
func du(t *testing.T, p string) int64 {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		return 0
	}
	out, err := exec.Command("du", "-sb", p).Output()
	if err != nil {
		t.Fatalf("du -sb %s: %v", p, err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// assertDFAddsUp compares the sum of df's rows with du -sb of the store:
// what is left is metadata (index.json, journals, stat caches,
// directories), well under a megabyte here.
func assertDFAddsUp(s *e2etest.Store) {
	s.T.Helper()
	total, onDisk := dfTotal(s), du(s.T, s.Root)
	if total > onDisk || onDisk-total > 1<<20 {
		s.T.Errorf("kiln df adds up to %d bytes, du -sb says %d: more than 1 MB apart", total, onDisk)
	}
}

var reclaimedRE = regexp.MustCompile(`Total reclaimed space: (\S+)`)

func reclaimed(t *testing.T, out string) int64 {
	t.Helper()
	m := reclaimedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no \"Total reclaimed space\" in:\n%s", out)
	}
	n, err := units.FromHumanSize(m[1])
	if err != nil {
		t.Fatalf("reclaimed space %q: %v", m[1], err)
	}
	return n
}

// The user's story from the seeds: rebuilding a tag leaves the old image
// dangling, images shows it as <none>, the dangling filter finds it, image
// prune removes it and says how much it freed, and df adds up to the disk.
func TestDanglingImageStoryFromBuildToPrune(t *testing.T) {
	s := e2etest.NewStore(t)
	df := "FROM busybox\nRUN head -c 2000000 /dev/urandom > /deps\nCOPY app.txt /app.txt\nRUN head -c 3000000 /dev/urandom > /build && cat /app.txt\n"
	ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": df, "app.txt": "v1\n"})
	iid := filepath.Join(t.TempDir(), "iid")
	s.MustKiln("build", "--progress", "plain", "--iidfile", iid, "-t", "app:1", ctx)
	old, _ := os.ReadFile(iid)
	oldID := strings.TrimPrefix(string(old), "sha256:")
	assertDFAddsUp(s)

	os.WriteFile(filepath.Join(ctx, "app.txt"), []byte("v2\n"), 0o644)
	s.MustKiln("build", "--progress", "plain", "--iidfile", iid, "-t", "app:1", ctx)
	cur, _ := os.ReadFile(iid)
	if string(cur) == string(old) {
		t.Fatal("the rebuild gave the same image")
	}
	images := s.MustKiln("images")
	if !regexp.MustCompile(`(?m)^<none>\s+<none>\s+` + oldID[:12]).MatchString(images) {
		t.Errorf("kiln images does not show the old image as <none> <none> %s:\n%s", oldID[:12], images)
	}
	if got := strings.TrimSpace(s.MustKiln("images", "-q", "--filter", "dangling=true")); got != oldID[:12] {
		t.Errorf("images -q --filter dangling=true = %q, want %s", got, oldID[:12])
	}
	rows := dfRows(s)
	if rows["Images"].TotalCount != "3" || rows["Images"].Active != "2" {
		t.Errorf("df Images: %+v, want 3 images, 2 with a name", rows["Images"])
	}
	assertDFAddsUp(s)

	// the dangling image was made a moment ago: until=1h spares it
	if out := s.MustKiln("image", "prune", "-f", "--filter", "until=1h"); strings.Contains(out, "deleted:") {
		t.Errorf("image prune --filter until=1h removed a fresh image:\n%s", out)
	}
	before := du(t, s.Root)
	out := s.MustKiln("image", "prune", "-f")
	if !strings.Contains(out, "Deleted Images:\ndeleted: sha256:"+oldID) {
		t.Errorf("kiln image prune output:\n%s\nwant it to name sha256:%s", out, oldID)
	}
	if got, want := reclaimed(t, out), rows["Images"].ReclaimableBytes; got != mustParse(t, units.HumanSize(float64(want))) {
		t.Errorf("image prune reclaimed %d, df said %d was reclaimable", got, want)
	}
	if strings.Contains(s.MustKiln("images"), "<none>") {
		t.Error("kiln images still shows <none> after image prune")
	}
	if got := strings.TrimSpace(s.MustKiln("images", "-q", "--filter", "dangling=true")); got != "" {
		t.Errorf("dangling images after prune: %q", got)
	}
	if freed := before - du(t, s.Root); freed < rows["Images"].ReclaimableBytes-4096 {
		t.Errorf("du shrank by %d, image prune said %d", freed, rows["Images"].ReclaimableBytes)
	}
	assertDFAddsUp(s)

	// The old image's layers live on as build cache until kiln prune.
	cacheBytes := dfRows(s)["Build Cache"].SizeBytes
	if cacheBytes < 3_000_000 {
		t.Errorf("build cache %d bytes; the old image's 3 MB layer should be in it", cacheBytes)
	}
	before = du(t, s.Root)
	out = s.MustKiln("prune", "-f")
	if !strings.Contains(out, "Deleted build cache objects:") {
		t.Errorf("kiln prune output:\n%s", out)
	}
	if got := reclaimed(t, out); got != mustParse(t, units.HumanSize(float64(cacheBytes))) {
		t.Errorf("prune reclaimed %d, df said the build cache was %d", got, cacheBytes)
	}
	if freed := before - du(t, s.Root); freed < cacheBytes-64<<10 {
		t.Errorf("du shrank by %d, prune said %d", freed, cacheBytes)
	}
	if rows := dfRows(s); rows["Build Cache"].SizeBytes != 0 || rows["Build Cache"].TotalCount != "0" {
		t.Errorf("build cache after prune: %+v", rows["Build Cache"])
	}
	assertDFAddsUp(s)

	// Tagged images are intact: they run and save.
	if got := s.MustKiln("run", "--rm", "app:1", "sh", "-c", "cat /app.txt; wc -c < /build"); got != "v2\n3000000\n" {
		t.Errorf("app:1 after prunes: %q", got)
	}
	s.MustKiln("save", "-o", filepath.Join(t.TempDir(), "app.tar"), "app:1")
	s.MustKiln("run", "--rm", "busybox", "/bin/sh", "-c", "exit 0")
}

func mustParse(t *testing.T, human string) int64 {
	t.Helper()
	n, err := units.FromHumanSize(human)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The acceptance test of the cache budget: ten builds of different 20 MB
// images with a 50 MB budget leave the build cache under it, by kiln's
// measure and by du, and every tagged image intact.
func TestBudgetKeepsCacheUnderItAndTaggedImagesIntact(t *testing.T) {
	if testing.Short() {
		t.Skip("ten 20 MB builds")
	}
	s := e2etest.NewStore(t)
	const budget = 50_000_000
	for i := 0; i < 10; i++ {
		ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN head -c 20000000 /dev/urandom > /big-%d\n", i)})
		args := []string{"build", "--progress", "plain", ctx}
		if i%2 == 0 {
			args = append(args, "-t", fmt.Sprintf("big-%d:latest", i))
		}
		// the budget comes from the flag or, every third build, from
		// KILN_CACHE_MAX
		var env []string
		if i%3 == 0 {
			env = []string{"KILN_CACHE_MAX=50MB"}
		} else {
			args = append(args, "--cache-max", "50MB")
		}
		if _, errOut, err := s.KilnEnv(env, args...); err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, errOut)
		}
	}
	// kiln's own measure
	var v struct {
		Budget struct{ UsedBytes, LimitBytes int64 }
	}
	if err := json.Unmarshal([]byte(s.MustKiln("df", "-v", "--format", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Budget.UsedBytes > budget {
		t.Errorf("kiln df: build cache %d bytes, over the 50 MB budget", v.Budget.UsedBytes)
	}
	// du's measure: everything but the tagged images' blobs and snapshots.
	named := namedImageData(t, s.Root)
	var cache int64
	blobs, _ := os.ReadDir(filepath.Join(s.Root, "content", "blobs", "sha256"))
	for _, b := range blobs {
		if !named[filepath.Join("content", "blobs", "sha256", b.Name())] {
			cache += du(t, filepath.Join(s.Root, "content", "blobs", "sha256", b.Name()))
		}
	}
	snaps, _ := filepath.Glob(filepath.Join(s.Root, "snapshots", "[0-9]*"))
	bigUntagged := 0
	for _, sn := range snaps {
		rel, _ := filepath.Rel(s.Root, sn)
		if named[rel] {
			continue
		}
		n := du(t, sn)
		cache += n
		if n > 19_000_000 {
			bigUntagged++
		}
	}
	cache += du(t, filepath.Join(s.Root, "cache")) + du(t, filepath.Join(s.Root, "cachemounts"))
	if cache > budget {
		t.Errorf("du: %d bytes of build cache, over the 50 MB budget", cache)
	}
	if bigUntagged > 1 {
		t.Errorf("%d untagged 20 MB layers left; at most one fits in 50 MB with its snapshot", bigUntagged)
	}
	// Every tagged image runs and saves; a rebuild of one is all cached.
	for i := 0; i < 10; i += 2 {
		name := fmt.Sprintf("big-%d:latest", i)
		if got := s.MustKiln("run", "--rm", name, "sh", "-c", fmt.Sprintf("wc -c < /big-%d", i)); got != "20000000\n" {
			t.Errorf("%s: /big-%d has %q bytes", name, i, got)
		}
		s.MustKiln("save", "-o", filepath.Join(t.TempDir(), "img.tar"), name)
	}
	_, errOut, err := s.Kiln("build", "--progress", "plain", "--cache-max", "50MB", "-t", "big-0:latest",
		e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 20000000 /dev/urandom > /big-0\n"}))
	if err != nil || !strings.Contains(errOut, "RUN head -c 20000000 /dev/urandom > /big-0 CACHED") {
		t.Errorf("rebuild of a tagged image is not cached (its record should outlive the collections): %v\n%s", err, errOut)
	}
	assertDFAddsUp(s)
	s.AssertDoctorClean()
}

// namedImageData returns the store paths (relative to root) of what images
// with a name refer to: manifests, configs, layer blobs and snapshots.
func namedImageData(t *testing.T, root string) map[string]bool {
	t.Helper()
	blob := func(d string) string {
		return filepath.Join("content", "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
	}
	readJSON := func(rel string, v any) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	var idx struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	readJSON(filepath.Join("content", "index.json"), &idx)
	out := map[string]bool{}
	for _, m := range idx.Manifests {
		if m.Annotations["io.containerd.image.name"] == "" {
			continue
		}
		out[blob(m.Digest)] = true
		var mf struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
		readJSON(blob(m.Digest), &mf)
		out[blob(mf.Config.Digest)] = true
		for _, l := range mf.Layers {
			out[blob(l.Digest)] = true
			if id, err := os.ReadFile(filepath.Join(root, "snapshots", "diffids", strings.TrimPrefix(l.Digest, "sha256:"))); err == nil {
				out[filepath.Join("snapshots", strings.TrimSpace(string(id)))] = true
			}
		}
	}
	return out
}

// A prune waits for a running build (it needs the store to itself): the
// build is never broken, and the prune runs once the build is done.
func TestPruneWhileABuildRunsWaitsAndNeverBreaksIt(t *testing.T) {
	s := e2etest.NewStore(t)
	// something for the prune to remove
	s.MustKiln("build", "--progress", "plain", e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo old > /old\n"}))
	ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo start && sleep 3 && echo ok > /ok\n"})
	build := exec.Command(e2etest.Bin(), "--root", s.Root, "build", "--progress", "plain", "-t", "sleepy:1", ctx)
	var buildOut bytes.Buffer
	build.Stdout, build.Stderr = &buildOut, &buildOut
	if err := build.Start(); err != nil {
		t.Fatal(err)
	}
	// wait until the RUN is running
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buildOut.String(), "start") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	out, errOut, err := s.Kiln("prune", "--all", "-f")
	waited := time.Since(start)
	if err != nil {
		t.Fatalf("kiln prune: %v\n%s%s", err, out, errOut)
	}
	if err := build.Wait(); err != nil {
		t.Fatalf("build failed while a prune ran: %v\n%s", err, buildOut.String())
	}
	if !strings.Contains(errOut, "waiting for running builds to finish") || waited < time.Second {
		t.Errorf("prune did not wait for the build (took %v): %s", waited, errOut)
	}
	if !strings.Contains(out, "Deleted build cache objects:") {
		t.Errorf("prune after the build removed nothing:\n%s", out)
	}
	if got := s.MustKiln("run", "--rm", "sleepy:1", "cat", "/ok"); got != "ok\n" {
		t.Errorf("sleepy:1: %q", got)
	}
	s.AssertClean()
}

// Builds ending over budget at the same time: a build that finds others
// at work leaves the collection to them; every build succeeds and the
// last one collects.
func TestConcurrentBuildsOverBudgetAllSucceed(t *testing.T) {
	s := e2etest.NewStore(t)
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 3; i++ {
		ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN head -c 3000000 /dev/urandom > /r && sleep %d\n", i)})
		cmd := exec.Command(e2etest.Bin(), "--root", s.Root, "build", "--progress", "plain", "--cache-max", "1MB", ctx)
		cmd.Env = append(os.Environ(), "KILN_DEBUG=1")
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &b)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("build %d: %v\n%s", i, err, outs[i])
		}
	}
	// The last build found nobody else and collected: only its own image
	// (protected) is left over the budget.
	var v struct {
		Budget struct{ UsedBytes int64 }
	}
	json.Unmarshal([]byte(s.MustKiln("df", "-v", "--format", "json")), &v)
	if v.Budget.UsedBytes > 7_000_000 {
		t.Errorf("after the builds %d bytes of cache: the last build did not collect", v.Budget.UsedBytes)
	}
	s.AssertClean()
}

// Cache mounts show in df under their id, survive kiln prune, and go with
// kiln prune --all.
func TestCacheMountsInDFAndPruneAll(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --mount=type=cache,target=/cache,id=objs head -c 1000000 /dev/urandom > /cache/o && echo built > /out\n"})
	s.MustKiln("build", "--progress", "plain", "-t", "cm:1", ctx)
	rows := dfRows(s)
	if m := rows["Cache Mounts"]; m.TotalCount != "1" || m.SizeBytes < 1_000_000 || m.Active != "0" {
		t.Errorf("df Cache Mounts: %+v, want one of 1 MB, not in use", m)
	}
	if out := s.MustKiln("df", "-v"); !regexp.MustCompile(`(?m)^objs\s+1\.\d+MB`).MatchString(out) {
		t.Errorf("df -v does not list the cache mount by its id:\n%s", out)
	}
	assertDFAddsUp(s)
	s.MustKiln("prune", "-f")
	if rows := dfRows(s); rows["Cache Mounts"].TotalCount != "1" {
		t.Errorf("kiln prune removed the cache mount: %+v", rows["Cache Mounts"])
	}
	out := s.MustKiln("prune", "--all", "-f")
	// (named by its directory now: the record that knew its id is gone)
	if !strings.Contains(out, "cachemount:") || reclaimed(t, out) < 1_000_000 {
		t.Errorf("kiln prune --all output:\n%s", out)
	}
	if rows := dfRows(s); rows["Cache Mounts"].TotalCount != "0" {
		t.Errorf("cache mount left after prune --all: %+v", rows["Cache Mounts"])
	}
	if got := s.MustKiln("run", "--rm", "cm:1", "cat", "/out"); got != "built\n" {
		t.Errorf("cm:1: %q", got)
	}
}
