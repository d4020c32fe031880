package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/progress"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/transport/registry"
	"github.com/spf13/cobra"
)

// buildCmd is kiln build: flags (buildflags.go) → a checked buildRequest
// → builder.Run → the image ID and names.
func buildCmd() *cobra.Command {
	var flags buildFlags
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] CONTEXT|-",
		Short: "Build an image from a Dockerfile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := flags.request(args[0], stdoutIsTerminal())
			if err != nil {
				return err
			}
			return runBuild(cmd.Context(), req)
		},
	}
	flags.register(cmd.Flags())
	return cmd
}

// runBuild reads what comes from stdin, opens the store, runs the build
// with progress on stderr and prints the result.
func runBuild(ctx context.Context, req *buildRequest) error {
	opts := req.opts
	if req.dockerfileFromStdin {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("read the Dockerfile from stdin: %w", err)
		}
		opts.DockerfileSource = b
	}
	st, err := openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	if opts.ContextDir == "-" {
		dir, src, err := stdinContext(ctx, os.Stdin, st.RunDir())
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		opts.ContextDir, opts.DockerfileSource = dir, src
	}
	if req.call == "check" {
		return runCheck(ctx, st, req)
	}
	p := newProgress(req.progressMode)
	opts.PullOptions = registry.PullOptions{Registry: registryConfig(), Progress: p.Writer()}
	opts.Warn = func(s string) { p.Message("WARNING: " + s) }
	opts.Events = p.Event
	opts.Log = p.Logger
	if req.explain {
		opts.Explained = p.Explained
	}
	opts.GC = func(r *store.GCReport, err error) { reportBuildGC(p.MessageWriter(), r, err) }
	opts.Plan = func(b *dockerfile.Build) {
		p.Plan(b.Vertices)
		for _, s := range b.SkippedStages {
			p.Info(fmt.Sprintf("stage %s SKIPPED (not needed for the target)", s))
		}
	}
	res, err := builder.Run(ctx, st, opts)
	if err != nil {
		p.Done(progress.Result{Err: err})
		return err
	}
	p.Done(progress.Result{ID: res.ID, Names: res.Names})
	return printBuildResult(os.Stdout, req, res)
}

// printBuildResult writes the --iidfile and, in quiet mode (-q, --progress
// quiet), the image ID on stdout as docker build -q does, unless stdout
// already carries an exported tar.
func printBuildResult(stdout io.Writer, req *buildRequest, res *builder.Result) error {
	if req.iidfile != "" {
		if err := os.WriteFile(req.iidfile, []byte(res.ID), 0o644); err != nil {
			return err
		}
	}
	if req.progressMode == progress.Quiet && !writesStdout(req.opts.Outputs) {
		fmt.Fprintln(stdout, res.ID)
	}
	return nil
}
