package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/frontend/dockerfile"
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
	var progressOut io.Writer = os.Stderr
	if req.quiet {
		progressOut = io.Discard
	}
	p := newProgress(progressOut, req.progressMode)
	opts.PullOptions = registry.PullOptions{Registry: registryConfig(), Progress: progressOut}
	opts.Warn = func(s string) { fmt.Fprintln(os.Stderr, "WARNING:", s) }
	opts.Events = p.event
	opts.Log = p.logger
	if req.explain {
		opts.Explained = p.explained
	}
	opts.GC = func(r *store.GCReport, err error) { reportBuildGC(os.Stderr, r, err) }
	opts.Plan = func(b *dockerfile.Build) {
		p.number(b.Vertices)
		for _, s := range b.SkippedStages {
			fmt.Fprintf(os.Stderr, "stage %s SKIPPED (not needed for the target)\n", s)
		}
	}
	start := time.Now()
	res, err := builder.Run(ctx, st, opts)
	if err != nil {
		return err
	}
	return printBuildResult(os.Stdout, os.Stderr, req, res, time.Since(start))
}

// printBuildResult writes the --iidfile and says what was built as docker
// build does: with -q the image ID alone on stdout, else the ID, the time
// taken and the names on stderr.
func printBuildResult(stdout, stderr io.Writer, req *buildRequest, res *builder.Result, took time.Duration) error {
	if req.iidfile != "" {
		if err := os.WriteFile(req.iidfile, []byte(res.ID), 0o644); err != nil {
			return err
		}
	}
	if req.quiet {
		fmt.Fprintln(stdout, res.ID) // docker build -q: the image ID on stdout
		return nil
	}
	fmt.Fprintf(stderr, "writing image %s done in %.1fs\n", res.ID, took.Seconds())
	for _, n := range res.Names {
		fmt.Fprintf(stderr, "naming to %s\n", n)
	}
	return nil
}
