package containers

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// commit's -m, -a and -c end up in the image as docker puts them.
func TestCommitChangesMessageAndAuthorLikeDocker(t *testing.T) {
	p := newPair(t, "kilncommit")
	c := p.name("c1")
	p.both("run", "--name", c, p.image("busybox"), "sh", "-c", "mkdir /app && echo x > /app/f")
	p.both("commit", "-m", "add app", "-a", "Jo <jo@example.com>",
		"-c", `CMD ["cat", "f"]`, "-c", "ENV GREETING=hi", "-c", "WORKDIR /app",
		"-c", "LABEL team=kiln", "-c", "EXPOSE 8080", "-c", "USER 1000",
		c, p.image("app:1"))
	var dockerInspect []map[string]any
	out, err := p.d.Docker("inspect", p.image("app:1"))
	if err != nil || json.Unmarshal([]byte(out), &dockerInspect) != nil || len(dockerInspect) != 1 {
		t.Fatalf("docker inspect: %v\n%s", err, out)
	}
	kiln, docker := p.kiln.Inspect(p.image("app:1")), dockerInspect[0]
	for _, k := range []string{"Author", "Comment"} {
		if kiln[k] != docker[k] {
			t.Errorf("%s %q, docker's %q", k, kiln[k], docker[k])
		}
	}
	kc, dc := kiln["Config"].(map[string]any), docker["Config"].(map[string]any)
	delete(dc["Labels"].(map[string]any), p.prefix) // the label docker's run got from the test
	for _, k := range []string{"Cmd", "Entrypoint", "Env", "WorkingDir", "Labels", "ExposedPorts", "User"} {
		if !reflect.DeepEqual(kc[k], dc[k]) {
			t.Errorf("Config.%s %v, docker's %v", k, kc[k], dc[k])
		}
	}
	if kc["WorkingDir"] != "/app" || kiln["Author"] != "Jo <jo@example.com>" {
		t.Errorf("config %v, author %v: the changes are missing", kc, kiln["Author"])
	}
	k, d := p.both("history", "--format", "{{.CreatedBy}}|{{.Comment}}", p.image("app:1"))
	if k != d || firstLine(k) != "sh -c mkdir /app && echo x > /app/f|add app" {
		t.Errorf("history:\n%s\ndocker's:\n%s", k, d)
	}
	if out := p.kiln.MustKiln("run", "--rm", p.image("app:1")); out != "x\n" {
		t.Errorf("run app:1 (CMD cat f in /app): %q, want x", out)
	}
}

func TestCommitRefusesABadChangeAndKeepsNothing(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("run", "--name", "c1", "busybox", "sh", "-c", "echo x > /x")
	images, blobs := s.MustKiln("images", "-aq"), len(s.Blobs())
	for _, change := range []string{"FOO bar", "RUN echo", "ENV"} {
		out, errOut, err := s.Kiln("commit", "-c", change, "c1", "bad:1")
		if err == nil || out != "" || !strings.Contains(errOut, "--change") {
			t.Errorf("commit -c %q: %v, stdout %q, stderr %q; want an error naming the change", change, err, out, errOut)
		}
	}
	if got := s.MustKiln("images", "-aq"); got != images || len(s.Blobs()) != blobs {
		t.Errorf("after refused commits: images %q (was %q), %d blobs (was %d)", got, images, len(s.Blobs()), blobs)
	}
	_, errOut, err := s.Kiln("commit", "nosuch", "x:1")
	if err == nil || strings.TrimSpace(errOut) != "ERROR: No such container: nosuch" {
		t.Errorf("commit nosuch: %v, %q; want docker's No such container", err, errOut)
	}
	_, errOut, err = s.Kiln("commit", "c1", "x@sha256:"+strings.Repeat("a", 64))
	if err == nil || !strings.Contains(errOut, "refusing to create a tag with a digest reference") {
		t.Errorf("commit to a digest name: %v, %q", err, errOut)
	}
}

// A running container is paused for the commit and runs on after it.
func TestCommitOfARunningContainer(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("run", "-d", "--name", "r1", "busybox", "sh", "-c", "echo up > /up; exec sleep 1000")
	t.Cleanup(func() {
		s.Kiln("kill", "r1")
		s.Kiln("wait", "r1")
	})
	deadline := time.Now().Add(20 * time.Second)
	for s.MustKiln("diff", "r1") != "A /up\n" {
		if time.Now().After(deadline) {
			t.Fatalf("r1 never wrote /up: diff %q", s.MustKiln("diff", "r1"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	id, err := os.Readlink(filepath.Join(s.Root, "containers", "names", "r1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pause := range []string{"--pause=true", "--pause=false"} {
		s.MustKiln("commit", pause, "r1", "running:1")
		if out := s.MustKiln("run", "--rm", "running:1", "cat", "/up"); out != "up\n" {
			t.Errorf("commit %s: run of the image: %q, want up", pause, out)
		}
		out, err := exec.Command("runc", "--root", filepath.Join(s.Root, "containers", "runc"), "state", id).Output()
		var state struct{ Status string }
		if err != nil || json.Unmarshal(out, &state) != nil || state.Status != "running" {
			t.Errorf("commit %s: runc state of r1: %v %s; want running (resumed)", pause, err, out)
		}
	}
}

// Stubs runc makes for an image without /proc, /sys, /dev or /etc are
// neither in the diff nor in the committed layer.
func TestCommitOfAnImageWithoutMountPointsLeavesRuncsStubsOut(t *testing.T) {
	testenv.RequireCommand(t, "/bin/busybox")
	s := e2etest.NewStore(t)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	entry := e2etest.RegEntry("bin/busybox", string(bb))
	entry.Hdr.Mode = 0o755
	tarPath := filepath.Join(t.TempDir(), "bare.tar")
	bare := e2etest.TarOf(t, entry, e2etest.SymlinkEntry("bin/sh", "busybox"), e2etest.SymlinkEntry("bin/cat", "busybox"))
	if err := os.WriteFile(tarPath, bare, 0o644); err != nil {
		t.Fatal(err)
	}
	s.MustKiln("import", tarPath, "bare:1")
	s.MustKiln("run", "--name", "b1", "bare:1", "sh", "-c", "echo hi > /hi")
	if out := s.MustKiln("diff", "b1"); out != "A /hi\n" {
		t.Errorf("diff of b1: %q, want only A /hi", out)
	}
	s.MustKiln("commit", "b1", "bare:2")
	k := s.MustKiln("diff", "bare:1", "bare:2")
	if !strings.HasPrefix(k, "A /hi (") || strings.Count(k, "\n") != 1 {
		t.Errorf("diff bare:1 bare:2 (the committed layer):\n%s\nwant only /hi", k)
	}
	if out := s.MustKiln("run", "--rm", "bare:2", "cat", "/hi"); out != "hi\n" {
		t.Errorf("run bare:2: %q", out)
	}
}
