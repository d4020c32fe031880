package progress

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/progress"
)

// parallel has two stages whose RUN steps overlap in time, and a stage
// the target does not need.
const parallel = `FROM busybox AS a
RUN echo a-start && sleep 2 && echo a > /a.txt && echo a-end
FROM busybox AS b
RUN echo b-start && sleep 2 && echo b > /b.txt && echo b-end
FROM busybox AS unused
RUN echo never
FROM busybox
COPY --from=a /a.txt /a.txt
COPY --from=b /b.txt /b.txt
`

var cursorUp = regexp.MustCompile(`\x1b\[\d+A`)

// frames replays the terminal's bytes redraw by redraw and returns what
// the screen showed after each.
func frames(t *testing.T, raw []byte) []string {
	t.Helper()
	var scr e2etest.Screen
	var out []string
	start := 0
	for _, loc := range append(cursorUp.FindAllIndex(raw, -1), []int{len(raw), len(raw)}) {
		if _, err := scr.Write(raw[start:loc[0]]); err != nil {
			t.Fatalf("the terminal got %v", err)
		}
		out = append(out, scr.String())
		start = loc[0]
	}
	return out
}

func iid(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(b), "sha256:") {
		t.Fatalf("--iidfile: %q %v", b, err)
	}
	return string(b)
}

func TestTTYShowsParallelStagesLiveAndEndsWithASummary(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, parallel)
	idFile := filepath.Join(t.TempDir(), "iid")
	stdout, raw, err := s.KilnTerminal(120, 40, "build", "--progress", "tty", "--iidfile", idFile, "-t", "par:1", ctx)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, raw)
	}
	if stdout != "" {
		t.Errorf("stdout: %q", stdout)
	}
	id := iid(t, idFile)
	if !cursorUp.Match(raw) || !strings.Contains(string(raw), "\x1b[K") {
		t.Errorf("no live redraw (cursor up, erase line) in:\n%q", raw)
	}
	fs := frames(t, raw)
	both := false
	for _, f := range fs {
		if strings.Contains(f, " => => # a-start") && strings.Contains(f, " => => # b-start") {
			both = true
			if !regexp.MustCompile(`(?m)^ => \[a 2/2\] RUN echo a-start.* \d+\.\ds$`).MatchString(f) ||
				!regexp.MustCompile(`(?m)^ => \[b 2/2\] RUN echo b-start.* \d+\.\ds$`).MatchString(f) {
				t.Errorf("both stages' output without both running steps' lines and clocks:\n%s", f)
			}
			break
		}
	}
	if !both {
		t.Errorf("no frame showed both running steps' output at once; the last one:\n%s", fs[len(fs)-1])
	}
	final := fs[len(fs)-1]
	for _, want := range []string{
		"stage unused SKIPPED (not needed for the target)\n[+] Building ",
		") FINISHED\n",
		"\n => CACHED [a 1/2] FROM busybox ",
		"\n => [a 2/2] RUN echo a-start && sleep 2",
		"\n => [b 2/2] RUN echo b-start && sleep 2",
		"\n => [stage-3 3/3] COPY --from=b /b.txt /b.txt ",
		"\n7 steps: 4 ran, 3 cached, 0 deduped, 0 skipped in ",
		"\nwriting image " + id + " done in ",
		"\nnaming to docker.io/library/par:1",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the terminal lacks %q:\n%s", want, final)
		}
	}
	if strings.Contains(final, "=> => # a-start") {
		t.Errorf("a finished step's output is still shown:\n%s", final)
	}
	for _, l := range strings.Split(final, "\n") {
		if len([]rune(l)) >= 120 && !strings.HasPrefix(l, "writing image") {
			t.Errorf("a line as wide as the terminal: %q", l)
		}
	}

	// Built again, every step is cached.
	_, raw, err = s.KilnTerminal(120, 40, "build", "--progress", "tty", ctx)
	if err != nil {
		t.Fatalf("second build: %v\n%s", err, raw)
	}
	fs = frames(t, raw)
	final = fs[len(fs)-1]
	if !strings.Contains(final, "\n => CACHED [a 2/2] RUN echo a-start") || !strings.Contains(final, "\n7 steps: 0 ran, 7 cached, 0 deduped, 0 skipped in ") {
		t.Errorf("cached build:\n%s", final)
	}
}

func TestAutoOnATerminalIsTheLiveView(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo working && sleep 1\n")
	_, raw, err := s.KilnTerminal(80, 24, "build", ctx)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, raw)
	}
	if !cursorUp.Match(raw) || strings.Contains(string(raw), "#2 DONE") {
		t.Errorf("auto on a terminal is not the live view:\n%q", raw)
	}
	fs := frames(t, raw)
	if final := fs[len(fs)-1]; !strings.Contains(final, "\n => [2/2] RUN echo working && sleep 1 ") || !strings.Contains(final, "2 steps: 1 ran, 1 cached") {
		t.Errorf("final view:\n%s", final)
	}
}

func TestTTYFailureLeavesTheStepsLastOutputAndTheError(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do echo out-$i; done; exit 3\n")
	_, raw, err := s.KilnTerminal(100, 30, "build", "--progress", "tty", ctx)
	if err == nil {
		t.Fatalf("a failing RUN succeeded:\n%s", raw)
	}
	fs := frames(t, raw)
	final := fs[len(fs)-1]
	for _, want := range []string{
		"\n => ERROR [2/2] RUN for i in",
		"\n => => # out-4\n", "\n => => # out-15\n",
		"\n2 steps: 0 ran, 1 cached, 0 deduped, 0 skipped, 1 failed in ",
		"\nERROR: Dockerfile:2: RUN for i in",
		"exit code 3",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the terminal lacks %q:\n%s", want, final)
		}
	}
	if strings.Contains(final, "FINISHED") || strings.Index(final, "1 failed") > strings.Index(final, "ERROR: Dockerfile") {
		t.Errorf("the error is not after the view:\n%s", final)
	}
}

func TestJSONIsOneEventPerLine(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo json-line\n")
	idFile := filepath.Join(t.TempDir(), "iid")
	stdout, stderr, err := s.Kiln("build", "--progress", "json", "--iidfile", idFile, "-t", "js:1", ctx)
	if err != nil || stdout != "" {
		t.Fatalf("build: %v\nstdout %q\n%s", err, stdout, stderr)
	}
	var events []progress.JSONEvent
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var e progress.JSONEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not a JSON event: %q: %v", l, err)
		}
		if e.Time.IsZero() || e.Type == "" {
			t.Errorf("event without time or type: %q", l)
		}
		events = append(events, e)
	}
	var seen []string
	for _, e := range events {
		switch {
		case e.Type == "step" && e.Step == 1 && e.State == "cached" && e.Name == "[1/2] FROM busybox":
			seen = append(seen, "from cached")
		case e.Type == "step" && e.Step == 2 && e.State == "started" && e.Name == "[2/2] RUN echo json-line" && e.Location == "Dockerfile:2" && strings.HasPrefix(e.Key, "sha256:"):
			seen = append(seen, "run started")
		case e.Type == "log" && e.Step == 2 && e.Line == "json-line":
			seen = append(seen, "run log")
		case e.Type == "step" && e.Step == 2 && e.State == "ran" && e.Duration > 0:
			seen = append(seen, "run ran")
		case e.Type == "result":
			if e.ID != iid(t, idFile) || len(e.Names) != 1 || e.Names[0] != "docker.io/library/js:1" || e.Counts == nil || *e.Counts != (progress.Counts{Ran: 1, Cached: 1}) {
				t.Errorf("result event: %+v", e)
			}
			seen = append(seen, "result")
		}
	}
	if strings.Join(seen, ",") != "from cached,run started,run log,run ran,result" {
		t.Errorf("events seen in order: %v\n%s", seen, stderr)
	}
}

func TestQuietPrintsOnlyTheImageID(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo not-shown\n")
	for _, args := range [][]string{{"--progress", "quiet"}, {"-q"}} {
		idFile := filepath.Join(t.TempDir(), "iid")
		stdout, stderr, err := s.Kiln(append(append([]string{"build", "--iidfile", idFile}, args...), ctx)...)
		if err != nil {
			t.Fatalf("build %v: %v\n%s", args, err, stderr)
		}
		if stdout != iid(t, idFile)+"\n" || stderr != "" {
			t.Errorf("build %v: stdout %q, stderr %q; want the image ID alone", args, stdout, stderr)
		}
	}
}

func TestUnknownProgressModeFailsBeforeBuilding(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo hi\n")
	_, stderr, err := s.Kiln("build", "--progress", "fancy", "-t", "never:1", ctx)
	if err == nil || stderr != "ERROR: --progress \"fancy\": unknown progress mode (valid: auto, plain, tty, json, quiet)\n" {
		t.Errorf("--progress fancy: %v\n%s", err, stderr)
	}
	if _, _, err := s.Kiln("inspect", "never:1"); err == nil {
		t.Errorf("a build with a bad --progress made an image")
	}
}

func TestAutoWithoutATerminalIsPlain(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo plain-line\n")
	_, stderr, err := s.Kiln("build", ctx)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, stderr)
	}
	if !regexp.MustCompile(`(?m)^#1 \[1/2\] FROM busybox CACHED\n#2 \[2/2\] RUN echo plain-line\n#2 \d+\.\d{3} plain-line\n#2 DONE \d+\.\ds\nwriting image sha256:[0-9a-f]{64} done in \d+\.\ds\n$`).MatchString(stderr) ||
		strings.Contains(stderr, "\x1b") {
		t.Errorf("auto without a terminal:\n%q", stderr)
	}
}

func TestTTYPrintsPullProgressAboveTheView(t *testing.T) {
	src := e2etest.NewStore(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	ref := reg.Ref("library/bb:1")
	e2etest.PushWithSkopeo(t, src, "busybox:latest", ref)

	// The store holds busybox's layer already; the pull fetches the rest.
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox AS a\nRUN echo a > /a.txt\nFROM "+ref+"\nRUN echo b-built\nCOPY --from=a /a.txt /a.txt\n")
	_, raw, err := s.KilnTerminal(120, 40, "build", "--progress", "tty", ctx)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, raw)
	}
	fs := frames(t, raw)
	final := fs[len(fs)-1]
	header := strings.Index(final, "[+] Building ")
	if header < 0 || strings.Count(final, "[+] Building ") != 1 {
		t.Fatalf("the view is not drawn once:\n%s", final)
	}
	for _, want := range []string{"1: Pulling from library/bb", ": Already exists", "Status: Downloaded newer image for " + ref} {
		if i := strings.Index(final, want); i < 0 || i > header {
			t.Errorf("%q is not above the view:\n%s", want, final)
		}
	}
	if !strings.Contains(final, "\n5 steps: 3 ran, 2 cached, 0 deduped, 0 skipped in ") {
		t.Errorf("summary:\n%s", final)
	}
}

// The build cache is collected when the steps are done, while the view is
// on the screen: its report goes above the view, which is drawn again.
func TestTTYPrintsTheCacheCollectionAboveTheView(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN echo a > /a.txt && sleep 1\n")
	_, raw, err := s.KilnTerminal(100, 30, "build", "--progress", "tty", "--cache-max", "1kB", ctx)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, raw)
	}
	if !regexp.MustCompile(`\x1b\[\d+A\r\x1b\[Jbuild cache `).Match(raw) {
		t.Errorf("the view was not erased before the report:\n%q", raw)
	}
	fs := frames(t, raw)
	final := fs[len(fs)-1]
	report, header := strings.Index(final, "build cache "), strings.Index(final, "[+] Building ")
	if report < 0 || report > header || strings.Count(final, "[+] Building ") != 1 || !strings.Contains(final, "over its budget 1kB") {
		t.Errorf("the report is not above the one view:\n%s", final)
	}
}

// A step that writes megabytes without a newline (a progress bar redrawn
// with \r, binary data): the progress shows the first 64 KiB of that
// line and goes on; the step's log keeps every byte.
func TestALongLineIsCutInTheProgressAndKeptInTheLog(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, "FROM busybox\nRUN head -c 8388608 /dev/zero | tr '\\0' x; echo; echo after-the-long-line\n")
	_, stderr, err := s.Kiln("build", "--progress", "plain", ctx)
	if err != nil {
		t.Fatalf("build: %v\n%.2000s", err, stderr)
	}
	cut := regexp.MustCompile(`(?m)^#2 \d+\.\d{3} (x+)\n#2 \d+\.\d{3} after-the-long-line$`).FindStringSubmatch(stderr)
	if len(stderr) > 128<<10 || cut == nil || len(cut[1]) != 64<<10 {
		t.Errorf("plain progress of %d bytes:\n%.300s\n…\n%.300s", len(stderr), stderr, stderr[max(len(stderr)-300, 0):])
	}
	log, stderr, err := s.Kiln("logs", "last", "2")
	if err != nil || len(log) != 8<<20+len("\nafter-the-long-line\n") {
		t.Errorf("kiln logs last 2: %d bytes, %v\n%s", len(log), err, stderr)
	}
}
