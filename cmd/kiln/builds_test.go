package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/store"
)

func TestBuildsTableIsDockersStyle(t *testing.T) {
	j := &builder.Journal{
		ID: "20261204T033601Z-7f4a9eb19b57", Started: time.Now().Add(-5 * time.Minute), Duration: 83 * time.Second,
		Context: "/src", Dockerfile: "/src/docker/Dockerfile", Target: "app", Status: builder.StatusCompleted,
		Image: "sha256:b925168310238f9bfb6c5e0a319a2cf2762759475c3228f5a829269785797569",
		Steps: []*builder.StepRecord{{State: "ran"}, {State: "cached"}, {State: "cached"}, {State: "skipped"}},
	}
	var out bytes.Buffer
	if err := writeFormatted(&out, buildsFormat("", false), []*buildRow{{j: j, trunc: true}}, buildsHeaders); err != nil {
		t.Fatal(err)
	}
	want := "BUILD ID       CREATED         DOCKERFILE          TARGET    STATUS      STEPS                        DURATION   IMAGE ID\n" +
		"7f4a9eb19b57   5 minutes ago   docker/Dockerfile   app       Completed   1 ran, 2 cached, 1 skipped   1m23s      b92516831023\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	writeFormatted(&out, buildsFormat("", true), []*buildRow{{j: j, trunc: false}}, buildsHeaders)
	if out.String() != j.ID+"\n" {
		t.Errorf("-q --no-trunc: %q", out.String())
	}
}

func TestBuildStatusAndDuration(t *testing.T) {
	for _, c := range []struct {
		j    builder.Journal
		want string
	}{
		{builder.Journal{Status: builder.StatusInterrupted, Error: "context canceled"}, "Interrupted"},
		{builder.Journal{Status: builder.StatusError, Error: "exit code 1"}, "Error"},
		{builder.Journal{Error: "a journal without status"}, "Error"},
		{builder.Journal{}, "Completed"},
	} {
		if got := buildStatus(&c.j); got != c.want {
			t.Errorf("status of %+v: %s, want %s", c.j, got, c.want)
		}
	}
	if buildDuration(1234*time.Millisecond) != "1.2s" || buildDuration(125*time.Second) != "2m5s" {
		t.Error("durations")
	}
}

func TestPrunedHistorySaysWholeBuildsAndLogs(t *testing.T) {
	got := prunedHistory([]store.PrunedBuild{{ID: "a", Record: true, Size: 3000}, {ID: "b", Size: 400}, {ID: "c", Size: 600}})
	if want := "Deleted build history: 1 build and logs of 2 builds, 4kB"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	var out bytes.Buffer
	printPruned(&out, &store.GCReport{Builds: []store.PrunedBuild{{ID: "a", Size: 12}}, Reclaimed: 12})
	if !strings.Contains(out.String(), "Deleted build history: logs of 1 build, 12B\n\nTotal reclaimed space: 12B") {
		t.Errorf("prune report:\n%s", out.String())
	}
}
