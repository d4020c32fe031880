package history

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// build runs kiln build with plain progress and returns its stderr; the
// build must succeed.
func build(s *e2etest.Store, args ...string) string {
	s.T.Helper()
	_, errOut, err := s.Kiln(append([]string{"build", "--progress", "plain"}, args...)...)
	if err != nil {
		s.T.Fatalf("kiln build %v: %v\n%s", args, err, errOut)
	}
	return errOut
}

// failBuild runs kiln build, which must fail, and returns its stderr.
func failBuild(s *e2etest.Store, args ...string) string {
	s.T.Helper()
	_, errOut, err := s.Kiln(append([]string{"build", "--progress", "plain"}, args...)...)
	if err == nil {
		s.T.Fatalf("kiln build %v succeeded; it should fail\n%s", args, errOut)
	}
	return errOut
}

// buildRow is a line of kiln builds --format json.
type buildRow struct {
	ID, CreatedSince, Dockerfile, Target, Status, Steps, Duration, Image, Tags, Error string
}

func builds(s *e2etest.Store, args ...string) []buildRow {
	s.T.Helper()
	out := s.MustKiln(append([]string{"builds", "--format", "json"}, args...)...)
	var rows []buildRow
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r buildRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			s.T.Fatalf("kiln builds --format json: %v\n%s", err, out)
		}
		rows = append(rows, r)
	}
	return rows
}

// journal is what kiln builds show --json says of a build.
type journal struct {
	ID, Status, Error, Image, Dockerfile string
	Steps                                []struct {
		Num     int
		Name    string
		State   string
		Key     string
		Error   string
		Log     string
		LogSize int64 `json:"log_size"`
	}
}

func show(s *e2etest.Store, id string) journal {
	s.T.Helper()
	out := s.MustKiln("builds", "show", "--json", id)
	var j journal
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		s.T.Fatalf("kiln builds show --json: %v\n%s", err, out)
	}
	return j
}

var stepLine = regexp.MustCompile(`(?m)^#(\d+) (\[.*)$`)

// progressSteps maps each step name to its number as the progress printed it.
func progressSteps(stderr string) map[string]string {
	out := map[string]string{}
	for _, m := range stepLine.FindAllStringSubmatch(stderr, -1) {
		name := strings.TrimSuffix(strings.TrimSuffix(m[2], " CACHED"), " DEDUPED")
		out[name] = m[1]
	}
	return out
}

func TestBuildsListsEveryBuildNewestFirstLikeDocker(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{
		"Dockerfile": "FROM busybox AS base\nRUN echo one > /one\nFROM base AS app\nARG V=1\nRUN echo $V > /v\n",
	})
	build(s, "-t", "app:1", dir)
	build(s, "--build-arg", "V=2", "--target", "app", dir)

	table := s.MustKiln("builds")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 {
		t.Fatalf("kiln builds: want a header and 2 rows:\n%s", table)
	}
	header := regexp.MustCompile(`^BUILD ID\s+CREATED\s+DOCKERFILE\s+TARGET\s+STATUS\s+STEPS\s+DURATION\s+IMAGE ID$`)
	if !header.MatchString(lines[0]) {
		t.Errorf("header: %q", lines[0])
	}
	newest := regexp.MustCompile(`^[0-9a-f]{12}\s+(Less than a second|1 second|\d+ seconds) ago\s+Dockerfile\s+app\s+Completed\s+1 ran, 2 cached\s+\d+\.\ds\s+[0-9a-f]{12}$`)
	if !newest.MatchString(lines[1]) {
		t.Errorf("newest build's row: %q", lines[1])
	}
	if !strings.Contains(lines[2], "Completed") || !strings.Contains(lines[2], "2 ran, 1 cached") {
		t.Errorf("first build's row: %q", lines[2])
	}

	rows := builds(s)
	if len(rows) != 2 || rows[0].Target != "app" || rows[1].Tags != "app:1" {
		t.Fatalf("kiln builds --format json: %+v", rows)
	}
	ids := strings.Fields(s.MustKiln("builds", "-q"))
	if len(ids) != 2 || ids[0] != rows[0].ID || ids[1] != rows[1].ID {
		t.Errorf("kiln builds -q: %v, want %s %s", ids, rows[0].ID, rows[1].ID)
	}
	full := strings.Fields(s.MustKiln("builds", "ls", "-q", "--no-trunc"))
	if len(full) != 2 || !strings.HasSuffix(full[0], "-"+ids[0]) || !regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{12}$`).MatchString(full[0]) {
		t.Errorf("kiln builds ls -q --no-trunc: %v", full)
	}
	img := strings.TrimSpace(s.MustKiln("images", "-q", "app:1"))
	if rows[1].Image != img {
		t.Errorf("first build's IMAGE ID %q, kiln images says %q", rows[1].Image, img)
	}
	custom := s.MustKiln("builds", "--format", "{{.ID}} {{.Status}}")
	if want := ids[0] + " Completed\n" + ids[1] + " Completed\n"; custom != want {
		t.Errorf("--format template: %q, want %q", custom, want)
	}
}

func TestBuildsShowNumbersStepsAsTheProgressDid(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo hello\nCOPY f /f\nRUN cat /f\n",
		"f":          "from the context\n",
	})
	progress := progressSteps(build(s, dir))
	j := show(s, builds(s)[0].ID)
	if j.Status != "completed" || len(j.Steps) != 4 {
		t.Fatalf("kiln builds show --json: %+v", j)
	}
	for _, st := range j.Steps {
		if n, ok := progress[st.Name]; !ok || n != itoa(st.Num) {
			t.Errorf("step %q is #%d in the journal, #%s in the progress (%v)", st.Name, st.Num, n, progress)
		}
		if st.Key == "" {
			t.Errorf("step #%d has no cache key", st.Num)
		}
	}
	if run := j.Steps[3]; run.State != "ran" || run.LogSize != int64(len("from the context\n")) {
		t.Errorf("RUN cat /f: %+v", run)
	}
	text := s.MustKiln("builds", "show", j.ID[len(j.ID)-12:])
	for _, want := range []string{"ID:", j.ID, "Status:", "Completed", "STEP", "CACHE KEY", "#4", "RUN cat /f", "17B"} {
		if !strings.Contains(text, want) {
			t.Errorf("kiln builds show lacks %q:\n%s", want, text)
		}
	}
	if last := s.MustKiln("builds", "show", "last"); !strings.HasPrefix(last, "ID:         "+j.ID+"\n") {
		t.Errorf("kiln builds show last is not the newest build %s:\n%s", j.ID, last)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestLogsReturnsAStepsWholeOutputByteForByte(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo before\nRUN head -c 1048576 /dev/zero | tr '\\0' a; echo; echo after; printf 'no newline at the end'\n",
	})
	progress := progressSteps(build(s, dir))
	n := ""
	for name, num := range progress {
		if strings.Contains(name, "head -c") {
			n = num
		}
	}
	if n == "" {
		t.Fatalf("no progress line for the RUN: %v", progress)
	}
	want := strings.Repeat("a", 1<<20) + "\nafter\nno newline at the end"
	id := builds(s)[0].ID
	for _, step := range []string{n, "#" + n, "head -c"} {
		got := s.MustKiln("logs", id, step)
		if got != want {
			t.Errorf("kiln logs %s %s: %d bytes, want the %d the step wrote", id, step, len(got), len(want))
		}
	}
	all := s.MustKiln("logs", "last")
	if !strings.Contains(all, "#"+n+" [3/3] RUN head -c") || !strings.Contains(all, "\nbefore\n") || !strings.Contains(all, want) {
		t.Errorf("kiln logs BUILD: headers and both logs expected; got %d bytes starting %q", len(all), all[:min(len(all), 200)])
	}
	if strings.Index(all, "before") > strings.Index(all, "after") {
		t.Error("kiln logs BUILD: steps out of order")
	}
	_, errOut, err := s.Kiln("logs", id, "RUN")
	if err == nil || !strings.Contains(errOut, "ambiguous") {
		t.Errorf("kiln logs %s RUN (two RUN steps): %v %s", id, err, errOut)
	}
	_, errOut, err = s.Kiln("logs", "ffffffffffff")
	if err == nil || !strings.Contains(errOut, "no such build: ffffffffffff (kiln builds lists them)") {
		t.Errorf("kiln logs of an unknown build: %v %s", err, errOut)
	}
	_, errOut, err = s.Kiln("logs", id, "9")
	if err == nil || !strings.Contains(errOut, "no step #9") {
		t.Errorf("kiln logs of an unknown step: %v %s", err, errOut)
	}
}

func TestAFailedBuildIsListedWithItsErrorAndLog(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo the reason it fails; exit 3\nRUN echo never\n",
	})
	failBuild(s, dir)
	rows := builds(s)
	if len(rows) != 1 || rows[0].Status != "Error" || !strings.Contains(rows[0].Steps, "1 failed") || rows[0].Image != "" {
		t.Fatalf("kiln builds: %+v", rows)
	}
	j := show(s, rows[0].ID)
	if !strings.Contains(j.Error, "exit code 3") || len(j.Steps) != 3 || j.Steps[1].State != "failed" || j.Steps[1].Error == "" || j.Steps[2].State != "skipped" {
		t.Errorf("journal of the failed build: %+v", j)
	}
	if got := s.MustKiln("logs", rows[0].ID, "2"); got != "the reason it fails\n" {
		t.Errorf("the failing step's log: %q", got)
	}
	text := s.MustKiln("builds", "show", rows[0].ID)
	if !strings.Contains(text, "Error:") || !strings.Contains(text, "exit code 3") {
		t.Errorf("kiln builds show does not say why it failed:\n%s", text)
	}
}

func TestBuildsThatFailBeforeSolvingAreRecorded(t *testing.T) {
	s := e2etest.NewStore(t)
	syntax := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUNN echo typo\n"})
	errOut := failBuild(s, syntax)
	missing := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY nothere.txt /\n"})
	errOut2 := failBuild(s, missing)
	rows := builds(s)
	if len(rows) != 2 {
		t.Fatalf("kiln builds: %+v\n%s%s", rows, errOut, errOut2)
	}
	for i, want := range []string{"nothere.txt", "RUNN"} {
		if rows[i].Status != "Error" || !strings.Contains(rows[i].Error, want) {
			t.Errorf("build %d: %+v; want Error naming %s", i, rows[i], want)
		}
	}
}

func TestAnInterruptedBuildIsRecordedAsSuch(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo asleep-$((1+1)); sleep 618\n"})
	errOut, err := s.KilnInterrupted("asleep-2", "build", "--progress", "plain", dir)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(errOut, "ERROR: interrupted") {
		t.Fatalf("kiln build after SIGINT: %v\n%s", err, errOut)
	}
	rows := builds(s)
	if len(rows) != 1 || rows[0].Status != "Interrupted" {
		t.Fatalf("kiln builds after SIGINT: %+v", rows)
	}
	if got := s.MustKiln("logs", rows[0].ID, "2"); got != "asleep-2\n" {
		t.Errorf("the interrupted step's log: %q", got)
	}
}

// Every verb that names a build finds it the same way: "last" is the
// newest, and one that matches nothing is said so in the same words.
func TestEveryVerbNamesBuildsTheSameWay(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo hi\n"})
	build(s, dir)
	verbs := [][]string{{"explain"}, {"builds", "show"}, {"logs"}}
	for _, v := range verbs {
		if _, errOut, err := s.Kiln(append(v, "last")...); err != nil {
			t.Errorf("kiln %s last: %v %s", strings.Join(v, " "), err, errOut)
		}
		_, errOut, err := s.Kiln(append(v, "ffffffffffff")...)
		if err == nil || !strings.Contains(errOut, "no such build: ffffffffffff (kiln builds lists them)") {
			t.Errorf("kiln %s of an unknown build: %v %s", strings.Join(v, " "), err, errOut)
		}
	}
	if _, errOut, err := s.Kiln("builds", "diff", "last", "last"); err != nil {
		t.Errorf("kiln builds diff last last: %v %s", err, errOut)
	}
	if _, errOut, err := s.Kiln("builds", "diff", "last", "ffffffffffff"); err == nil || !strings.Contains(errOut, "no such build: ffffffffffff (kiln builds lists them)") {
		t.Errorf("kiln builds diff of an unknown build: %v %s", err, errOut)
	}
	if out, errOut, err := s.Kiln("logs", "last", ""); err == nil || strings.Contains(errOut, "ambiguous") || out != "" {
		t.Errorf("kiln logs last \"\": %v %q %s", err, out, errOut)
	}
}

// A journal a killed build left, and one whose record is damaged, are
// reported by kiln doctor and removed by --repair; kiln builds show says a
// damaged record is damaged.
func TestDoctorReportsCrashedAndDamagedJournals(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := e2etest.TextContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo hi\n"})
	build(s, dir)
	crashed := filepath.Join(s.Root, "builds", "20200101T000000Z-aaaaaaaaaaaa")
	damaged := filepath.Join(s.Root, "builds", "20200101T000001Z-bbbbbbbbbbbb")
	for _, d := range []string{crashed, damaged} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(crashed, "step-2.log"), []byte("half a log"), 0o600)
	os.WriteFile(filepath.Join(damaged, "build.json"), []byte(`{"id":"20200101T000001Z-bbbbbbbbbbbb","steps":[{"na`), 0o600)

	_, errOut, err := s.Kiln("builds", "show", "bbbbbbbbbbbb")
	if err == nil || !strings.Contains(errOut, "build 20200101T000001Z-bbbbbbbbbbbb: damaged record") {
		t.Errorf("kiln builds show of a damaged journal: %v %s", err, errOut)
	}
	out, _, err := s.Kiln("doctor", "-v")
	if err == nil || !strings.Contains(out, "PROBLEM: build builds/20200101T000001Z-bbbbbbbbbbbb: build.json: damaged record") ||
		!strings.Contains(out, "stale: build builds/20200101T000000Z-aaaaaaaaaaaa: no build.json") {
		t.Errorf("kiln doctor -v: %v\n%s", err, out)
	}
	if out, errOut, err := s.Kiln("doctor", "--repair"); err != nil {
		t.Errorf("kiln doctor --repair: %v\n%s%s", err, out, errOut)
	}
	for _, d := range []string{crashed, damaged} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left by kiln doctor --repair", d)
		}
	}
	if rows := builds(s); len(rows) != 1 {
		t.Errorf("kiln builds after repair: %+v", rows)
	}
}
