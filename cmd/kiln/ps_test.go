package main

import (
	"testing"
	"time"

	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/store"
)

func TestPsColumnsAreDockers(t *testing.T) {
	now := time.Now().UTC()
	c := &containerContext{trunc: true, image: "docker.io/library/busybox:latest", sizeRw: 6, sizeRootFs: 1979006,
		l: container.Listed{
			Container: &store.Container{ID: "912284800460321f3409a5fd7bb258bf922f6eab4d36e8b9bc7507e7e77ed26d", Path: "sh", Args: []string{"-c", "echo hello > /greeting"}},
			State:     store.ContainerState{Status: store.StatusExited, ExitCode: 3, StartedAt: now.Add(-time.Minute), FinishedAt: now.Add(-5 * time.Second)},
		}}
	for _, tc := range []struct{ got, want string }{
		{c.ID(), "912284800460"},
		{c.Image(), "busybox:latest"},
		{c.Command(), `"sh -c 'echo hello >…"`},
		{c.Status(), "Exited (3) 5 seconds ago"},
		{c.Size(), "6B (virtual 1.98MB)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	c.trunc = false
	if got := c.Command(); got != `"sh -c 'echo hello > /greeting'"` {
		t.Errorf("--no-trunc command %s", got)
	}
	c.l.State = store.ContainerState{Status: store.StatusCreated}
	if got := c.Status(); got != "Created" {
		t.Errorf("created: %q", got)
	}
}

func TestContainerPruneFilter(t *testing.T) {
	now := time.Now()
	old := &store.Container{Created: now.Add(-48 * time.Hour), Labels: map[string]string{"tier": "web"}}
	fresh := &store.Container{Created: now.Add(-time.Minute)}
	keep, err := containerPruneFilter([]string{"until=24h"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if keep(old) || !keep(fresh) {
		t.Errorf("until=24h: keep(old)=%v keep(fresh)=%v", keep(old), keep(fresh))
	}
	keep, _ = containerPruneFilter([]string{"label=tier=web"}, now)
	if keep(old) || !keep(fresh) {
		t.Errorf("label=tier=web: keep(old)=%v keep(fresh)=%v", keep(old), keep(fresh))
	}
	keep, _ = containerPruneFilter([]string{"label!=tier"}, now)
	if !keep(old) || keep(fresh) {
		t.Errorf("label!=tier: keep(old)=%v keep(fresh)=%v", keep(old), keep(fresh))
	}
	if _, err := containerPruneFilter([]string{"color=red"}, now); err == nil {
		t.Error("unknown filter accepted")
	}
}
