package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/testenv"
)

// addTestContainer records a container of im (not run: Check needs only
// its files).
func addTestContainer(t *testing.T, s *Store, im testImage, name string) *Container {
	t.Helper()
	si, err := s.Content.ReadImage(im.manifest)
	must(t, err)
	c := &Container{Name: name, Image: im.name, ImageID: si.ID(), Manifest: im.manifest.Digest, Layers: []record.Layer{im.layer}, Path: "sh", Network: "host"}
	must(t, s.CreateContainer(c))
	return c
}

func TestCheckFindsNothingWrongWithContainers(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	addTestContainer(t, s, a, "one")
	addTestContainer(t, s, a, "")
	r := check(t, s, CheckOptions{})
	if len(r.Findings) != 0 || !r.Consistent() {
		t.Errorf("findings with healthy containers:\n%s", findings(r))
	}
	if r.Containers != 2 {
		t.Errorf("checked %d containers, want 2", r.Containers)
	}
}

func TestCheckFindsACorruptContainerRecord(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	bad := addTestContainer(t, s, a, "bad")
	good := addTestContainer(t, s, a, "good")
	writeFile(t, filepath.Join(s.ContainerDir(bad.ID), "config.json"), `{"id": "`+bad.ID+`", "name": `)

	r := check(t, s, CheckOptions{})
	assertFinding(t, r, Problem, "container", bad.ShortID(), "config.json")
	if r.Consistent() {
		t.Errorf("a corrupt config.json passed:\n%s", findings(r))
	}
	if _, err := os.Stat(s.ContainerDir(bad.ID)); err != nil {
		t.Errorf("Check without Repair changed the store: %v", err)
	}

	r = check(t, s, CheckOptions{Repair: true})
	if !r.Consistent() {
		t.Errorf("not repaired:\n%s", findings(r))
	}
	if _, err := os.Stat(s.ContainerDir(bad.ID)); !os.IsNotExist(err) {
		t.Errorf("the container with the lost record is still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(s.namesDir(), "bad")); !os.IsNotExist(err) {
		t.Errorf("its name is still taken: %v", err)
	}
	if cs, err := s.Containers(); err != nil || len(cs) != 1 || cs[0].ID != good.ID {
		t.Errorf("containers after repair: %v %v", cs, err)
	}
	assertConsistent(t, s)
}

func TestCheckFindsACorruptContainerState(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	c := addTestContainer(t, s, a, "st")
	writeFile(t, filepath.Join(s.ContainerDir(c.ID), "state.json"), `{"status": "run`)
	r := check(t, s, CheckOptions{Repair: true})
	assertFinding(t, r, Problem, "container", c.ShortID(), "state.json")
	st, err := s.ReadContainerState(c.ID)
	if err != nil || st.Status != StatusExited || st.ExitCode != LostExitCode {
		t.Errorf("state after repair: %+v %v", st, err)
	}
	assertConsistent(t, s)
}

func TestCheckFindsDanglingAndMissingNameLinks(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	c := addTestContainer(t, s, a, "named")
	gone := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	must(t, os.Symlink(gone, filepath.Join(s.namesDir(), "ghost")))
	must(t, os.Remove(filepath.Join(s.namesDir(), "named")))

	r := check(t, s, CheckOptions{})
	assertFinding(t, r, Stale, "container", "containers/names/ghost", "no container")
	assertFinding(t, r, Problem, "container", c.ShortID(), "no link")
	if r.Consistent() {
		t.Errorf("a container without its name link passed:\n%s", findings(r))
	}

	r = check(t, s, CheckOptions{Repair: true})
	if !r.Consistent() {
		t.Errorf("not repaired:\n%s", findings(r))
	}
	if _, err := os.Lstat(filepath.Join(s.namesDir(), "ghost")); !os.IsNotExist(err) {
		t.Errorf("the dangling link is still there: %v", err)
	}
	if got, err := s.LookupContainer("named"); err != nil || got.ID != c.ID {
		t.Errorf("lookup by name after repair: %v %v", got, err)
	}
	assertConsistent(t, s)
}

func TestCheckFindsAContainerWhoseLayerIsMissing(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	c := addTestContainer(t, s, a, "nolayer")
	must(t, s.Content.Delete(a.layer.DiffID))

	r := check(t, s, CheckOptions{Repair: true})
	assertFinding(t, r, Problem, "container", c.ShortID(), "layer", string(a.layer.DiffID), "is missing", "cannot start")
	if r.Consistent() {
		t.Errorf("a container whose layer is gone passed as repaired:\n%s", findings(r))
	}
	if _, err := s.LookupContainer(c.ID); err != nil {
		t.Errorf("repair removed the container: %v", err)
	}
}

// A container recorded as running whose lock nobody holds lost its
// monitor: Check reports it and records it as exited.
func TestCheckReapsARunningContainerWithoutMonitor(t *testing.T) {
	testenv.RequireRoot(t)
	s := openStore(t, t.TempDir())
	a := addTestImage(t, s, "a:1", "a")
	c := addTestContainer(t, s, a, "orphan")
	must(t, s.WriteContainerState(c.ID, ContainerState{Status: StatusRunning, Pid: 999999, StartedAt: time.Now().UTC()}))

	r := check(t, s, CheckOptions{})
	assertFinding(t, r, Leftover, "leftover", "killed process")
	found := false
	for _, f := range r.Findings {
		found = found || f.Repaired == "container "+c.ShortID()+" lost its monitor: recorded as exited"
	}
	if !found {
		t.Errorf("no finding for the orphan:\n%s", findings(r))
	}
	st, err := s.ReadContainerState(c.ID)
	if err != nil || st.Status != StatusExited || st.ExitCode != LostExitCode {
		t.Errorf("state after check: %+v %v", st, err)
	}
	assertConsistent(t, s)
}
