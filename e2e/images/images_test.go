package images

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

// Fixed creation times (SOURCE_DATE_EPOCH), so that the order and the
// CREATED column are known.
const (
	epochBase = 1600000000
	epochV1   = 1700000000
	epochV2   = 1700000100
	epochLib  = 1700000200
)

// imagesScenario is the seeds' story on a fresh store, with names under
// prefix: a base image; app built, then rebuilt with a change under the
// same tags (v1 becomes <none>:<none>); v2 tagged once more as other/x:y;
// and lib. It returns the image IDs by role.
func imagesScenario(t *testing.T, prefix string) (*e2etest.Store, map[string]string) {
	t.Helper()
	s := e2etest.EmptyStore(t)
	run := func(epoch int, args ...string) string {
		t.Helper()
		out, errOut, err := s.KilnEnv([]string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch)}, args...)
		if err != nil {
			t.Fatalf("kiln %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	ids := map[string]string{}
	ids["base"] = strings.TrimSpace(run(epochBase, "import", testenv.BusyboxTar(t), prefix+"base:1"))
	build := func(epoch int, label string, tags ...string) string {
		dir := e2etest.ContextDir(t, fmt.Sprintf("FROM %sbase:1\nLABEL k=%s\nRUN echo %s > /id\n", prefix, label, label), map[string][]byte{})
		iid := filepath.Join(t.TempDir(), "iid")
		args := []string{"build", "--iidfile", iid}
		for _, tag := range tags {
			args = append(args, "-t", tag)
		}
		run(epoch, append(args, dir)...)
		b, err := os.ReadFile(iid)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ids["v1"] = build(epochV1, "v1", prefix+"app:1", prefix+"app:latest")
	ids["v2"] = build(epochV2, "v2", prefix+"app:1", prefix+"app:latest")
	s.MustKiln("tag", prefix+"app:1", prefix+"other/x:y")
	ids["lib"] = build(epochLib, "lib", prefix+"lib:1")
	return s, ids
}

func short(id string) string { return strings.TrimPrefix(id, "sha256:")[:12] }

func TestImagesListLikeDocker(t *testing.T) {
	s, ids := imagesScenario(t, "")
	v1, v2, lib, base := short(ids["v1"]), short(ids["v2"]), short(ids["lib"]), short(ids["base"])
	ago := func(epoch int64) string { return units.HumanDuration(time.Since(time.Unix(epoch, 0))) + " ago" }
	images := func(args ...string) string {
		t.Helper()
		return s.MustKiln(append([]string{"images"}, args...)...)
	}
	// withoutSize drops the last column: SIZE depends on tar sizes.
	lastField := regexp.MustCompile(`(?m)\s+\S+$`)
	withoutSize := func(out string) string { return lastField.ReplaceAllString(out, "") }
	// table is what docker prints (SIZE aside): newest image first, one
	// row per name, the image whose tags moved as <none> <none>.
	table := func(rows ...[]string) string {
		if len(rows) == 0 {
			return "REPOSITORY   TAG       IMAGE ID   CREATED\n"
		}
		var b strings.Builder
		b.WriteString("REPOSITORY   TAG       IMAGE ID       CREATED\n")
		for _, r := range rows {
			fmt.Fprintf(&b, "%-13s%-10s%-15s%s\n", r[0], r[1], r[2], r[3])
		}
		return b.String()
	}
	rowLib := []string{"lib", "1", lib, ago(epochLib)}
	rowApp1 := []string{"app", "1", v2, ago(epochV2)}
	rowAppL := []string{"app", "latest", v2, ago(epochV2)}
	rowOther := []string{"other/x", "y", v2, ago(epochV2)}
	rowNone := []string{"<none>", "<none>", v1, ago(epochV1)}
	rowBase := []string{"base", "1", base, ago(epochBase)}
	check := func(got, want string) {
		t.Helper()
		if withoutSize(got) != want {
			t.Errorf("got:\n%s\nwant (SIZE aside):\n%s", got, want)
		}
	}
	check(images(), table(rowLib, rowApp1, rowAppL, rowOther, rowNone, rowBase))
	check(images("-a"), table(rowLib, rowApp1, rowAppL, rowOther, rowNone, rowBase))
	check(images("-f", "dangling=false"), table(rowLib, rowApp1, rowAppL, rowOther, rowBase))
	check(images("-f", "reference=app"), table(rowApp1, rowAppL))
	check(images("app"), table(rowApp1, rowAppL))
	check(images("-f", "reference=app:l*"), table(rowAppL))
	check(images("-f", "reference=*/x"), table(rowOther))
	check(images("-f", "reference=lib", "-f", "reference=base"), table(rowLib, rowBase))
	check(images("-f", "label=k=v2"), table(rowApp1, rowAppL, rowOther))
	check(images("-f", "label=k"), table(rowLib, rowApp1, rowAppL, rowOther, rowNone))
	check(images("-f", "label=k=v2", "-f", "label=k=lib"), table())
	check(images("-f", "before=app:1"), table(rowNone, rowBase))
	check(images("-f", "since="+v1), table(rowLib, rowApp1, rowAppL, rowOther))
	check(images("-f", "before=lib:1", "-f", "reference=app"), table(rowApp1, rowAppL))

	if got, want := images("-q"), strings.Join([]string{lib, v2, v2, v2, v1, base}, "\n")+"\n"; got != want {
		t.Errorf("images -q (one ID per row, like docker):\n%s\nwant:\n%s", got, want)
	}
	if got := images("-q", "--filter", "dangling=true"); got != v1+"\n" {
		t.Errorf("images -q --filter dangling=true: %q, want %q", got, v1)
	}
	if got := images("--no-trunc", "-f", "reference=lib"); !strings.Contains(got, ids["lib"]+"   ") {
		t.Errorf("--no-trunc lacks the full ID %s:\n%s", ids["lib"], got)
	}
	if got := images("--digests", "-f", "reference=lib"); !regexp.MustCompile(`^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+CREATED\s+SIZE\nlib\s+1\s+<none>\s+` + lib).MatchString(got) {
		t.Errorf("--digests:\n%s", got)
	}
	if got, want := images("--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "-f", "reference=app"), "app:1 "+v2+"\napp:latest "+v2+"\n"; got != want {
		t.Errorf("--format template: %q, want %q", got, want)
	}
	if got, want := images("--format", "table {{.Repository}}\t{{.ID}}", "-f", "reference=lib"), "REPOSITORY   IMAGE ID\nlib          "+lib+"\n"; got != want {
		t.Errorf("--format table: %q, want %q", got, want)
	}
	if got, want := images("--format", "{{.CreatedAt}}", "-f", "reference=lib"), time.Unix(epochLib, 0).String()+"\n"; got != want {
		t.Errorf("CreatedAt: %q, want %q", got, want)
	}
	// json: one object per row with docker's keys, "<" escaped as docker does.
	js := images("--format", "json", "-f", "dangling=true")
	if !strings.Contains(js, `"Repository":"\u003cnone\u003e"`) {
		t.Errorf("json does not escape like docker: %s", js)
	}
	var row map[string]string
	if err := json.Unmarshal([]byte(js), &row); err != nil {
		t.Fatalf("--format json: %v\n%s", err, js)
	}
	var keys []string
	for k := range row {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize"}; !slices.Equal(keys, want) {
		t.Errorf("json keys %v, want docker's %v", keys, want)
	}
	if row["ID"] != v1 || row["Tag"] != "<none>" || row["CreatedSince"] != ago(epochV1) {
		t.Errorf("json row: %v", row)
	}
	if got := images("--format", "{{json .}}", "-f", "dangling=true"); got != js {
		t.Errorf("{{json .}} %q differs from json %q", got, js)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", "foo=bar"}, "invalid filter 'foo'"},
		{[]string{"-f", "dangling=maybe"}, "invalid filter 'dangling=maybe'"},
		{[]string{"-f", "nonsense"}, "bad format of filter"},
		{[]string{"-f", "before=nope:1"}, "no such image: nope:1"},
		{[]string{"-f", "reference=[a"}, "syntax error in pattern"},
		{[]string{"--format", "{{.Nope}}"}, "template parsing error"},
		{[]string{"--format", "{{.ID"}, "template parsing error"},
	} {
		if _, stderr, err := s.Kiln(append([]string{"images"}, tc.args...)...); err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("images %v: %v, stderr lacks %q:\n%s", tc.args, err, tc.want, stderr)
		}
	}

	// The seeds' idiom: remove every dangling image by ID.
	dangling := strings.Fields(images("-q", "--filter", "dangling=true"))
	if out := s.MustKiln(append([]string{"rmi"}, dangling...)...); out != "Deleted: "+ids["v1"]+"\n" {
		t.Errorf("rmi of the dangling image printed %q", out)
	}
	if strings.Contains(images(), "<none>") {
		t.Errorf("still a <none> image:\n%s", images())
	}
	s.AssertDoctorClean()
}

func TestRmiLikeDocker(t *testing.T) {
	s := e2etest.EmptyStore(t)
	// Nineteen images: of the seventeen left when the ambiguity is tried,
	// two IDs must share their first hex digit.
	var ids []string
	for i := 0; i < 19; i++ {
		out, errOut, err := s.KilnEnv([]string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epochBase+i)}, "import", testenv.BusyboxTar(t), fmt.Sprintf("img%d:1", i))
		if err != nil {
			t.Fatalf("import: %v\n%s", err, errOut)
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	// uniquePrefix is the shortest prefix of ids[i] no other ID has.
	uniquePrefix := func(i int) string {
		hex := strings.TrimPrefix(ids[i], "sha256:")
		for n := 1; ; n++ {
			clash := false
			for j, other := range ids {
				if j != i && strings.HasPrefix(strings.TrimPrefix(other, "sha256:"), hex[:n]) {
					clash = true
				}
			}
			if !clash {
				return hex[:n]
			}
		}
	}
	fail := func(want []string, args ...string) string {
		t.Helper()
		out, stderr, err := s.Kiln(append([]string{"rmi"}, args...)...)
		if err == nil {
			t.Errorf("rmi %v succeeded:\n%s", args, out)
		}
		for _, w := range want {
			if !strings.Contains(stderr, w) {
				t.Errorf("rmi %v: stderr lacks %q:\n%s", args, w, stderr)
			}
		}
		return out
	}

	// A name untags; the last name deletes the image (its ID: the config digest).
	s.MustKiln("tag", "img0:1", "other:2")
	if out := s.MustKiln("rmi", "img0:1"); out != "Untagged: img0:1\n" {
		t.Errorf("rmi of one of two names: %q", out)
	}
	if out := s.MustKiln("rmi", "other:2"); out != "Untagged: other:2\nDeleted: "+ids[0]+"\n" {
		t.Errorf("rmi of the last name: %q", out)
	}

	// An ID with several names: refused, naming them, unless -f.
	s.MustKiln("tag", "img1:1", "img1:extra")
	p := uniquePrefix(1)
	fail([]string{"conflict: unable to delete " + short(ids[1]) + " (must be forced)", "img1:1", "img1:extra"}, p)
	if out := s.MustKiln("rmi", "-f", p); out != "Untagged: img1:1\nUntagged: img1:extra\nDeleted: "+ids[1]+"\n" {
		t.Errorf("rmi -f %s: %q", p, out)
	}

	// A prefix two IDs share: an error naming both.
	firsts := map[byte][]int{}
	for i := 2; i < len(ids); i++ {
		c := strings.TrimPrefix(ids[i], "sha256:")[0]
		firsts[c] = append(firsts[c], i)
	}
	ambiguous := false
	for c, is := range firsts {
		if len(is) < 2 {
			continue
		}
		ambiguous = true
		var want []string
		for _, i := range is {
			want = append(want, short(ids[i]), fmt.Sprintf("img%d:1", i))
		}
		fail(append([]string{fmt.Sprintf("image ID prefix %q is ambiguous", string(c))}, want...), string(c))
		break
	}
	if !ambiguous {
		t.Fatal("test setup: no two IDs share a first digit")
	}

	// By ID with one name (short, full hex, sha256:...): untag and delete.
	for _, i := range []int{2, 3, 4} {
		ref := map[int]string{2: uniquePrefix(2), 3: strings.TrimPrefix(ids[3], "sha256:"), 4: ids[4]}[i]
		if out := s.MustKiln("rmi", ref); out != fmt.Sprintf("Untagged: img%d:1\nDeleted: %s\n", i, ids[i]) {
			t.Errorf("rmi %s: %q", ref, out)
		}
	}

	// Several arguments: every one is tried, the failures reported, exit 1.
	out := fail([]string{"no such image: nope"}, "nope", "img5:1")
	if out != "Untagged: img5:1\nDeleted: "+ids[5]+"\n" {
		t.Errorf("rmi nope img5:1 printed %q", out)
	}
	left := strings.Fields(s.MustKiln("images", "-q"))
	if len(left) != 13 {
		t.Errorf("%d images left, want 13: %v", len(left), left)
	}
	s.AssertDoctorClean()
}

// TestImagesOutputMatchesDocker loads kiln's images into a real dockerd
// (same IDs, same creation times) and compares docker images with kiln
// images, option by option: the same rows, names, IDs, CREATED, the same
// column layout. Only SIZE differs (docker counts unpacked bytes, kiln
// the layer tars).
func TestImagesOutputMatchesDocker(t *testing.T) {
	s, ids := imagesScenario(t, "kilncmp/")
	d := testenv.SharedDockerd(t)
	dir := t.TempDir()
	v1tar := filepath.Join(dir, "v1.tar")
	s.MustKiln("save", "-o", v1tar, ids["v1"]) // dangling: no name in the tar
	all := filepath.Join(dir, "all.tar")
	s.MustKiln("save", "-o", all, "kilncmp/base:1", "kilncmp/app:1", "kilncmp/app:latest", "kilncmp/other/x:y", "kilncmp/lib:1")
	for _, p := range []string{v1tar, all} {
		if out, err := d.Docker("load", "-i", p); err != nil {
			t.Fatalf("docker load: %v\n%s", err, out)
		}
	}
	mine := map[string]bool{}
	for _, id := range ids {
		mine[short(id)] = true
		mine[strings.TrimPrefix(id, "sha256:")] = true
	}
	// normalize keeps the header and the rows of this test's images (the
	// shared daemon holds other tests' too) and sorts the rows: docker
	// orders the names of one image at random. SIZE is compared too: kiln
	// counts layer contents as docker does.
	normalize := func(out string, args []string) string {
		format := ""
		for i, a := range args {
			switch a {
			case "--format":
				format = args[i+1]
			case "-q":
				format = "{{.ID}}"
			}
		}
		isTable := format == "" || strings.HasPrefix(format, "table")
		var header string
		var rows []string
		for i, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			if i == 0 && isTable {
				header = l
				continue
			}
			for _, f := range strings.FieldsFunc(l, func(r rune) bool { return strings.ContainsRune(" \t|\":,", r) }) {
				if mine[f] {
					rows = append(rows, l)
					break
				}
			}
		}
		sort.Strings(rows)
		return header + "\n" + strings.Join(rows, "\n")
	}
	cases := [][]string{
		{"kilncmp/*"},
		{"-a", "kilncmp/*"},
		{"--no-trunc", "kilncmp/*"},
		{"--digests", "kilncmp/*"},
		{"kilncmp/app"},
		{"-f", "reference=kilncmp/app:l*"},
		{"-f", "reference=kilncmp/*/*"},
		{"-f", "label=k=v2", "kilncmp/*"},
		{"-f", "label=k", "-f", "reference=kilncmp/*"},
		{"-f", "before=kilncmp/app:1", "kilncmp/*"},
		{"-f", "since=kilncmp/base:1", "kilncmp/*"},
		{"-f", "dangling=false", "kilncmp/*"},
		{"-q", "kilncmp/*"},
		{"-q", "-f", "dangling=true"},
		{"--format", "{{.Repository}}:{{.Tag}}|{{.ID}}|{{.Digest}}|{{.CreatedSince}}|{{.CreatedAt}}"},
		{"--format", "{{.Repository}} {{.ID}} {{.CreatedSince}}", "-f", "dangling=true"},
		{"--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}", "kilncmp/*"},
		{"--format", "table {{.ID}}:{{.Tag}}\t{{.CreatedAt}}", "kilncmp/*"},
		{"--format", "{{json .}}"},
		{"--format", "{{.ID}} {{.Size}} {{.VirtualSize}}", "kilncmp/*"},
	}
	for _, args := range cases {
		want, err := d.Docker(append([]string{"images"}, args...)...)
		if err != nil {
			t.Errorf("docker images %v: %v", args, err)
			continue
		}
		got := s.MustKiln(append([]string{"images"}, args...)...)
		n, w := normalize(got, args), normalize(want, args)
		if n != w {
			t.Errorf("images %q differs from docker's:\nkiln:\n%s\ndocker:\n%s", args, got, want)
		}
		if _, rows, _ := strings.Cut(w, "\n"); strings.TrimSpace(rows) == "" {
			t.Errorf("images %q: docker listed none of this test's images:\n%s", args, want)
		}
	}
	// Removing by ID with several names: the same refusal.
	_, stderr, err := s.Kiln("rmi", short(ids["v2"]))
	dockerOut, derr := d.Docker("rmi", short(ids["v2"]))
	if err == nil || derr == nil || !strings.Contains(stderr, "conflict: unable to delete "+short(ids["v2"])+" (must be forced) - image is referenced in multiple repositories") ||
		!strings.Contains(derr.Error(), "conflict: unable to delete "+short(ids["v2"])+" (must be forced) - image is referenced in multiple repositories") {
		t.Errorf("rmi of a multiply tagged ID:\nkiln: %v %s\ndocker: %v %s", err, stderr, derr, dockerOut)
	}
}
