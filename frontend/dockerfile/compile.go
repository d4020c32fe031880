// Package dockerfile compiles a Dockerfile into a solver graph and the
// image config that goes with the target stage. The graph's ops are
// definitions (solver/ops: what to run, mounts, copy flags); the solver
// binds them to a worker when it runs them. Parsing and variable
// expansion are BuildKit's own (frontend/dockerfile/parser, instructions,
// shell); the image config is computed here as a pure function of the
// instructions and the base image's config, like BuildKit's dockerfile2llb.
package dockerfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/patternmatcher"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageResolver finds base images (FROM, COPY --from=image).
type ImageResolver interface {
	ResolveImage(ctx context.Context, ref string) (ocispec.Descriptor, *dockerspec.DockerOCIImage, error)
}

// Options is everything a compile depends on.
type Options struct {
	// Filename is how errors name the Dockerfile ("Dockerfile").
	Filename  string
	Source    []byte
	Context   *contenthash.Hasher
	Target    string
	BuildArgs map[string]string
	Labels    map[string]string
	NoCache   bool
	// Network for RUN: "host" (default) or "none".
	Network string
	Images  ImageResolver
	// Epoch (SOURCE_DATE_EPOCH) fixes created times.
	Epoch *time.Time
	// Warn receives warnings, lint warnings as "FILE:LINE: Rule: message"
	// unless Lint is set.
	Warn func(msg string)
	// Lint, if set, receives each lint warning instead of Warn.
	Lint func(Warning)
	// AllStages compiles every stage, not only those the target needs,
	// so lint sees them all (kiln build --check, like BuildKit's).
	AllStages bool
	// Ignore is the build context's .dockerignore, for CopyIgnoredFile.
	Ignore *patternmatcher.PatternMatcher
	// Platform of the host, e.g. linux/amd64.
	OS, Arch string
	// NamedContexts are --build-context NAME=...: FROM NAME and
	// COPY --from=NAME use them before stages and images.
	NamedContexts map[string]NamedContext
	// NoCacheFilter lists stages whose steps ignore the cache.
	NoCacheFilter []string
	// AllowInsecure permits RUN --security=insecure.
	AllowInsecure bool
}

// NamedContext is a directory (Dir) or an image reference (Image).
type NamedContext struct {
	Dir   *contenthash.Hasher
	Image string
}

// Build is a compiled Dockerfile.
type Build struct {
	Target *solver.Vertex
	// Image is the target's config and history; the exporter adds rootfs.
	Image dockerspec.DockerOCIImage
	// Vertices lists every vertex of the needed stages in Dockerfile order.
	Vertices []*solver.Vertex
	// SkippedStages are stages the target does not need.
	SkippedStages []string
}

// Error is a Dockerfile problem with its location.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Compile parses and compiles opts.Source.
func Compile(ctx context.Context, opts Options) (*Build, error) {
	if opts.Filename == "" {
		opts.Filename = "Dockerfile"
	}
	if opts.Network == "" {
		opts.Network = "host"
	}
	fail := func(line int, err error) error { return &Error{File: opts.Filename, Line: line, Err: err} }
	lintCfg, err := lintConfig(opts.Source, opts.BuildArgs)
	if err != nil {
		return nil, fail(1, err)
	}
	firstLine := 0 // of the earliest warning, for a check=error=true failure
	lintCfg.Warn = func(rule, desc, url, msg string, loc []parser.Range) {
		if l := line(loc); l > 0 && (firstLine == 0 || l < firstLine) {
			firstLine = l
		}
		switch {
		case opts.Lint != nil:
			opts.Lint(Warning{Rule: rule, Description: desc, URL: url, Message: msg, Location: loc})
		case opts.Warn != nil:
			opts.Warn(fmt.Sprintf("%s:%d: %s: %s", opts.Filename, line(loc), rule, msg))
		}
	}
	lint := linter.New(lintCfg)
	res, err := parser.Parse(bytes.NewReader(opts.Source))
	if err != nil {
		return nil, fail(errLine(err), err)
	}
	for _, w := range res.Warnings {
		var loc []parser.Range
		if w.Location != nil {
			loc = []parser.Range{*w.Location}
		}
		if w.URL == linter.RuleNoEmptyContinuation.URL {
			lint.Run(&linter.RuleNoEmptyContinuation, loc, linter.RuleNoEmptyContinuation.Format())
		} else if opts.Warn != nil {
			opts.Warn(fmt.Sprintf("%s:%d: %s", opts.Filename, line(loc), w.Short))
		}
	}
	if syntax, _, _, ok := parser.DetectSyntax(opts.Source); ok && opts.Warn != nil {
		opts.Warn(fmt.Sprintf("%s: # syntax=%s: kiln uses its built-in Dockerfile frontend (BuildKit's parser) and never downloads one", opts.Filename, syntax))
	}
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, fail(errLine(err), err)
	}
	if len(stages) == 0 {
		return nil, fail(0, errors.New("file with no instructions"))
	}
	lintStageNames(stages, lint)
	lintCasing(stages, lint)
	c := &compiler{opts: opts, lex: shell.NewLex(res.EscapeToken), fail: fail, built: map[int]*stageState{}, lint: lint}
	lintDefaultBaseNames(stages, c.lex, c.platformArgs(), metaArgs, lint)
	if err := c.globalArgs(metaArgs); err != nil {
		return nil, err
	}
	c.stages = stages
	c.lintFroms(metaArgs)
	target := len(stages) - 1
	if opts.Target != "" {
		target = c.stageIndex(opts.Target, len(stages))
		if target < 0 {
			return nil, fail(0, fmt.Errorf("target stage %q could not be found", opts.Target))
		}
	}
	st, err := c.compileStage(ctx, target)
	if err != nil {
		return nil, err
	}
	if opts.AllStages {
		for i := range stages {
			if _, err := c.compileStage(ctx, i); err != nil {
				return nil, err
			}
		}
	}
	if err := lintError(lint); err != nil {
		return nil, fail(firstLine, err)
	}
	b := &Build{Target: st.vertex, Image: st.image}
	for i := range stages {
		if s, ok := c.built[i]; ok {
			b.Vertices = append(b.Vertices, s.vertices...)
		} else {
			b.SkippedStages = append(b.SkippedStages, stageName(stages[i], i))
		}
	}
	for k, v := range opts.Labels {
		if b.Image.Config.Labels == nil {
			b.Image.Config.Labels = map[string]string{}
		}
		b.Image.Config.Labels[k] = v
	}
	return b, nil
}

type compiler struct {
	lint   *linter.Linter
	opts   Options
	lex    *shell.Lex
	fail   func(int, error) error
	global []string // meta ARGs (KEY=VALUE), build-args applied
	stages []instructions.Stage
	built  map[int]*stageState
	inProg map[int]bool
}

type stageState struct {
	name                string
	vertex              *solver.Vertex
	image               dockerspec.DockerOCIImage
	runEnv              []string // image env + ARGs in scope, what RUN sees
	shell               []string
	argsUsed            []string        // K=V of ARGs with values, for RUN history
	noCache             bool            // --no-cache-filter names this stage
	cmdSet              bool            // CMD given in this stage
	declared            map[string]bool // ARGs of the stage, with a value or not
	workdirSet          bool
	cmd, entrypoint, hc usedOnce
	vertices            []*solver.Vertex
}

func stageName(s instructions.Stage, i int) string {
	if s.Name != "" {
		return s.Name
	}
	return "stage-" + strconv.Itoa(i)
}

// platformArgs are BuildKit's predefined ARGs: usable in FROM without a
// declaration, and in a stage after a bare `ARG NAME`.
func (c *compiler) platformArgs() map[string]string {
	p := c.opts.OS + "/" + c.opts.Arch
	return map[string]string{
		"TARGETPLATFORM": p, "TARGETOS": c.opts.OS, "TARGETARCH": c.opts.Arch, "TARGETVARIANT": "",
		"BUILDPLATFORM": p, "BUILDOS": c.opts.OS, "BUILDARCH": c.opts.Arch, "BUILDVARIANT": "",
	}
}

func (c *compiler) globalArgs(meta []instructions.ArgCommand) error {
	for k, v := range c.platformArgs() {
		c.global = setEnv(c.global, k, v)
	}
	for _, a := range meta {
		for _, kv := range a.Args {
			if v, ok := c.opts.BuildArgs[kv.Key]; ok {
				c.global = setEnv(c.global, kv.Key, v)
				continue
			}
			if kv.Value != nil {
				v, _, err := c.lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(c.global))
				if err != nil {
					return c.fail(line(a.Location()), err)
				}
				c.global = setEnv(c.global, kv.Key, v)
			}
		}
	}
	return nil
}

// stageIndex finds a stage by name or number among the first n stages.
func (c *compiler) stageIndex(name string, n int) int {
	for i := 0; i < n; i++ {
		if strings.EqualFold(c.stages[i].Name, name) {
			return i
		}
	}
	if i, err := strconv.Atoi(name); err == nil && i >= 0 && i < n {
		return i
	}
	return -1
}

func (c *compiler) compileStage(ctx context.Context, idx int) (*stageState, error) {
	if s, ok := c.built[idx]; ok {
		return s, nil
	}
	if c.inProg == nil {
		c.inProg = map[int]bool{}
	}
	stage := c.stages[idx]
	if c.inProg[idx] {
		return nil, c.fail(line(stage.Location), fmt.Errorf("stage %q depends on itself", stageName(stage, idx)))
	}
	c.inProg[idx] = true
	defer delete(c.inProg, idx)

	st := &stageState{name: stageName(stage, idx), shell: []string{"/bin/sh", "-c"}}
	total := len(stage.Commands) + 1
	prefix := func(n int) string {
		if len(c.stages) == 1 {
			return fmt.Sprintf("[%d/%d]", n, total)
		}
		return fmt.Sprintf("[%s %d/%d]", st.name, n, total)
	}
	fromLine := line(stage.Location)
	base, _, err := c.lex.ProcessWord(stage.BaseName, shell.EnvsFromSlice(c.global))
	if err != nil {
		return nil, c.fail(fromLine, err)
	}
	st.declared = map[string]bool{}
	cl := &cacheLint{}
	if c.opts.Context != nil {
		cl.root = c.opts.Context.Root()
	}
	if stage.Platform != "" {
		p, _, _ := c.lex.ProcessWord(stage.Platform, shell.EnvsFromSlice(c.global))
		if p != c.opts.OS+"/"+c.opts.Arch {
			return nil, c.fail(fromLine, fmt.Errorf("FROM --platform=%s: only the host platform %s/%s can be built", p, c.opts.OS, c.opts.Arch))
		}
	}
	for _, f := range c.opts.NoCacheFilter {
		if strings.EqualFold(f, st.name) || f == strconv.Itoa(idx) {
			st.noCache = true
		}
	}
	fromVertex := &solver.Vertex{Name: prefix(1) + " FROM " + base, Location: c.loc(fromLine), Source: true}
	var parent *stageState // the stage this one is FROM, if any
	imageRef := base
	named, isNamed := c.opts.NamedContexts[base]
	if isNamed && named.Image != "" {
		imageRef = named.Image
	}
	switch {
	case isNamed && named.Dir != nil:
		// FROM a directory: its files are the root filesystem
		scratch := &solver.Vertex{Name: prefix(1) + " FROM " + base + " (context)", Location: c.loc(fromLine), Source: true, Op: ops.Scratch{}}
		st.vertices = append(st.vertices, scratch)
		fromVertex = &solver.Vertex{Name: prefix(1) + " COPY context " + base + " /", Location: c.loc(fromLine),
			Op: &ops.Copy{Context: named.Dir, Sources: []string{"."}, Dest: "/"}, Inputs: []*solver.Vertex{scratch}}
		st.image = dockerspec.DockerOCIImage{Image: ocispec.Image{Platform: ocispec.Platform{OS: c.opts.OS, Architecture: c.opts.Arch}}}
		st.image.Config.Env = []string{"PATH=" + ops.DefaultPath}
		st.image.Config.WorkingDir = "/"
	case strings.EqualFold(base, "scratch"):
		fromVertex.Op = ops.Scratch{}
		st.image = dockerspec.DockerOCIImage{Image: ocispec.Image{Platform: ocispec.Platform{OS: c.opts.OS, Architecture: c.opts.Arch}}}
		st.image.Config.Env = []string{"PATH=" + ops.DefaultPath}
		st.image.Config.WorkingDir = "/" // like BuildKit's empty image
	case !isNamed && c.stageIndex(base, idx) >= 0:
		parent, err = c.compileStage(ctx, c.stageIndex(base, idx))
		if err != nil {
			return nil, err
		}
		fromVertex = parent.vertex
		st.image = cloneImage(parent.image)
	default:
		desc, img, err := c.opts.Images.ResolveImage(ctx, imageRef)
		if err != nil {
			return nil, c.fail(fromLine, fmt.Errorf("FROM %s: %w", base, err))
		}
		fromVertex.Op = &ops.Image{Ref: imageRef, Manifest: desc}
		st.image = cloneImage(*img)
		c.lintBasePlatform(base, img, stage.Location)
		// like BuildKit, PATH is always set
		if _, ok := shell.EnvsFromSlice(st.image.Config.Env).Get("PATH"); !ok {
			st.image.Config.Env = append(st.image.Config.Env, "PATH="+ops.DefaultPath)
		}
	}
	if parent == nil {
		// the parent stage already lists its own vertices
		st.vertices = append(st.vertices, fromVertex)
	}
	st.vertex = fromVertex
	st.image.Created = nil
	st.runEnv = append([]string(nil), st.image.Config.Env...)
	if parent != nil {
		// like BuildKit, a stage inherits its parent's ARGs too
		st.runEnv = append([]string(nil), parent.runEnv...)
		st.workdirSet = parent.workdirSet
		for k := range parent.declared {
			st.declared[k] = true
		}
	}
	if len(st.image.Config.Shell) > 0 {
		st.shell = append([]string(nil), st.image.Config.Shell...)
	}
	// ONBUILD triggers of the base run first, in order, and are consumed:
	// the new image does not inherit them.
	triggers := st.image.Config.OnBuild
	st.image.Config.OnBuild = nil
	for _, trig := range triggers {
		cmd, err := parseTrigger(trig)
		if err != nil {
			return nil, c.fail(fromLine, fmt.Errorf("ONBUILD %s: %w", trig, err))
		}
		if err := c.dispatch(ctx, st, cmd, prefix(1)+" ONBUILD"); err != nil {
			return nil, c.fail(fromLine, fmt.Errorf("ONBUILD %s: %w", trig, err))
		}
	}

	for i, cmd := range stage.Commands {
		wd := st.image.Config.WorkingDir
		if err := c.dispatch(ctx, st, cmd, prefix(i+2)); err != nil {
			var fe *Error
			if errors.As(err, &fe) {
				return nil, err
			}
			return nil, c.fail(line(cmd.Location()), fmt.Errorf("%s: %w", strings.ToUpper(cmd.Name()), err))
		}
		cl.observe(cmd, wd, c.lint.WithMergedConfigFromComments(cmd.Comments()))
	}
	cl.finish()
	c.built[idx] = st
	return st, nil
}

func (c *compiler) loc(line int) string { return fmt.Sprintf("%s:%d", c.opts.Filename, line) }

func line(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

func errLine(err error) int {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return le.Locations[0][0].Start.Line
	}
	return 0
}

func cloneImage(img dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	out := img
	out.Config.Env = append([]string(nil), img.Config.Env...)
	out.Config.Cmd = append([]string(nil), img.Config.Cmd...)
	out.Config.Entrypoint = append([]string(nil), img.Config.Entrypoint...)
	out.Config.Shell = append([]string(nil), img.Config.Shell...)
	out.History = append([]ocispec.History(nil), img.History...)
	out.RootFS = ocispec.RootFS{}
	if img.Config.Labels != nil {
		out.Config.Labels = map[string]string{}
		for k, v := range img.Config.Labels {
			out.Config.Labels[k] = v
		}
	}
	if img.Config.ExposedPorts != nil {
		out.Config.ExposedPorts = map[string]struct{}{}
		for k := range img.Config.ExposedPorts {
			out.Config.ExposedPorts[k] = struct{}{}
		}
	}
	if img.Config.Volumes != nil {
		out.Config.Volumes = map[string]struct{}{}
		for k := range img.Config.Volumes {
			out.Config.Volumes[k] = struct{}{}
		}
	}
	if len(out.Config.Cmd) == 0 {
		out.Config.Cmd = nil
	}
	if len(out.Config.Entrypoint) == 0 {
		out.Config.Entrypoint = nil
	}
	if len(out.Config.Shell) == 0 {
		out.Config.Shell = nil
	}
	return out
}

// setEnv sets KEY=VALUE in an env list, replacing an earlier value in place.
func setEnv(env []string, key, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

// parseTrigger parses one ONBUILD expression as an instruction.
func parseTrigger(expr string) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, errors.New("expected one instruction")
	}
	cmd, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		return nil, err
	}
	switch cmd.(type) {
	case *instructions.OnbuildCommand:
		return nil, errors.New("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
	}
	return cmd, nil
}
