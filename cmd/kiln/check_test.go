package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// --call takes buildx's NAME[,format=json][,ignorestatus=BOOL]; anything
// else is an error naming the flag.
func TestParseCall(t *testing.T) {
	for _, c := range []struct {
		in   string
		want callFunc
		err  string
	}{
		{"", callFunc{name: "build"}, ""},
		{"build", callFunc{name: "build"}, ""},
		{"check", callFunc{name: "check"}, ""},
		{"lint", callFunc{name: "check"}, ""},
		{"check,format=json", callFunc{name: "check", format: "json"}, ""},
		{"check,ignorestatus=true,format=text", callFunc{name: "check", format: "text", ignoreStatus: true}, ""},
		{"outline", callFunc{}, "kiln knows build and check"},
		{"check,format=yaml", callFunc{}, "format is json or text"},
		{"check,ignorestatus=maybe", callFunc{}, "ignorestatus"},
		{"check,colour=red", callFunc{}, "unknown field"},
		{"check,build", callFunc{}, "one function only"},
		{"build,format=json", callFunc{}, "for check"},
	} {
		got, err := parseCall(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "--call=") {
				t.Errorf("parseCall(%q) = %v, want an error with %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseCall(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

// The text is buildx's: the count, then per warning its rule and URL
// (kiln's rules: the description), the message and BuildKit's excerpt of
// the Dockerfile (its context lines computed as BuildKit computes them).
func TestPrintCheck(t *testing.T) {
	rng := func(from, to int) []parser.Range {
		return []parser.Range{{Start: parser.Position{Line: from}, End: parser.Position{Line: to}}}
	}
	res := &builder.CheckResult{Filename: "Dockerfile", Source: []byte("FROM busybox\nRUN a\nRUN b\nRUN c\nRUN d\nRUN e\n"), Warnings: []dockerfile.Warning{
		{Rule: "MaintainerDeprecated", URL: "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/", Message: "m1", Location: rng(1, 1)},
		{Rule: "FileRemovedInLaterLayer", Description: "d2", Message: "m2", Location: append(rng(2, 2), rng(4, 4)...)},
	}}
	var b bytes.Buffer
	printCheck(&b, res, nil)
	want := `Check complete, 2 warnings have been found!

WARNING: MaintainerDeprecated - https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/
m1
Dockerfile:1
--------------------
   1 | >>> FROM busybox
   2 |     RUN a
   3 |     RUN b
--------------------

WARNING: FileRemovedInLaterLayer - d2
m2
Dockerfile:2
--------------------
   1 |     FROM busybox
   2 | >>> RUN a
   3 |     RUN b
   4 | >>> RUN c
   5 |     RUN d
--------------------
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printCheck(&b, &builder.CheckResult{Filename: "Dockerfile"}, nil)
	if b.String() != "Check complete, no warnings found.\n" {
		t.Errorf("no warnings: %q", b.String())
	}
}
