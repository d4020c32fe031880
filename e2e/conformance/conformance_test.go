package conformance

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

var (
	goldenFlag = flag.Bool("golden", false,
		"TestConformance: rebuild testdata/conformance/*/buildkit.json with BuildKit instead of testing kiln")
	oracleFlag = flag.String("oracle", "auto",
		"with -golden: standalone, docker, both (standalone makes the golden, docker's result is compared with it), "+
			"or auto (both if possible; docker alone when the standalone BuildKit cannot be set up)")
	buildkitBinFlag = flag.String("buildkit-bin", "",
		"with -golden: directory holding buildkitd and buildctl (scripts/buildkit-bin.sh prints it)")
)

// Files of a case directory that are not part of the build context.
var caseMetaFiles = map[string]bool{
	"buildkit.json":      true, // the golden
	"flags":              true, // build flags, one per line
	"setup.sh":           true, // run in the copied context before building
	"expect-error":       true, // substrings kiln's stderr must contain (exit 1)
	"buildkit-error.txt": true, // BuildKit's error for an expect-error case (reference only)
	"docker-differs.txt": true, // where docker's older BuildKit disagrees (reference only)
}

type testCase struct {
	name      string
	dir       string   // testdata/conformance/NAME
	flags     []string // "--build-arg X=1"
	expectErr []string // non-empty for an expected-error case
}

func casesDir(t *testing.T) string {
	t.Helper()
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(repo, "testdata", "conformance")
}

// readLines returns the non-empty lines of a file that do not start with
// "#", trimmed; nil if the file does not exist.
func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func loadCases(t *testing.T) []testCase {
	t.Helper()
	root := casesDir(t)
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var cases []testCase
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err != nil {
			t.Fatalf("case %s has no Dockerfile", e.Name())
		}
		cases = append(cases, testCase{
			name:      e.Name(),
			dir:       dir,
			flags:     readLines(t, filepath.Join(dir, "flags")),
			expectErr: readLines(t, filepath.Join(dir, "expect-error")),
		})
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].name < cases[j].name })
	return cases
}

// loadKnownFailures reads KNOWN_FAILURES: "CASE reason..." per line.
func loadKnownFailures(t *testing.T, cases []testCase) map[string]string {
	t.Helper()
	known := map[string]string{}
	names := map[string]bool{}
	for _, c := range cases {
		names[c.name] = true
	}
	for _, l := range readLines(t, filepath.Join(casesDir(t), "KNOWN_FAILURES")) {
		name, reason, _ := strings.Cut(l, " ")
		if !names[name] {
			t.Errorf("KNOWN_FAILURES names %q, which is not a case in testdata/conformance", name)
		}
		known[name] = strings.TrimSpace(reason)
	}
	return known
}

// prepareContext copies the case to a fresh directory without its meta
// files, gives every file and directory the mode git would (0755 for
// directories and executables, else 0644) and root ownership, so results
// do not depend on the umask or user of the checkout, then runs setup.sh
// in it.
func prepareContext(t *testing.T, c testCase) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "context")
	if out, err := exec.Command("cp", "-a", c.dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	for m := range caseMetaFiles {
		os.Remove(filepath.Join(dst, m))
	}
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, 0, 0); err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			return os.Chmod(p, 0o755)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if fi.Mode().Perm()&0o100 != 0 {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	if setup := filepath.Join(c.dir, "setup.sh"); fileExists(setup) {
		cmd := exec.Command("/bin/sh", "-eu", setup)
		cmd.Dir = dst
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("setup.sh: %v\n%s", err, out)
		}
	}
	return dst
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// kilnFlags turns the case's flags into kiln build arguments (-f is
// relative to the context).
func kilnFlags(flags []string, ctx string) []string {
	var out []string
	for _, f := range flags {
		n, v := testenv.SplitFlag(f)
		switch {
		case n == "-f" || n == "--file":
			out = append(out, n, filepath.Join(ctx, v))
		case v == "":
			out = append(out, n)
		default:
			out = append(out, n, v)
		}
	}
	return out
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite: end-to-end builds (not in -short)")
	}
	testenv.RequireRoot(t)
	cases := loadCases(t)
	if *goldenFlag {
		makeGoldens(t, cases)
		return
	}
	known := loadKnownFailures(t, cases)
	s := e2etest.NewStore(t) // one store for every case: shared base, shared cache
	baseTar := testenv.BusyboxTar(t)
	baseSHA, err := testenv.FileSHA256(baseTar)
	if err != nil {
		t.Fatal(err)
	}
	base, err := testenv.ReadRootfsTar(baseTar)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu                     sync.Mutex
		passed, failed         []string
		knownFailed, nowPasses []string
	)
	start := time.Now()
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			reason, isKnown := known[c.name]
			// A fatal problem (no golden, another busybox) counts as failed.
			ok := false
			defer func() {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case ok:
					passed = append(passed, c.name)
				case isKnown && !t.Failed():
					failed = append(failed, c.name)
					knownFailed = append(knownFailed, c.name)
				default:
					failed = append(failed, c.name)
				}
			}()
			problems := conformanceCase(t, s, c, base, baseSHA)
			switch {
			case len(problems) == 0 && isKnown:
				ok = true
				mu.Lock()
				nowPasses = append(nowPasses, c.name)
				mu.Unlock()
				t.Errorf("now passes: remove it from KNOWN_FAILURES (%s)", reason)
			case len(problems) == 0:
				ok = true
			case isKnown:
				t.Logf("known failure (KNOWN_FAILURES: %s):\n%s", reason, strings.Join(problems, "\n"))
			default:
				t.Errorf("kiln (a) differs from BuildKit (b):\n%s", strings.Join(problems, "\n"))
			}
		})
	}
	summary := fmt.Sprintf("conformance: %d passed, %d failed (%d known failures, %d unexpected) in %.0fs",
		len(passed), len(failed), len(knownFailed), len(failed)-len(knownFailed), time.Since(start).Seconds())
	if len(failed) > len(knownFailed) {
		var unexpected []string
		for _, f := range failed {
			if !contains(knownFailed, f) {
				unexpected = append(unexpected, f)
			}
		}
		summary += "\nconformance: failed: " + strings.Join(unexpected, " ")
	}
	if len(knownFailed) > 0 {
		summary += "\nconformance: known failures: " + strings.Join(knownFailed, " ")
	}
	if len(nowPasses) > 0 {
		summary += "\nconformance: now pass (remove from KNOWN_FAILURES): " + strings.Join(nowPasses, " ")
	}
	t.Log(summary)
	fmt.Println(summary)
}

// conformanceCase builds one case with kiln and returns what differs from
// the golden (or from the expected error). Problems with the test itself
// (no golden, another busybox) are fatal.
func conformanceCase(t *testing.T, s *e2etest.Store, c testCase, base *testenv.ImageSummary, baseSHA string) []string {
	t.Helper()
	var golden testenv.Golden
	if len(c.expectErr) == 0 {
		var err error
		golden, err = testenv.ReadGolden(filepath.Join(c.dir, "buildkit.json"))
		if errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("no buildkit.json: run make golden")
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.CheckGoldenBase(golden, baseSHA); err != nil {
			t.Fatal(err)
		}
	}
	ctx := prepareContext(t, c)
	tag := "conformance-" + strings.ToLower(c.name) + ":latest"
	args := append([]string{"build", "--progress", "plain", "-t", tag}, kilnFlags(c.flags, ctx)...)
	args = append(args, ctx)
	_, stderr, err := s.Kiln(args...)

	if len(c.expectErr) > 0 {
		var problems []string
		var ee *exec.ExitError
		if err == nil {
			return []string{"kiln built it; BuildKit fails (see buildkit-error.txt)"}
		}
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			problems = append(problems, fmt.Sprintf("want exit code 1, got %v", err))
		}
		for _, w := range c.expectErr {
			if !strings.Contains(stderr, w) {
				problems = append(problems, fmt.Sprintf("stderr lacks %q", w))
			}
		}
		if len(problems) > 0 {
			problems = append(problems, "kiln's stderr (end):\n"+tail(stderr, 15))
		}
		return problems
	}
	if err != nil {
		return []string{fmt.Sprintf("kiln build failed: %v\n%s", err, tail(stderr, 25))}
	}
	out := filepath.Join(t.TempDir(), "kiln.tar")
	s.MustKiln("save", "-o", out, tag)
	sum, err := testenv.ReadImageTar(out, "")
	if err != nil {
		t.Fatal(err)
	}
	return testenv.CompareGolden(sum, base, golden)
}

// ---------------------------------------------------------------------------
// make golden

// makeGoldens builds every case with the reference BuildKit and writes its
// buildkit.json (or buildkit-error.txt for an expected-error case).
func makeGoldens(t *testing.T, cases []testCase) {
	baseTar := testenv.BusyboxTar(t)
	baseSHA, err := testenv.FileSHA256(baseTar)
	if err != nil {
		t.Fatal(err)
	}
	base, err := testenv.ReadRootfsTar(baseTar)
	if err != nil {
		t.Fatal(err)
	}

	var primary, docker testenv.Oracle
	mode := *oracleFlag
	wantStandalone := mode == "standalone" || mode == "both" || mode == "auto"
	wantDocker := mode == "docker" || mode == "both" || mode == "auto"
	if !wantStandalone && !wantDocker {
		t.Fatalf("-oracle=%q: want standalone, docker, both or auto", mode)
	}
	if wantStandalone {
		bk, err := startStandalone(t, baseTar)
		switch {
		case err == nil:
			primary = bk
			t.Cleanup(func() {
				if err := bk.Stop(); err != nil {
					t.Errorf("stopping buildkitd: %v", err)
				}
			})
		case mode == "auto":
			msg := fmt.Sprintf("make golden: the standalone BuildKit cannot be set up (%v);\n"+
				"make golden: FALLING BACK to docker's built-in BuildKit, which is older: goldens may differ from current BuildKit", err)
			t.Log(msg)
			fmt.Println(msg)
		default:
			t.Fatalf("standalone BuildKit: %v", err)
		}
	}
	if wantDocker {
		if _, err := testenv.LookCommand("dockerd"); err != nil && primary != nil && mode == "auto" {
			t.Logf("no dockerd (%v): docker's BuildKit is not compared", err)
		} else {
			d := testenv.SharedDockerd(t)
			o, err := testenv.NewDockerOracle(d, baseTar)
			if err != nil {
				t.Fatal(err)
			}
			if primary == nil {
				primary = o
			} else {
				docker = o
			}
		}
	}
	msg := "make golden: goldens by " + primary.Name()
	if docker != nil {
		msg += "; compared with " + docker.Name() + " (disagreements in CASE/docker-differs.txt)"
	}
	t.Log(msg)
	fmt.Println(msg)

	var disagree []string
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			ctx := prepareContext(t, c)
			tmp := t.TempDir()
			ref, refErr := oracleBuild(primary, ctx, c.flags, filepath.Join(tmp, "ref.tar"))
			var other *testenv.ImageSummary
			var otherErr error
			if docker != nil {
				other, otherErr = oracleBuild(docker, ctx, c.flags, filepath.Join(tmp, "docker.tar"))
			}
			differsPath := filepath.Join(c.dir, "docker-differs.txt")
			os.Remove(differsPath)
			if docker != nil {
				var lines []string
				switch {
				case refErr != nil && otherErr == nil:
					lines = []string{"docker's BuildKit builds it; " + primary.Name() + " fails:", errorSummary(refErr)}
				case refErr == nil && otherErr != nil:
					lines = []string{"docker's BuildKit fails; " + primary.Name() + " builds it:", errorSummary(otherErr)}
				case refErr == nil:
					lines = testenv.Diff(other, ref)
					if len(lines) > 0 {
						lines = append([]string{"a: " + docker.Name() + ", b: " + primary.Name() + " (the golden)"}, lines...)
					}
				}
				if len(lines) > 0 {
					disagree = append(disagree, c.name)
					writeFile(t, differsPath, strings.Join(lines, "\n")+"\n")
					t.Logf("docker's BuildKit disagrees:\n%s", strings.Join(lines, "\n"))
				}
			}
			goldenPath := filepath.Join(c.dir, "buildkit.json")
			errPath := filepath.Join(c.dir, "buildkit-error.txt")
			if len(c.expectErr) > 0 {
				os.Remove(goldenPath)
				if refErr == nil {
					os.Remove(errPath)
					t.Fatalf("%s builds this expect-error case; remove expect-error", primary.Name())
				}
				writeFile(t, errPath, "# "+primary.Name()+" fails on this case (make golden records it for reference):\n"+errorSummary(refErr)+"\n")
				return
			}
			os.Remove(errPath)
			if refErr != nil {
				t.Fatalf("%s failed: %v", primary.Name(), refErr)
			}
			g := testenv.MakeGolden(ref, base)
			g.Comment = "Made by make golden: the image BuildKit built from this case, minus what it shares with the busybox base image. Do not edit."
			g.Oracle = primary.Name()
			g.BaseSHA256 = baseSHA
			if err := testenv.WriteGolden(goldenPath, g); err != nil {
				t.Fatal(err)
			}
		})
	}
	if docker != nil {
		msg := fmt.Sprintf("make golden: docker's BuildKit disagrees with %s on %d cases: %s", primary.Name(), len(disagree), strings.Join(disagree, " "))
		t.Log(msg)
		fmt.Println(msg)
	}
}

// startStandalone starts buildkitd from -buildkit-bin with a registry
// holding the busybox image that kiln makes from baseTar.
func startStandalone(t *testing.T, baseTar string) (*testenv.Buildkitd, error) {
	if *buildkitBinFlag == "" {
		return nil, errors.New("no -buildkit-bin given (scripts/buildkit-bin.sh builds it)")
	}
	s := e2etest.NewStore(t)
	img := filepath.Join(t.TempDir(), "busybox-oci.tar")
	s.MustKiln("save", "-o", img, "busybox:latest")
	dir, err := os.MkdirTemp("", "kiln-buildkitd-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return testenv.StartBuildkitd(*buildkitBinFlag, dir, img)
}

func oracleBuild(o testenv.Oracle, ctx string, flags []string, out string) (*testenv.ImageSummary, error) {
	if err := o.Build(ctx, flags, out); err != nil {
		return nil, err
	}
	return testenv.ReadImageTar(out, "")
}

var (
	reProgress = regexp.MustCompile(`^#\d+ `)
	reRefID    = regexp.MustCompile(`\b[a-z0-9]{25}\b`)
	reTempDir  = regexp.MustCompile(`/tmp/\S*/context`)
	reTime     = regexp.MustCompile(`^\d+\.\d+ `) // RUN output timestamps
)

// errorSummary keeps the end of a BuildKit build log that explains the
// failure (what follows the last progress line), without temp paths and
// random ref IDs, so regenerated files stay stable.
func errorSummary(err error) string {
	lines := strings.Split(strings.TrimRight(err.Error(), "\n"), "\n")
	last := -1
	for i, l := range lines {
		if reProgress.MatchString(l) {
			last = i
		}
	}
	if last >= 0 {
		lines = lines[last+1:]
	}
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "stderr:") || strings.HasPrefix(l, "output:") {
			continue
		}
		l = reTempDir.ReplaceAllString(l, "CONTEXT")
		l = reTime.ReplaceAllString(l, "")
		out = append(out, reRefID.ReplaceAllString(l, "REF"))
	}
	return strings.Join(out, "\n")
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
