package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dispatch applies one instruction to the stage: config-only instructions
// change st.image; RUN, COPY, ADD and WORKDIR also add a vertex.
func (c *compiler) dispatch(ctx context.Context, st *stageState, cmd instructions.Command, prefix string) error {
	env := shell.EnvsFromSlice(st.runEnv)
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(func(word string) (string, error) {
			v, _, err := c.lex.ProcessWord(word, env)
			return v, err
		}); err != nil {
			return err
		}
	}
	img := &st.image
	cfg := &img.Config
	history := func(createdBy string, layer bool) {
		h := ocispec.History{CreatedBy: createdBy, Comment: "buildkit.dockerfile.v0", EmptyLayer: !layer, Created: c.opts.Epoch}
		img.History = append(img.History, h)
	}
	addVertex := func(op solver.Op, name string, inputs ...*solver.Vertex) {
		v := &solver.Vertex{
			Name: prefix + " " + name, Location: c.loc(line(cmd.Location())), Op: op,
			Inputs: append([]*solver.Vertex{st.vertex}, inputs...), NoCache: c.opts.NoCache,
		}
		st.vertex = v
		st.vertices = append(st.vertices, v)
	}

	switch cmd := cmd.(type) {
	case *instructions.EnvCommand:
		parts := []string{}
		for _, kv := range cmd.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
			st.runEnv = setEnv(st.runEnv, kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		history("ENV "+strings.Join(parts, " "), false)

	case *instructions.ArgCommand:
		parts := []string{}
		for _, kv := range cmd.Args {
			var val *string
			if v, ok := c.opts.BuildArgs[kv.Key]; ok {
				val = &v
			} else if kv.Value != nil {
				val = kv.Value
			} else if v, ok := shell.EnvsFromSlice(c.global).Get(kv.Key); ok {
				val = &v
			}
			s := kv.Key
			if val != nil {
				st.runEnv = setEnv(st.runEnv, kv.Key, *val)
				s += "=" + *val
			}
			parts = append(parts, s)
		}
		history("ARG "+strings.Join(parts, " "), false)

	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		parts := []string{}
		for _, kv := range cmd.Labels {
			cfg.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		history("LABEL "+strings.Join(parts, " "), false)

	case *instructions.MaintainerCommand:
		img.Author = cmd.Maintainer
		history("MAINTAINER "+cmd.Maintainer, false)

	case *instructions.RunCommand:
		if len(cmd.Files) > 0 {
			return errors.New("heredocs are not supported yet")
		}
		if len(cmd.FlagsUsed) > 0 {
			return fmt.Errorf("flags %v are not supported yet", cmd.FlagsUsed)
		}
		args := cmd.CmdLine
		if cmd.PrependShell {
			args = append(append([]string(nil), st.shell...), strings.Join(cmd.CmdLine, " "))
		}
		op := &ops.Exec{W: c.opts.Worker, Args: args, Env: st.runEnv, Cwd: workdir(cfg.WorkingDir), User: cfg.User, Network: c.opts.Network}
		op.Env = append([]string(nil), st.runEnv...)
		addVertex(op, "RUN "+strings.Join(cmd.CmdLine, " "))
		history("RUN "+strings.Join(args, " ")+" # buildkit", true)

	case *instructions.CopyCommand:
		if len(cmd.SourceContents) > 0 {
			return errors.New("heredocs are not supported yet")
		}
		if cmd.Parents || len(cmd.ExcludePatterns) > 0 {
			return errors.New("--parents and --exclude are not supported yet")
		}
		op := &ops.Copy{W: c.opts.Worker, Sources: cmd.SourcePaths, Dest: destPath(cfg.WorkingDir, cmd.DestPath), Chown: cmd.Chown, Chmod: cmd.Chmod}
		var inputs []*solver.Vertex
		name := "COPY "
		if cmd.From != "" {
			src, err := c.fromVertex(ctx, cmd.From)
			if err != nil {
				return err
			}
			if src.Location == "" {
				// a new vertex for an image (a stage's vertex has a
				// location): it is part of this build too
				src.Location = c.loc(line(cmd.Location()))
				st.vertices = append(st.vertices, src)
			}
			inputs = append(inputs, src)
			name += "--from=" + cmd.From + " "
		} else {
			op.Context = c.opts.Context
		}
		name += strings.Join(cmd.SourcePaths, " ") + " " + cmd.DestPath
		addVertex(op, name, inputs...)
		history(name+" # buildkit", true)

	case *instructions.AddCommand:
		for _, s := range cmd.SourcePaths {
			if strings.Contains(s, "://") || strings.HasPrefix(s, "git@") {
				return fmt.Errorf("remote source %q is not supported yet", s)
			}
		}
		op := &ops.Copy{W: c.opts.Worker, Context: c.opts.Context, Sources: cmd.SourcePaths, Dest: destPath(cfg.WorkingDir, cmd.DestPath), Chown: cmd.Chown, Chmod: cmd.Chmod, Add: true}
		name := "ADD " + strings.Join(cmd.SourcePaths, " ") + " " + cmd.DestPath
		addVertex(op, name)
		history(name+" # buildkit", true)

	case *instructions.WorkdirCommand:
		wd := cmd.Path
		if !path.IsAbs(wd) {
			wd = path.Join("/", cfg.WorkingDir, wd)
		}
		wd = path.Clean(wd)
		cfg.WorkingDir = wd
		if wd != "/" {
			addVertex(&ops.Mkdir{W: c.opts.Worker, Path: wd, User: cfg.User}, "WORKDIR "+wd)
		}
		history("WORKDIR "+wd, wd != "/")

	case *instructions.UserCommand:
		cfg.User = cmd.User
		history("USER "+cmd.User, false)

	case *instructions.CmdCommand:
		args := cmd.CmdLine
		if cmd.PrependShell {
			args = append(append([]string(nil), st.shell...), strings.Join(cmd.CmdLine, " "))
		}
		cfg.Cmd = args
		history(fmt.Sprintf("CMD %q", args), false)

	case *instructions.EntrypointCommand:
		args := cmd.CmdLine
		if cmd.PrependShell {
			args = append(append([]string(nil), st.shell...), strings.Join(cmd.CmdLine, " "))
		}
		cfg.Entrypoint = args
		// a new ENTRYPOINT resets a CMD inherited from the base
		if !st.cmdSet {
			cfg.Cmd = nil
		}
		history(fmt.Sprintf("ENTRYPOINT %q", args), false)

	case *instructions.ExposeCommand:
		// like BuildKit: variables expanded, then each port normalized
		var ports []string
		for _, raw := range cmd.Ports {
			words, err := c.lex.ProcessWords(raw, env)
			if err != nil {
				return err
			}
			for _, w := range words {
				ps, err := exposedPorts(w)
				if err != nil {
					return err
				}
				ports = append(ports, ps...)
			}
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
		history(fmt.Sprintf("EXPOSE %v", ports), false)

	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range cmd.Volumes {
			if v == "" {
				return errors.New("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
		history(fmt.Sprintf("VOLUME %v", cmd.Volumes), false)

	case *instructions.StopSignalCommand:
		cfg.StopSignal = cmd.Signal
		history("STOPSIGNAL "+cmd.Signal, false)

	case *instructions.ShellCommand:
		st.shell = append([]string(nil), cmd.Shell...)
		cfg.Shell = st.shell
		history(fmt.Sprintf("SHELL %v", cmd.Shell), false)

	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = cmd.Health
		history(fmt.Sprintf("HEALTHCHECK %v", cmd.Health.Test), false)

	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, cmd.Expression)
		history("ONBUILD "+cmd.Expression, false)

	default:
		return fmt.Errorf("instruction %s is not supported", cmd.Name())
	}
	if _, ok := cmd.(*instructions.CmdCommand); ok {
		st.cmdSet = true
	}
	return nil
}

// fromVertex resolves COPY --from: an earlier stage (name or index) or an
// image.
func (c *compiler) fromVertex(ctx context.Context, from string) (*solver.Vertex, error) {
	from, _, err := c.lex.ProcessWord(from, shell.EnvsFromSlice(c.global))
	if err != nil {
		return nil, err
	}
	if i := c.stageIndex(from, len(c.stages)); i >= 0 {
		st, err := c.compileStage(ctx, i)
		if err != nil {
			return nil, err
		}
		return st.vertex, nil
	}
	desc, _, err := c.opts.Images.ResolveImage(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("--from=%s: %w", from, err)
	}
	return &solver.Vertex{Name: "FROM " + from, Op: &ops.Image{W: c.opts.Worker, Ref: from, Manifest: desc}, Source: true}, nil
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
