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
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

type runPlan struct {
	*ops.Exec
	mountInputs []*solver.Vertex
}

// runOp compiles a RUN: its command (shell or exec form, heredocs), its
// --mount, --network and --security flags.
func (c *compiler) runOp(ctx context.Context, st *stageState, cmd *instructions.RunCommand) (*runPlan, string, error) {
	cfg := &st.image.Config
	e := &ops.Exec{
		Env: append([]string(nil), st.runEnv...), Cwd: workdir(cfg.WorkingDir),
		User: cfg.User, Network: c.opts.Network, ExtraEnv: c.proxyEnv(),
	}
	plan := &runPlan{Exec: e}
	name := "RUN " + strings.Join(cmd.CmdLine, " ")

	args := cmd.CmdLine
	if len(cmd.Files) > 0 {
		if len(args) != 1 || !cmd.PrependShell {
			return nil, "", fmt.Errorf("invalid heredoc RUN: %v", args)
		}
		if hd := parser.MustParseHeredoc(args[0]); hd != nil {
			data := cmd.Files[0].Data
			if cmd.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				// a script with its own interpreter: mount it and run it
				target := path.Join("/dev/pipes", cmd.Files[0].Name)
				e.Mounts = append(e.Mounts, ops.Mount{Type: "inline", Target: target, Data: data, Mode: 0o755})
				args = []string{target}
				cmd.PrependShell = false
			} else {
				args = []string{data}
			}
		} else {
			var b strings.Builder
			b.WriteString(args[0])
			for _, f := range cmd.Files {
				b.WriteByte('\n')
				b.WriteString(f.Data)
				b.WriteString(f.Name)
			}
			args = []string{b.String()}
		}
	}
	if cmd.PrependShell {
		args = append(append([]string(nil), st.shell...), strings.Join(args, " "))
	}
	e.Args = args

	switch n := instructions.GetNetwork(cmd); n {
	case instructions.NetworkDefault, "":
	case instructions.NetworkNone:
		e.Network = "none"
	case instructions.NetworkHost:
		e.Network = "host"
	default:
		return nil, "", fmt.Errorf("--network=%s: not supported", n)
	}
	switch sec := instructions.GetSecurity(cmd); sec {
	case instructions.SecuritySandbox, "":
	case instructions.SecurityInsecure:
		if !c.opts.AllowInsecure {
			return nil, "", errors.New("--security=insecure is not allowed: run kiln build with --allow security.insecure")
		}
		e.Insecure = true
	default:
		return nil, "", fmt.Errorf("--security=%s: not supported", sec)
	}

	sshCount := 0
	for _, m := range instructions.GetMounts(cmd) {
		mm := ops.Mount{Type: string(m.Type), Target: m.Target, ReadOnly: m.ReadOnly, Source: m.Source}
		if m.Target != "" && !path.IsAbs(m.Target) {
			mm.Target = path.Join("/", cfg.WorkingDir, m.Target)
		}
		if m.Mode != nil {
			mm.Mode = uint32(*m.Mode)
		}
		if m.UID != nil {
			mm.UID = int(*m.UID)
		}
		if m.GID != nil {
			mm.GID = int(*m.GID)
		}
		// from= names an input: a stage, image or named context
		attach := func() error {
			if m.From == "" {
				mm.Context = c.opts.Context
				return nil
			}
			v, h, err := c.fromSource(ctx, m.From)
			if err != nil {
				return fmt.Errorf("--mount from=%s: %w", m.From, err)
			}
			if h != nil {
				mm.Context = h
				return nil
			}
			if v.Location == "" {
				v.Location = c.loc(line(cmd.Location()))
				st.vertices = append(st.vertices, v)
			}
			plan.mountInputs = append(plan.mountInputs, v)
			mm.Input = len(plan.mountInputs)
			return nil
		}
		switch m.Type {
		case instructions.MountTypeBind:
			if err := attach(); err != nil {
				return nil, "", err
			}
		case instructions.MountTypeCache:
			mm.CacheID = m.CacheID
			if mm.CacheID == "" {
				mm.CacheID = mm.Target
			}
			mm.Sharing = string(m.CacheSharing)
			if m.Mode == nil {
				mm.Mode = 0o755
			}
			if m.From != "" {
				if err := attach(); err != nil {
					return nil, "", err
				}
			}
		case instructions.MountTypeTmpfs:
			mm.SizeLimit = m.SizeLimit
		case instructions.MountTypeSecret:
			mm.SecretID = m.CacheID
			mm.Required = m.Required
			if m.Env != nil {
				mm.EnvName = *m.Env
			}
			if mm.SecretID == "" && m.Target != "" {
				mm.SecretID = path.Base(m.Target)
			}
			if mm.SecretID == "" && mm.EnvName != "" {
				mm.SecretID = mm.EnvName
			}
			if mm.SecretID == "" {
				return nil, "", errors.New("--mount=type=secret needs an id or a target")
			}
			if m.Target == "" && mm.EnvName == "" {
				mm.Target = "/run/secrets/" + mm.SecretID
			}
			if m.Mode == nil {
				mm.Mode = 0o400
			}
		case instructions.MountTypeSSH:
			mm.SecretID = m.CacheID
			if mm.SecretID == "" {
				mm.SecretID = "default"
			}
			mm.Required = m.Required
			if mm.Target == "" {
				sshCount++
				mm.Target = "/run/buildkit/ssh_agent." + strconv.Itoa(sshCount-1)
			}
			if m.Mode == nil {
				mm.Mode = 0o600
			}
		default:
			return nil, "", fmt.Errorf("--mount=type=%s: not supported", m.Type)
		}
		e.Mounts = append(e.Mounts, mm)
	}
	return plan, name, nil
}

// runHistory is the created_by text of a RUN; like BuildKit's, the
// stage's build args with values come first as "|N K=V ...".
func runHistory(args []string, st *stageState) string {
	if len(st.argsUsed) == 0 {
		return strings.Join(args, " ")
	}
	return "|" + strconv.Itoa(len(st.argsUsed)) + " " + strings.Join(st.argsUsed, " ") + " " + strings.Join(args, " ")
}

// proxyEnv passes the predefined proxy build args to RUN without making
// them part of the cache key or the history, like BuildKit.
func (c *compiler) proxyEnv() []string {
	var out []string
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"} {
		if v, ok := c.opts.BuildArgs[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// inlineFiles compiles COPY/ADD <<EOF: files whose content is in the
// Dockerfile.
func (c *compiler) inlineFiles(contents []instructions.SourceContent, dest, chown, chmod string, st *stageState) (*ops.WriteFiles, error) {
	op := &ops.WriteFiles{Chown: chown, Chmod: chmod}
	for _, sc := range contents {
		data := sc.Data
		if sc.Expand {
			v, _, err := c.lex.ProcessWord(data, shell.EnvsFromSlice(st.runEnv))
			if err != nil {
				return nil, err
			}
			data = v
		}
		p := dest
		if strings.HasSuffix(dest, "/") || len(contents) > 1 {
			p = path.Join(dest, sc.Path)
		}
		op.Files = append(op.Files, ops.InlineFile{Path: p, Data: data})
	}
	return op, nil
}

func isGitSource(s string) bool {
	return strings.HasPrefix(s, "git@") || strings.HasPrefix(s, "git://") ||
		(strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")) && (strings.HasSuffix(s, ".git") || strings.Contains(s, ".git#"))
}
