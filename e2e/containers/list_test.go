package containers

import (
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// ps lists and filters as docker ps does; rm and container prune remove
// what they say; an image a container uses is refused to rmi and spared
// by image prune.
func TestListRemoveAndImageConflicts(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("tag", "busybox", "other:1")
	s.MustKiln("run", "--name", "ok", "busybox", "true")
	s.Kiln("run", "--name", "bad", "busybox", "sh", "-c", "exit 3")
	s.MustKiln("create", "--name", "made", "other:1", "true")
	id := strings.TrimSpace(s.MustKiln("run", "-d", "--name", "up", "busybox", "sleep", "300"))
	t.Cleanup(func() { s.Kiln("rm", "-f", "up") })

	names := func(args ...string) string {
		return strings.TrimSpace(s.MustKiln(append([]string{"ps", "--format", "{{.Names}}"}, args...)...))
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "up"},
		{[]string{"-a"}, "up\nmade\nbad\nok"},
		{[]string{"-f", "status=exited"}, "bad\nok"},
		{[]string{"-f", "exited=3"}, "bad"},
		{[]string{"-f", "status=created"}, "made"},
		{[]string{"-a", "-f", "name=^/(ok|up)$"}, "up\nok"},
		{[]string{"-a", "-f", "ancestor=other:1"}, "up\nmade\nbad\nok"}, // same image
		{[]string{"-a", "-f", "since=bad"}, "up\nmade"},
		{[]string{"-a", "-f", "before=bad"}, "ok"},
		{[]string{"-n", "2"}, "up\nmade"},
		{[]string{"-l"}, "up"},
	} {
		if got := names(tc.args...); got != tc.want {
			t.Errorf("ps %v: %q, want %q", tc.args, got, tc.want)
		}
	}
	if got := strings.TrimSpace(s.MustKiln("ps", "-q", "--no-trunc")); got != id {
		t.Errorf("ps -q --no-trunc %q, want %s", got, id)
	}
	if status := s.MustKiln("ps", "--format", "{{.Status}}"); !strings.HasPrefix(status, "Up ") {
		t.Errorf("running status %q", status)
	}
	if _, stderr, err := s.Kiln("ps", "-f", "status=sleepy"); err == nil || !strings.Contains(stderr, "Invalid filter 'status=sleepy'") {
		t.Errorf("bad status filter: %v %s", err, stderr)
	}

	// rmi: a second name goes freely; the last one, which containers
	// use, does not.
	imageID := s.Inspect("busybox")["Id"].(string)
	if out := s.MustKiln("rmi", "other:1"); out != "Untagged: other:1\n" {
		t.Errorf("rmi other:1 printed %q", out)
	}
	if _, stderr, err := s.Kiln("rmi", "busybox"); err == nil || !strings.Contains(stderr, `unable to remove repository reference "busybox" (must force) - container `) {
		t.Errorf("rmi busybox: %v %s", err, stderr)
	}
	if _, stderr, err := s.Kiln("rmi", "-f", imageID[7:19]); err == nil || !strings.Contains(stderr, "(cannot be forced) - image is being used by running container "+id[:12]) {
		t.Errorf("rmi -f ID of a running container's image: %v %s", err, stderr)
	}

	// rm: running refused, -f kills; a missing one with -f is no error.
	if _, stderr, err := s.Kiln("rm", "up"); err == nil || !strings.Contains(stderr, "container is running") {
		t.Errorf("rm of a running container: %v %s", err, stderr)
	}
	if out := s.MustKiln("rm", "-f", "up", "nosuch"); out != "up\n" {
		t.Errorf("rm -f up nosuch printed %q", out)
	}
	if _, stderr, err := s.Kiln("rm", "nosuch"); err == nil || !strings.Contains(stderr, "No such container: nosuch") {
		t.Errorf("rm nosuch: %v %s", err, stderr)
	}

	// A stopped container's image: its last name goes only with -f, and
	// then the image too (docker's rmi -f); ps shows its ID instead and
	// the container still starts (the GC keeps what it needs).
	if out := s.MustKiln("rmi", "-f", "busybox"); !strings.Contains(out, "Deleted: "+imageID) {
		t.Errorf("rmi -f busybox printed %q", out)
	}
	s.MustKiln("prune", "-f")
	if got := s.MustKiln("ps", "-a", "-f", "name=^/ok$", "--format", "{{.Image}}"); got != imageID[7:19]+"\n" {
		t.Errorf("IMAGE of a container whose image is gone: %q, want its short ID", got)
	}
	if got, stderr, err := s.Kiln("start", "-a", "ok"); err != nil || got != "" {
		t.Errorf("start -a ok after rmi -f and prune: %v %q %s", err, got, stderr)
	}
	// image prune spares a dangling image a container was made from.
	dangling := strings.TrimSpace(s.MustKiln("commit", "ok"))
	s.MustKiln("run", "--name", "fromd", dangling, "true")
	s.MustKiln("image", "prune", "-f")
	if out := s.MustKiln("images", "-q", "--no-trunc"); !strings.Contains(out, dangling) {
		t.Errorf("image prune removed the dangling image a container uses:\n%s", out)
	}

	if out := s.MustKiln("df"); !regexp.MustCompile(`(?m)^Containers\s+4\s+0\s+\S+\s+\S+ \((100|0)%\)$`).MatchString(out) {
		t.Errorf("df has no Containers row for 4 stopped containers:\n%s", out)
	}
	if out := s.MustKiln("df", "-v"); !regexp.MustCompile(`(?m)^Containers space usage:$`).MatchString(out) || !strings.Contains(out, "fromd") {
		t.Errorf("df -v does not list the containers:\n%s", out)
	}
	out := s.MustKiln("container", "prune", "-f")
	if !strings.HasPrefix(out, "Deleted Containers:\n") || strings.Count(out, "\n") != 7 || !strings.HasSuffix(out, "\n\nTotal reclaimed space: 0B\n") {
		t.Errorf("container prune -f:\n%s", out)
	}
	if out := s.MustKiln("container", "ls", "-aq"); out != "" {
		t.Errorf("containers left after prune: %q", out)
	}
	s.MustKiln("image", "prune", "-f")
	if out := s.MustKiln("images", "-q", "--no-trunc"); strings.Contains(out, dangling) {
		t.Errorf("the dangling image outlived its container:\n%s", out)
	}
	s.AssertDoctorClean()
}
