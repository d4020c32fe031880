package builder

import (
	"context"
	"sort"

	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/store"
)

// CheckResult is what `kiln build --check` found: every stage's lint
// warnings, in Dockerfile order, and the Dockerfile they point into.
type CheckResult struct {
	// Filename names the Dockerfile as build messages do.
	Filename string
	// Source is the Dockerfile, for showing the lines a warning names.
	Source   []byte
	Warnings []dockerfile.Warning
}

// Check lints the Dockerfile of opts as BuildKit's check does (every
// stage, the `# check=` directive or the BUILDKIT_DOCKERFILE_CHECK
// build-arg honoured) and builds nothing: no step runs, no cache is read
// and no build is recorded. Base images are resolved (pulled if missing),
// since rules need their config. The error is the Dockerfile's own (a
// parse error, a stage that cannot be compiled, or a *dockerfile.LintError
// under check=error=true); the result then holds the warnings found
// before it.
func Check(ctx context.Context, st *store.Store, opts Options) (*CheckResult, error) {
	chk := &CheckResult{}
	_, err := run(ctx, st, opts, chk)
	sort.SliceStable(chk.Warnings, func(i, j int) bool { return chk.Warnings[i].Line() < chk.Warnings[j].Line() })
	return chk, err
}
