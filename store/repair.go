package store

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store/snapshot"
)

// repair removes what a killed kiln process left behind and returns a line
// for each thing it removed (kiln doctor shows them). It runs only while
// holding the exclusive lock, i.e. when no other kiln process is at work.
func (s *Store) repair() ([]string, error) {
	var done []string
	run := s.RunDir()
	// Containers first (their state lives in run/runc), then mounts, then files.
	if ents, err := os.ReadDir(filepath.Join(run, "runc")); err == nil && len(ents) > 0 {
		if runc, err := exec.LookPath("runc"); err == nil {
			for _, e := range ents {
				exec.Command(runc, "--root", filepath.Join(run, "runc"), "delete", "--force", e.Name()).Run()
				done = append(done, "deleted container "+e.Name())
			}
		}
	}
	mounts, err := snapshot.MountsUnder(run)
	if err != nil {
		return done, err
	}
	for _, m := range mounts {
		if err := snapshot.Unmount(m); err != nil {
			return done, err
		}
		done = append(done, "unmounted "+m)
	}
	ents, err := os.ReadDir(run)
	if err != nil {
		return done, err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(run, e.Name())); err != nil {
			return done, err
		}
		if e.Name() != "runc" {
			done = append(done, "removed run/"+e.Name())
		}
	}
	done = append(done, s.reapContainers()...)
	for _, p := range s.containerLeftovers() {
		snapshot.UnmountUnder(p)
		if err := removeTree(p); err != nil {
			return done, err
		}
		rel, _ := filepath.Rel(s.Root, p)
		done = append(done, "removed "+rel)
	}
	ids, err := s.Snapshots.Uncommitted()
	if err != nil {
		return done, err
	}
	for _, id := range ids {
		if err := s.Snapshots.Remove(id); err != nil {
			return done, err
		}
		done = append(done, "removed uncommitted snapshot "+id)
	}
	dirs := append(s.Content.WriteDirs(), s.Records.Dir(), s.StatCacheDir(), s.TreesDir())
	for _, dir := range append(dirs, s.Snapshots.WriteDirs()...) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if atomicfile.IsTemp(e.Name()) {
				if os.Remove(filepath.Join(dir, e.Name())) == nil {
					rel, _ := filepath.Rel(s.Root, filepath.Join(dir, e.Name()))
					done = append(done, "removed temp file "+rel)
				}
			}
		}
	}
	return done, nil
}
