package explain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

const appDockerfile = "FROM busybox\nARG VERSION=1\nCOPY . /src\nRUN cat /src/a.txt && echo $VERSION\n"

// build runs kiln build --explain on dir and returns the WHY lines of its
// progress, by step name ("[3/4] COPY . /src" → its reasons).
func build(t *testing.T, s *e2etest.Store, dir string, args ...string) map[string]string {
	t.Helper()
	_, errOut, err := s.Kiln(append(append([]string{"build", "--explain", "--progress", "plain"}, args...), dir)...)
	if err != nil {
		t.Fatalf("kiln build: %v\n%s", err, errOut)
	}
	return whyLines(t, errOut)
}

var stepLine = regexp.MustCompile(`^#(\d+) (\[.*)$`)

// whyLines pairs each "#N WHY ..." line with the name on its "#N name" line.
func whyLines(t *testing.T, progress string) map[string]string {
	t.Helper()
	names, out := map[string]string{}, map[string]string{}
	for _, l := range strings.Split(progress, "\n") {
		if m := stepLine.FindStringSubmatch(l); m != nil {
			names[m[1]] = m[2]
		}
		n, why, ok := strings.Cut(l, " WHY ")
		if !ok {
			continue
		}
		name, ok := names[strings.TrimPrefix(n, "#")]
		if !ok {
			t.Fatalf("WHY line before its step's line: %q\n%s", l, progress)
		}
		out[name] = why
	}
	return out
}

// explained is kiln explain --json.
type explained struct {
	ID    string `json:"id"`
	Steps []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Why   []struct {
			Kind, Name, Old, New, Text string
			Redacted                   bool
		} `json:"why"`
	} `json:"steps"`
}

func explainJSON(t *testing.T, s *e2etest.Store, args ...string) explained {
	t.Helper()
	var e explained
	out := s.MustKiln(append([]string{"explain", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("kiln explain --json: %v\n%s", err, out)
	}
	return e
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExplainNamesAnEditedFileWithItsOldAndNewDigests(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": appDockerfile, "a.txt": "one\n", "b.txt": "same\n"})
	first := build(t, s, dir)
	if first["[3/4] COPY . /src"] != "no earlier build of this step" || first["[4/4] RUN cat /src/a.txt && echo $VERSION"] != "no earlier build of this step" {
		t.Errorf("first build: %q", first)
	}
	write(t, filepath.Join(dir, "a.txt"), "two\n")
	why := build(t, s, dir)
	want := "file a.txt changed: " + sha("one\n")[:19] + " → " + sha("two\n")[:19]
	if why["[3/4] COPY . /src"] != want {
		t.Errorf("COPY: %q, want %q", why["[3/4] COPY . /src"], want)
	}
	if got := why["[4/4] RUN cat /src/a.txt && echo $VERSION"]; got != "its input step #2 [3/4] COPY . /src ran" {
		t.Errorf("RUN: %q", got)
	}
	if _, ok := why["[1/4] FROM busybox"]; ok {
		t.Error("a cached step was explained")
	}

	e := explainJSON(t, s)
	found := false
	for _, st := range e.Steps {
		if st.Name == "[3/4] COPY . /src" {
			found = true
			if st.State != "ran" || len(st.Why) != 1 || st.Why[0].Kind != "file" || st.Why[0].Name != "a.txt" ||
				st.Why[0].Old != sha("one\n") || st.Why[0].New != sha("two\n") {
				t.Errorf("kiln explain --json: %+v", st)
			}
		}
	}
	if !found {
		t.Errorf("kiln explain --json has no COPY step: %+v", e)
	}
	text := s.MustKiln("explain", e.ID)
	if !strings.Contains(text, "[3/4] COPY . /src  (Dockerfile:3)\n  - "+want+"\n") || !strings.Contains(text, "cached (1): [1/4] FROM busybox") {
		t.Errorf("kiln explain:\n%s", text)
	}
}

func TestExplainNamesAChangedBuildArgWithBothValues(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": appDockerfile, "a.txt": "one\n"})
	build(t, s, dir, "--build-arg", "VERSION=1.0")
	why := build(t, s, dir, "--build-arg", "VERSION=2.0")
	if got := why["[4/4] RUN cat /src/a.txt && echo $VERSION"]; got != `$VERSION changed: "1.0" → "2.0"` {
		t.Errorf("RUN: %q (all: %q)", got, why)
	}
	if len(why) != 1 {
		t.Errorf("only the RUN ran: %q", why)
	}
}

func TestExplainNamesTheBaseImagesOldAndNewManifests(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": appDockerfile, "a.txt": "one\n"})
	build(t, s, dir)
	before := manifestOf(t, s, "docker.io/library/busybox:latest")
	p := filepath.Join(t.TempDir(), "busybox2.tar")
	e2etest.BusyboxTarWith(t, p, map[string][]byte{"extra.txt": []byte("a second busybox\n")})
	s.MustKiln("import", p, "busybox:latest")
	after := manifestOf(t, s, "docker.io/library/busybox:latest")
	if before == after {
		t.Fatal("the re-import kept the manifest")
	}
	why := build(t, s, dir)
	want := "base image busybox changed: " + before[:19] + " → " + after[:19]
	if got := why["[3/4] COPY . /src"]; got != want {
		t.Errorf("COPY: %q, want %q", got, want)
	}
	for _, st := range explainJSON(t, s).Steps {
		if st.Name == "[3/4] COPY . /src" && (len(st.Why) != 1 || st.Why[0].Kind != "base" || st.Why[0].Old != before || st.Why[0].New != after) {
			t.Errorf("kiln explain --json: %+v", st)
		}
	}
}

func TestExplainSaysOnlyModeBitsChanged(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": appDockerfile, "a.txt": "one\n", "run.sh": "echo hi\n"})
	if err := os.Chmod(filepath.Join(dir, "run.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	build(t, s, dir)
	if err := os.Chmod(filepath.Join(dir, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	why := build(t, s, dir)
	if got := why["[3/4] COPY . /src"]; got != "only mode bits changed: run.sh 0644 → 0755" {
		t.Errorf("COPY: %q", got)
	}
}

func TestExplainNoCacheAndAPrunedRecord(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": appDockerfile, "a.txt": "one\n"})
	build(t, s, dir)
	why := build(t, s, dir, "--no-cache")
	if got := why["[3/4] COPY . /src"]; got != "--no-cache: the step ran without looking at the cache" {
		t.Errorf("--no-cache: %q", got)
	}
	s.MustKiln("prune", "-f") // the records go, the build history stays (prune -a removes it too)
	why = build(t, s, dir)
	if got := why["[3/4] COPY . /src"]; !strings.HasPrefix(got, "the cache record was pruned (the same step was built in ") {
		t.Errorf("after prune: %q", got)
	}
	if len(why) != 2 {
		t.Errorf("both steps ran again: %q", why)
	}
}

func TestSecretValuesAreNeverShown(t *testing.T) {
	const secretValue = "k1ln-s3cret-mount-value"
	const argOld, argNew, argJSON = "k1ln-arg-value-one", "k1ln-arg-value-two", "k1ln-arg-value-three"
	s := e2etest.NewStore(t)
	// URL is not a secret's name, but it holds API_TOKEN's value
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nARG API_TOKEN\nENV URL=https://u:${API_TOKEN}@example.com\n" +
		"RUN --mount=type=secret,id=tok test $(cat /run/secrets/tok | wc -c) -eq " + strconv.Itoa(len(secretValue)) + " && echo ${#API_TOKEN}\n"})
	secretFile := filepath.Join(t.TempDir(), "tok")
	write(t, secretFile, secretValue)
	var outputs strings.Builder
	kiln := func(args ...string) {
		out, errOut, err := s.Kiln(args...)
		outputs.WriteString(out + errOut)
		if err != nil {
			t.Fatalf("kiln %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
	}
	kiln("build", "--explain", "--progress", "plain", "--secret", "id=tok,src="+secretFile, "--build-arg", "API_TOKEN="+argOld, dir)
	kiln("build", "--explain", "--progress", "plain", "--secret", "id=tok,src="+secretFile, "--build-arg", "API_TOKEN="+argNew, dir)
	kiln("explain")
	kiln("explain", "--json")
	e := explainJSON(t, s)
	kiln("build", "--explain", "--progress", "json", "--secret", "id=tok,src="+secretFile, "--build-arg", "API_TOKEN="+argJSON, dir)
	ids := s.MustKiln("builds", "diff", e.ID, e.ID)
	outputs.WriteString(ids)
	all := outputs.String()
	if !strings.Contains(all, "$API_TOKEN changed (its value is not shown: the name is a secret's)") {
		t.Errorf("the secret-named build arg's change is not named:\n%s", all)
	}
	if !strings.Contains(all, "$URL changed (its value is not shown: it holds a secret's value)") {
		t.Errorf("the ENV made from the secret-named build arg is not named without its value:\n%s", all)
	}
	for _, v := range []string{secretValue, argOld, argNew, argJSON} {
		if strings.Contains(all, v) {
			t.Errorf("%q is in kiln's output:\n%s", v, all)
		}
	}
	for _, st := range e.Steps {
		for _, c := range st.Why {
			if c.Kind == "var" && (!c.Redacted || c.Old != "" || c.New != "") {
				t.Errorf("a secret's change is not redacted: %+v", c)
			}
		}
	}
	// The secret mount's value is nowhere in the store. (A build arg's
	// value, secret-named or not, is in the image's config, as in docker —
	// which is why BuildKit's SecretsUsedInArgOrEnv warns about it.)
	filepath.Walk(s.Root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), secretValue) {
			t.Errorf("the secret's value is in %s", p)
		}
		return nil
	})
}

func TestBuildsDiffSaysWhichStepsChangedAndWhy(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": appDockerfile, "a.txt": "one\n"})
	build(t, s, dir)
	a := explainJSON(t, s).ID
	build(t, s, dir, "--build-arg", "VERSION=2")
	b := explainJSON(t, s).ID
	out := s.MustKiln("builds", "diff", a, b)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^STEP\s+A\s+B\s+WHY$`).MatchString(lines[0]) {
		t.Fatalf("kiln builds diff:\n%s", out)
	}
	if !regexp.MustCompile(`^\[3/4\] COPY \. /src\s+ran\s+cached\s+the same cache key in both builds$`).MatchString(lines[1]) {
		t.Errorf("COPY row: %q", lines[1])
	}
	if !regexp.MustCompile(`^\[4/4\] RUN cat /src/a.txt && echo \$VERSION\s+ran\s+ran\s+\$VERSION changed: "1" → "2"$`).MatchString(lines[2]) {
		t.Errorf("RUN row: %q", lines[2])
	}
	var row struct {
		Name     string `json:"name"`
		OldState string `json:"oldState"`
		NewState string `json:"newState"`
		Why      []struct{ Kind, Name, Old, New string }
	}
	js := strings.Split(strings.TrimSpace(s.MustKiln("builds", "diff", "--format", "json", a, b)), "\n")
	if err := json.Unmarshal([]byte(js[len(js)-1]), &row); err != nil {
		t.Fatal(err)
	}
	if row.NewState != "ran" || len(row.Why) != 1 || row.Why[0].Name != "VERSION" || row.Why[0].Old != "1" || row.Why[0].New != "2" {
		t.Errorf("--format json: %+v", row)
	}
	if _, errOut, err := s.Kiln("builds", "diff", a, "nosuchbuild"); err == nil || !strings.Contains(errOut, "no such build: nosuchbuild") {
		t.Errorf("unknown build: %v %s", err, errOut)
	}
}

// manifestOf reads the manifest digest that name has in the store's index.
func manifestOf(t *testing.T, s *e2etest.Store, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Root, "content", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if m.Annotations["io.containerd.image.name"] == name {
			return m.Digest
		}
	}
	t.Fatalf("%s is not in the index", name)
	return ""
}
