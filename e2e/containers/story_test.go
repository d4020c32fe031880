package containers

import (
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// pair is one kiln store and the shared dockerd holding the same busybox
// image under the same name, so that the same commands can be typed to
// both and their outputs compared.
type pair struct {
	t    *testing.T
	kiln *e2etest.Store
	d    *testenv.Dockerd
	// prefix keeps this test's images and containers apart from other
	// tests' in the shared daemon.
	prefix string
	// ids are the image IDs each side made (commit prints them), so that
	// <none> rows can be told apart from other tests'.
	ids map[string]bool
}

// newPair tags busybox as PREFIX/busybox:latest in a kiln store and loads
// it into the shared dockerd.
func newPair(t *testing.T, prefix string) *pair {
	t.Helper()
	p := &pair{t: t, kiln: e2etest.NewStore(t), d: testenv.SharedDockerd(t), prefix: prefix, ids: map[string]bool{}}
	p.kiln.MustKiln("tag", "busybox:latest", p.image("busybox"))
	tarPath := filepath.Join(t.TempDir(), "busybox.tar")
	p.kiln.MustKiln("save", "-o", tarPath, p.image("busybox"))
	if out, err := p.d.Docker("load", "-i", tarPath); err != nil {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	t.Cleanup(p.cleanDocker)
	return p
}

func (p *pair) image(name string) string { return p.prefix + "/" + name }
func (p *pair) name(n string) string     { return p.prefix + "-" + n }

// cleanDocker removes what the test left in the shared daemon.
func (p *pair) cleanDocker() {
	out, _ := p.d.Docker("ps", "-aq", "--filter", "label="+p.prefix)
	for _, id := range strings.Fields(out) {
		p.d.Docker("rm", "-f", id)
	}
	out, _ = p.d.Docker("images", "-q", "--no-trunc", p.prefix+"/*")
	for _, id := range strings.Fields(out) {
		p.d.Docker("rmi", "-f", id)
	}
	for id := range p.ids {
		p.d.Docker("rmi", "-f", id)
	}
}

// both runs args with kiln and docker; docker's run and create get the
// test's label (for cleanDocker and a prune that touches only them) and
// no network (the daemon has no bridge).
func (p *pair) both(args ...string) (kiln, docker string) {
	p.t.Helper()
	dargs := args
	if args[0] == "run" || args[0] == "create" {
		dargs = append([]string{args[0], "--label", p.prefix, "--network", "none"}, args[1:]...)
	}
	if args[0] == "container" && args[1] == "prune" {
		dargs = append(slices.Clone(args), "--filter", "label="+p.prefix)
	}
	kiln = p.kiln.MustKiln(args...)
	docker, err := p.d.Docker(dargs...)
	if err != nil {
		p.t.Fatalf("docker %s: %v\n%s", strings.Join(dargs, " "), err, docker)
	}
	if args[0] == "commit" {
		p.ids[strings.TrimSpace(kiln)] = true
		p.ids[strings.TrimSpace(docker)] = true
	}
	return kiln, docker
}

var columns = regexp.MustCompile(`\s{2,}`)

// imageRows are the rows of `images` that are this test's, as
// "REPOSITORY TAG SIZE": IDs and creation times differ between the two
// by nature.
func (p *pair) imageRows(out string) []string {
	var rows []string
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for _, l := range lines[1:] {
		f := columns.Split(l, -1)
		if len(f) != 5 {
			p.t.Fatalf("images row %q: want 5 columns", l)
		}
		mine := strings.HasPrefix(f[0], p.prefix+"/")
		for id := range p.ids {
			mine = mine || strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), f[2])
		}
		if mine {
			rows = append(rows, f[0]+" "+f[1]+" "+f[4])
		}
	}
	sort.Strings(rows)
	return rows
}

// compareImages checks that `images` lists the same rows on both sides.
func (p *pair) compareImages(step string, want ...string) {
	p.t.Helper()
	k, d := p.both("images")
	if kh, dh := header(k), header(d); !slices.Equal(kh, dh) {
		p.t.Errorf("%s: images header %q, docker's %q", step, kh, dh)
	}
	kr, dr := p.imageRows(k), p.imageRows(d)
	if !slices.Equal(kr, dr) {
		p.t.Errorf("%s: kiln images rows\n%s\ndocker's\n%s\nkiln:\n%s\ndocker:\n%s", step, strings.Join(kr, "\n"), strings.Join(dr, "\n"), k, d)
	}
	if !slices.Equal(dr, want) {
		p.t.Errorf("%s: docker's images rows %q, the test expected %q", step, dr, want)
	}
}

// psRow is the `ps -a -s` row of container name, without its ID and
// times: IMAGE, COMMAND, STATUS up to its time, NAMES, SIZE.
func psRow(t *testing.T, out, name string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n")[1:] {
		f := columns.Split(strings.TrimSpace(l), -1)
		if len(f) == 7 && f[5] == name {
			status, _, _ := strings.Cut(f[4], ")")
			return []string{f[1], f[2], status + ")", f[5], f[6]}
		}
	}
	t.Errorf("no row for %s in:\n%s", name, out)
	return nil
}

// header is a table's column names (their widths follow the rows').
func header(s string) []string { return columns.Split(strings.TrimSpace(firstLine(s)), -1) }

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	sort.Strings(l)
	return l
}

// An unchanged container's diff is empty (the files runc had to make for
// its mounts are not changes) and its commit adds an empty layer.
func TestUnchangedContainerHasNoDiffLikeDocker(t *testing.T) {
	p := newPair(t, "kilnsame")
	c := p.name("u1")
	p.both("run", "--name", c, p.image("busybox"), "true")
	k, d := p.both("diff", c)
	if k != "" || d != "" {
		t.Errorf("diff %q, docker's %q; want none", k, d)
	}
	p.both("commit", c, p.image("same:1"))
	k, d = p.both("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", p.image("same:1"))
	if k != d || firstLine(d) != "true|0B" {
		t.Errorf("history:\n%s\ndocker's:\n%s", k, d)
	}
}

// Deletions, an emptied and remade directory, a chmod: the same lines as
// docker diff (whose order is random; kiln's is path order).
func TestDiffMatchesDocker(t *testing.T) {
	p := newPair(t, "kilndiff")
	c := p.name("d1")
	script := "rm -rf /home; mkdir /home; touch /home/new; rm /bin/ls; echo x > /etc/passwd; " +
		"chmod 700 /tmp; mkdir -p /srv/a/b; ln -s x /lnk; rm -rf /usr; mkdir /var/log; rm -rf /var"
	p.both("run", "--name", c, p.image("busybox"), "sh", "-c", script)
	k, d := p.both("diff", c)
	if !slices.Equal(sortedLines(k), sortedLines(d)) {
		t.Errorf("diff:\n%s\ndocker's:\n%s", k, d)
	}
	want := "C /bin\nD /bin/ls\nC /etc\nC /etc/passwd\nC /home\nD /home/app\nA /home/new\nA /lnk\nA /srv\nA /srv/a\nA /srv/a/b\nC /tmp\nD /usr\nD /var\n"
	if k != want {
		t.Errorf("diff:\n%s\nwant (path order):\n%s", k, want)
	}
}

// The seeds' story, typed to kiln and to docker: run an image changing a
// file, see the stopped container and its size, its diff, commit it
// (tagged and not), see the new layer in history, run the new image, then
// remove the containers — with images compared at every step.
func TestSeedsStoryMatchesDocker(t *testing.T) {
	p := newPair(t, "kilnstory")
	bb, s1, s2 := p.image("busybox"), p.name("s1"), p.name("s2")
	base := []string{bb + " latest 1.98MB"}
	p.compareImages("before", base...)

	k, d := p.both("run", "--name", s1, bb, "sh", "-c", "echo hello > /greeting")
	if k != "" || d != "" {
		t.Errorf("run printed %q, docker %q; want nothing", k, d)
	}
	p.compareImages("after run", base...)

	k, d = p.both("ps", "-a", "-s")
	if kh, dh := header(k), header(d); !slices.Equal(kh, dh) {
		t.Errorf("ps -a -s header %q, docker's %q", kh, dh)
	}
	kr, dr := psRow(t, k, s1), psRow(t, d, s1)
	if !slices.Equal(kr, dr) {
		t.Errorf("ps -a -s row %q, docker's %q\nkiln:\n%s\ndocker:\n%s", kr, dr, k, d)
	}
	if want := []string{bb, `"sh -c 'echo hello >…"`, "Exited (0)", s1, "6B (virtual 1.98MB)"}; !slices.Equal(dr, want) {
		t.Errorf("docker's ps row %q, the test expected %q", dr, want)
	}

	k, d = p.both("diff", s1)
	if k != d || k != "A /greeting\n" {
		t.Errorf("diff %q, docker's %q; want %q", k, d, "A /greeting\n")
	}

	k, d = p.both("commit", s1, p.image("story:v1"))
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(k) {
		t.Errorf("commit printed %q, want sha256:<id> as docker's %q", k, d)
	}
	withStory := []string{bb + " latest 1.98MB", p.image("story") + " v1 1.98MB"}
	p.compareImages("after commit", withStory...)
	if got := p.kiln.Inspect(p.image("story:v1"))["Id"]; got != strings.TrimSpace(k) {
		t.Errorf("inspect story:v1: Id %v, commit printed %s", got, k)
	}
	p.both("commit", s1)
	withDangling := append([]string{"<none> <none> 1.98MB"}, withStory...)
	p.compareImages("after an untagged commit", withDangling...)

	format := "{{.CreatedBy}}|{{.Size}}|{{.Comment}}"
	k, d = p.both("history", "--no-trunc", "--format", format, p.image("story:v1"))
	if k != d {
		t.Errorf("history --format:\n%s\ndocker's:\n%s", k, d)
	}
	if first := firstLine(d); first != "sh -c echo hello > /greeting|6B|" {
		t.Errorf("docker's history top %q: the test expected the commit's layer", first)
	}
	k, d = p.both("history", p.image("story:v1"))
	if !slices.Equal(header(k), header(d)) || strings.Count(k, "\n") != strings.Count(d, "\n") {
		t.Errorf("history:\n%s\ndocker's:\n%s", k, d)
	}

	k, d = p.both("run", "--rm", p.image("story:v1"), "cat", "/greeting")
	if k != "hello\n" || d != k {
		t.Errorf("run --rm story:v1 cat /greeting: %q, docker's %q; want hello", k, d)
	}

	k, d = p.both("rm", s1)
	if k != s1+"\n" || d != k {
		t.Errorf("rm printed %q, docker %q; want the name", k, d)
	}
	p.compareImages("after rm", withDangling...)

	p.both("run", "--name", s2, bb, "sh", "-c", "echo bye > /bye")
	s2id := strings.TrimSpace(p.kiln.MustKiln("ps", "-aq", "--no-trunc", "--filter", "name="+s2))
	k, d = p.both("container", "prune", "-f")
	kl, dl := strings.Split(strings.TrimRight(k, "\n"), "\n"), strings.Split(strings.TrimRight(d, "\n"), "\n")
	if len(kl) != 4 || len(dl) != 4 || kl[0] != dl[0] || kl[1] != s2id || kl[2] != "" || kl[3] != dl[3] {
		t.Errorf("container prune -f:\n%s\ndocker's:\n%s\nwant the same lines with %s", k, d, s2id)
	}
	if out := p.kiln.MustKiln("ps", "-aq"); out != "" {
		t.Errorf("ps -aq after prune: %q, want none", out)
	}
	p.compareImages("after prune", withDangling...)
	p.kiln.AssertDoctorClean()
}
