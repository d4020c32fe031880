package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/internal/cells"
	"github.com/kiln-build/kiln/solver"
	"github.com/spf13/cobra"
)

// kiln builds: the build history the journals in the store keep
// (builder.Journals), listed like docker's listings.

const buildsTableFormat = "table {{.ID}}\t{{.CreatedSince}}\t{{.Dockerfile}}\t{{.Target}}\t{{.Status}}\t{{.Steps}}\t{{.Duration}}\t{{.Image}}"

var buildsHeaders = map[string]string{
	"ID": "BUILD ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Dockerfile": "DOCKERFILE",
	"Target": "TARGET", "Status": "STATUS", "Steps": "STEPS", "Duration": "DURATION", "Image": "IMAGE ID",
	"Tags": "TAGS", "Context": "CONTEXT", "Error": "ERROR",
}

func buildsCmd() *cobra.Command {
	ls := buildsLsCmd()
	cmd := &cobra.Command{
		Use:   "builds [OPTIONS]",
		Short: "List the builds on record (kiln builds ls), show one",
		Long:  ls.Long,
		Args:  cobra.NoArgs,
		RunE:  ls.RunE,
	}
	cmd.Flags().AddFlagSet(ls.Flags())
	cmd.AddCommand(ls, buildsShowCmd(), buildsDiffCmd())
	return cmd
}

func buildsLsCmd() *cobra.Command {
	var (
		quiet, noTrunc bool
		format         string
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List the builds on record, newest first",
		Long: `List the builds on record, newest first: every kiln build leaves a journal in
the store (failed and interrupted ones too) with each step's state, cache
key and whole output (kiln logs). See docs/builds.md for what is kept and
for how long.

--format takes a Go template over .ID .CreatedSince .CreatedAt .Dockerfile
.Target .Status .Steps .Duration .Image .Tags .Context .Error, "table
TEMPLATE" for columns with headers, or "json" for one JSON object per line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			js, err := builder.Journals(st.BuildsDir())
			if err != nil {
				return err
			}
			rows := make([]*buildRow, len(js))
			for i, j := range js {
				rows[i] = &buildRow{j: j, trunc: !noTrunc}
			}
			return writeFormatted(os.Stdout, buildsFormat(format, quiet), rows, buildsHeaders)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show build IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	fl.StringVar(&format, "format", "", `format output: "table", "table TEMPLATE", "json" or a Go TEMPLATE`)
	return cmd
}

func buildsFormat(format string, quiet bool) string {
	if format == "" || format == "table" {
		if quiet {
			return "{{.ID}}"
		}
		return buildsTableFormat
	}
	return format
}

// buildRow is one build; its methods are the template's fields.
type buildRow struct {
	j     *builder.Journal
	trunc bool
}

func (r *buildRow) ID() string {
	if r.trunc {
		return r.j.ShortID()
	}
	return r.j.ID
}
func (r *buildRow) CreatedSince() string { return ago(r.j.Started) }
func (r *buildRow) CreatedAt() string {
	return r.j.Started.Local().Format("2006-01-02 15:04:05 -0700 MST")
}
func (r *buildRow) Dockerfile() string { return r.j.DockerfileName() }
func (r *buildRow) Target() string     { return r.j.Target }
func (r *buildRow) Status() string     { return buildStatus(r.j) }
func (r *buildRow) Steps() string      { return stepCounts(r.j.Counts()) }
func (r *buildRow) Duration() string   { return buildDuration(r.j.Duration) }
func (r *buildRow) Tags() string       { return strings.Join(r.j.Tags, ",") }
func (r *buildRow) Context() string    { return r.j.Context }
func (r *buildRow) Error() string      { return r.j.Error }
func (r *buildRow) Image() string {
	if r.trunc {
		return shortID(r.j.Image)
	}
	return r.j.Image
}

func (r *buildRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"ID": r.ID(), "CreatedSince": r.CreatedSince(), "CreatedAt": r.CreatedAt(), "Dockerfile": r.Dockerfile(),
		"Target": r.Target(), "Status": r.Status(), "Steps": r.Steps(), "Duration": r.Duration(), "Image": r.Image(),
		"Tags": r.Tags(), "Context": r.Context(), "Error": r.Error(),
	})
}

// buildStatus is how a build ended, as a status column says it.
func buildStatus(j *builder.Journal) string {
	switch j.Outcome() {
	case builder.StatusCompleted:
		return "Completed"
	case builder.StatusInterrupted:
		return "Interrupted"
	}
	return "Error"
}

// stepCounts says "3 ran, 5 cached", adding the other states a build had.
func stepCounts(c solver.Counts) string {
	s := fmt.Sprintf("%d ran, %d cached", c.Ran, c.Cached)
	for _, x := range []struct {
		n    int
		what string
	}{{c.Deduped, "deduped"}, {c.Skipped, "skipped"}, {c.Failed, "failed"}} {
		if x.n > 0 {
			s += fmt.Sprintf(", %d %s", x.n, x.what)
		}
	}
	return s
}

// buildDuration is "0.8s" or "12.3s" under a minute, then "2m5s".
func buildDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func buildsShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show [OPTIONS] BUILD",
		Short: "Show one build: every step with its state, time, cache key and log size",
		Long: `Show one build on record: what was built, how it ended (the error of a failed
build) and every step with its number (#N, as the progress showed it and
kiln logs takes), state, time, cache key and the size of its log.

BUILD is a build ID, or an unambiguous prefix of it or of its short form
(the BUILD ID column of kiln builds), or "last" for the newest build.
--json prints the journal.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			j, err := builder.FindJournal(st.BuildsDir(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeBuildJSON(os.Stdout, st.BuildsDir(), j)
			}
			return writeBuild(os.Stdout, st.BuildsDir(), j)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the build's journal as JSON, each step with its log_size")
	return cmd
}

func writeBuild(w io.Writer, buildsDir string, j *builder.Journal) error {
	tw := tabwriter.NewWriter(w, 0, 1, 1, ' ', 0)
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	field("ID", j.ID)
	field("Created", fmt.Sprintf("%s (%s)", j.Started.Local().Format(time.RFC3339), ago(j.Started)))
	field("Context", j.Context)
	field("Dockerfile", j.DockerfileName())
	field("Target", j.Target)
	field("Tags", strings.Join(j.Tags, ", "))
	field("Status", buildStatus(j))
	field("Steps", stepCounts(j.Counts()))
	field("Duration", buildDuration(j.Duration))
	field("Image", j.Image)
	field("Error", j.Error)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "STEP\tNAME\tSTATE\tDURATION\tCACHE KEY\tLOG")
	for _, s := range j.Steps {
		dur, key, logSize := "-", "-", "-"
		if s.Duration > 0 {
			dur = buildDuration(s.Duration)
		}
		if s.Key != "" {
			key = shortID(s.Key)
		}
		if n := builder.LogSize(buildsDir, j, s); n >= 0 {
			logSize = humanSize(n)
		} else if s.Log != "" {
			logSize = "pruned"
		}
		fmt.Fprintf(tw, "#%d\t%s\t%s\t%s\t%s\t%s\n", s.Num, stepColumn(s.Name), s.State, dur, key, logSize)
	}
	return tw.Flush()
}

// stepColumn keeps a step's name to a column of at most 50 cells.
func stepColumn(s string) string { return cells.Ellipsis(s, 50) }

func writeBuildJSON(w io.Writer, buildsDir string, j *builder.Journal) error {
	type step struct {
		*builder.StepRecord
		LogSize int64 `json:"log_size"`
	}
	out := struct {
		*builder.Journal
		Status string `json:"status"`
		Steps  []step `json:"steps"`
	}{Journal: j, Status: j.Outcome(), Steps: []step{}}
	for _, s := range j.Steps {
		out.Steps = append(out.Steps, step{s, builder.LogSize(buildsDir, j, s)})
	}
	return writeJSON(w, out)
}
