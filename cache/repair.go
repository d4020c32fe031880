package cache

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kiln-build/kiln/cache/atomicfile"
	"github.com/kiln-build/kiln/cache/snapshot"
)

// repair removes what a killed kiln process left behind. It runs only while
// holding the exclusive lock, i.e. when no other kiln process is at work.
func (s *Store) repair() error {
	run := s.RunDir()
	// Containers first (their state lives in run/runc), then mounts, then files.
	if ents, err := os.ReadDir(filepath.Join(run, "runc")); err == nil && len(ents) > 0 {
		if runc, err := exec.LookPath("runc"); err == nil {
			for _, e := range ents {
				exec.Command(runc, "--root", filepath.Join(run, "runc"), "delete", "--force", e.Name()).Run()
			}
		}
	}
	mounts, err := snapshot.MountsUnder(run)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if err := snapshot.Unmount(m); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(run)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(run, e.Name())); err != nil {
			return err
		}
	}
	ids, err := s.Snapshots.Uncommitted()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.Snapshots.Remove(id); err != nil {
			return err
		}
	}
	for _, dir := range []string{
		filepath.Join(s.Content.Dir(), "blobs", "sha256"), s.Content.Dir(),
		filepath.Join(s.Root, "cache"), s.StatCacheDir(), filepath.Join(s.Snapshots.Dir(), "diffids"),
	} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if atomicfile.IsTemp(e.Name()) {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	return nil
}
