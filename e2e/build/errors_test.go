package build

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// Every Dockerfile problem exits 1 with one message naming the file, the
// line and the cause, and leaves the store clean.
func TestDockerfileErrorsNameFileLineAndCause(t *testing.T) {
	s := e2etest.NewStore(t)
	cases := []struct {
		name, dockerfile string
		args             []string
		want             []string
	}{
		{"unknown instruction with a suggestion", "FROM busybox\nRUNN true\n", nil,
			[]string{"Dockerfile:2:", "unknown instruction: RUNN", "did you mean RUN?"}},
		{"unknown stage in COPY --from", "FROM busybox\nRUN true\nCOPY --from=bulid /x /y\n", nil,
			[]string{"Dockerfile:3:", "COPY", "bulid"}},
		{"unknown target", "FROM busybox AS a\nRUN true\n", []string{"--target", "nope"},
			[]string{"Dockerfile", `target stage "nope" could not be found`}},
		{"missing file names the path looked for", "FROM busybox\nCOPY app/main.py /app/\n", nil,
			[]string{"Dockerfile:2:", "COPY app/main.py /app/", `"app/main.py": not found`}},
		{"bad flag value", "FROM busybox\nCOPY --chmod=rwx a /a\n", nil,
			[]string{"Dockerfile:2:", "--chmod=rwx"}},
		{"bad mount option", "FROM busybox\nRUN --mount=type=cache,target=/c,sharing=sometimes true\n", nil,
			[]string{"Dockerfile:2:", "sharing"}},
		{"missing required secret", "FROM busybox\nRUN --mount=type=secret,id=npmrc,required=true true\n", nil,
			[]string{"Dockerfile:2:", "secret npmrc", "not provided"}},
		{"insecure without --allow", "FROM busybox\nRUN --security=insecure true\n", nil,
			[]string{"Dockerfile:2:", "--allow security.insecure"}},
		{"ONBUILD ONBUILD", "FROM busybox\nONBUILD ONBUILD RUN true\n", nil,
			[]string{"Dockerfile:2:", "ONBUILD"}},
		{"empty Dockerfile", "# nothing\n", nil,
			[]string{"Dockerfile", "no instructions"}},
		{"custom -f name in messages", "FROM busybox\nRUN exit 7\n", []string{"-f", "build.Dockerfile"},
			[]string{"build.Dockerfile:2:", "exit code 7"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name := "Dockerfile"
			for i, a := range tc.args {
				if a == "-f" {
					name = tc.args[i+1]
					tc.args[i+1] = filepath.Join(dir, name)
				}
			}
			os.WriteFile(filepath.Join(dir, name), []byte(tc.dockerfile), 0o644)
			os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)
			args := append(append([]string{"build"}, tc.args...), dir)
			_, stderr, err := s.Kiln(args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v\n%s", err, stderr)
			}
			errLine := ""
			for _, l := range strings.Split(stderr, "\n") {
				if strings.HasPrefix(l, "ERROR:") {
					errLine = l
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q; error line: %s\n%s", w, errLine, stderr)
				}
			}
			s.AssertClean()
		})
	}
}
