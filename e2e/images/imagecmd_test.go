package images

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// exitCode is the exit status of a finished kiln run (0 for nil).
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("kiln did not run: %v", err)
	}
	return ee.ExitCode()
}

// buildSmall builds a small image (no RUN) whose history has three
// entries: CMD, LABEL and busybox's import.
func buildSmall(t *testing.T, s *e2etest.Store, tag string) {
	t.Helper()
	dir := t.TempDir()
	df := "FROM busybox\nLABEL imgcmd=yes\nCMD [\"sh\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	s.MustKiln("build", "-q", "-t", tag, dir)
}

// Every verb of docker's image group that kiln has runs under
// "kiln image" as the top-level verb does; an unknown one is an error.
func TestImageGroupRunsTheTopLevelVerbs(t *testing.T) {
	s := e2etest.NewStore(t)

	// unknown subcommands fail like docker's, never help + exit 0
	for _, typo := range []string{"rmm", "inspectt", "nosuchverb"} {
		out, stderr, err := s.Kiln("image", typo, "busybox")
		if code := exitCode(t, err); code != 1 {
			t.Errorf("kiln image %s: exit %d, want 1\n%s%s", typo, code, out, stderr)
		}
		if want := "kiln: 'image " + typo + "' is not a kiln command."; !strings.Contains(stderr, want) {
			t.Errorf("kiln image %s: stderr lacks %q:\n%s", typo, want, stderr)
		}
		if !strings.Contains(stderr, "kiln image --help") {
			t.Errorf("kiln image %s: no hint at kiln image --help:\n%s", typo, stderr)
		}
		if strings.Contains(out, "Available Commands") {
			t.Errorf("kiln image %s printed the help on stdout:\n%s", typo, out)
		}
	}
	if _, stderr, _ := s.Kiln("image", "rmm"); !strings.Contains(stderr, "Did you mean this?\n\trm") {
		t.Errorf("kiln image rmm does not suggest rm:\n%s", stderr)
	}
	// the bare group prints its help, listing docker's verbs
	help := s.MustKiln("image")
	for _, verb := range []string{"build", "history", "import", "inspect", "load", "ls", "prune", "pull", "push", "rm", "save", "tag"} {
		if !regexp.MustCompile(`(?m)^  ` + verb + `\s`).MatchString(help) {
			t.Errorf("kiln image help lacks %s:\n%s", verb, help)
		}
	}

	// inspect, history, tag, ls/list
	id := strings.TrimSpace(s.MustKiln("image", "inspect", "-f", "{{.Id}}", "busybox"))
	if top := strings.TrimSpace(s.MustKiln("inspect", "-f", "{{.Id}}", "busybox")); id != top || !strings.HasPrefix(id, "sha256:") {
		t.Errorf("image inspect %q, inspect %q", id, top)
	}
	if h := s.MustKiln("image", "history", "--no-trunc", "-q", "busybox"); strings.TrimSpace(h) != id {
		t.Errorf("image history -q --no-trunc: %q, want %s", h, id)
	}
	s.MustKiln("image", "tag", "busybox", "imgcmd:tagged")
	for _, ls := range []string{"ls", "list"} {
		if out := s.MustKiln("image", ls); !regexp.MustCompile(`(?m)^imgcmd\s+tagged\s`).MatchString(out) {
			t.Errorf("image %s lacks imgcmd:tagged:\n%s", ls, out)
		}
	}

	// save, rm (and its docker aliases), load
	tarPath := filepath.Join(t.TempDir(), "img.tar")
	s.MustKiln("image", "save", "-o", tarPath, "imgcmd:tagged")
	if out := s.MustKiln("image", "rm", "imgcmd:tagged"); !strings.Contains(out, "Untagged: imgcmd:tagged") {
		t.Errorf("image rm: %s", out)
	}
	if out := s.MustKiln("image", "load", "-i", tarPath); !strings.Contains(out, "Loaded image: imgcmd:tagged") {
		t.Errorf("image load: %s", out)
	}
	s.MustKiln("image", "remove", "imgcmd:tagged")
	s.MustKiln("image", "load", "-i", tarPath)
	s.MustKiln("image", "rmi", "imgcmd:tagged")

	// import, build, prune
	importedID := strings.TrimSpace(s.MustKiln("image", "import", testenv.BusyboxTar(t), "imgcmd:imported"))
	if got := strings.TrimSpace(s.MustKiln("inspect", "-f", "{{.Id}}", "imgcmd:imported")); got != importedID {
		t.Errorf("image import printed %s, imgcmd:imported is %s", importedID, got)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nLABEL built=by-image-build\n"), 0o644)
	s.MustKiln("image", "build", "-t", "imgcmd:built", dir)
	if got := s.MustKiln("inspect", "-f", "{{index .Config.Labels \"built\"}}", "imgcmd:built"); got != "by-image-build\n" {
		t.Errorf("image build: label %q", got)
	}
	s.MustKiln("image", "prune", "-f")

	// pull and push are there (no registry here: their help is enough)
	for _, verb := range []string{"pull", "push"} {
		if out := s.MustKiln("image", verb, "--help"); !strings.Contains(out, "kiln image "+verb) {
			t.Errorf("kiln image %s --help:\n%s", verb, out)
		}
	}
}

// kiln inspect prints docker's object: its field names, in its order,
// RootFS as {"Type": "layers", "Layers": [...]}.
func TestInspectPrintsDockerFieldsAndFormat(t *testing.T) {
	s := e2etest.NewStore(t)
	out := s.MustKiln("inspect", "busybox")

	// top-level keys in order
	dec := json.NewDecoder(strings.NewReader(out))
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '[' || v == '{' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth == 2 && dec.More() {
				keys = append(keys, v)
				// skip the value
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	docker := []string{"Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion",
		"Author", "Config", "Architecture", "Variant", "Os", "OsVersion", "Size", "GraphDriver", "RootFS", "Metadata", "Descriptor"}
	last := -1
	for _, k := range keys {
		i := slices.Index(docker, k)
		if i < 0 {
			if k != "ManifestDigest" { // kiln's own, last
				t.Errorf("inspect has a field docker does not: %q", k)
			}
			continue
		}
		if i < last {
			t.Errorf("inspect field %s out of docker's order: %v", k, keys)
		}
		last = i
	}
	for _, want := range []string{"Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "RootFS", "Metadata"} {
		if !slices.Contains(keys, want) {
			t.Errorf("inspect lacks %s: %v", want, keys)
		}
	}

	var insp []map[string]any
	if err := json.Unmarshal([]byte(out), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	rootfs, _ := insp[0]["RootFS"].(map[string]any)
	layers, _ := rootfs["Layers"].([]any)
	if rootfs["Type"] != "layers" || len(layers) != 1 || !strings.HasPrefix(layers[0].(string), "sha256:") {
		t.Errorf("RootFS %v, want {Type: layers, Layers: [sha256:...]}", rootfs)
	}
	if _, ok := rootfs["diff_ids"]; ok {
		t.Errorf("RootFS has OCI's diff_ids: %v", rootfs)
	}
	if _, ok := insp[0]["Metadata"].(map[string]any)["LastTagTime"]; !ok {
		t.Errorf("Metadata %v", insp[0]["Metadata"])
	}

	// -f/--format: Go templates with docker's functions
	id := insp[0]["Id"].(string)
	for format, want := range map[string]string{
		"{{.Id}}":                          id,
		"{{.ID}}":                          id,
		"{{json .RootFS.Layers}}":          `["` + layers[0].(string) + `"]`,
		"{{.RootFS.Type}}":                 "layers",
		`{{join .RepoTags ","}}`:           "busybox:latest",
		`{{.Id}} {{join .RepoTags ","}}`:   id + " busybox:latest",
		"{{upper .Os}} {{title .Os}}":      "LINUX Linux",
		"{{lower (upper .Architecture)}}":  insp[0]["Architecture"].(string),
		"{{truncate .Id 10}}":              id[:10],
		`{{pad .Os 1 1}}|`:                 " linux |",
		`{{index (split .Id ":") 0}}`:      "sha256",
		"{{println .Os}}":                  "linux\n",
		`{{printf "%d" .Size}}`:            strconv.FormatInt(int64(insp[0]["Size"].(float64)), 10),
		"{{.Metadata.LastTagTime.IsZero}}": "true",
	} {
		for _, flag := range []string{"-f", "--format"} {
			if got := s.MustKiln("inspect", flag, format, "busybox"); got != want+"\n" {
				t.Errorf("inspect %s %q: %q, want %q", flag, format, got, want+"\n")
			}
		}
	}
	// one line per image, like docker
	if got := s.MustKiln("image", "inspect", "-f", "{{.Os}}", "busybox", id); got != "linux\nlinux\n" {
		t.Errorf("two images: %q", got)
	}
	if got := s.MustKiln("inspect", "--format", "json", "busybox"); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, `[{"Id":"`+id) {
		t.Errorf("--format json: %q", got)
	}
	// a template that does not parse: docker's exit status 64
	_, stderr, err := s.Kiln("inspect", "-f", "{{", "busybox")
	if code := exitCode(t, err); code != 64 || !strings.Contains(stderr, "template parsing error") {
		t.Errorf("bad template: exit %d\n%s", code, stderr)
	}

	// comment of kiln import -m, as docker import -m shows it
	s.MustKiln("import", "-m", "imported by imgcmd", testenv.BusyboxTar(t), "imgcmd:msg")
	if got := s.MustKiln("inspect", "-f", "{{.Comment}}", "imgcmd:msg"); got != "imported by imgcmd\n" {
		t.Errorf("Comment %q", got)
	}
}

// docker prints what it found, then one error per missing image.
func TestInspectMissingImageAfterTheOthers(t *testing.T) {
	s := e2etest.NewStore(t)
	out, stderr, err := s.Kiln("inspect", "busybox", "nosuch")
	if code := exitCode(t, err); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var insp []map[string]any
	if err := json.Unmarshal([]byte(out), &insp); err != nil || len(insp) != 1 || insp[0]["RepoTags"].([]any)[0] != "busybox:latest" {
		t.Errorf("stdout should hold busybox's JSON: %v\n%s", err, out)
	}
	// neither a container nor an image: docker inspect's words
	if strings.TrimSpace(stderr) != "Error: No such object: nosuch" {
		t.Errorf("stderr %q, want docker's \"Error: No such object: nosuch\"", stderr)
	}

	out, stderr, err = s.Kiln("image", "inspect", "-f", "{{.Os}}", "nosuch", "busybox", "alsomissing:1")
	if code := exitCode(t, err); code != 1 || out != "linux\n" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if stderr != "Error: No such image: nosuch\nError: No such image: alsomissing:1\n" {
		t.Errorf("stderr %q", stderr)
	}
	out, _, err = s.Kiln("inspect", "nosuch")
	if code := exitCode(t, err); code != 1 || out != "[]\n" {
		t.Errorf("only missing: exit %d, stdout %q (docker prints [])", code, out)
	}
}

// kiln history -q, -H and --format, like docker history.
func TestHistoryQuietHumanFormat(t *testing.T) {
	s := e2etest.NewStore(t)
	buildSmall(t, s, "imgcmd:hist")
	id := strings.TrimSpace(s.MustKiln("inspect", "-f", "{{.Id}}", "imgcmd:hist"))
	short := strings.TrimPrefix(id, "sha256:")[:12]

	if got := s.MustKiln("history", "-q", "imgcmd:hist"); got != short+"\n<missing>\n<missing>\n" {
		t.Errorf("history -q: %q", got)
	}
	if got := s.MustKiln("history", "--quiet", "--no-trunc", "imgcmd:hist"); got != id+"\n<missing>\n<missing>\n" {
		t.Errorf("history -q --no-trunc: %q", got)
	}

	// -H=false: CREATED AT in RFC 3339, sizes in bytes
	layerSize := strings.TrimSpace(s.MustKiln("inspect", "-f", "{{.Size}}", "busybox"))
	out := s.MustKiln("history", "-H=false", "imgcmd:hist")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^IMAGE\s+CREATED AT\s+CREATED BY\s+SIZE\s+COMMENT$`).MatchString(lines[0]) {
		t.Fatalf("history -H=false:\n%s", out)
	}
	rfc3339 := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)`
	if !regexp.MustCompile(`^` + short + `\s+` + rfc3339 + `\s+CMD \["sh"\]\s+0\s`).MatchString(lines[1]) {
		t.Errorf("history -H=false top row: %q", lines[1])
	}
	if !regexp.MustCompile(`^<missing>\s+` + rfc3339 + `\s+kiln import\s+` + layerSize + `(\s|$)`).MatchString(lines[3]) {
		t.Errorf("history -H=false bottom row %q, want size %s bytes", lines[3], layerSize)
	}
	if human := s.MustKiln("history", "-H", "imgcmd:hist"); !regexp.MustCompile(`(?m)^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT\n`+short+`\s+.* ago\s+CMD`).MatchString(human) ||
		!regexp.MustCompile(`kiln import\s+\d+(\.\d+)?[kM]B`).MatchString(human) {
		t.Errorf("history -H:\n%s", human)
	}

	// --format: template per row, table with headers, json
	got := s.MustKiln("history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}", "imgcmd:hist")
	want := short + `|CMD ["sh"]|0B|buildkit.dockerfile.v0` + "\n" + "<missing>|LABEL imgcmd=yes|0B|buildkit.dockerfile.v0\n"
	if !strings.HasPrefix(got, want) || !strings.HasPrefix(strings.Split(got, "\n")[2], "<missing>|kiln import|") {
		t.Errorf("history --format:\n%s", got)
	}
	if got := s.MustKiln("history", "-H=false", "--format", "{{.CreatedSince}}|{{.Size}}", "imgcmd:hist"); !regexp.MustCompile(`^` + rfc3339 + `\|0\n`).MatchString(got) {
		t.Errorf("-H=false --format .CreatedSince: %q", got)
	}
	table := s.MustKiln("history", "--format", `table {{.ID}}\t{{.Size}}`, "imgcmd:hist")
	if !regexp.MustCompile(`^IMAGE\s+SIZE\n` + short + `\s+0B\n<missing>\s+0B\n<missing>\s+\S+\n$`).MatchString(table) {
		t.Errorf("history --format table:\n%s", table)
	}
	js := strings.Split(strings.TrimSpace(s.MustKiln("history", "--format", "json", "imgcmd:hist")), "\n")
	if len(js) != 3 {
		t.Fatalf("history --format json: %d lines", len(js))
	}
	var row map[string]string
	if err := json.Unmarshal([]byte(js[0]), &row); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ID", "CreatedSince", "CreatedAt", "CreatedBy", "Size", "Comment"} {
		if _, ok := row[k]; !ok {
			t.Errorf("history json lacks %s: %v", k, row)
		}
	}
	if row["ID"] != short || row["CreatedBy"] != `CMD ["sh"]` || row["Size"] != "0B" {
		t.Errorf("history json row: %v", row)
	}
}
