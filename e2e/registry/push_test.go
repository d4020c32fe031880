package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// registryManifest is a manifest as the registry serves it.
type registryManifest struct {
	MediaType string `json:"mediaType"`
	Config    struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"config"`
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"layers"`
}

// get fetches /v2/PATH from a plain-HTTP registry.
func getV2(t *testing.T, reg *testenv.Registry, path string, accept ...string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, reg.URL()+"/v2/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", path, resp.Status, err, b)
	}
	return b
}

// manifestOf reads REPO:TAG's manifest from the registry.
func manifestOf(t *testing.T, reg *testenv.Registry, repo, tag string) registryManifest {
	t.Helper()
	b := getV2(t, reg, repo+"/manifests/"+tag,
		"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
	var m registryManifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest %s:%s: %v\n%s", repo, tag, err, b)
	}
	return m
}

// storage is the registry's filesystem storage root.
func storage(reg *testenv.Registry) string {
	return filepath.Join(reg.Dir, "storage", "docker", "registry", "v2")
}

// blobMtimes maps every blob the registry stores to its data file's
// modification time: an upload of a blob rewrites it.
func blobMtimes(t *testing.T, reg *testenv.Registry) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	files, _ := filepath.Glob(filepath.Join(storage(reg), "blobs", "sha256", "*", "*", "data"))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(filepath.Dir(f))] = fi.ModTime()
	}
	return out
}

// uploads lists upload sessions the registry has for repo (each blob
// upload starts one; a finished upload removes it).
func uploads(reg *testenv.Registry, repo string) []string {
	ents, _ := os.ReadDir(filepath.Join(storage(reg), "repositories", repo, "_uploads"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// errorLine checks that a failed kiln exited 1 with exactly one ERROR
// line on stderr, and returns it.
func errorLine(t *testing.T, err error, stderr string) string {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v\n%s", err, stderr)
	}
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "ERROR") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.HasSuffix(stderr, lines[0]+"\n") {
		t.Fatalf("want one ERROR line at the end of stderr, got:\n%s", stderr)
	}
	t.Logf("%s", lines[0])
	return lines[0]
}

// magic reads the first bytes of a blob from the registry.
func magic(t *testing.T, reg *testenv.Registry, repo, digest string, n int) []byte {
	t.Helper()
	b := getV2(t, reg, repo+"/blobs/"+digest)
	if len(b) < n {
		t.Fatalf("blob %s: only %d bytes", digest, len(b))
	}
	return b[:n]
}

func count(s, sub string) int { return strings.Count(s, sub) }

const multiLayers = "FROM busybox\nRUN echo one > /one\nRUN head -c 300000 /dev/urandom > /rand\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"

func multiLayerContext(t *testing.T) string {
	t.Helper()
	return e2etest.WriteContext(t, map[string][]byte{"Dockerfile": []byte(multiLayers), "hello.txt": []byte("hello from a pushed image\n")})
}

func TestPushGzipLayersThenDockerPullsAndRunsIt(t *testing.T) {
	s := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	ref := reg.Ref("team/multi:1")
	s.MustKiln("build", "-t", ref, e2etest.MultistageContext(t))
	info := s.Inspect(ref)
	id := info["Id"].(string)
	diffIDs := e2etest.ToStrings(info["RootFS"].(map[string]any)["Layers"])
	if len(diffIDs) < 3 {
		t.Fatalf("want a multi-layer image, got %d layers", len(diffIDs))
	}

	stdout, stderr, err := s.Kiln("push", ref)
	if err != nil {
		t.Fatalf("kiln push: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "The push refers to repository ["+reg.Addr+"/team/multi]") {
		t.Errorf("push progress lacks the repository line:\n%s", stderr)
	}
	for _, d := range diffIDs {
		if short := strings.TrimPrefix(d, "sha256:")[:12]; !strings.Contains(stderr, short+": Pushed") {
			t.Errorf("no %s: Pushed line:\n%s", short, stderr)
		}
	}
	m := manifestOf(t, reg, "team/multi", "1")
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Errorf("manifest media types %s / config %s", m.MediaType, m.Config.MediaType)
	}
	if m.Config.Digest != id {
		t.Errorf("pushed config %s, kiln inspect Id %s", m.Config.Digest, id)
	}
	if len(m.Layers) != len(diffIDs) {
		t.Fatalf("pushed %d layers, image has %d", len(m.Layers), len(diffIDs))
	}
	for _, l := range m.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("layer %s media type %s", l.Digest, l.MediaType)
		}
		if got := magic(t, reg, "team/multi", l.Digest, 2); !bytes.Equal(got, []byte{0x1f, 0x8b}) {
			t.Errorf("layer %s starts with %x, not gzip's magic", l.Digest, got)
		}
	}
	f := strings.Fields(stdout)
	if len(f) != 5 {
		t.Fatalf("push stdout %q", stdout)
	}
	pushedDigest := f[2]
	size, err := strconv.Atoi(f[4])
	if err != nil {
		t.Fatalf("push stdout %q: %v", stdout, err)
	}
	raw := getV2(t, reg, "team/multi/manifests/"+pushedDigest, "application/vnd.oci.image.manifest.v1+json")
	if len(raw) != size {
		t.Errorf("manifest is %d bytes, push said %d", len(raw), size)
	}
	if rd := e2etest.ToStrings(s.Inspect(ref)["RepoDigests"]); len(rd) != 1 || rd[0] != reg.Addr+"/team/multi@"+pushedDigest {
		t.Errorf("RepoDigests after push: %v", rd)
	}

	// The real check: docker pulls it (127.0.0.0/8 is insecure by default
	// for dockerd) and runs it.
	d := testenv.SharedDockerd(t)
	if out, err := d.Docker("pull", ref); err != nil {
		t.Fatalf("docker pull: %v\n%s", err, out)
	}
	t.Cleanup(func() { d.Docker("rmi", "-f", ref) })
	if out, err := d.Docker("image", "inspect", "--format", "{{.Id}}", ref); err != nil || strings.TrimSpace(out) != id {
		t.Errorf("docker image ID %q (%v), kiln's %s", out, err, id)
	}
	out, err := d.Docker("run", "--rm", "--network", "none", ref)
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	if out != e2etest.MultistageOutput {
		t.Errorf("docker run printed:\n%s\nwant:\n%s", out, e2etest.MultistageOutput)
	}

	// A second push sends no blob: every layer already exists, no upload
	// session is opened, no blob file is rewritten; the manifest is the same.
	before := blobMtimes(t, reg)
	time.Sleep(20 * time.Millisecond)
	stdout2, stderr, err := s.Kiln("push", ref)
	if err != nil {
		t.Fatalf("second push: %v\n%s", err, stderr)
	}
	if stdout2 != stdout {
		t.Errorf("second push: %q, first %q", stdout2, stdout)
	}
	if strings.Contains(stderr, "Pushed") || count(stderr, ": Layer already exists") != len(diffIDs) {
		t.Errorf("second push uploaded something:\n%s", stderr)
	}
	if up := uploads(reg, "team/multi"); len(up) != 0 {
		t.Errorf("second push opened upload sessions: %v", up)
	}
	after := blobMtimes(t, reg)
	for b, mt := range before {
		if !after[b].Equal(mt) {
			t.Errorf("blob %s rewritten by the second push", b)
		}
	}

	// Another repository of the same registry: the blobs are mounted.
	other := reg.Ref("other/copy:2")
	if _, stderr, err := s.Kiln("push", ref, other); err != nil {
		t.Fatalf("push to another repository: %v\n%s", err, stderr)
	} else if count(stderr, ": Mounted from team/multi") != len(diffIDs) || strings.Contains(stderr, "Pushed") {
		t.Errorf("push to another repository did not mount every layer:\n%s", stderr)
	}
	if up := uploads(reg, "other/copy"); len(up) != 0 {
		t.Errorf("mounting push opened upload sessions: %v", up)
	}
	if m2 := manifestOf(t, reg, "other/copy", "2"); m2.Config.Digest != id || len(m2.Layers) != len(diffIDs) {
		t.Errorf("other/copy:2 manifest %+v", m2)
	}
}

func TestPushZstdAndUncompressedAndLevels(t *testing.T) {
	s := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	s.MustKiln("build", "-t", "app:1", multiLayerContext(t))
	id := s.Inspect("app:1")["Id"].(string)

	zref := reg.Ref("z/app:1")
	if _, stderr, err := s.Kiln("push", "--compression", "zstd", "app:1", zref); err != nil {
		t.Fatalf("push zstd: %v\n%s", err, stderr)
	}
	skopeo := testenv.RequireCommand(t, "skopeo")
	raw, err := exec.Command(skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+zref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, raw)
	}
	if count(string(raw), "application/vnd.oci.image.layer.v1.tar+zstd") != 4 {
		t.Errorf("skopeo inspect --raw: want 4 zstd layers:\n%s", raw)
	}
	m := manifestOf(t, reg, "z/app", "1")
	if m.Config.Digest != id {
		t.Errorf("zstd push config %s, Id %s", m.Config.Digest, id)
	}
	if got := magic(t, reg, "z/app", m.Layers[len(m.Layers)-1].Digest, 4); !bytes.Equal(got, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("zstd layer starts with %x", got)
	}
	// kiln pulls it back into an empty store and runs it.
	e := e2etest.EmptyStore(t)
	e.MustKiln("pull", zref)
	if out := e.MustKiln("run", "--rm", zref); out != "hello from a pushed image\n" {
		t.Errorf("pulled zstd image printed %q", out)
	}

	uref := reg.Ref("u/app:1")
	if _, stderr, err := s.Kiln("push", "--compression", "uncompressed", "app:1", uref); err != nil {
		t.Fatalf("push uncompressed: %v\n%s", err, stderr)
	}
	mu := manifestOf(t, reg, "u/app", "1")
	diffIDs := e2etest.ToStrings(s.Inspect("app:1")["RootFS"].(map[string]any)["Layers"])
	for i, l := range mu.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar" || l.Digest != diffIDs[i] {
			t.Errorf("uncompressed layer %d: %s %s, diffID %s", i, l.MediaType, l.Digest, diffIDs[i])
		}
	}

	// A level is its own compression: level 1 gives other blobs than 6.
	// (In one registry the second push would reuse the first's gzip
	// blobs, whatever their level, like BuildKit without
	// force-compression; so two registries.)
	reg2 := testenv.StartRegistry(t, testenv.RegistryOptions{})
	if _, stderr, err := s.Kiln("push", "--compression", "gzip", "--compression-level", "1", "app:1", reg.Ref("g/app:1")); err != nil {
		t.Fatalf("push level 1: %v\n%s", err, stderr)
	}
	if _, stderr, err := s.Kiln("push", "app:1", reg2.Ref("g/app:6")); err != nil {
		t.Fatalf("push level 6: %v\n%s", err, stderr)
	}
	m1, m6 := manifestOf(t, reg, "g/app", "1"), manifestOf(t, reg2, "g/app", "6")
	if m1.Layers[0].Digest == m6.Layers[0].Digest {
		t.Errorf("gzip level 1 and 6 gave the same blob %s", m1.Layers[0].Digest)
	}

	// Bad options fail before anything is sent.
	for _, args := range [][]string{
		{"push", "--compression", "lz4", "app:1", reg.Ref("bad/x:1")},
		{"push", "--compression", "zstd", "--compression-level", "30", "app:1", reg.Ref("bad/x:1")},
		{"push", "nosuch:1"},
		{"push", "app:1", reg.Ref("bad/x@sha256:" + strings.Repeat("a", 64))},
	} {
		_, stderr, err := s.Kiln(args...)
		errorLine(t, err, stderr)
	}
	if _, err := os.Stat(filepath.Join(storage(reg), "repositories", "bad")); !os.IsNotExist(err) {
		t.Errorf("a refused push reached the registry: %v", err)
	}
}

func TestPushTLSWithCredentials(t *testing.T) {
	s := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Users: map[string]string{"ci": "s3cret"}})
	s.MustKiln("build", "-t", "app:1", multiLayerContext(t))
	ref := reg.Ref("team/app:1")
	good := []string{"DOCKER_CONFIG=" + testenv.DockerConfig(t, reg.Addr, "ci", "s3cret"), "KILN_REGISTRY_CA=" + reg.CACert}

	// Wrong password, no credentials, untrusted CA: one clear line each.
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"wrong password", []string{"DOCKER_CONFIG=" + testenv.DockerConfig(t, reg.Addr, "ci", "wrong"), "KILN_REGISTRY_CA=" + reg.CACert}, "unauthorized"},
		{"no credentials", []string{"DOCKER_CONFIG=" + t.TempDir(), "KILN_REGISTRY_CA=" + reg.CACert}, "unauthorized"},
		{"untrusted CA", []string{good[0]}, "certificate"},
	}
	for _, c := range cases {
		_, stderr, err := s.KilnEnv(c.env, "push", "app:1", ref)
		line := errorLine(t, err, stderr)
		if !strings.Contains(line, c.want) || !strings.Contains(line, ref) {
			t.Errorf("%s: error line %q lacks %q", c.name, line, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(storage(reg), "repositories", "team")); !os.IsNotExist(err) {
		t.Errorf("a refused push left something in the registry: %v", err)
	}

	stdout, stderr, err := s.KilnEnv(good, "push", "app:1", ref)
	if err != nil {
		t.Fatalf("push with credentials: %v\n%s", err, stderr)
	}
	if !strings.HasPrefix(stdout, "1: digest: sha256:") || count(stderr, ": Pushed") != 4 {
		t.Errorf("push with credentials:\n%s%s", stdout, stderr)
	}
	// The same with --registry-ca instead of the environment variable.
	if _, stderr, err := s.KilnEnv(good[:1], "--registry-ca", reg.CACert, "push", "app:1", ref); err != nil || count(stderr, "Layer already exists") != 4 {
		t.Errorf("second push with --registry-ca: %v\n%s", err, stderr)
	}
	// What was pushed pulls back with the same credentials.
	e := e2etest.EmptyStore(t)
	if _, stderr, err := e.KilnEnv(good, "pull", ref); err != nil {
		t.Fatalf("pull: %v\n%s", err, stderr)
	}
	if out := e.MustKiln("run", "--rm", ref); out != "hello from a pushed image\n" {
		t.Errorf("pulled image printed %q", out)
	}
}

func TestPushInterruptedByRegistryKillThenRetried(t *testing.T) {
	s := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	ref := reg.Ref("big/app:1")
	dir := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo small > /small\nRUN head -c 200000000 /dev/urandom > /big\n")
	s.MustKiln("build", "-t", ref, dir)
	diffIDs := e2etest.ToStrings(s.Inspect(ref)["RootFS"].(map[string]any)["Layers"])
	bigShort := strings.TrimPrefix(diffIDs[2], "sha256:")[:12]

	// Push; once more than 16 MB of the big layer reached the registry,
	// kill it.
	cmd := exec.Command(e2etest.Bin(), "--root", s.Root, "push", ref)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	uploads := filepath.Join(storage(reg), "repositories", "big", "app", "_uploads", "*", "data")
	deadline := time.After(2 * time.Minute)
	var err error
wait:
	for {
		select {
		case err := <-exited:
			t.Fatalf("the push ended (%v) before it could be interrupted:\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no upload of the big layer in 2 minutes:\n%s", stderr.String())
		case <-time.After(2 * time.Millisecond):
		}
		files, _ := filepath.Glob(uploads)
		for _, f := range files {
			if fi, e := os.Stat(f); e == nil && fi.Size() > 16<<20 {
				reg.Kill()
				select {
				case err = <-exited:
					break wait
				case <-time.After(2 * time.Minute):
					cmd.Process.Kill()
					t.Fatalf("kiln push still running 2 minutes after the registry died:\n%s", stderr.String())
				}
			}
		}
	}
	line := errorLine(t, err, stderr.String())
	if !strings.Contains(line, "push "+ref+": ") || !strings.Contains(line, "registry at "+reg.Addr) {
		t.Errorf("error line after the kill: %q", line)
	}
	mapping := filepath.Join(s.Root, "content", "compressed", "gzip-6", strings.TrimPrefix(diffIDs[2], "sha256:"))
	fi, statErr := os.Stat(mapping)
	if statErr != nil {
		t.Fatalf("the big layer's compression is not remembered: %v", statErr)
	}

	// The retry completes: what arrived is not sent again, and the big
	// layer is not compressed again.
	reg.Restart(t)
	out, errOut, err := s.Kiln("push", ref)
	if err != nil {
		t.Fatalf("retry: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, bigShort+": Pushed") || count(errOut, ": Pushed") != 1 || count(errOut, ": Layer already exists") != 2 {
		t.Errorf("retry should push only the big layer:\n%s", errOut)
	}
	if fi2, err := os.Stat(mapping); err != nil || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("the big layer was compressed again (%v)", err)
	}
	if !strings.HasPrefix(out, "1: digest: sha256:") {
		t.Errorf("retry stdout %q", out)
	}
	e := e2etest.EmptyStore(t)
	e.MustKiln("pull", ref)
	if got := e.MustKiln("run", "--rm", ref, "sh", "-c", "wc -c < /big; cat /small"); got != "200000000\nsmall\n" {
		t.Errorf("pulled image: %q", got)
	}
}

func TestBuildPushAndRegistryOutput(t *testing.T) {
	s := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	dir := multiLayerContext(t)
	ref := reg.Ref("built/app:1")
	_, stderr, err := s.Kiln("build", "--push", "-t", ref, dir)
	if err != nil {
		t.Fatalf("build --push: %v\n%s", err, stderr)
	}
	if count(stderr, ": Pushed") != 4 || !strings.Contains(stderr, "1: digest: sha256:") {
		t.Errorf("build --push progress:\n%s", stderr)
	}
	id := s.Inspect(ref)["Id"].(string)
	if m := manifestOf(t, reg, "built/app", "1"); m.Config.Digest != id {
		t.Errorf("build --push config %s, Id %s", m.Config.Digest, id)
	}

	// -o type=registry with its own names and docker media types: the
	// layers are compressed already, so nothing is compressed again and
	// everything is mounted from built/app.
	other := reg.Ref("out/app:2")
	_, stderr, err = s.Kiln("build", "-o", "type=registry,\"name="+other+","+reg.Ref("out/app:3")+"\",oci-mediatypes=false", dir)
	if err != nil {
		t.Fatalf("build -o type=registry: %v\n%s", err, stderr)
	}
	if count(stderr, ": Mounted from built/app") != 4 || count(stderr, ": Layer already exists") != 4 {
		t.Errorf("-o type=registry progress:\n%s", stderr)
	}
	for _, tag := range []string{"2", "3"} {
		m := manifestOf(t, reg, "out/app", tag)
		if m.MediaType != "application/vnd.docker.distribution.manifest.v2+json" || m.Config.Digest != id ||
			m.Layers[0].MediaType != "application/vnd.docker.image.rootfs.diff.tar.gzip" {
			t.Errorf("out/app:%s: %+v", tag, m)
		}
	}
	// The names are in the store too (type=image names the image).
	if got := s.Inspect(other)["Id"]; got != id {
		t.Errorf("%s in the store: %v", other, got)
	}

	// What build --push sent runs after a pull into an empty store.
	e := e2etest.EmptyStore(t)
	e.MustKiln("pull", other)
	if out := e.MustKiln("run", "--rm", other); out != "hello from a pushed image\n" {
		t.Errorf("pulled image printed %q", out)
	}

	// Failures: --push without -t fails before building; a push that
	// cannot reach its registry fails the build with one line.
	_, stderr, err = s.Kiln("build", "--push", dir)
	if line := errorLine(t, err, stderr); !strings.Contains(line, "-t") {
		t.Errorf("--push without -t: %q", line)
	}
	_, stderr, err = s.Kiln("build", "-o", "type=registry,name=127.0.0.1:1/x/y:1", dir)
	if line := errorLine(t, err, stderr); !strings.Contains(line, "connection refused") {
		t.Errorf("push to a closed port: %q", line)
	}
	s.AssertClean()
}
