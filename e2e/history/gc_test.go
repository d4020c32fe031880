package history

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

type dfRow struct {
	Type                        string
	TotalCount, Active          string
	SizeBytes, ReclaimableBytes int64
}

func dfHistory(s *e2etest.Store) dfRow {
	s.T.Helper()
	out := s.MustKiln("df", "--format", "json")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r dfRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			s.T.Fatalf("kiln df --format json: %v\n%s", err, out)
		}
		if r.Type == "Build History" {
			return r
		}
	}
	s.T.Fatalf("kiln df has no Build History row:\n%s", out)
	return dfRow{}
}

// logBuild is a Dockerfile whose one RUN (step #2; ARG is no step) prints n bytes, built
// anew for each value of the build arg N.
func logBuild(t *testing.T, n int) string {
	return e2etest.TextContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nARG N\nRUN echo $N; head -c " + itoa(n) + " /dev/zero | tr '\\0' x\n",
	})
}

// assertLogPruned checks that kiln logs says step #2's log of build id
// was removed.
func assertLogPruned(s *e2etest.Store, id string) {
	s.T.Helper()
	_, errOut, err := s.Kiln("logs", id, "2")
	if err == nil || !strings.Contains(errOut, "log was removed") {
		s.T.Errorf("kiln logs %s 2: want an error saying the log was removed, got %v %s", id, err, errOut)
	}
}

func TestDFCountsBuildHistoryAndPruneSaysWhatItRemoved(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := logBuild(t, 300_000)
	build(s, "--build-arg", "N=1", dir)
	build(s, "--build-arg", "N=2", dir)
	table := s.MustKiln("df")
	if !regexp.MustCompile(`(?m)^Build History\s+2\s+0\s+\S+\s+\S+ \(\d+%\)$`).MatchString(table) {
		t.Errorf("kiln df has no Build History row for 2 builds:\n%s", table)
	}
	row := dfHistory(s)
	if row.TotalCount != "2" || row.ReclaimableBytes < 600_000 || row.SizeBytes < row.ReclaimableBytes {
		t.Errorf("df Build History: %+v; want 2 builds with their 600 kB of logs reclaimable", row)
	}

	out := s.MustKiln("prune", "-f")
	if !regexp.MustCompile(`(?m)^Deleted build history: logs of 2 builds, 60\dkB$`).MatchString(out) {
		t.Errorf("kiln prune does not say it removed the logs:\n%s", out)
	}
	rows := builds(s)
	if len(rows) != 2 {
		t.Fatalf("kiln prune removed the builds' records: %+v", rows)
	}
	assertLogPruned(s, rows[0].ID)
	if r := dfHistory(s); r.TotalCount != "2" || r.ReclaimableBytes != 0 {
		t.Errorf("df Build History after prune: %+v", r)
	}

	out = s.MustKiln("prune", "-a", "-f")
	if !regexp.MustCompile(`(?m)^Deleted build history: 2 builds, \d+(\.\d+)?kB$`).MatchString(out) {
		t.Errorf("kiln prune -a does not say it removed the builds:\n%s", out)
	}
	if rows := builds(s); len(rows) != 0 {
		t.Errorf("kiln prune -a left builds: %+v", rows)
	}
	if r := dfHistory(s); r.TotalCount != "0" || r.SizeBytes != 0 {
		t.Errorf("df Build History after prune -a: %+v", r)
	}
}

func TestPruneFilterUntilSparesRecentBuildHistory(t *testing.T) {
	s := e2etest.NewStore(t)
	build(s, "--build-arg", "N=1", logBuild(t, 1000))
	out := s.MustKiln("prune", "-a", "-f", "--filter", "until=1h")
	if strings.Contains(out, "build history") {
		t.Errorf("kiln prune --filter until=1h removed a build of now:\n%s", out)
	}
	rows := builds(s)
	if len(rows) != 1 {
		t.Fatalf("builds: %+v", rows)
	}
	if got := s.MustKiln("logs", rows[0].ID, "2"); len(got) != 1002 {
		t.Errorf("the log after prune --filter until=1h: %d bytes", len(got))
	}
}

func TestTheBudgetRemovesTheOldestBuildLogsFirst(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := logBuild(t, 400_000)
	for _, n := range []string{"1", "2", "3"} {
		errOut := build(s, "-t", "app:"+n, "--cache-max", "1MB", "--build-arg", "N="+n, dir)
		if n == "3" && !strings.Contains(errOut, "the history of 1 builds") {
			t.Errorf("the third build did not report removing one build's history:\n%s", errOut)
		}
	}
	rows := builds(s)
	if len(rows) != 3 {
		t.Fatalf("builds: %+v", rows)
	}
	assertLogPruned(s, rows[2].ID) // the oldest
	for _, r := range rows[:2] {
		if got := s.MustKiln("logs", r.ID, "2"); len(got) != 400_002 {
			t.Errorf("build %s's log: %d bytes, want 400002", r.ID, len(got))
		}
	}
}

// The trees kiln explain names changed files by are counted in df (and
// so in the budget): a big context's trees take more than its journals.
func TestDFCountsTheTreesOfABigContext(t *testing.T) {
	s := e2etest.NewStore(t)
	files := map[string]string{"Dockerfile": "FROM busybox\nCOPY . /src\n"}
	for i := 0; i < 2000; i++ {
		files["src/a-file-with-a-long-enough-name-"+itoa(i)] = itoa(i)
	}
	dir := e2etest.TextContext(t, files)
	build(s, dir)
	if err := os.WriteFile(filepath.Join(dir, "src", "a-file-with-a-long-enough-name-7"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	build(s, dir)
	var trees int64
	filepath.WalkDir(filepath.Join(s.Root, "trees"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				trees += fi.Size()
			}
		}
		return nil
	})
	if trees < 100_000 {
		t.Fatalf("trees/ takes %d bytes; the test needs a context whose trees are big", trees)
	}
	var total int64
	out := s.MustKiln("df", "--format", "json")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r dfRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("kiln df --format json: %v\n%s", err, out)
		}
		if r.Type == "Build History" || r.Type == "Build Cache" {
			total += r.SizeBytes
		}
	}
	if h := dfHistory(s); h.SizeBytes < trees/2 || total < trees {
		t.Errorf("trees/ takes %d bytes; df: Build History %d, with Build Cache %d", trees, h.SizeBytes, total)
	}
}
