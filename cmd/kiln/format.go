package main

// The output helpers kiln's listings share (images, history, inspect's
// template functions): docker's formatter, its template functions and its
// ways of writing IDs, times and sizes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/store"
)

// Template functions of docker's templates package, and the versions used
// for table headers, which leave the header text alone.
var (
	templateFuncs = template.FuncMap{
		"json": func(v any) string {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.Encode(v)
			return strings.TrimSpace(buf.String())
		},
		"split": strings.Split,
		"join":  strings.Join,
		"title": strings.Title, //nolint:staticcheck // docker's function, ASCII only
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
		"pad": func(s string, prefix, suffix int) string {
			if s == "" {
				return s
			}
			return strings.Repeat(" ", prefix) + s + strings.Repeat(" ", suffix)
		},
		"truncate": func(s string, n int) string {
			if len(s) < n {
				return s
			}
			return s[:n]
		},
	}
	headerFuncs = template.FuncMap{
		"json":     func(v string) string { return v },
		"split":    func(v, _ string) string { return v },
		"join":     func(v, _ string) string { return v },
		"title":    func(v string) string { return v },
		"lower":    func(v string) string { return v },
		"upper":    func(v string) string { return v },
		"truncate": func(v string, _ int) string { return v },
	}
)

// writeFormatted renders rows like docker's formatter: "table ..." gets a
// header line (the template run on headers) and aligned columns, "json" one
// object per line, anything else is a template executed once per row.
func writeFormatted[T any](w io.Writer, format string, rows []T, headers any) error {
	table := strings.HasPrefix(format, "table")
	final := format
	switch {
	case table:
		final = final[len("table"):]
	case format == "json":
		final = "{{json .}}"
	}
	final = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(strings.Trim(final, " "))
	tmpl, err := template.New("").Funcs(templateFuncs).Parse(final)
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	var buf bytes.Buffer
	for _, r := range rows {
		if err := tmpl.Execute(&buf, r); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		buf.WriteString("\n")
	}
	if !table {
		_, err := buf.WriteTo(w)
		return err
	}
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	var header bytes.Buffer
	tmpl.Funcs(headerFuncs).Execute(&header, headers)
	header.WriteString("\n")
	header.WriteTo(tw)
	buf.WriteTo(tw)
	return tw.Flush()
}

// writeJSON prints v as indented JSON, as every --json of kiln does
// (<, > and & as they are: the output is not HTML).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// shortID is the 12-digit form of an ID that every listing shows.
var shortID = store.ShortID

// ago formats a time like docker: "2 hours ago", "About a minute ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return units.HumanDuration(time.Now().UTC().Sub(t)) + " ago"
}

// humanSize formats bytes like docker's SIZE columns (decimal units, 3
// significant digits: "4.26MB").
func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }
