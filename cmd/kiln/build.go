package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/build"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/spf13/cobra"
)

func buildCmd() *cobra.Command {
	var (
		tags, buildArgs, labels []string
		file, target, network   string
		progressMode, iidfile   string
		runtime                 string
		noCache                 bool
	)
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bargs, err := keyValues(buildArgs, "--build-arg", true)
			if err != nil {
				return err
			}
			lbls, err := keyValues(labels, "--label", false)
			if err != nil {
				return err
			}
			epoch, err := sourceDateEpoch(bargs)
			if err != nil {
				return err
			}
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			p := newProgress(os.Stderr, progressMode)
			start := time.Now()
			res, err := build.Run(cmd.Context(), store, build.Options{
				ContextDir: args[0],
				Dockerfile: file,
				Tags:       tags,
				Target:     target,
				BuildArgs:  bargs,
				Labels:     lbls,
				NoCache:    noCache,
				Network:    network,
				Runtime:    runtime,
				Epoch:      epoch,
				Warn:       func(s string) { fmt.Fprintln(os.Stderr, "WARNING:", s) },
				Events:     p.event,
				Log:        p.logger,
				Plan: func(b *dockerfile.Build) {
					p.number(b.Vertices)
					for _, s := range b.SkippedStages {
						fmt.Fprintf(os.Stderr, "stage %s SKIPPED (not needed for the target)\n", s)
					}
				},
			})
			if err != nil {
				return err
			}
			if iidfile != "" {
				if err := os.WriteFile(iidfile, []byte(res.ID), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "writing image %s done in %.1fs\n", res.ID, time.Since(start).Seconds())
			for _, n := range res.Names {
				fmt.Fprintf(os.Stderr, "naming to %s\n", n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&tags, "tag", "t", nil, "name and optionally a tag (name:tag); repeatable")
	f.StringVarP(&file, "file", "f", "", "Dockerfile path (default CONTEXT/Dockerfile)")
	f.StringVar(&target, "target", "", "build this stage (and what it needs) only")
	f.StringArrayVar(&buildArgs, "build-arg", nil, "build-time variable KEY=VALUE (KEY alone takes it from the environment)")
	f.StringArrayVar(&labels, "label", nil, "set image label KEY=VALUE")
	f.BoolVar(&noCache, "no-cache", false, "do not use the build cache")
	f.StringVar(&network, "network", "host", "network for RUN: host, none")
	f.StringVar(&progressMode, "progress", "auto", "progress output: auto, plain, tty, quiet")
	f.StringVar(&iidfile, "iidfile", "", "write the image ID to this file")
	f.StringVar(&runtime, "runtime", "runc", "OCI runtime binary")
	return cmd
}

// keyValues parses KEY=VALUE flags; with fromEnv, a bare KEY takes its
// value from the environment like docker's --build-arg.
func keyValues(in []string, flag string, fromEnv bool) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("%s %q: expected KEY=VALUE", flag, kv)
		}
		if !ok {
			if !fromEnv {
				return nil, fmt.Errorf("%s %q: expected KEY=VALUE", flag, kv)
			}
			var set bool
			if v, set = os.LookupEnv(k); !set {
				continue
			}
		}
		out[k] = v
	}
	return out, nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH from --build-arg or the
// environment.
func sourceDateEpoch(args map[string]string) (*time.Time, error) {
	v, ok := args["SOURCE_DATE_EPOCH"]
	if !ok {
		v, ok = os.LookupEnv("SOURCE_DATE_EPOCH")
	}
	if !ok || v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a number of seconds", v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}
