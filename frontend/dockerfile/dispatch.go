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
	addVertex := func(op any, name string, inputs ...*solver.Vertex) {
		v := &solver.Vertex{
			Name: prefix + " " + name, Location: c.loc(line(cmd.Location())), Op: op,
			Inputs: append([]*solver.Vertex{st.vertex}, inputs...), NoCache: c.opts.NoCache || st.noCache,
		}
		st.vertex = v
		st.vertices = append(st.vertices, v)
	}

	switch cmd := cmd.(type) {
	case *instructions.EnvCommand:
		parts := []string{}
		for _, kv := range cmd.Env {
			if kv.NoDelim {
				c.lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
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
			} else if v, ok := c.platformArgs()[kv.Key]; ok {
				val = &v
			}
			s := kv.Key
			if val != nil {
				st.runEnv = setEnv(st.runEnv, kv.Key, *val)
				s += "=" + *val
				st.argsUsed = append(st.argsUsed, s)
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
			if kv.NoDelim {
				c.lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
			cfg.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		history("LABEL "+strings.Join(parts, " "), false)

	case *instructions.MaintainerCommand:
		img.Author = cmd.Maintainer
		history("MAINTAINER "+cmd.Maintainer, false)

	case *instructions.RunCommand:
		op, name, err := c.runOp(ctx, st, cmd)
		if err != nil {
			return err
		}
		var inputs []*solver.Vertex
		for _, m := range op.mountInputs {
			inputs = append(inputs, m)
		}
		addVertex(op.Exec, name, inputs...)
		history("RUN "+runHistory(op.Exec.Args, st)+" # buildkit", true)

	case *instructions.CopyCommand:
		dest := destPath(cfg.WorkingDir, cmd.DestPath)
		name := "COPY "
		if cmd.From != "" {
			name += "--from=" + cmd.From + " "
		}
		if len(cmd.SourceContents) > 0 {
			op, err := c.inlineFiles(cmd.SourceContents, dest, cmd.Chown, cmd.Chmod, st)
			if err != nil {
				return err
			}
			name += "<<" + cmd.SourceContents[0].Path + " " + cmd.DestPath
			addVertex(op, name)
			history(name+" # buildkit", true)
			break
		}
		op := &ops.Copy{Sources: cmd.SourcePaths, Dest: dest, Chown: cmd.Chown, Chmod: cmd.Chmod,
			Parents: cmd.Parents, Exclude: cmd.ExcludePatterns}
		var inputs []*solver.Vertex
		if cmd.From != "" {
			src, hasher, err := c.fromSource(ctx, cmd.From)
			if err != nil {
				return err
			}
			if hasher != nil {
				op.Context = hasher
			} else {
				if src.Location == "" {
					// a new vertex for an image (a stage's vertex has a
					// location): it is part of this build too
					src.Location = c.loc(line(cmd.Location()))
					st.vertices = append(st.vertices, src)
				}
				inputs = append(inputs, src)
			}
		} else {
			op.Context = c.opts.Context
		}
		name += strings.Join(cmd.SourcePaths, " ") + " " + cmd.DestPath
		addVertex(op, name, inputs...)
		history(name+" # buildkit", true)

	case *instructions.AddCommand:
		dest := destPath(cfg.WorkingDir, cmd.DestPath)
		if len(cmd.SourceContents) > 0 {
			op, err := c.inlineFiles(cmd.SourceContents, dest, cmd.Chown, cmd.Chmod, st)
			if err != nil {
				return err
			}
			name := "ADD <<" + cmd.SourceContents[0].Path + " " + cmd.DestPath
			addVertex(op, name)
			history(name+" # buildkit", true)
			break
		}
		var local, remote []string
		for _, src := range cmd.SourcePaths {
			switch {
			case isGitSource(src):
				return fmt.Errorf("git source %q: kiln cannot fetch git repositories (no network access to git remotes; clone it into the build context instead)", src)
			case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
				remote = append(remote, src)
			default:
				local = append(local, src)
			}
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
				addVertex(&ops.Download{URL: u, Checksum: cmd.Checksum, Dest: dest, Chown: cmd.Chown, Chmod: cmd.Chmod}, "ADD "+flag+u+" "+cmd.DestPath)
			}
		}
		if len(local) > 0 {
			unpack := cmd.Unpack == nil || *cmd.Unpack
			op := &ops.Copy{Context: c.opts.Context, Sources: local, Dest: dest, Chown: cmd.Chown, Chmod: cmd.Chmod, Add: unpack,
				Exclude: cmd.ExcludePatterns}
			addVertex(op, name)
		}
		history(name+" # buildkit", true)

	case *instructions.WorkdirCommand:
		wd := cmd.Path
		if !path.IsAbs(wd) {
			wd = path.Join("/", cfg.WorkingDir, wd)
		}
		wd = path.Clean(wd)
		cfg.WorkingDir = wd
		if wd != "/" {
			addVertex(&ops.Mkdir{Path: wd, User: cfg.User}, "WORKDIR "+wd)
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
