package dockerfile

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/util/suggest"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/patternmatcher"
)

// The lint checks. BuildKit's rules (linter.Rule*) keep BuildKit's names,
// messages and URLs and fire under the conditions of BuildKit's
// dockerfile2llb (convert.go, validations.go): the ones that depend on
// dispatch (ENV, ARG, CMD, WORKDIR…) are called from dispatch.go, the
// ones over the whole file from here. kiln's own rules (kilnRules) come
// from what the cache and the layers know; they have no URL.

// Warning is one lint finding: the rule, BuildKit's description and URL
// (none for kiln's rules), the message and where in the Dockerfile.
type Warning struct {
	Rule        string
	Description string
	URL         string
	Message     string
	Location    []parser.Range
}

// Line is the first line the warning points at (0: the whole file).
func (w Warning) Line() int { return line(w.Location) }

// LintError is the failure of a build whose Dockerfile says
// `# check=error=true` (or BUILDKIT_DOCKERFILE_CHECK=error=true) when a
// rule fired: BuildKit's "lint violation found for rules: …".
type LintError struct {
	Rules []string
}

func (e *LintError) Error() string {
	return "lint violation found for rules: " + strings.Join(e.Rules, ", ")
}

// CheckArg is the build-arg that overrides the Dockerfile's `# check=`
// directive, like BuildKit's.
const CheckArg = "BUILDKIT_DOCKERFILE_CHECK"

// lintConfig is the `# check=` directive, or the BUILDKIT_DOCKERFILE_CHECK
// build-arg which replaces it.
func lintConfig(source []byte, buildArgs map[string]string) (*linter.Config, error) {
	if v, ok := buildArgs[CheckArg]; ok {
		c, err := linter.ParseLintOptions(v)
		if err != nil {
			return nil, fmt.Errorf("failed to parse %s: %w", CheckArg, err)
		}
		return c, nil
	}
	check, _, _, _ := parser.ParseDirective("check", source)
	c, err := linter.ParseLintOptions(check)
	if err != nil {
		return nil, fmt.Errorf("# check=%s: %w", check, err)
	}
	return c, nil
}

// lintError is the LintError once every stage compiled, nil unless the
// config says error=true and a rule fired.
func lintError(l *linter.Linter) error {
	if l.Error() == nil {
		return nil
	}
	seen := map[string]bool{}
	var rules []string
	for _, r := range *l.CalledRules {
		if !seen[r] {
			seen[r] = true
			rules = append(rules, r)
		}
	}
	sort.Strings(rules)
	return &LintError{Rules: rules}
}

var reservedStageNames = map[string]bool{"context": true, "scratch": true}

// lintStageNames: ReservedStageName and DuplicateStageName.
func lintStageNames(stages []instructions.Stage, l *linter.Linter) {
	seen := map[string]bool{}
	for _, st := range stages {
		if st.Name == "" {
			continue
		}
		if reservedStageNames[st.Name] {
			l.Run(&linter.RuleReservedStageName, st.Location, linter.RuleReservedStageName.Format(st.Name))
		}
		if seen[st.Name] {
			l.Run(&linter.RuleDuplicateStageName, st.Location, linter.RuleDuplicateStageName.Format(st.Name))
		}
		seen[st.Name] = true
	}
}

// lintCasing: ConsistentInstructionCasing, against the casing of the
// majority of the self-consistent instructions.
func lintCasing(stages []instructions.Stage, l *linter.Linter) {
	consistent := func(s string) bool { return s == strings.ToLower(s) || s == strings.ToUpper(s) }
	var lower, upper int
	count := func(s string) {
		if consistent(s) {
			if s == strings.ToLower(s) {
				lower++
			} else {
				upper++
			}
		}
	}
	for _, st := range stages {
		count(st.OrigCmd)
		for _, cmd := range st.Commands {
			count(cmd.Name())
		}
	}
	majorityLower := lower > upper
	check := func(name string, loc []parser.Range) {
		casing := ""
		if majorityLower && strings.ToLower(name) != name {
			casing = "lowercase"
		} else if !majorityLower && strings.ToUpper(name) != name {
			casing = "uppercase"
		}
		if casing != "" {
			l.Run(&linter.RuleConsistentInstructionCasing, loc, linter.RuleConsistentInstructionCasing.Format(name, casing))
		}
	}
	for _, st := range stages {
		check(st.OrigCmd, st.Location)
		for _, cmd := range st.Commands {
			check(cmd.Name(), cmd.Location())
		}
	}
}

// lintDefaultBaseNames: InvalidDefaultArgInFrom, each FROM with the
// global ARGs' defaults only (no --build-arg).
func lintDefaultBaseNames(stages []instructions.Stage, lex *shell.Lex, platform map[string]string, meta []instructions.ArgCommand, l *linter.Linter) {
	var env []string
	for k, v := range platform {
		env = setEnv(env, k, v)
	}
	for _, a := range meta {
		for _, kv := range a.Args {
			if kv.Value == nil {
				continue
			}
			v, _, err := lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(env))
			if err != nil {
				return
			}
			env = setEnv(env, kv.Key, v)
		}
	}
	for _, st := range stages {
		res, err := lex.ProcessWordWithMatches(st.BaseName, shell.EnvsFromSlice(env))
		if err != nil {
			return
		}
		if _, err := reference.ParseNormalizedNamed(res.Result); err != nil {
			l.Run(&linter.RuleInvalidDefaultArgInFrom, st.Location, linter.RuleInvalidDefaultArgInFrom.Format(st.BaseName))
		}
	}
}

// lintFromArgs: UndefinedArgInFrom for each variable of a FROM (its base
// name or --platform) that is neither a global ARG nor predefined.
func lintFromArgs(unmatched map[string]struct{}, known []string, loc []parser.Range, l *linter.Linter) {
	for _, arg := range slices.Sorted(maps.Keys(unmatched)) {
		if slices.Contains(known, arg) {
			continue
		}
		s, _ := suggest.Search(arg, known, true)
		l.Run(&linter.RuleUndefinedArgInFrom, loc, linter.RuleUndefinedArgInFrom.Format(arg, s))
	}
}

// lintFromPlatform: RedundantTargetPlatform (--platform=$TARGETPLATFORM)
// and FromPlatformFlagConstDisallowed (a constant platform the stage's
// name does not mention).
func lintFromPlatform(stage instructions.Stage, res shell.ProcessWordResult, targetPlatform string, l *linter.Linter) {
	if len(res.Matched) == 1 && len(res.Unmatched) == 0 {
		if _, ok := res.Matched["TARGETPLATFORM"]; ok && res.Result == targetPlatform {
			l.Run(&linter.RuleRedundantTargetPlatform, stage.Location, linter.RuleRedundantTargetPlatform.Format(stage.Platform))
		}
	}
	if len(res.Matched) > 0 || len(res.Unmatched) > 0 {
		return
	}
	parts := strings.Split(res.Result, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return // not a platform: the build fails on it
	}
	os, arch := strings.ToLower(parts[0]), normalizeArch(strings.ToLower(parts[1]))
	if strings.Contains(stage.Name, os) || strings.Contains(stage.Name, arch) {
		return
	}
	l.Run(&linter.RuleFromPlatformFlagConstDisallowed, stage.Location, linter.RuleFromPlatformFlagConstDisallowed.Format(res.Result))
}

// normalizeArch is containerd's platforms.Normalize for the common names.
func normalizeArch(arch string) string {
	switch arch {
	case "x86_64", "x86-64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i686", "386":
		return "386"
	}
	return arch
}

// lintUndefinedVars: UndefinedVar for each variable a word used that is
// neither in the environment nor a bare `ARG NAME` of the stage.
func lintUndefinedVars(cmd instructions.Command, unmatched map[string]struct{}, declared map[string]bool, env shell.EnvGetter, l *linter.Linter) {
	for _, v := range slices.Sorted(maps.Keys(unmatched)) {
		if declared[v] {
			continue
		}
		s, _ := suggest.Search(v, env.Keys(), true)
		l.Run(&linter.RuleUndefinedVar, cmd.Location(), linter.RuleUndefinedVar.Format(v, s))
	}
}

// usedOnce tracks an instruction (CMD, ENTRYPOINT, HEALTHCHECK) of which
// only the last of a stage counts: MultipleInstructionsDisallowed points
// at the earlier one, the one that is ignored.
type usedOnce struct {
	loc []parser.Range
	set bool
}

func (u *usedOnce) use(cmd instructions.Command, l *linter.Linter) {
	if u.set {
		l.Run(&linter.RuleMultipleInstructionsDisallowed, u.loc, linter.RuleMultipleInstructionsDisallowed.Format(cmd.Name()))
	}
	u.loc, u.set = cmd.Location(), true
}

var (
	secretsOnce  sync.Once
	secretsDeny  *regexp.Regexp
	secretsAllow *regexp.Regexp
)

// lintSecretName: SecretsUsedInArgOrEnv, BuildKit's word lists.
func lintSecretName(instruction, key string, loc []parser.Range, l *linter.Linter) {
	secretsOnce.Do(func() {
		secretsDeny = regexp.MustCompile(`(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)`)
		secretsAllow = regexp.MustCompile(`(?i)(?:_|^)(?:public|file|version)(?:_|$)`)
	})
	if secretsDeny.MatchString(key) && !secretsAllow.MatchString(key) {
		l.Run(&linter.RuleSecretsUsedInArgOrEnv, loc, linter.RuleSecretsUsedInArgOrEnv.Format(instruction, key))
	}
}

// lintExposePort: ExposeProtoCasing and ExposeInvalidFormat for one port
// word, [[ip:]hostport:]port[/proto].
func lintExposePort(raw string, loc []parser.Range, l *linter.Linter) {
	spec := raw
	if i := strings.LastIndex(spec, ":"); i >= 0 {
		spec = spec[i+1:]
	}
	if _, proto, ok := strings.Cut(spec, "/"); ok && proto != strings.ToLower(proto) {
		l.Run(&linter.RuleExposeProtoCasing, loc, linter.RuleExposeProtoCasing.Format(raw))
	}
	if strings.Contains(raw, ":") {
		l.Run(&linter.RuleExposeInvalidFormat, loc, linter.RuleExposeInvalidFormat.Format(raw))
	}
}

// lintFroms runs the FROM rules on every stage, needed or not, as
// BuildKit does before it knows the target: UndefinedArgInFrom,
// RedundantTargetPlatform, FromPlatformFlagConstDisallowed.
func (c *compiler) lintFroms(meta []instructions.ArgCommand) {
	known := []string{"BUILDOSVERSION", "TARGETOSVERSION", "TARGETSTAGE"}
	for _, a := range meta {
		for _, kv := range a.Args {
			known = append(known, kv.Key)
		}
	}
	env := shell.EnvsFromSlice(c.global)
	known = append(known, env.Keys()...)
	for _, st := range c.stages {
		l := c.lint.WithMergedConfigFromComments(st.Comments)
		if res, err := c.lex.ProcessWordWithMatches(st.BaseName, env); err == nil {
			lintFromArgs(res.Unmatched, known, st.Location, l)
		}
		if st.Platform == "" {
			continue
		}
		if res, err := c.lex.ProcessWordWithMatches(st.Platform, env); err == nil {
			lintFromArgs(res.Unmatched, known, st.Location, l)
			lintFromPlatform(st, res, c.opts.OS+"/"+c.opts.Arch, l)
		}
	}
}

// lintBasePlatform: InvalidBaseImagePlatform when the image resolved for
// a FROM is not for the platform being built.
func (c *compiler) lintBasePlatform(name string, img *dockerspec.DockerOCIImage, loc []parser.Range) {
	if img.OS == "" && img.Architecture == "" {
		return // a config without a platform says nothing
	}
	if img.OS != c.opts.OS || normalizeArch(img.Architecture) != normalizeArch(c.opts.Arch) {
		actual := img.OS + "/" + img.Architecture
		if img.Variant != "" {
			actual += "/" + img.Variant
		}
		c.lint.Run(&linter.RuleInvalidBaseImagePlatform, loc, linter.RuleInvalidBaseImagePlatform.Format(name, c.opts.OS+"/"+c.opts.Arch, actual))
	}
}

// lintJSONArgs: JSONArgsRecommended for a shell-form CMD or ENTRYPOINT
// when no SHELL says which shell is meant.
func (d *step) lintJSONArgs(cmd instructions.Command, shellForm bool) {
	if shellForm && len(d.st.image.Config.Shell) == 0 {
		d.lint.Run(&linter.RuleJSONArgsRecommended, cmd.Location(), linter.RuleJSONArgsRecommended.Format(cmd.Name()))
	}
}

// lintIgnored: CopyIgnoredFile for each build-context source that
// .dockerignore excludes. Like BuildKit, not when .dockerignore has
// exclusions (!patterns): those are too hard to decide statically.
func (d *step) lintIgnored(cmd string, srcs []string, loc []parser.Range) {
	pm := d.c.opts.Ignore
	if pm == nil || pm.Exclusions() {
		return
	}
	for _, src := range srcs {
		src = filepath.ToSlash(filepath.Clean(src))
		if src == "." || src == "/" {
			if !rootIgnored(pm) {
				continue
			}
		}
		if ok, err := pm.MatchesOrParentMatches(src); err == nil && ok {
			d.lint.Run(&linter.RuleCopyIgnoredFile, loc, linter.RuleCopyIgnoredFile.Format(cmd, src))
		}
	}
}

// rootIgnored says whether a pattern excludes every entry of the context.
func rootIgnored(pm *patternmatcher.PatternMatcher) bool {
	for _, p := range pm.Patterns() {
		if p.Exclusion() {
			continue
		}
		switch p.String() {
		case "*", "**", "**/*":
			return true
		}
	}
	return false
}
