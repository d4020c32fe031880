package store

import (
	"path/filepath"
	"testing"
)

// The cache mount layout is on disk in stores that exist: it must not move.
func TestCacheMountLayout(t *testing.T) {
	s := openStore(t, t.TempDir())
	const id = "/root/.cache/go-build"
	m := s.CacheMount(id)
	dir := filepath.Join(s.Root, "cachemounts", CacheMountDir(id))
	if m.Dir != dir {
		t.Errorf("CacheMount(%q).Dir = %s, want %s", id, m.Dir, dir)
	}
	if want := filepath.Join(dir, "lock"); m.LockPath() != want {
		t.Errorf("LockPath = %s, want %s", m.LockPath(), want)
	}
	if want := filepath.Join(dir, "data"); m.DataDir() != want {
		t.Errorf("DataDir = %s, want %s", m.DataDir(), want)
	}
	if len(CacheMountDir(id)) != 24 || CacheMountDir(id) == CacheMountDir(id+"x") {
		t.Errorf("CacheMountDir(%q) = %q", id, CacheMountDir(id))
	}
	if got := s.cacheMountAt(CacheMountDir(id)); got != m {
		t.Errorf("cacheMountAt(%q) = %+v, want %+v", CacheMountDir(id), got, m)
	}
}
