package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	"github.com/spf13/cobra"
)

func pruneCmd() *cobra.Command {
	var (
		all, force bool
		keep       string
		filters    []string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove build cache",
		Long: `Remove build cache like docker builder prune: cache records, least recently
used first, then every blob and snapshot nothing refers to any more. Images
keep their layers; images without a name stay until kiln image prune.

Without --keep-storage every cache record goes; with it, records go until
the build cache (records' layers and unreferenced data) fits in SIZE.
--all also removes the RUN --mount=type=cache directories.
--filter until=DURATION spares what was used within DURATION (e.g. 24h).

Build history: kiln prune removes the step logs of finished builds but
keeps their records, so kiln builds and kiln explain still know them
(kiln logs says the log was pruned); --all removes the whole journals.
--filter until= spares builds that finished within DURATION; with
--keep-storage the oldest builds' logs count and go first.

kiln prune waits for running builds to finish: nothing a build uses is
ever removed under it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := store.GCOptions{Records: true, Mounts: all, All: true, BuildLogs: true, BuildRecords: all}
			if keep != "" {
				n, err := parseSize(keep)
				if err != nil {
					return fmt.Errorf("--keep-storage: %w", err)
				}
				opts.All, opts.Keep = false, n
			}
			until, err := parseUntil(filters)
			if err != nil {
				return err
			}
			opts.Until = until
			warning := "WARNING! This will remove all unused build cache."
			if all {
				warning = "WARNING! This will remove all build cache, cache mounts included."
			}
			return collect(cmd, force, warning, opts, printPruned)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "also remove cache mounts (RUN --mount=type=cache)")
	f.StringVar(&keep, "keep-storage", "", "keep this much build cache (e.g. 5GB, 512MiB), removing least recently used first")
	f.StringArrayVar(&filters, "filter", nil, "until=DURATION|TIMESTAMP: only remove what was not used within DURATION (e.g. 24h) or since TIMESTAMP")
	f.BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	return cmd
}

func imagePruneCmd() *cobra.Command {
	var all, force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove images without a name",
		Long: `Remove dangling images (<none>:<none>: built without -t, or whose tag moved
to a newer build), like docker image prune, then every blob and snapshot
nothing refers to any more. With -a, also images that have no tag but a
digest reference (pulled by digest). Tagged images are never removed;
layers that cache records still use stay as build cache.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			until, err := parseUntil(filters)
			if err != nil {
				return err
			}
			warning := "WARNING! This will remove all dangling images."
			if all {
				warning = "WARNING! This will remove all images without at least one tag."
			}
			opts := store.GCOptions{DanglingImages: true, UntaggedImages: all, All: true, Until: until}
			return collect(cmd, force, warning, opts, printPrunedImages)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every image without a tag, not just dangling ones")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "until=DURATION|TIMESTAMP: spare images used (built, tagged, pulled) within DURATION or since TIMESTAMP")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	return cmd
}

// collect is what both prunes do once their options are set: ask (unless
// force), take the store to itself, collect and print the report.
func collect(cmd *cobra.Command, force bool, warning string, opts store.GCOptions, print func(io.Writer, *store.GCReport)) error {
	if !force && !confirm(os.Stdin, os.Stdout, warning) {
		return nil
	}
	st, err := openExclusive(cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := st.Collect(cmd.Context(), opts)
	if rep != nil {
		print(os.Stdout, rep)
	}
	return err
}

// openExclusive opens the store for a prune, which waits until no other
// kiln process is at work.
func openExclusive(cmd *cobra.Command) (*store.Store, error) {
	s, err := store.OpenExclusive(cmd.Context(), rootDir, func() {
		fmt.Fprintln(os.Stderr, "waiting for running builds to finish")
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// confirm asks like docker: only "y" or "yes" goes ahead.
func confirm(in io.Reader, out io.Writer, warning string) bool {
	fmt.Fprintf(out, "%s\nAre you sure you want to continue? [y/N] ", warning)
	line, _ := bufio.NewReader(in).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	if answer != "y" && answer != "yes" {
		fmt.Fprintln(out)
		return false
	}
	return true
}

func printPruned(w io.Writer, rep *store.GCReport) {
	if len(rep.Records)+len(rep.Mounts) > 0 {
		fmt.Fprintln(w, "Deleted build cache objects:")
		for _, k := range rep.Records {
			fmt.Fprintln(w, k.Encoded()[:12])
		}
		for _, m := range rep.Mounts {
			fmt.Fprintln(w, mountName(m))
		}
		fmt.Fprintln(w)
	}
	if len(rep.Builds) > 0 {
		fmt.Fprintln(w, prunedHistory(rep.Builds))
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Total reclaimed space: %s\n", units.HumanSize(float64(rep.Reclaimed)))
}

// prunedHistory says what went of the build history: "Deleted build
// history: 12 builds, 3.4MB", or "logs of 12 builds" when their records
// stayed.
func prunedHistory(builds []store.PrunedBuild) string {
	var whole, logs int
	var size int64
	for _, b := range builds {
		if b.Record {
			whole++
		} else {
			logs++
		}
		size += b.Size
	}
	var parts []string
	if whole > 0 {
		parts = append(parts, plural(whole, "build"))
	}
	if logs > 0 {
		parts = append(parts, "logs of "+plural(logs, "build"))
	}
	return fmt.Sprintf("Deleted build history: %s, %s", strings.Join(parts, " and "), units.HumanSize(float64(size)))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func printPrunedImages(w io.Writer, rep *store.GCReport) {
	if len(rep.Images) > 0 {
		fmt.Fprintln(w, "Deleted Images:")
		for _, im := range rep.Images {
			for _, n := range im.Names {
				fmt.Fprintf(w, "untagged: %s\n", content.FamiliarName(n))
			}
			fmt.Fprintf(w, "deleted: %s\n", im.ID)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Total reclaimed space: %s\n", units.HumanSize(float64(rep.Reclaimed)))
}

// mountName is how a cache mount is shown: its id when a record knows it.
func mountName(m store.MountUsage) string {
	if m.CacheID != "" {
		return "cachemount:" + m.CacheID
	}
	return "cachemount:" + m.Dir
}

// parseUntil reads --filter values; only until= is known (docker builder
// prune's and image prune's filter), as a duration (24h, 90m) or a
// timestamp like docker's (RFC 3339, 2006-01-02[T15:04[:05]], or Unix
// seconds), which counts back from now.
func parseUntil(filters []string) (time.Duration, error) {
	return parseUntilAt(filters, time.Now())
}

func parseUntilAt(filters []string, now time.Time) (time.Duration, error) {
	var until time.Duration
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok || strings.TrimSpace(k) != "until" {
			return 0, fmt.Errorf("invalid filter %q (only until=DURATION or until=TIMESTAMP, e.g. until=24h)", f)
		}
		v = strings.TrimSpace(v)
		d, err := time.ParseDuration(v)
		if err != nil {
			ts, terr := parseTimestamp(v)
			if terr != nil {
				return 0, fmt.Errorf("invalid filter %q: %q is neither a duration like 24h nor a timestamp like 2006-01-02T15:04:05Z", f, v)
			}
			d = now.Sub(ts)
		}
		if d < 0 {
			return 0, fmt.Errorf("invalid filter %q: it is in the future", f)
		}
		until = d
	}
	return until, nil
}

// parseTimestamp reads the timestamps docker's --filter until= takes.
func parseTimestamp(v string) (time.Time, error) {
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(0, int64(secs*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a timestamp: %q", v)
}

// parseSize reads a size as docker's flags write them: a number with an
// optional unit, case-insensitive, "B" optional: k, M, G, T (powers of
// 1000, as kiln prints sizes) or Ki, Mi, Gi, Ti (powers of 1024). "50MB"
// is 50,000,000 bytes, "2GiB" 2,147,483,648.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && !(s[i-1] >= '0' && s[i-1] <= '9' || s[i-1] == '.') {
		i--
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || num == "" {
		return 0, fmt.Errorf("invalid size %q (e.g. 500MB, 2GiB)", s)
	}
	unit = strings.TrimSuffix(unit, "b")
	mult := map[string]float64{
		"": 1, "k": units.KB, "m": units.MB, "g": units.GB, "t": units.TB,
		"ki": units.KiB, "mi": units.MiB, "gi": units.GiB, "ti": units.TiB,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)", s)
	}
	return int64(v * mult), nil
}

// cacheMax reads --cache-max (or KILN_CACHE_MAX): a size, or "off" for no
// collection at the end of builds. "" is the default budget (0).
func cacheMax(flag string) (int64, error) {
	name := "--cache-max"
	if flag == "" {
		flag, name = os.Getenv("KILN_CACHE_MAX"), "KILN_CACHE_MAX"
	}
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "":
		return 0, nil
	case "off", "none":
		return -1, nil
	}
	n, err := parseSize(flag)
	if err == nil && n <= 0 {
		err = errors.New("must be more than 0 (or off: never collect at the end of builds)")
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", name, flag, err)
	}
	return n, nil
}

// reportBuildGC tells what the end-of-build collection did. Skipping it
// because other builds are running is normal (the last one collects), so
// that is said only with KILN_DEBUG set.
func reportBuildGC(w io.Writer, rep *store.GCReport, err error) {
	switch {
	case errors.Is(err, store.ErrBusy):
		if os.Getenv("KILN_DEBUG") != "" {
			fmt.Fprintf(w, "debug: build cache %s is over its budget %s, but other kiln processes are using the store; the last one to finish collects\n",
				units.HumanSize(float64(rep.Before)), units.HumanSize(float64(rep.Budget)))
		}
	case err != nil:
		fmt.Fprintf(w, "WARNING: build cache collection: %v\n", err)
	case rep != nil && rep.Before > rep.Budget:
		fmt.Fprintf(w, "build cache %s over its budget %s: removed %d cache records, %d images without a name, %d cache mounts, the history of %d builds; reclaimed %s in %.2fs\n",
			units.HumanSize(float64(rep.Before)), units.HumanSize(float64(rep.Budget)),
			len(rep.Records), len(rep.Images), len(rep.Mounts), len(rep.Builds), units.HumanSize(float64(rep.Reclaimed)), rep.Took.Seconds())
	}
}
