package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/transport/registry"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// callFunc is --call (buildx's spelling): NAME[,format=json][,ignorestatus=BOOL].
type callFunc struct {
	name, format string
	ignoreStatus bool
}

func parseCall(s string) (callFunc, error) {
	var cf callFunc
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		switch {
		case !ok && cf.name == "":
			cf.name = k
		case !ok:
			return cf, fmt.Errorf("--call=%s: one function only", s)
		case k == "format":
			if v != "json" && v != "text" {
				return cf, fmt.Errorf("--call=%s: format is json or text", s)
			}
			cf.format = v
		case k == "ignorestatus":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return cf, fmt.Errorf("--call=%s: ignorestatus: %v", s, err)
			}
			cf.ignoreStatus = b
		default:
			return cf, fmt.Errorf("--call=%s: unknown field %q (format, ignorestatus)", s, field)
		}
	}
	if cf.name == "" && s == "" {
		cf.name = "build"
	}
	if cf.name == "lint" {
		cf.name = "check" // buildx's older name
	}
	if cf.name != "build" && cf.name != "check" {
		return cf, fmt.Errorf("--call=%s: kiln knows build and check", s)
	}
	if cf.name == "build" && (cf.format != "" || cf.ignoreStatus) {
		return cf, fmt.Errorf("--call=%s: format and ignorestatus are for check", s)
	}
	return cf, nil
}

// runCheck is kiln build --check: lint, print like buildx, exit 1 when
// anything was found (unless ignorestatus=true).
func runCheck(ctx context.Context, st *store.Store, req *buildRequest) error {
	opts := req.opts
	opts.PullOptions = registry.PullOptions{Registry: registryConfig(), Progress: os.Stderr}
	opts.Warn = func(s string) { fmt.Fprintln(os.Stderr, "WARNING:", s) }
	res, err := builder.Check(ctx, st, opts)
	if res.Filename == "" {
		return err // nothing was read: not a Dockerfile problem
	}
	if req.callFormat == "json" {
		if perr := printCheckJSON(os.Stdout, res, err); perr != nil {
			return perr
		}
	} else {
		printCheck(os.Stdout, res, err)
		if err != nil {
			if len(res.Warnings) > 0 {
				fmt.Fprintln(os.Stdout)
			}
			return err
		}
	}
	if req.callIgnoreStatus {
		return nil
	}
	if err != nil || len(res.Warnings) > 0 {
		return exitStatus(1) // the output says why
	}
	return nil
}

// printCheck writes what buildx's check writes: the count, then each
// warning with its rule, URL (kiln's rules: their description), message
// and the lines it points at. A check that failed (err) with no warnings
// writes nothing: it is not complete, and the error says why.
func printCheck(w io.Writer, res *builder.CheckResult, err error) {
	switch n := len(res.Warnings); {
	case n == 0 && err != nil:
	case n == 0:
		fmt.Fprintln(w, "Check complete, no warnings found.")
	case n == 1:
		fmt.Fprintln(w, "Check complete, 1 warning has been found!")
	default:
		fmt.Fprintf(w, "Check complete, %d warnings have been found!\n", n)
	}
	lines := strings.Split(string(res.Source), "\n")
	for _, warn := range res.Warnings {
		fmt.Fprintf(w, "\nWARNING: %s", warn.Rule)
		if warn.URL != "" {
			fmt.Fprintf(w, " - %s", warn.URL)
		} else {
			fmt.Fprintf(w, " - %s", warn.Description)
		}
		fmt.Fprintf(w, "\n%s\n", warn.Message)
		printSourceLines(w, res.Filename, lines, warn.Location)
	}
}

// printSourceLines is BuildKit's errdefs.Source.Print: the lines of
// ranges, marked >>>, with a few lines of context.
func printSourceLines(w io.Writer, file string, lines []string, ranges []parser.Range) {
	if len(ranges) == 0 {
		return
	}
	start, end := ranges[0].Start.Line, 0
	for _, r := range ranges {
		start = min(start, r.Start.Line)
		end = max(end, r.End.Line, r.Start.Line)
	}
	if start > len(lines) || start < 1 {
		return
	}
	end = min(end, len(lines))
	pad := 2
	if end == start {
		pad = 4
	}
	first := start
	for p := 0; p < pad; {
		if start > 1 {
			start--
			p++
		}
		if end != len(lines) {
			end++
			p++
		}
		p++
	}
	fmt.Fprintf(w, "%s:%d\n--------------------\n", file, first)
	for i := start; i <= end; i++ {
		pfx := "   "
		for _, r := range ranges {
			if r.Start.Line <= i && max(r.End.Line, r.Start.Line) >= i {
				pfx = ">>>"
			}
		}
		fmt.Fprintf(w, " %3d | %s %s\n", i, pfx, lines[i-1])
	}
	fmt.Fprint(w, "--------------------\n")
}

// The JSON of --call=check,format=json: BuildKit's lint result
// (result.json of its frontend.lint subrequest).
type (
	lintResults struct {
		Warnings []lintWarning `json:"warnings"`
		Sources  []lintSource  `json:"sources"`
		Error    *lintError    `json:"buildError,omitempty"`
	}
	lintWarning struct {
		RuleName    string       `json:"ruleName"`
		Description string       `json:"description,omitempty"`
		URL         string       `json:"url,omitempty"`
		Detail      string       `json:"detail,omitempty"`
		Location    lintLocation `json:"location"`
	}
	lintSource struct {
		Filename string `json:"filename"`
		Language string `json:"language"`
		Data     []byte `json:"data"`
	}
	lintError struct {
		Message  string       `json:"message"`
		Location lintLocation `json:"location"`
	}
	lintLocation struct {
		Ranges []lintRange `json:"ranges,omitempty"`
	}
	lintRange struct {
		Start lintPosition `json:"start"`
		End   lintPosition `json:"end"`
	}
	lintPosition struct {
		Line      int `json:"line,omitempty"`
		Character int `json:"character,omitempty"`
	}
)

func printCheckJSON(w io.Writer, res *builder.CheckResult, err error) error {
	out := lintResults{Warnings: []lintWarning{}, Sources: []lintSource{{Filename: res.Filename, Language: "Dockerfile", Data: res.Source}}}
	for _, warn := range res.Warnings {
		out.Warnings = append(out.Warnings, lintWarning{RuleName: warn.Rule, Description: warn.Description, URL: warn.URL,
			Detail: warn.Message, Location: toLintLocation(warn.Location)})
	}
	if err != nil {
		out.Error = &lintError{Message: err.Error()}
		var de *dockerfile.Error
		if errors.As(err, &de) {
			out.Error.Message = de.Err.Error()
			if de.Line > 0 {
				out.Error.Location = lintLocation{Ranges: []lintRange{{Start: lintPosition{Line: de.Line}, End: lintPosition{Line: de.Line}}}}
			}
		}
	}
	b, merr := json.MarshalIndent(out, "", "  ")
	if merr != nil {
		return merr
	}
	_, werr := fmt.Fprintln(w, string(b))
	return werr
}

func toLintLocation(rs []parser.Range) lintLocation {
	var loc lintLocation
	for _, r := range rs {
		loc.Ranges = append(loc.Ranges, lintRange{
			Start: lintPosition{Line: r.Start.Line, Character: r.Start.Character},
			End:   lintPosition{Line: r.End.Line, Character: r.End.Character},
		})
	}
	return loc
}
