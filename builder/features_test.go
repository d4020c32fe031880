package builder_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/transport/archive"
)

// runIn runs cmd in a throwaway container of the built image and returns
// its output.
func runIn(t *testing.T, s *store.Store, res *builder.Result, cmd ...string) string {
	t.Helper()
	im, err := s.Content.ReadImage(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := ops.NewWorker(s, "")
	if err := w.RunContainer(context.Background(), ops.ImageLayers(im), cmd, im.Config.Config.Env, "/", "", "host", &out); err != nil {
		t.Fatalf("run %v: %v\n%s", cmd, err, out.String())
	}
	return out.String()
}

// logSink keeps every line of step output.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) logger(*solver.Vertex) solver.Logger { return l }
func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func TestSecretIsUsableButStoredNowhere(t *testing.T) {
	s := newStore(t)
	const secret = "kiln-secret-7f3a9c21-do-not-leak"
	secretFile := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(secretFile, []byte(secret), 0o600)
	t.Setenv("KILN_TEST_SECRET", secret)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox
RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /file-sum && ls -l /run/secrets/tok | cut -c1-10 > /file-mode
RUN --mount=type=secret,id=envtok,env=TOKEN sh -c 'printf %s "$TOKEN" | sha256sum | cut -d" " -f1 > /env-sum; echo "$TOKEN" | wc -c'
`})
	sink := &logSink{}
	res, _ := runBuild(t, s, dir, builder.Options{
		Tags:    []string{"secret:1"},
		Secrets: map[string]builder.Secret{"tok": {File: secretFile}, "envtok": {Env: "KILN_TEST_SECRET"}},
		Log:     sink.logger,
	})
	sum := sha256.Sum256([]byte(secret))
	want := hex.EncodeToString(sum[:]) + "\n"
	if got := runIn(t, s, res, "cat", "/file-sum", "/env-sum"); got != want+want {
		t.Errorf("the step did not see the secret: %q, want %q twice", got, want)
	}
	if got := runIn(t, s, res, "cat", "/file-mode"); got != "-r--------\n" {
		t.Errorf("secret file mode: %q", got)
	}

	// The value is nowhere in the store: layers, snapshots, blobs, cache
	// records, stat cache, index.
	filepath.Walk(s.Root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("secret found in %s", p)
		}
		return nil
	})
	if bytes.Contains(sink.buf.Bytes(), []byte(secret)) {
		t.Errorf("secret in the progress log")
	}
	var saved bytes.Buffer
	if err := archive.Save(context.Background(), &saved, s.Content, []archive.SaveImage{{Manifest: res.Manifest}}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(saved.Bytes(), []byte(secret)) {
		t.Errorf("secret in the saved tar")
	}
}

func TestRequiredSecretMissingFailsClearly(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=api,required=true true\n"})
	_, err := builder.Run(context.Background(), s, builder.Options{ContextDir: dir})
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:2") || !strings.Contains(err.Error(), "secret api") {
		t.Fatalf("want a Dockerfile:2 error about secret api, got %v", err)
	}
}

func TestCacheMountKeepsContentAcrossBuildsAndStaysOutOfImage(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox
RUN --mount=type=cache,target=/var/cache/app,id=app echo run >> /var/cache/app/runs && wc -l < /var/cache/app/runs > /runs
`})
	first, _ := runBuild(t, s, dir, builder.Options{})
	second, _ := runBuild(t, s, dir, builder.Options{NoCache: true})
	if got := runIn(t, s, first, "cat", "/runs"); strings.TrimSpace(got) != "1" {
		t.Errorf("first build saw %q runs", got)
	}
	if got := runIn(t, s, second, "cat", "/runs"); strings.TrimSpace(got) != "2" {
		t.Errorf("second build saw %q runs: cache mount did not persist", got)
	}
	if got := runIn(t, s, second, "sh", "-c", "ls -d /var/cache/app 2>/dev/null || echo absent"); got != "absent\n" {
		t.Errorf("cache mount target leaked into the image: %q", got)
	}
}

func TestBindMountsReadContextAndStagesAndKeyOnContent(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM busybox AS tools
RUN echo tool-v1 > /tool
FROM busybox
RUN --mount=type=bind,source=conf.txt,target=/mnt/conf.txt --mount=type=bind,from=tools,source=/tool,target=/mnt/tool cat /mnt/conf.txt /mnt/tool > /out
RUN --mount=type=bind,target=/src,rw touch /src/scribble && ls /src > /listing
`,
		"conf.txt": "conf-v1\n",
	})
	res, _ := runBuild(t, s, dir, builder.Options{})
	if got := runIn(t, s, res, "cat", "/out"); got != "conf-v1\ntool-v1\n" {
		t.Errorf("bind mounts: %q", got)
	}
	if got := runIn(t, s, res, "cat", "/listing"); !strings.Contains(got, "conf.txt") {
		t.Errorf("rw context bind: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "scribble")); !os.IsNotExist(err) {
		t.Errorf("an rw bind mount wrote into the build context")
	}
	os.WriteFile(filepath.Join(dir, "conf.txt"), []byte("conf-v2\n"), 0o644)
	res, rec := runBuild(t, s, dir, builder.Options{})
	if got := runIn(t, s, res, "cat", "/out"); got != "conf-v2\ntool-v1\n" {
		t.Errorf("after changing the bound file: %q", got)
	}
	if len(rec.started()) != 2 {
		t.Errorf("changing a bound file should re-run both context-binding steps, ran %v", rec.started())
	}
}

func TestHeredocsRunLikeBuildKit(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\n" +
		"RUN <<EOF\necho one > /one\necho two >> /one\nEOF\n" +
		"RUN <<EOF\n#!/bin/sh\necho \"script $0\" > /script\nEOF\n" +
		"RUN <<A cat > /a && <<B cat > /b\nalpha\nA\nbeta\nB\n" +
		"ARG NAME=world\n" +
		"COPY <<EOF /greeting\nhello $NAME\nEOF\n" +
		"COPY <<'EOF' /raw\nhello $NAME\nEOF\n" +
		"RUN <<-EOF\n\techo tabs > /tabs\n\tEOF\n"})
	res, _ := runBuild(t, s, dir, builder.Options{})
	got := runIn(t, s, res, "cat", "/one", "/script", "/a", "/b", "/greeting", "/raw", "/tabs")
	want := "one\ntwo\nscript /dev/pipes/EOF\nalpha\nbeta\nhello world\nhello $NAME\ntabs\n"
	if got != want {
		t.Errorf("heredocs:\n%s\nwant:\n%s", got, want)
	}
}

func TestOnbuildTriggersRunInOrderInTheChild(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nONBUILD RUN echo first >> /order\nONBUILD RUN echo second >> /order\nRUN echo parent > /parent\n"})
	runBuild(t, s, dir, builder.Options{Tags: []string{"parent:1"}})
	child := writeContext(t, map[string]string{"Dockerfile": "FROM parent:1\nRUN cat /order > /seen\n"})
	res, _ := runBuild(t, s, child, builder.Options{})
	if got := runIn(t, s, res, "cat", "/seen"); got != "first\nsecond\n" {
		t.Errorf("triggers: %q", got)
	}
	im, _ := s.Content.ReadImage(res.Manifest)
	if len(im.Config.Config.OnBuild) != 0 {
		t.Errorf("triggers must not be inherited: %v", im.Config.Config.OnBuild)
	}
}

func TestRunNetworkNoneAndInsecureNeedsAllow(t *testing.T) {
	s := newStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --network=none ls /sys/class/net > /nets\n"})
	res, _ := runBuild(t, s, dir, builder.Options{})
	if got := runIn(t, s, res, "cat", "/nets"); got != "lo\n" {
		t.Errorf("--network=none interfaces: %q", got)
	}
	dir = writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --security=insecure cat /proc/self/status | grep CapEff > /caps\n"})
	if _, err := builder.Run(context.Background(), s, builder.Options{ContextDir: dir}); err == nil || !strings.Contains(err.Error(), "--allow security.insecure") {
		t.Fatalf("insecure without --allow: %v", err)
	}
	res, _ = runBuild(t, s, dir, builder.Options{AllowInsecure: true})
	status, _ := os.ReadFile("/proc/self/status")
	var bnd string
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			bnd = strings.TrimSpace(v)
		}
	}
	if got := runIn(t, s, res, "cat", "/caps"); strings.TrimSpace(strings.TrimPrefix(got, "CapEff:")) != bnd {
		t.Errorf("insecure step should have every capability kiln has (%s): %q", bnd, got)
	}
}

func TestAddURLVerifiesChecksum(t *testing.T) {
	s := newStore(t)
	body := "downloaded content\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer srv.Close()
	sum := sha256.Sum256([]byte(body))
	good := "sha256:" + hex.EncodeToString(sum[:])
	dir := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nADD --checksum=%s %s/files/data.txt /dl/\n", good, srv.URL)})
	res, _ := runBuild(t, s, dir, builder.Options{})
	if got := runIn(t, s, res, "sh", "-c", "cat /dl/data.txt; stat -c %a /dl/data.txt"); got != body+"600\n" {
		t.Errorf("ADD URL: %q", got)
	}
	bad := "sha256:" + strings.Repeat("0", 64)
	dir = writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nADD --checksum=%s %s/files/data.txt /dl/\n", bad, srv.URL)})
	if _, err := builder.Run(context.Background(), s, builder.Options{ContextDir: dir}); err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "Dockerfile:2") {
		t.Fatalf("bad checksum: %v", err)
	}
}

func TestNamedBuildContextsAndNoCacheFilter(t *testing.T) {
	s := newStore(t)
	extra := writeContext(t, map[string]string{"lib.txt": "from extra context\n"})
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM base AS b
RUN echo b > /b
FROM busybox
COPY --from=extra lib.txt /lib.txt
COPY --from=b /b /b
RUN echo final > /final
`})
	opts := builder.Options{BuildContexts: map[string]string{"extra": extra, "base": "docker-image://busybox:latest"}}
	res, _ := runBuild(t, s, dir, opts)
	if got := runIn(t, s, res, "cat", "/lib.txt", "/b"); got != "from extra context\nb\n" {
		t.Errorf("named contexts: %q", got)
	}
	opts.NoCacheFilter = []string{"b"}
	_, rec := runBuild(t, s, dir, opts)
	got := strings.Join(rec.started(), "\n")
	if !strings.Contains(got, "[b 2/2] RUN echo b") || strings.Contains(got, "RUN echo final") && !strings.Contains(got, "COPY --from=b") {
		t.Errorf("--no-cache-filter b re-ran:\n%s", got)
	}
	for _, name := range rec.started() {
		if strings.Contains(name, "COPY --from=extra") {
			t.Errorf("a step outside stage b re-ran without need: %s", name)
		}
	}
}

func TestSSHMountForwardsTheAgentSocket(t *testing.T) {
	s := newStore(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /sock\n"})
	res, _ := runBuild(t, s, dir, builder.Options{SSH: map[string]string{"default": sock}})
	if got := runIn(t, s, res, "cat", "/sock"); got != "/run/buildkit/ssh_agent.0\n" {
		t.Errorf("ssh mount: %q", got)
	}
}
