package store

import (
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
)

// CacheMount is the directory of one RUN --mount=type=cache,
// cachemounts/<CacheMountDir(id)>/: a lock file that every build using the
// mount holds (shared, or exclusive for sharing=locked) and that GC takes
// exclusively before it removes the mount, and the data directory the
// build mounts. The solver's exec op makes them; df and GC measure and
// remove them.
type CacheMount struct {
	Dir string
}

// LockPath is the cache mount's lock file.
func (m CacheMount) LockPath() string { return filepath.Join(m.Dir, "lock") }

// DataDir is the directory a build mounts; its mtime is the mount's last
// use.
func (m CacheMount) DataDir() string { return filepath.Join(m.Dir, "data") }

// CacheMount is the cache mount with id.
func (s *Store) CacheMount(id string) CacheMount { return s.cacheMountAt(CacheMountDir(id)) }

// CacheMountDir is the directory name under cachemounts/ of cache id.
func CacheMountDir(id string) string {
	return digest.FromString(id).Encoded()[:24]
}

// cacheMountsDir holds every cache mount's directory.
func (s *Store) cacheMountsDir() string { return filepath.Join(s.Root, "cachemounts") }

// cacheMountAt is the cache mount whose directory under cachemounts/ is
// named name.
func (s *Store) cacheMountAt(name string) CacheMount {
	return CacheMount{Dir: filepath.Join(s.cacheMountsDir(), name)}
}
