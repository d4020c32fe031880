package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dispatch applies one instruction to the stage: config-only instructions
// change st.image; RUN, COPY, ADD and WORKDIR also add a vertex. It expands
// the instruction's variables and routes it to its dispatch function.
func (c *compiler) dispatch(ctx context.Context, st *stageState, cmd instructions.Command, prefix string) error {
	env := shell.EnvsFromSlice(st.runEnv)
	lint := c.lint.WithMergedConfigFromComments(cmd.Comments())
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(func(word string) (string, error) {
			res, err := c.lex.ProcessWordWithMatches(word, env)
			lintUndefinedVars(cmd, res.Unmatched, st.declared, env, lint)
			return res.Result, err
		}); err != nil {
			return err
		}
	}
	d := &step{c: c, st: st, prefix: prefix, line: line(cmd.Location()), lint: lint}
	switch cmd := cmd.(type) {
	case *instructions.EnvCommand:
		return dispatchEnv(d, cmd)
	case *instructions.ArgCommand:
		return dispatchArg(d, cmd)
	case *instructions.LabelCommand:
		return dispatchLabel(d, cmd)
	case *instructions.MaintainerCommand:
		return dispatchMaintainer(d, cmd)
	case *instructions.RunCommand:
		return dispatchRun(ctx, d, cmd)
	case *instructions.CopyCommand:
		return dispatchCopy(ctx, d, cmd)
	case *instructions.AddCommand:
		return dispatchAdd(d, cmd)
	case *instructions.WorkdirCommand:
		return dispatchWorkdir(d, cmd)
	case *instructions.UserCommand:
		return dispatchUser(d, cmd)
	case *instructions.CmdCommand:
		return dispatchCmd(d, cmd)
	case *instructions.EntrypointCommand:
		return dispatchEntrypoint(d, cmd)
	case *instructions.ExposeCommand:
		return dispatchExpose(d, cmd, env)
	case *instructions.VolumeCommand:
		return dispatchVolume(d, cmd)
	case *instructions.StopSignalCommand:
		return dispatchStopSignal(d, cmd)
	case *instructions.ShellCommand:
		return dispatchShell(d, cmd)
	case *instructions.HealthCheckCommand:
		return dispatchHealthCheck(d, cmd)
	case *instructions.OnbuildCommand:
		return dispatchOnbuild(d, cmd)
	}
	return fmt.Errorf("instruction %s is not supported", cmd.Name())
}

// step is one instruction being dispatched into its stage.
type step struct {
	c      *compiler
	st     *stageState
	prefix string // of the vertex name, e.g. "[build 2/4]"
	line   int
	lint   *linter.Linter // with the instruction's own # check= comments
}

// history records the instruction in the image's history.
func (d *step) history(createdBy string, layer bool) {
	h := ocispec.History{CreatedBy: createdBy, Comment: "buildkit.dockerfile.v0", EmptyLayer: !layer, Created: d.c.opts.Epoch}
	d.st.image.History = append(d.st.image.History, h)
}

// addVertex makes op, on the stage's current vertex and inputs, the stage's
// new current vertex.
func (d *step) addVertex(op any, name string, inputs ...*solver.Vertex) {
	v := &solver.Vertex{
		Name: d.prefix + " " + name, Location: d.c.loc(d.line), Op: op,
		Inputs: append([]*solver.Vertex{d.st.vertex}, inputs...), NoCache: d.c.opts.NoCache || d.st.noCache,
	}
	d.st.vertex = v
	d.st.vertices = append(d.st.vertices, v)
}

func dispatchEnv(d *step, cmd *instructions.EnvCommand) error {
	cfg := &d.st.image.Config
	parts := []string{}
	for _, kv := range cmd.Env {
		if kv.NoDelim {
			d.lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
		}
		lintSecretName("ENV", kv.Key, cmd.Location(), d.lint)
		cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		d.st.runEnv = setEnv(d.st.runEnv, kv.Key, kv.Value)
		parts = append(parts, kv.Key+"="+kv.Value)
	}
	d.history("ENV "+strings.Join(parts, " "), false)
	return nil
}

// dispatchArg takes each ARG's value from --build-arg, its default, a
// global ARG or the predefined platform ARGs, in that order.
func dispatchArg(d *step, cmd *instructions.ArgCommand) error {
	parts := []string{}
	for _, kv := range cmd.Args {
		lintSecretName("ARG", kv.Key, cmd.Location(), d.lint)
		d.st.declared[kv.Key] = true
		var val *string
		if v, ok := d.c.opts.BuildArgs[kv.Key]; ok {
			val = &v
		} else if kv.Value != nil {
			val = kv.Value
		} else if v, ok := shell.EnvsFromSlice(d.c.global).Get(kv.Key); ok {
			val = &v
		} else if v, ok := d.c.platformArgs()[kv.Key]; ok {
			val = &v
		}
		s := kv.Key
		if val != nil {
			d.st.runEnv = setEnv(d.st.runEnv, kv.Key, *val)
			s += "=" + *val
			d.st.argsUsed = append(d.st.argsUsed, s)
		}
		parts = append(parts, s)
	}
	d.history("ARG "+strings.Join(parts, " "), false)
	return nil
}

func dispatchLabel(d *step, cmd *instructions.LabelCommand) error {
	cfg := &d.st.image.Config
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	parts := []string{}
	for _, kv := range cmd.Labels {
		if kv.NoDelim {
			d.lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
		}
		cfg.Labels[kv.Key] = kv.Value
		parts = append(parts, kv.Key+"="+kv.Value)
	}
	d.history("LABEL "+strings.Join(parts, " "), false)
	return nil
}

func dispatchMaintainer(d *step, cmd *instructions.MaintainerCommand) error {
	d.st.image.Author = cmd.Maintainer
	d.history("MAINTAINER "+cmd.Maintainer, false)
	return nil
}

// dispatchRun adds the RUN's exec op, with the stages, images and named
// contexts its mounts read as extra inputs.
func dispatchRun(ctx context.Context, d *step, cmd *instructions.RunCommand) error {
	op, name, err := d.c.runOp(ctx, d.st, cmd)
	if err != nil {
		return err
	}
	var inputs []*solver.Vertex
	for _, m := range op.mountInputs {
		inputs = append(inputs, m)
	}
	d.addVertex(op.Exec, name, inputs...)
	d.history("RUN "+runHistory(op.Exec.Args, d.st)+" # buildkit", true)
	return nil
}

// dispatchCopy adds a copy from the build context, a named context, a
// stage or an image (--from), or the files of a heredoc.
func dispatchCopy(ctx context.Context, d *step, cmd *instructions.CopyCommand) error {
	dest := destPath(d.st.image.Config.WorkingDir, cmd.DestPath)
	name := "COPY "
	if cmd.From != "" {
		name += "--from=" + cmd.From + " "
	}
	if len(cmd.SourceContents) > 0 {
		op, err := d.c.inlineFiles(cmd.SourceContents, dest, cmd.Chown, cmd.Chmod, d.st)
		if err != nil {
			return err
		}
		name += "<<" + cmd.SourceContents[0].Path + " " + cmd.DestPath
		d.addVertex(op, name)
		d.history(name+" # buildkit", true)
		return nil
	}
	op := &ops.Copy{Sources: cmd.SourcePaths, Dest: dest, Chown: cmd.Chown, Chmod: cmd.Chmod,
		Parents: cmd.Parents, Exclude: cmd.ExcludePatterns}
	var inputs []*solver.Vertex
	if cmd.From != "" {
		src, hasher, err := d.c.fromSource(ctx, cmd.From)
		if err != nil {
			return err
		}
		if hasher != nil {
			op.Context = hasher
		} else {
			if src.Location == "" {
				// a new vertex for an image (a stage's vertex has a
				// location): it is part of this build too
				src.Location = d.c.loc(d.line)
				d.st.vertices = append(d.st.vertices, src)
			}
			inputs = append(inputs, src)
		}
	} else {
		op.Context = d.c.opts.Context
		d.lintIgnored("Copy", cmd.SourcePaths, cmd.Location())
	}
	name += strings.Join(cmd.SourcePaths, " ") + " " + cmd.DestPath
	d.addVertex(op, name, inputs...)
	d.history(name+" # buildkit", true)
	return nil
}

// dispatchAdd adds a download per URL and one copy (archives extracted)
// of the local sources, or the files of a heredoc.
func dispatchAdd(d *step, cmd *instructions.AddCommand) error {
	dest := destPath(d.st.image.Config.WorkingDir, cmd.DestPath)
	if len(cmd.SourceContents) > 0 {
		op, err := d.c.inlineFiles(cmd.SourceContents, dest, cmd.Chown, cmd.Chmod, d.st)
		if err != nil {
			return err
		}
		name := "ADD <<" + cmd.SourceContents[0].Path + " " + cmd.DestPath
		d.addVertex(op, name)
		d.history(name+" # buildkit", true)
		return nil
	}
	local, remote, err := addSources(cmd.SourcePaths)
	if err != nil {
		return err
	}
	if cmd.Checksum != "" && (len(remote) != 1 || len(local) > 0) {
		return errors.New("--checksum can only be used with a single HTTP(S) source")
	}
	name := "ADD " + strings.Join(cmd.SourcePaths, " ") + " " + cmd.DestPath
	if len(remote) > 0 {
		if len(cmd.SourcePaths) > 1 && !strings.HasSuffix(dest, "/") {
			return errors.New("When using ADD with more than one source file, the destination must be a directory and end with a /")
		}
		flag := "" // shown in progress and errors, so a mismatch names the checksum it expected
		if cmd.Checksum != "" {
			flag = "--checksum=" + cmd.Checksum + " "
		}
		for _, u := range remote {
			d.addVertex(&ops.Download{URL: u, Checksum: cmd.Checksum, Dest: dest, Chown: cmd.Chown, Chmod: cmd.Chmod}, "ADD "+flag+u+" "+cmd.DestPath)
		}
	}
	if len(local) > 0 {
		d.lintIgnored("Add", local, cmd.Location())
		unpack := cmd.Unpack == nil || *cmd.Unpack
		op := &ops.Copy{Context: d.c.opts.Context, Sources: local, Dest: dest, Chown: cmd.Chown, Chmod: cmd.Chmod, Add: unpack,
			Exclude: cmd.ExcludePatterns}
		d.addVertex(op, name)
	}
	d.history(name+" # buildkit", true)
	return nil
}

// addSources splits ADD's sources into build context paths and http(s)
// URLs; git sources cannot be fetched.
func addSources(srcs []string) (local, remote []string, err error) {
	for _, src := range srcs {
		switch {
		case isGitSource(src):
			return nil, nil, fmt.Errorf("git source %q: kiln cannot fetch git repositories (no network access to git remotes; clone it into the build context instead)", src)
		case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
			remote = append(remote, src)
		default:
			local = append(local, src)
		}
	}
	return local, remote, nil
}

// dispatchWorkdir sets the working directory and, unless it is /, adds
// the op that creates it.
func dispatchWorkdir(d *step, cmd *instructions.WorkdirCommand) error {
	if !d.st.workdirSet && !path.IsAbs(cmd.Path) {
		d.lint.Run(&linter.RuleWorkdirRelativePath, cmd.Location(), linter.RuleWorkdirRelativePath.Format(cmd.Path))
	}
	d.st.workdirSet = true
	cfg := &d.st.image.Config
	wd := cmd.Path
	if !path.IsAbs(wd) {
		wd = path.Join("/", cfg.WorkingDir, wd)
	}
	wd = path.Clean(wd)
	cfg.WorkingDir = wd
	if wd != "/" {
		d.addVertex(&ops.Mkdir{Path: wd, User: cfg.User}, "WORKDIR "+wd)
	}
	d.history("WORKDIR "+wd, wd != "/")
	return nil
}

func dispatchUser(d *step, cmd *instructions.UserCommand) error {
	d.st.image.Config.User = cmd.User
	d.history("USER "+cmd.User, false)
	return nil
}

func dispatchCmd(d *step, cmd *instructions.CmdCommand) error {
	d.st.cmd.use(cmd, d.lint)
	d.lintJSONArgs(cmd, cmd.PrependShell)
	args := cmd.CmdLine
	if cmd.PrependShell {
		args = append(append([]string(nil), d.st.shell...), strings.Join(cmd.CmdLine, " "))
	}
	d.st.image.Config.Cmd = args
	d.history(fmt.Sprintf("CMD %q", args), false)
	d.st.cmdSet = true
	return nil
}

func dispatchEntrypoint(d *step, cmd *instructions.EntrypointCommand) error {
	d.st.entrypoint.use(cmd, d.lint)
	d.lintJSONArgs(cmd, cmd.PrependShell)
	cfg := &d.st.image.Config
	args := cmd.CmdLine
	if cmd.PrependShell {
		args = append(append([]string(nil), d.st.shell...), strings.Join(cmd.CmdLine, " "))
	}
	cfg.Entrypoint = args
	// a new ENTRYPOINT resets a CMD inherited from the base
	if !d.st.cmdSet {
		cfg.Cmd = nil
	}
	d.history(fmt.Sprintf("ENTRYPOINT %q", args), false)
	return nil
}

// dispatchExpose, like BuildKit, expands variables (in env), then
// normalizes each port.
func dispatchExpose(d *step, cmd *instructions.ExposeCommand, env shell.EnvGetter) error {
	var ports []string
	for _, raw := range cmd.Ports {
		words, err := d.c.lex.ProcessWords(raw, env)
		if err != nil {
			return err
		}
		for _, w := range words {
			lintExposePort(w, cmd.Location(), d.lint)
			ps, err := exposedPorts(w)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
	}
	cfg := &d.st.image.Config
	if cfg.ExposedPorts == nil {
		cfg.ExposedPorts = map[string]struct{}{}
	}
	for _, p := range ports {
		cfg.ExposedPorts[p] = struct{}{}
	}
	d.history(fmt.Sprintf("EXPOSE %v", ports), false)
	return nil
}

func dispatchVolume(d *step, cmd *instructions.VolumeCommand) error {
	cfg := &d.st.image.Config
	if cfg.Volumes == nil {
		cfg.Volumes = map[string]struct{}{}
	}
	for _, v := range cmd.Volumes {
		if v == "" {
			return errors.New("VOLUME specified can not be an empty string")
		}
		cfg.Volumes[v] = struct{}{}
	}
	d.history(fmt.Sprintf("VOLUME %v", cmd.Volumes), false)
	return nil
}

func dispatchStopSignal(d *step, cmd *instructions.StopSignalCommand) error {
	d.st.image.Config.StopSignal = cmd.Signal
	d.history("STOPSIGNAL "+cmd.Signal, false)
	return nil
}

func dispatchShell(d *step, cmd *instructions.ShellCommand) error {
	d.st.shell = append([]string(nil), cmd.Shell...)
	d.st.image.Config.Shell = d.st.shell
	d.history(fmt.Sprintf("SHELL %v", cmd.Shell), false)
	return nil
}

func dispatchHealthCheck(d *step, cmd *instructions.HealthCheckCommand) error {
	d.st.hc.use(cmd, d.lint)
	d.st.image.Config.Healthcheck = cmd.Health
	d.history(fmt.Sprintf("HEALTHCHECK %v", cmd.Health.Test), false)
	return nil
}

func dispatchOnbuild(d *step, cmd *instructions.OnbuildCommand) error {
	d.st.image.Config.OnBuild = append(d.st.image.Config.OnBuild, cmd.Expression)
	d.history("ONBUILD "+cmd.Expression, false)
	return nil
}

// fromSource resolves COPY --from (and RUN --mount from=): a named build
// context, an earlier stage (name or index) or an image. A named context
// that is a directory comes back as a hasher instead of a vertex.
func (c *compiler) fromSource(ctx context.Context, from string) (*solver.Vertex, *contenthash.Hasher, error) {
	from, _, err := c.lex.ProcessWord(from, shell.EnvsFromSlice(c.global))
	if err != nil {
		return nil, nil, err
	}
	if nc, ok := c.opts.NamedContexts[from]; ok {
		if nc.Dir != nil {
			return nil, nc.Dir, nil
		}
		from = nc.Image
	} else if i := c.stageIndex(from, len(c.stages)); i >= 0 {
		st, err := c.compileStage(ctx, i)
		if err != nil {
			return nil, nil, err
		}
		return st.vertex, nil, nil
	}
	desc, _, err := c.opts.Images.ResolveImage(ctx, from)
	if err != nil {
		return nil, nil, fmt.Errorf("--from=%s: %w", from, err)
	}
	return &solver.Vertex{Name: "FROM " + from, Op: &ops.Image{Ref: from, Manifest: desc}, Source: true}, nil, nil
}

// exposedPorts turns one EXPOSE word, [[ip:]hostport:]port[-end][/proto],
// into "port/proto" keys the way BuildKit does: the protocol defaults to
// tcp and is lower-cased, a range is expanded, host parts are ignored.
func exposedPorts(raw string) ([]string, error) {
	spec := raw
	if i := strings.LastIndex(spec, ":"); i >= 0 {
		spec = spec[i+1:]
	}
	port, proto, _ := strings.Cut(spec, "/")
	proto = strings.ToLower(proto)
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("invalid port %q: invalid proto %s", raw, proto)
	}
	first, last, isRange := strings.Cut(port, "-")
	lo, err := strconv.ParseUint(first, 10, 16)
	hi := lo
	if err == nil && isRange {
		hi, err = strconv.ParseUint(last, 10, 16)
	}
	if err != nil || hi < lo {
		return nil, fmt.Errorf("invalid port %q", raw)
	}
	out := make([]string, 0, hi-lo+1)
	for p := lo; p <= hi; p++ {
		out = append(out, strconv.FormatUint(p, 10)+"/"+proto)
	}
	return out, nil
}

func workdir(wd string) string {
	if wd == "" {
		return "/"
	}
	return wd
}

// destPath joins a COPY destination with WORKDIR, keeping a trailing "/".
func destPath(wd, dest string) string {
	trailing := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		dest = path.Join("/", wd, dest)
	}
	dest = path.Clean(dest)
	if trailing && dest != "/" {
		dest += "/"
	}
	return dest
}
