package registry

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// imageRows is `kiln images -q` of s (empty when the store has none).
func imageRows(t *testing.T, s *e2etest.Store) string {
	t.Helper()
	out, errOut, err := s.Kiln("images")
	if err != nil {
		t.Fatalf("kiln images: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.Join(lines[1:], "\n")
}

func TestPullRunAndBuildFromRegistry(t *testing.T) {
	src := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	ref := reg.Ref("library/bb:1")
	e2etest.PushWithSkopeo(t, src, "busybox:latest", ref)

	// kiln pull into an empty store, then run it.
	s := e2etest.EmptyStore(t)
	out, errOut, err := s.Kiln("pull", ref)
	if err != nil {
		t.Fatalf("kiln pull: %v\n%s", err, errOut)
	}
	if strings.TrimSpace(out) != ref {
		t.Errorf("pull stdout %q, want %q", out, ref)
	}
	for _, w := range []string{"1: Pulling from library/bb", "Pull complete", "Digest: sha256:", "Status: Downloaded newer image for " + ref} {
		if !strings.Contains(errOut, w) {
			t.Errorf("pull progress lacks %q:\n%s", w, errOut)
		}
	}
	if got := s.MustKiln("run", "--rm", ref, "/bin/sh", "-c", "echo hello from the registry"); got != "hello from the registry\n" {
		t.Errorf("kiln run printed %q", got)
	}
	// The store holds the layers uncompressed: the same image ID as the source.
	want := src.Inspect("busybox:latest")["Id"]
	info := s.Inspect(ref)
	if info["Id"] != want {
		t.Errorf("pulled image ID %v, source %v", info["Id"], want)
	}
	digests := e2etest.ToStrings(info["RepoDigests"])
	if len(digests) != 1 || !strings.HasPrefix(digests[0], reg.Addr+"/library/bb@sha256:") {
		t.Errorf("RepoDigests %v", digests)
	}
	if !strings.Contains(s.MustKiln("images", "--digests"), strings.TrimPrefix(digests[0], reg.Addr+"/library/bb@")) {
		t.Errorf("images --digests lacks %s", digests[0])
	}
	// A second pull fetches nothing.
	_, errOut, err = s.Kiln("pull", ref)
	if err != nil || !strings.Contains(errOut, "Already exists") || !strings.Contains(errOut, "Status: Image is up to date for "+ref) {
		t.Errorf("second pull: %v\n%s", err, errOut)
	}
	// A name without a tag means :latest, said first, as docker does;
	// this registry has no :latest.
	_, errOut, err = s.Kiln("pull", reg.Addr+"/library/bb")
	if err == nil || !strings.HasPrefix(errOut, "Using default tag: latest\n") || !strings.Contains(errOut, "bb:latest") {
		t.Errorf("pull without a tag: %v\n%s", err, errOut)
	}

	// FROM an image the store lacks pulls it.
	b := e2etest.EmptyStore(t)
	dir := e2etest.DockerfileContext(t, "FROM "+ref+"\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n")
	_, errOut, err = b.Kiln("build", "-t", "app:1", dir)
	if err != nil {
		t.Fatalf("kiln build: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "Status: Downloaded newer image for "+ref) {
		t.Errorf("build did not pull:\n%s", errOut)
	}
	if got := b.MustKiln("run", "--rm", "app:1"); got != "built\n" {
		t.Errorf("built image printed %q", got)
	}
	b.AssertClean()
}

func TestPullTLSWithCredentials(t *testing.T) {
	src := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Users: map[string]string{"builder": "pa55word"}})
	ref := reg.Ref("team/base:1")
	e2etest.PushWithSkopeo(t, src, "busybox:latest", ref, "--dest-creds", "builder:pa55word")

	s := e2etest.EmptyStore(t)
	good := testenv.DockerConfig(t, reg.Addr, "builder", "pa55word")
	bad := testenv.DockerConfig(t, reg.Addr, "builder", "wrong")
	none := t.TempDir()

	// Wrong or no credentials: one clear line, exit 1, nothing written.
	for _, cfg := range []string{bad, none} {
		before := s.Blobs()
		out, errOut, err := s.KilnEnv([]string{"DOCKER_CONFIG=" + cfg, "KILN_REGISTRY_CA=" + reg.CACert}, "pull", ref)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("pull with bad credentials: %v\n%s%s", err, out, errOut)
		}
		want := "ERROR: pull " + ref + ": unauthorized: authentication required\n"
		if errOut != want || out != "" {
			t.Errorf("pull with bad credentials printed stdout %q stderr %q, want stderr %q", out, errOut, want)
		}
		if after := s.Blobs(); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("blobs changed by a failed pull: %v → %v", before, after)
		}
		if imgs := imageRows(t, s); imgs != "" {
			t.Errorf("images after a failed pull:\n%s", imgs)
		}
	}

	// The CA not trusted: the error says how to trust it.
	_, errOut, err := s.KilnEnv([]string{"DOCKER_CONFIG=" + good}, "pull", ref)
	if err == nil || !strings.Contains(errOut, "certificate") || !strings.Contains(errOut, "--registry-ca") {
		t.Errorf("pull without the CA: %v\n%s", err, errOut)
	}

	// Right credentials, CA by flag.
	_, errOut, err = s.KilnEnv([]string{"DOCKER_CONFIG=" + good}, "--registry-ca", reg.CACert, "pull", ref)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, errOut)
	}
	if got := s.MustKiln("run", "--rm", ref, "/bin/sh", "-c", "echo ok"); got != "ok\n" {
		t.Errorf("kiln run printed %q", got)
	}
	// ... and by SSL_CERT_FILE (Go's own), in a fresh store.
	s2 := e2etest.EmptyStore(t)
	if _, errOut, err := s2.KilnEnv([]string{"DOCKER_CONFIG=" + good, "SSL_CERT_FILE=" + reg.CACert}, "pull", ref); err != nil {
		t.Fatalf("pull with SSL_CERT_FILE: %v\n%s", err, errOut)
	}
}

func TestPullMultiArchIndexPicksHostPlatform(t *testing.T) {
	src := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	e2etest.PushWithSkopeo(t, src, "busybox:latest", reg.Ref("bb:1"))

	// The host's platform: the busybox image; the other: one small layer.
	bbRef, err := name.ParseReference(reg.Ref("bb:1"))
	if err != nil {
		t.Fatal(err)
	}
	host, err := remote.Image(bbRef)
	if err != nil {
		t.Fatal(err)
	}
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	var layerTar bytes.Buffer
	layerTar.Write(oneFileTar(t, "other-platform", "not for this machine\n"))
	other, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1),
		static.NewLayer(layerTar.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := other.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", otherArch
	if other, err = mutate.ConfigFile(other, cf); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref := reg.Ref("multi:1")
	mref, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(mref, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()

	s := e2etest.EmptyStore(t)
	s.MustKiln("pull", ref)
	info := s.Inspect(ref)
	if info["Architecture"] != runtime.GOARCH || info["Id"] != src.Inspect("busybox:latest")["Id"] {
		t.Errorf("pulled %v image %v, want the busybox image for %s", info["Architecture"], info["Id"], runtime.GOARCH)
	}
	if d := e2etest.ToStrings(info["RepoDigests"]); len(d) != 1 || d[0] != reg.Addr+"/multi@"+idxDigest.String() {
		t.Errorf("RepoDigests %v, want the index digest %s", d, idxDigest)
	}
	if got := s.MustKiln("run", "--rm", ref, "/bin/sh", "-c", "echo right platform"); got != "right platform\n" {
		t.Errorf("kiln run printed %q", got)
	}

	// A platform the index lacks: a clear error naming what it has.
	_, errOut, err := s.Kiln("pull", "--platform", "linux/s390x", ref)
	if err == nil || !strings.Contains(errOut, "no image for linux/s390x") || !strings.Contains(errOut, "linux/"+otherArch) {
		t.Errorf("pull for s390x: %v\n%s", err, errOut)
	}
}

func oneFileTar(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	tw.Close()
	return buf.Bytes()
}

func TestPullInterruptedByRegistryKillThenRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes and pulls a 200 MB layer; skipped with -short")
	}
	src := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	const bigSize = 200_000_000
	dir := e2etest.DockerfileContext(t, "FROM busybox\nRUN head -c 200000000 /dev/urandom > /big\n")
	src.MustKiln("build", "-t", "big:1", dir)
	ref := reg.Ref("big:1")
	e2etest.PushWithSkopeo(t, src, "big:1", ref)
	var bigDiffID string
	if rootfs, ok := src.Inspect("big:1")["RootFS"].(map[string]any); ok {
		ids := e2etest.ToStrings(rootfs["Layers"])
		if len(ids) > 0 {
			bigDiffID = strings.TrimPrefix(ids[len(ids)-1], "sha256:")
		}
	}
	if bigDiffID == "" {
		t.Fatal("no diff_ids in kiln inspect")
	}

	s := e2etest.EmptyStore(t)
	checkNothingPartial := func(what string) {
		t.Helper()
		for _, f := range s.Blobs() {
			if strings.HasPrefix(f, ".tmp-") || f == bigDiffID {
				t.Errorf("partial blob left visible after %s: %s", what, f)
			}
		}
		if imgs := imageRows(t, s); imgs != "" {
			t.Errorf("images after %s:\n%s", what, imgs)
		}
	}

	// Ctrl-C mid-transfer.
	stderr, err := pullInterrupted(t, s, ref, nil)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.HasSuffix(stderr, "ERROR: interrupted\n") {
		t.Fatalf("pull interrupted by SIGINT: want exit 1 and ERROR: interrupted, got %v\n%s", err, stderr)
	}
	checkNothingPartial("SIGINT")

	// The registry killed mid-transfer.
	stderr, err = pullInterrupted(t, s, ref, reg.Kill)
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("interrupted pull: want exit 1, got %v\n%s", err, stderr)
	}
	t.Logf("interrupted pull:\n%s", stderr)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "ERROR: pull "+ref+": ") {
		t.Errorf("last line of stderr %q, want a clear ERROR: pull %s: ...", last, ref)
	}
	checkNothingPartial("the registry was killed")

	// Back up: the retry completes.
	reg.Restart(t)
	start := time.Now()
	_, errOut, err := s.Kiln("pull", ref)
	if err != nil {
		t.Fatalf("retried pull: %v\n%s", err, errOut)
	}
	t.Logf("retried pull (%.1fs):\n%s", time.Since(start).Seconds(), errOut)
	if got := s.MustKiln("run", "--rm", ref, "sh", "-c", "wc -c < /big"); strings.TrimSpace(got) != "200000000" {
		t.Errorf("/big has %q bytes, want %d", got, bigSize)
	}
}

// pullInterrupted starts `kiln pull ref` on s and, once more than 8 MB
// of a layer have arrived in a temp blob, calls interrupt (nil: SIGINT to
// kiln). It returns kiln's stderr and exit error.
func pullInterrupted(t *testing.T, s *e2etest.Store, ref string, interrupt func()) (string, error) {
	t.Helper()
	cmd := exec.Command(e2etest.Bin(), "--root", s.Root, "pull", ref)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if interrupt == nil {
		interrupt = func() { cmd.Process.Signal(os.Interrupt) }
	}
	blobs := filepath.Join(s.Root, "content", "blobs", "sha256")
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			t.Fatalf("the pull ended (%v) before it could be interrupted mid-transfer:\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no layer data arrived in 2 minutes:\n%s", stderr.String())
		case <-time.After(2 * time.Millisecond):
		}
		tmps, _ := filepath.Glob(filepath.Join(blobs, ".tmp-*"))
		for _, p := range tmps {
			if fi, e := os.Stat(p); e == nil && fi.Size() > 8<<20 {
				interrupt()
				select {
				case err := <-exited:
					return stderr.String(), err
				case <-time.After(time.Minute):
					cmd.Process.Kill()
					t.Fatalf("kiln pull still running a minute after the interruption:\n%s", stderr.String())
				}
			}
		}
	}
}

func TestBuildPullReResolvesTag(t *testing.T) {
	src := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	ref := reg.Ref("base:latest")
	e2etest.PushWithSkopeo(t, src, "busybox:latest", ref) // v1: plain busybox
	v2 := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo v2 > /version\n")
	src.MustKiln("build", "-t", "base:v2", v2)

	b := e2etest.EmptyStore(t)
	dir := e2etest.DockerfileContext(t, "FROM "+ref+"\nRUN echo built\n")
	version := func(image string) string {
		t.Helper()
		return strings.TrimSpace(b.MustKiln("run", "--rm", image, "sh", "-c", "cat /version 2>/dev/null || echo v1"))
	}
	b.MustKiln("build", "-t", "out:1", dir)
	if v := version("out:1"); v != "v1" {
		t.Fatalf("first build on %s", v)
	}

	e2etest.PushWithSkopeo(t, src, "base:v2", ref) // :latest moves to v2
	b.MustKiln("build", "-t", "out:2", dir)
	if v := version("out:2"); v != "v1" {
		t.Errorf("without --pull the build used %s, want the stored v1", v)
	}
	_, errOut, err := b.Kiln("build", "--pull", "-t", "out:3", dir)
	if err != nil {
		t.Fatalf("build --pull: %v\n%s", err, errOut)
	}
	if v := version("out:3"); v != "v2" {
		t.Errorf("with --pull the build used %s, want v2", v)
	}
	if !strings.Contains(errOut, "Status: Downloaded newer image for "+ref) {
		t.Errorf("build --pull progress:\n%s", errOut)
	}
	// --pull of an image that never came from a registry keeps the local one.
	local := e2etest.DockerfileContext(t, "FROM out:1\nRUN true\n")
	if _, errOut, err := b.Kiln("build", "--pull", "-t", "out:4", local); err != nil || !strings.Contains(errOut, "WARNING: --pull") {
		t.Errorf("build --pull FROM a local image: %v\n%s", err, errOut)
	}
	b.AssertClean()
}
