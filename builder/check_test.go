package builder_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/frontend/dockerfile"
)

// Check lints every stage (only the target's with a target), in line
// order, honours .dockerignore, and builds nothing: no image, no build
// record, no step.
func TestCheckLintsAndBuildsNothing(t *testing.T) {
	st := newStore(t)
	src := "FROM busybox AS unused\nMAINTAINER me\n\nFROM busybox\nCOPY secret.txt /\nRUN echo STEP-RAN > /ran\nCMD echo hi\n"
	dir := writeContext(t, map[string]string{"Dockerfile": src, ".dockerignore": "secret.txt\n", "secret.txt": "x"})
	res, err := builder.Check(t.Context(), st, builder.Options{ContextDir: dir, Tags: []string{"checked:1"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range res.Warnings {
		got = append(got, w.Rule)
	}
	if strings.Join(got, " ") != "MaintainerDeprecated CopyIgnoredFile JSONArgsRecommended" {
		t.Errorf("warnings %v", got)
	}
	if res.Filename != "Dockerfile" || string(res.Source) != src {
		t.Errorf("source %q %q", res.Filename, res.Source)
	}
	if imgs, err := st.Content.Images(); err != nil || len(imgs) != 1 {
		t.Errorf("images after a check: %v %v (want busybox only)", imgs, err)
	}
	if entries, _ := os.ReadDir(st.BuildsDir()); len(entries) != 0 {
		t.Errorf("a check recorded a build: %v", entries)
	}

	res, err = builder.Check(t.Context(), st, builder.Options{ContextDir: dir, Target: "unused"})
	if err != nil || len(res.Warnings) != 1 || res.Warnings[0].Rule != "MaintainerDeprecated" {
		t.Errorf("with --target unused: %+v %v", res.Warnings, err)
	}

	strict := writeContext(t, map[string]string{"Dockerfile": "# check=error=true\n" + src})
	res, err = builder.Check(t.Context(), st, builder.Options{ContextDir: strict})
	var le *dockerfile.LintError
	if !errors.As(err, &le) || len(res.Warnings) != 2 {
		t.Errorf("error=true: %v, %d warnings", err, len(res.Warnings))
	}
}
