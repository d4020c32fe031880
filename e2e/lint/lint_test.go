package lint

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
)

var (
	golden      = flag.Bool("golden", false, "rewrite testdata/lint/*/buildkit.txt with BuildKit's check (needs -buildkit-bin)")
	buildkitBin = flag.String("buildkit-bin", "", "with -golden: directory holding buildkitd and buildctl (scripts/buildkit-bin.sh prints it)")
)

const casesDir = "../../frontend/dockerfile/testdata/lint"

// lintCase is one directory of testdata/lint: a build context with its
// Dockerfile, maybe a build-args file (KEY=VALUE lines).
type lintCase struct {
	name, dir string
	buildArgs []string
}

func cases(t *testing.T) []lintCase {
	t.Helper()
	entries, err := os.ReadDir(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []lintCase
	for _, e := range entries {
		if !e.IsDir() {
			continue // the README
		}
		c := lintCase{name: e.Name(), dir: filepath.Join(casesDir, e.Name())}
		if b, err := os.ReadFile(filepath.Join(c.dir, "build-args")); err == nil {
			c.buildArgs = strings.Fields(string(b))
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no lint cases")
	}
	return out
}

// kiln build --check prints, case by case, BuildKit's check output: its
// header line then exactly BuildKit's own text (rule, URL, message, the
// Dockerfile lines), and exits 1 when something was found.
func TestCheckMatchesBuildKit(t *testing.T) {
	s := e2etest.NewStore(t)
	cs := cases(t)
	if *golden {
		writeGoldens(t, s, cs)
	}
	for _, c := range cs {
		t.Run(c.name, func(t *testing.T) {
			s.T = t
			want, err := os.ReadFile(filepath.Join(c.dir, "buildkit.txt"))
			if err != nil {
				t.Fatalf("%v (make golden-lint records it)", err)
			}
			args := []string{"build", "--check"}
			for _, a := range c.buildArgs {
				args = append(args, "--build-arg", a)
			}
			out, errOut, err := s.Kiln(append(args, c.dir)...)
			header, body, _ := strings.Cut(out, "\n")
			body, kilns := withoutKilnRules(body)
			n := strings.Count(string(want), "\nWARNING: ") + kilns
			switch {
			case n == 0 && header != "Check complete, no warnings found.":
				t.Errorf("header %q, want no warnings", header)
			case n == 1 && header != "Check complete, 1 warning has been found!":
				t.Errorf("header %q, want 1 warning", header)
			case n > 1 && header != fmt.Sprintf("Check complete, %d warnings have been found!", n):
				t.Errorf("header %q, want %d warnings", header, n)
			}
			if n == kilns {
				body = ""
			}
			body = strings.TrimSuffix(body, "\n\n") + "\n"
			if strings.TrimSpace(body) != strings.TrimSpace(string(want)) {
				t.Errorf("kiln build --check differs from BuildKit's check:\n--- kiln\n%s\n--- buildkit.txt\n%s\nstderr:\n%s", body, want, errOut)
			}
			wantCode := 0
			if n > 0 || c.name == "check-error" {
				wantCode = 1
			}
			if code := exitCode(err); code != wantCode {
				t.Errorf("exit code %d, want %d (stderr %s)", code, wantCode, errOut)
			}
		})
	}
}

// writeGoldens runs BuildKit's check (the dockerfile frontend's
// frontend.lint subrequest) on every case and keeps what it prints.
func writeGoldens(t *testing.T, s *e2etest.Store, cs []lintCase) {
	t.Helper()
	if *buildkitBin == "" {
		t.Fatal("-golden needs -buildkit-bin (scripts/buildkit-bin.sh prints it)")
	}
	img := filepath.Join(t.TempDir(), "busybox-oci.tar")
	s.MustKiln("save", "-o", img, "busybox:latest")
	dir, err := os.MkdirTemp("", "kiln-lint-buildkitd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bk, err := testenv.StartBuildkitd(*buildkitBin, dir, img)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := bk.Stop(); err != nil {
			t.Errorf("stopping buildkitd: %v", err)
		}
	}()
	for _, c := range cs {
		args := []string{"--addr", "unix://" + bk.Socket, "build", "--progress", "plain", "--frontend", "dockerfile.v0",
			"--local", "context=" + c.dir, "--local", "dockerfile=" + c.dir, "--opt", "requestid=frontend.lint"}
		for _, a := range c.buildArgs {
			args = append(args, "--opt", "build-arg:"+a)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(filepath.Join(bk.BinDir, "buildctl"), args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("buildctl lint %s: %v\n%s", c.name, err, stderr.String())
		}
		if err := os.WriteFile(filepath.Join(c.dir, "buildkit.txt"), stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d warnings from %s", c.name, strings.Count(stdout.String(), "\nWARNING: "), bk.Name())
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

const warned = `FROM busybox
MAINTAINER someone
CMD echo hello
`

// --check builds nothing: no image, no build record; --call=check says
// the same; ignorestatus=true exits 0; format=json is BuildKit's result.
func TestCheckBuildsNothing(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.DockerfileContext(t, warned)
	imagesBefore := s.MustKiln("images", "-q")
	out, errOut, err := s.Kiln("build", "--check", "-t", "checked:1", ctx)
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit code %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "Check complete, 2 warnings have been found!\n") {
		t.Errorf("stdout:\n%s", out)
	}
	for _, want := range []string{
		"WARNING: MaintainerDeprecated - https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/\nMaintainer instruction is deprecated in favor of using label\nDockerfile:2\n",
		"WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n",
		"   3 | >>> CMD echo hello\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if after := s.MustKiln("images", "-q"); after != imagesBefore {
		t.Errorf("--check made an image: before %q, after %q", imagesBefore, after)
	}
	if _, _, err := s.Kiln("image", "inspect", "checked:1"); err == nil {
		t.Error("--check tagged checked:1")
	}

	call, _, err := s.Kiln("build", "--call=check", ctx)
	if exitCode(err) != 1 || call != out {
		t.Errorf("--call=check: exit %d, output differs from --check:\n%s", exitCode(err), call)
	}
	if _, _, err := s.Kiln("build", "--call=check,ignorestatus=true", ctx); err != nil {
		t.Errorf("ignorestatus=true: %v", err)
	}

	js, _, err := s.Kiln("build", "--call=check,format=json", ctx)
	if exitCode(err) != 1 {
		t.Errorf("format=json: exit code %d, want 1", exitCode(err))
	}
	var res struct {
		Warnings []struct {
			RuleName, Description, URL, Detail string
			Location                           struct {
				Ranges []struct{ Start struct{ Line int } }
			}
		}
		Sources []struct {
			Filename string
			Data     []byte
		}
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatalf("format=json: %v\n%s", err, js)
	}
	if len(res.Warnings) != 2 || res.Warnings[0].RuleName != "MaintainerDeprecated" || res.Warnings[0].Location.Ranges[0].Start.Line != 2 ||
		res.Warnings[1].RuleName != "JSONArgsRecommended" || res.Warnings[1].Description == "" {
		t.Errorf("format=json warnings: %+v", res.Warnings)
	}
	if len(res.Sources) != 1 || res.Sources[0].Filename != "Dockerfile" || string(res.Sources[0].Data) != warned {
		t.Errorf("format=json sources: %+v", res.Sources)
	}

	clean := e2etest.DockerfileContext(t, "FROM busybox\nCMD [\"sh\"]\n")
	if out, errOut, err := s.Kiln("build", "--check", clean); err != nil || out != "Check complete, no warnings found.\n" {
		t.Errorf("clean Dockerfile: %v\n%s%s", err, out, errOut)
	}
	if _, errOut, err := s.Kiln("build", "--call=outline", clean); err == nil || !strings.Contains(errOut, "--call=outline") {
		t.Errorf("--call=outline: %v %s", err, errOut)
	}
}

// A Dockerfile that cannot be checked gets its error, not "Check complete".
func TestCheckOfAnEmptyDockerfileSaysOnlyItsError(t *testing.T) {
	s := e2etest.NewStore(t)
	out, errOut, err := s.Kiln("build", "--check", e2etest.DockerfileContext(t, "# nothing\n"))
	if exitCode(err) != 1 || out != "" || !strings.Contains(errOut, "file with no instructions") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", exitCode(err), out, errOut)
	}
}

// check=error=true fails the build on a warning, naming the file, the
// line and the rule, before any step runs; a build without it runs.
func TestCheckErrorFailsBuild(t *testing.T) {
	s := e2etest.NewStore(t)
	df := "# check=error=true\nFROM busybox\nRUN echo STEP-$((40+2))\nCMD echo hello\n"
	ctx := e2etest.DockerfileContext(t, df)
	out, errOut, err := s.Kiln("build", "--progress=plain", "-t", "strict:1", ctx)
	if err == nil {
		t.Fatalf("build with check=error=true and a warning succeeded\n%s%s", out, errOut)
	}
	if !strings.Contains(errOut, "Dockerfile:4: lint violation found for rules: JSONArgsRecommended") {
		t.Errorf("stderr does not name the file, line and rule:\n%s", errOut)
	}
	if strings.Contains(out+errOut, "STEP-42") {
		t.Errorf("a step ran:\n%s", errOut)
	}
	if _, _, err := s.Kiln("image", "inspect", "strict:1"); err == nil {
		t.Error("the failed build tagged strict:1")
	}

	// the build-arg overrides the directive, like BuildKit's
	out, errOut, err = s.Kiln("build", "--progress=plain", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended;error=true", "-t", "strict:1", ctx)
	if err != nil {
		t.Fatalf("build with the rule skipped by BUILDKIT_DOCKERFILE_CHECK: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "STEP-42") {
		t.Errorf("the RUN did not run:\n%s", errOut)
	}

	// --check prints the warnings, then the failure
	out, errOut, err = s.Kiln("build", "--check", ctx)
	if exitCode(err) != 1 || !strings.Contains(out, "WARNING: JSONArgsRecommended") || !strings.Contains(errOut, "lint violation found for rules: JSONArgsRecommended") {
		t.Errorf("--check with error=true: exit %d\n%s%s", exitCode(err), out, errOut)
	}
	if _, errOut, err := s.Kiln("build", "--check", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=maybe", ctx); err == nil || !strings.Contains(errOut, "BUILDKIT_DOCKERFILE_CHECK") {
		t.Errorf("a bad BUILDKIT_DOCKERFILE_CHECK: %v %s", err, errOut)
	}
}

// check=skip= silences the rules it names, skip=all every one.
func TestCheckSkip(t *testing.T) {
	s := e2etest.NewStore(t)
	for _, c := range []struct {
		directive string
		want      []string
		absent    []string
	}{
		{"", []string{"MaintainerDeprecated", "JSONArgsRecommended", "LegacyKeyValueFormat"}, nil},
		{"# check=skip=MaintainerDeprecated,JSONArgsRecommended\n", []string{"LegacyKeyValueFormat"}, []string{"MaintainerDeprecated", "JSONArgsRecommended"}},
		{"# check=skip=all\n", nil, []string{"MaintainerDeprecated", "JSONArgsRecommended", "LegacyKeyValueFormat"}},
	} {
		ctx := e2etest.DockerfileContext(t, c.directive+"FROM busybox\nMAINTAINER me\nENV A b\nCMD echo hi\n")
		out, _, _ := s.Kiln("build", "--check", ctx)
		for _, r := range c.want {
			if !strings.Contains(out, "WARNING: "+r+" ") {
				t.Errorf("%q: %s missing:\n%s", c.directive, r, out)
			}
		}
		for _, r := range c.absent {
			if strings.Contains(out, "WARNING: "+r) {
				t.Errorf("%q: %s not skipped:\n%s", c.directive, r, out)
			}
		}
	}
}

// kiln's own rules show in --check like BuildKit's, with their
// description where BuildKit's have a URL.
func TestCheckKilnRules(t *testing.T) {
	s := e2etest.NewStore(t)
	ctx := e2etest.TextContext(t, map[string]string{
		"Dockerfile": `FROM busybox
ARG GIT_COMMIT=unknown
WORKDIR /app
RUN echo "$GIT_COMMIT" > /commit
COPY . .
RUN npm ci
ADD https://example.com/big.tar.gz /tmp/
RUN rm -rf /tmp/big.tar.gz
CMD ["sh"]
`,
	})
	out, errOut, err := s.Kiln("build", "--check", ctx)
	if exitCode(err) != 1 {
		t.Fatalf("exit %d\n%s%s", exitCode(err), out, errOut)
	}
	for _, want := range []string{
		"WARNING: VolatileArgEarly - A value that changes with every build",
		"ARG GIT_COMMIT changes from build to build and reaches the step on line 4: 4 steps that do not use it re-run whenever it changes",
		"WARNING: ContextCopiedBeforeInstall - Copying the whole build context",
		`COPY . on line 5 comes before "npm ci" on line 6`,
		"WARNING: FileRemovedInLaterLayer - A file added in one layer and removed in a later one",
		"/tmp/big.tar.gz added by ADD on line 7 is removed on line 8 in a later layer",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

// withoutKilnRules drops the warnings of kiln's own rules, which BuildKit
// does not have (TestCheckKilnRules checks them), from --check's output
// after its header, and counts them.
func withoutKilnRules(body string) (string, int) {
	blocks := strings.Split(body, "\nWARNING: ")
	kept, n := blocks[:1], 0
	for _, b := range blocks[1:] {
		switch rule, _, _ := strings.Cut(b, " "); rule {
		case "ContextCopiedBeforeInstall", "VolatileArgEarly", "FileRemovedInLaterLayer":
			n++
			continue
		}
		kept = append(kept, b)
	}
	return strings.Join(kept, "\nWARNING: "), n
}
