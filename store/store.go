// Package store is kiln's on-disk store: one root directory holding the
// content (an OCI layout), unpacked layer snapshots, build cache records,
// the stat cache and the scratch space of running steps.
//
//	<root>/content/    OCI image layout: blobs and tags (package content)
//	<root>/snapshots/  unpacked layers (package snapshot)
//	<root>/cache/      cache key → result records (package record)
//	<root>/statcache/  file stat → content digest memo (package contenthash)
//	<root>/run/        per-step bundles and mounts; removed after each step
//	<root>/builds/     build journals (written by package builder)
//	<root>/trees/      context digests' entry lists, for explain (trees.go)
//	<root>/cachemounts/ RUN --mount=type=cache directories (cachemount.go)
//	<root>/lock        the store lock (package lock): commands hold it shared,
//	                   cleanup, GC and kiln doctor exclusive
//
// Beside open and close (this file): the image model — images grouped by
// ID, lookup, docker's removal rules, adding an imported image
// (images.go), what `images` lists under docker's filters
// (imagefilter.go), which layer each history entry made (history.go);
// usage (usage.go), garbage
// collection (gc.go), the consistency check (fsck.go) and crash repair
// (repair.go). Every question of what refers to what is answered by one
// walk, content.Walk; every lock is a lock.File.
package store

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/lock"
	"github.com/kiln-build/kiln/store/snapshot"
)

// Store is an open store root.
type Store struct {
	Root      string
	Content   *content.Store
	Snapshots *snapshot.Store
	Records   *record.Store

	// CacheMountIDs, if set, reads the cache mount ids out of a record's
	// key components (ops.CacheMountIDs: the store is below the ops and
	// does not read their keys), so that usage names cachemounts/ dirs.
	CacheMountIDs func([]record.Component) []string

	lock      *lock.File
	exclusive bool // opened with OpenExclusive
}

// DefaultRoot is /var/lib/kiln for root, else $XDG_DATA_HOME/kiln; KILN_ROOT
// overrides both.
func DefaultRoot() string {
	if r := os.Getenv("KILN_ROOT"); r != "" {
		return r
	}
	if os.Geteuid() == 0 {
		return "/var/lib/kiln"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "kiln")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "kiln")
}

// Open opens (creating if needed) the store at root. If no other kiln
// process is using the store, it first repairs what a dead process may have
// left: mounts and bundles under run/, temp files, uncommitted snapshots.
// The returned store holds a shared lock until Close.
func Open(root string) (*Store, error) { return open(root, nil) }

// open is Open; with lockExclusive set, that takes the lock exclusively
// (see OpenExclusive) and the store keeps it so until Close.
func open(root string, lockExclusive func(*lock.File) error) (*Store, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"", "run", "statcache"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("store %s: %w", root, err)
		}
	}
	s := &Store{Root: root, exclusive: lockExclusive != nil}
	if s.Content, err = content.Open(filepath.Join(root, "content")); err != nil {
		return nil, err
	}
	if s.Snapshots, err = snapshot.Open(filepath.Join(root, "snapshots")); err != nil {
		return nil, err
	}
	if s.Records, err = record.Open(filepath.Join(root, "cache")); err != nil {
		return nil, err
	}
	if s.lock, err = lock.Open(filepath.Join(root, "lock"), 0o600); err != nil {
		return nil, err
	}
	if s.exclusive {
		if err := lockExclusive(s.lock); err != nil {
			s.lock.Close()
			return nil, err
		}
	}
	if ok, _ := s.lock.TryLock(lock.Exclusive); ok {
		if _, err := s.repair(); err != nil {
			s.lock.Close()
			return nil, fmt.Errorf("store %s: cleanup: %w", root, err)
		}
	}
	if s.exclusive {
		return s, nil
	}
	// Downgrading (or waiting behind a GC) to shared.
	if err := s.lock.Lock(lock.Shared); err != nil {
		s.lock.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the store lock.
func (s *Store) Close() error { return s.lock.Close() }

// RunDir is the scratch space for running steps.
func (s *Store) RunDir() string { return filepath.Join(s.Root, "run") }

// BuildsDir holds the build journals, one directory per build, which
// package builder writes and `kiln builds` reads: BuildRecordFile, written
// once when the build ends, and the steps' logs (every other file). Usage
// and GC count them as build history (buildhistory.go).
func (s *Store) BuildsDir() string { return filepath.Join(s.Root, "builds") }

// StatCacheDir holds the per-context stat caches.
func (s *Store) StatCacheDir() string { return filepath.Join(s.Root, "statcache") }
