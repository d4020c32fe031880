package images

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// A name with a digest claims content; docker refuses to give one to an
// image, and so does kiln — in tag, build -t, import and push — leaving
// the store as it was.
func TestNamesWithADigestAreRefused(t *testing.T) {
	s := e2etest.NewStore(t)
	index := filepath.Join(s.Root, "content", "index.json")
	before, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	const dgst = "sha256:aacbd1c7b1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8"
	ctx := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo ran > /ran\n"})
	for _, args := range [][]string{
		{"tag", "busybox", "app@" + dgst},
		{"tag", "busybox", "app:1@" + dgst},
		{"build", "-t", "app@" + dgst, ctx},
		{"import", testenv.BusyboxTar(t), "imp@" + dgst},
		{"push", "busybox", "127.0.0.1:1/app@" + dgst},
	} {
		out, errOut, err := s.Kiln(args...)
		if err == nil {
			t.Errorf("kiln %s succeeded:\n%s%s", strings.Join(args, " "), out, errOut)
			continue
		}
		if !strings.Contains(errOut, "digest") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("kiln %s: want one error line about the digest, got:\n%s", strings.Join(args, " "), errOut)
		}
		if strings.Contains(errOut, "#") {
			t.Errorf("kiln %s started the build before refusing the name:\n%s", strings.Join(args, " "), errOut)
		}
	}
	after, _ := os.ReadFile(index)
	if string(after) != string(before) {
		t.Errorf("refused names changed index.json:\n%s\n→\n%s", before, after)
	}
	if strings.Contains(s.MustKiln("images", "--digests"), "aacbd1c7") {
		t.Error("kiln images shows the refused digest")
	}
}

// kiln import --change/-m set the config and history comment as docker
// import does; a change that is not allowed stores nothing.
func TestImportChangesAndMessage(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("import", "-c", "ENV PATH=/bin:/usr/bin GREETING=hi", "--change", `CMD ["sh", "-c", "echo $GREETING"]`,
		"-c", "WORKDIR /tmp", "-c", "LABEL team=build", "-c", "EXPOSE 8080", "-m", "rootfs of busybox-static",
		testenv.BusyboxTar(t), "bb:changed")
	var insp []struct {
		Config struct {
			Env, Cmd     []string
			WorkingDir   string
			Labels       map[string]string
			ExposedPorts map[string]struct{}
		}
	}
	if err := json.Unmarshal([]byte(s.MustKiln("inspect", "bb:changed")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	c := insp[0].Config
	if strings.Join(c.Env, " ") != "PATH=/bin:/usr/bin GREETING=hi" || strings.Join(c.Cmd, " ") != "sh -c echo $GREETING" ||
		c.WorkingDir != "/tmp" || c.Labels["team"] != "build" || len(c.ExposedPorts) != 1 {
		t.Errorf("config after --change: %+v", c)
	}
	if got := s.MustKiln("run", "bb:changed"); got != "hi\n" {
		t.Errorf("kiln run bb:changed printed %q, want the CMD's output", got)
	}
	if h := s.MustKiln("history", "--no-trunc", "bb:changed"); !strings.Contains(h, "rootfs of busybox-static") {
		t.Errorf("history does not show the -m comment:\n%s", h)
	}

	blobs := s.Blobs()
	_, errOut, err := s.Kiln("import", "-c", "RUN rm -rf /", testenv.BusyboxTar(t), "bb:bad")
	if err == nil || !strings.Contains(errOut, "RUN is not a valid change command") {
		t.Errorf("import --change RUN: err %v, stderr %q", err, errOut)
	}
	if got := s.Blobs(); strings.Join(got, " ") != strings.Join(blobs, " ") {
		t.Errorf("a refused import stored blobs: %v → %v", blobs, got)
	}
}

// An image without PATH (kiln import makes one) still runs commands by
// name: kiln run gives the container docker's default PATH.
func TestRunGivesDefaultPath(t *testing.T) {
	s := e2etest.NewStore(t)
	got := s.MustKiln("run", "busybox", "env")
	if !strings.Contains(got, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n") {
		t.Errorf("kiln run busybox env printed:\n%s", got)
	}
	if got := s.MustKiln("run", "-e", "PATH=/bin", "busybox", "sh", "-c", "echo $PATH"); got != "/bin\n" {
		t.Errorf("an explicit PATH was replaced: %q", got)
	}
}
