package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
)

func TestParseSizeReadsDockerStyleSizes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "512b": 512, "50MB": 50_000_000, "50mb": 50_000_000, "50M": 50_000_000,
		"1.5GB": 1_500_000_000, "2GiB": 2 << 30, "2gi": 2 << 30, "10KiB": 10 << 10, "3kB": 3000,
		"1TB": 1_000_000_000_000, " 20 GB ": 20_000_000_000,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "-1MB", "5XB", "five", "1.2.3GB"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
}

func TestCacheMaxFromFlagOrEnvironment(t *testing.T) {
	t.Setenv("KILN_CACHE_MAX", "")
	if n, err := cacheMax(""); err != nil || n != 0 {
		t.Errorf("no flag, no env: %d, %v; want 0 (the default budget)", n, err)
	}
	t.Setenv("KILN_CACHE_MAX", "2GiB")
	if n, err := cacheMax(""); err != nil || n != 2<<30 {
		t.Errorf("env 2GiB: %d, %v", n, err)
	}
	if n, err := cacheMax("50MB"); err != nil || n != 50_000_000 {
		t.Errorf("flag wins over env: %d, %v", n, err)
	}
	if n, err := cacheMax("off"); err != nil || n >= 0 {
		t.Errorf("off: %d, %v; want negative", n, err)
	}
	for _, bad := range []string{"0", "lots"} {
		if _, err := cacheMax(bad); err == nil || !strings.Contains(err.Error(), "--cache-max") {
			t.Errorf("cacheMax(%q): %v, want an error naming the flag", bad, err)
		}
	}
	t.Setenv("KILN_CACHE_MAX", "junk")
	if _, err := cacheMax(""); err == nil || !strings.Contains(err.Error(), "KILN_CACHE_MAX") {
		t.Errorf("bad env: %v, want an error naming KILN_CACHE_MAX", err)
	}
}

func TestParseUntil(t *testing.T) {
	if d, err := parseUntil([]string{"until=24h"}); err != nil || d != 24*time.Hour {
		t.Errorf("until=24h: %v, %v", d, err)
	}
	if d, err := parseUntil(nil); err != nil || d != 0 {
		t.Errorf("none: %v, %v", d, err)
	}
	for _, bad := range []string{"until=yesterday", "type=regular", "until", "until=-1h", "until=2999-01-01"} {
		if _, err := parseUntil([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// timestamps, as docker takes them, count back from now
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"until=2026-11-23T10:00:00Z":                                      2 * time.Hour,
		"until=2026-11-22T12:00:00Z":                                      24 * time.Hour,
		"until=" + strconv.FormatInt(now.Add(-90*time.Minute).Unix(), 10): 90 * time.Minute,
	} {
		if d, err := parseUntilAt([]string{in}, now); err != nil || d != want {
			t.Errorf("%s: %v, %v; want %v", in, d, err, want)
		}
	}
	if d, err := parseUntilAt([]string{"until=2026-11-22"}, now); err != nil || d < 12*time.Hour || d > 48*time.Hour {
		t.Errorf("until=2026-11-22 (local midnight): %v, %v", d, err)
	}
}

func TestStepOfDescribesARecordByItsStep(t *testing.T) {
	c := func(kv ...string) []record.Component {
		var out []record.Component
		for i := 0; i < len(kv); i += 2 {
			out = append(out, record.Component{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		comps []record.Component
		want  string
	}{
		{c("op", "exec", "args", `["/bin/sh","-c","apk add   curl"]`), "RUN apk add curl"},
		{c("op", "exec", "args", `["/app/build","--fast"]`), "RUN /app/build --fast"},
		{c("op", "copy", "sources", `["go.mod","go.sum"]`, "dest", "/src/"), "COPY go.mod go.sum /src/"},
		{c("op", "add", "sources", `["a.tar"]`, "dest", "/"), "ADD a.tar /"},
		{c("op", "mkdir", "path", "/app"), "WORKDIR /app"},
		{c("op", "mkfile", "file:/etc/x", "abc"), "COPY <<EOF /etc/x"},
		{c("op", "exec", "args", `["/bin/sh","-c","`+strings.Repeat("é", 60)+`"]`), "RUN " + strings.Repeat("é", 35) + "…"},
	} {
		if got := stepOf(tc.comps); got != tc.want {
			t.Errorf("stepOf(%v) = %q, want %q", tc.comps, got, tc.want)
		}
	}
}

func TestConfirmTakesOnlyYes(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false, "yes please\n": false} {
		var out bytes.Buffer
		if got := confirm(strings.NewReader(in), &out, "WARNING! x"); got != want {
			t.Errorf("confirm(%q) = %v, want %v", in, got, want)
		}
		if !strings.Contains(out.String(), "Are you sure you want to continue? [y/N]") {
			t.Errorf("prompt: %q", out.String())
		}
	}
}
