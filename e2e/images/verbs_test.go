package images

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

func TestImagesTagRmiInspectHistoryLikeDocker(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nLABEL a=b\nRUN echo v1 > /v\nCMD [\"cat\", \"/v\"]\n"), 0o644)
	iid := filepath.Join(t.TempDir(), "iid")
	s.MustKiln("build", "-t", "app:1", "-t", "app:latest", "--iidfile", iid, dir)
	idBytes, err := os.ReadFile(iid)
	if err != nil || !strings.HasPrefix(string(idBytes), "sha256:") {
		t.Fatalf("iidfile: %q %v", idBytes, err)
	}
	id := string(idBytes)
	short := strings.TrimPrefix(id, "sha256:")[:12]

	out := s.MustKiln("images")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !regexp.MustCompile(`^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$`).MatchString(lines[0]) {
		t.Errorf("header: %q", lines[0])
	}
	for _, tag := range []string{"1", "latest"} {
		if !regexp.MustCompile(`(?m)^app\s+` + tag + `\s+` + short + `\s+.*ago\s+\d`).MatchString(out) {
			t.Errorf("no row for app:%s with ID %s:\n%s", tag, short, out)
		}
	}
	if q := s.MustKiln("images", "-q"); !strings.Contains(q, short+"\n") {
		t.Errorf("images -q lacks %s:\n%s", short, q)
	}

	// A new build under the same tag leaves the old image dangling.
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nLABEL a=b\nRUN echo v2 > /v\nCMD [\"cat\", \"/v\"]\n"), 0o644)
	s.MustKiln("build", "-t", "app:1", dir)
	out = s.MustKiln("images")
	if !regexp.MustCompile(`(?m)^app\s+latest\s+` + short).MatchString(out) {
		t.Errorf("app:latest should still be the old image:\n%s", out)
	}
	if got := s.MustKiln("run", "--rm", "app:1"); got != "v2\n" {
		t.Errorf("app:1 runs %q", got)
	}

	// By ID with two names: refused without -f, like docker.
	s.MustKiln("tag", "app:latest", "other:x")
	if _, stderr, err := s.Kiln("rmi", short); err == nil || !strings.Contains(stderr, "must be forced") {
		t.Errorf("rmi of a multiply tagged ID: %v %s", err, stderr)
	}
	// By name: untag only.
	if out := s.MustKiln("rmi", "other:x"); !strings.Contains(out, "Untagged: other:x") || strings.Contains(out, "Deleted") {
		t.Errorf("rmi other:x: %s", out)
	}
	if out := s.MustKiln("rmi", "app:latest"); !strings.Contains(out, "Deleted:") {
		t.Errorf("removing the last name should delete: %s", out)
	}
	if strings.Contains(s.MustKiln("images"), short) {
		t.Errorf("deleted image still listed")
	}

	var insp []struct {
		ID       string `json:"Id"`
		RepoTags []string
		Config   struct {
			Cmd    []string
			Labels map[string]string
		}
		RootFS struct {
			DiffIDs []string `json:"Layers"`
		}
	}
	if err := json.Unmarshal([]byte(s.MustKiln("inspect", "app:1")), &insp); err != nil {
		t.Fatal(err)
	}
	if len(insp) != 1 || insp[0].RepoTags[0] != "app:1" || insp[0].Config.Labels["a"] != "b" || len(insp[0].RootFS.DiffIDs) != 2 {
		t.Errorf("inspect: %+v", insp)
	}

	hist := s.MustKiln("history", "app:1")
	for _, want := range []string{"CMD", "RUN /bin/sh -c echo v2", "LABEL a=b", "kiln import"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}
}

func TestLoadReadsDockerSaveTar(t *testing.T) {
	s := e2etest.NewStore(t)
	d := testenv.SharedDockerd(t)
	if err := d.Import(testenv.BusyboxTar(t), "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nRUN echo from-docker > /msg && rm /bin/vi\nCMD [\"cat\", \"/msg\"]\n"), 0o644)
	if err := d.Build(dir, "Dockerfile", "fromdocker:1"); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "d.tar")
	if err := d.Save("fromdocker:1", tarPath); err != nil {
		t.Fatal(err)
	}
	if out := s.MustKiln("load", "-i", tarPath); !strings.Contains(out, "Loaded image: fromdocker:1") {
		t.Errorf("load: %s", out)
	}
	if out := s.MustKiln("run", "--rm", "fromdocker:1"); out != "from-docker\n" {
		t.Errorf("run: %q", out)
	}
	if out := s.MustKiln("run", "--rm", "fromdocker:1", "sh", "-c", "test -e /bin/vi && echo present || echo gone"); out != "gone\n" {
		t.Errorf("docker's whiteout not honoured: %q", out)
	}
	// and kiln builds on top of the loaded image
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM fromdocker:1\nRUN cat /msg > /again\n"), 0o644)
	s.MustKiln("build", "-t", "ontop:1", dir)
	if out := s.MustKiln("run", "--rm", "ontop:1", "cat", "/again"); out != "from-docker\n" {
		t.Errorf("build on loaded image: %q", out)
	}
}
