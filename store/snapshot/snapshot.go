// Package snapshot keeps unpacked layers on disk and mounts stacks of them.
//
// Each layer lives in snapshots/<n>/fs (overlay-style: whiteouts are 0/0
// char devices, opaque dirs carry trusted.overlay.opaque). Ids are short
// numbers, like containerd's, so that an overlay mount of 100+ layers still
// fits the kernel's one-page limit on mount options. A snapshot is
// committed when it is registered under its diffID (snapshots/diffids/);
// uncommitted snapshots are scratch space that cleanup removes.
package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/internal/atomicfile"
	digest "github.com/opencontainers/go-digest"
)

// Store is the snapshots/ directory.
type Store struct {
	dir string
}

// ErrNotFound means no committed snapshot exists for a diffID.
var ErrNotFound = errors.New("snapshot not found")

// Open creates the directory if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "diffids"), 0o700); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// Dir is the snapshots directory.
func (s *Store) Dir() string { return s.dir }

// FS is the layer directory of snapshot id.
func (s *Store) FS(id string) string { return filepath.Join(s.dir, id, "fs") }

// Work is the overlay work dir that goes with id's fs when id is an upper.
func (s *Store) Work(id string) string { return filepath.Join(s.dir, id, "work") }

// New creates an empty, uncommitted snapshot and returns its id.
func (s *Store) New() (string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return "", err
	}
	n := 0
	for _, e := range ents {
		if v, err := strconv.Atoi(e.Name()); err == nil && v > n {
			n = v
		}
	}
	for i := 0; i < 1000; i++ {
		n++
		id := strconv.Itoa(n)
		err := os.Mkdir(filepath.Join(s.dir, id), 0o700)
		if errors.Is(err, os.ErrExist) {
			continue // another process took it
		}
		if err != nil {
			return "", err
		}
		for _, sub := range []string{"fs", "work"} {
			if err := os.Mkdir(filepath.Join(s.dir, id, sub), 0o755); err != nil {
				return "", err
			}
		}
		return id, nil
	}
	return "", fmt.Errorf("snapshots: no free id")
}

// Commit registers id as the unpacked form of diffID. If another snapshot
// already holds that diffID, id is removed and the existing one returned,
// so identical layers share one directory.
func (s *Store) Commit(id string, diffID digest.Digest) (string, error) {
	if old, err := s.Lookup(diffID); err == nil && old != id {
		return old, s.Remove(id)
	}
	os.RemoveAll(s.Work(id)) // overlay leaves a work/work dir; not part of the layer
	if err := os.Mkdir(s.Work(id), 0o755); err != nil && !os.IsExist(err) {
		return "", err
	}
	// The index entry first, the snapshot's own diffid file last: a crash
	// in between leaves an uncommitted snapshot (repair removes it) and an
	// entry that Lookup rejects because the snapshot does not confirm it.
	if err := atomicfile.WriteFile(s.diffIDPath(diffID), []byte(id), 0o644); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, id, "diffid"), []byte(diffID), 0o644); err != nil {
		return "", err
	}
	return id, nil
}

// Lookup returns the committed snapshot for diffID.
func (s *Store) Lookup(diffID digest.Digest) (string, error) {
	b, err := os.ReadFile(s.diffIDPath(diffID))
	if os.IsNotExist(err) {
		return "", fmt.Errorf("%s: %w", diffID, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	// Ids are reused after removal, so the snapshot must confirm the entry.
	if own, err := os.ReadFile(filepath.Join(s.dir, id, "diffid")); err != nil || digest.Digest(own) != diffID {
		return "", fmt.Errorf("%s: %w", diffID, ErrNotFound)
	}
	return id, nil
}

// Remove deletes a snapshot (committed or not) and its diffID entry.
func (s *Store) Remove(id string) error {
	if b, err := os.ReadFile(filepath.Join(s.dir, id, "diffid")); err == nil {
		p := s.diffIDPath(digest.Digest(b))
		if cur, err := os.ReadFile(p); err == nil && string(cur) == id {
			os.Remove(p)
		}
	}
	return removeAll(filepath.Join(s.dir, id))
}

// Uncommitted lists snapshots that were never committed: leftovers of a
// failed step or of a killed process. Only call Remove on them while no
// build can be running (the store's exclusive lock).
func (s *Store) Uncommitted() ([]string, error) {
	ids, err := s.IDs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		if _, err := s.DiffIDOf(id); errors.Is(err, os.ErrNotExist) {
			out = append(out, id)
		}
	}
	return out, nil
}

// DiffIDOf reads the layer snapshot id says it holds: the diffID written
// by Commit (os.ErrNotExist for an uncommitted snapshot). Lookup is what
// confirms it against the index.
func (s *Store) DiffIDOf(id string) (digest.Digest, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, id, "diffid"))
	if err != nil {
		return "", err
	}
	return digest.Parse(strings.TrimSpace(string(b)))
}

// IDs lists the numbered snapshot directories, committed or not.
func (s *Store) IDs() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Entry is one diffID → snapshot index entry.
type Entry struct {
	DiffID digest.Digest
	ID     string // the snapshot it names
	Path   string // its file, for reports and removal
}

// StaleEntries lists the index entries whose snapshot does not confirm
// them (removed, or reused for another layer): Lookup already ignores
// them, GC and doctor remove them. Temp files of a commit in progress are
// not entries. Entries whose diffID known reports true are taken as
// confirmed without reading them (known may be nil).
func (s *Store) StaleEntries(known func(digest.Digest) bool) ([]Entry, error) {
	dir := filepath.Join(s.dir, "diffids")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range ents {
		if atomicfile.IsTemp(e.Name()) {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if known != nil && known(d) {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		id := strings.TrimSpace(string(b))
		if got, err := s.Lookup(d); err == nil && got == id {
			continue
		}
		out = append(out, Entry{DiffID: d, ID: id, Path: filepath.Join(dir, e.Name())})
	}
	return out, nil
}

// WriteDirs are the directories where the snapshot store writes files
// atomically (the diffID index), for the store's cleanup of temp files.
func (s *Store) WriteDirs() []string { return []string{filepath.Join(s.dir, "diffids")} }

func (s *Store) diffIDPath(d digest.Digest) string {
	return filepath.Join(s.dir, "diffids", d.Encoded())
}

// removeAll removes a tree that may contain read-only directories (layers
// often have them, e.g. dr-xr-xr-x /proc in a base image).
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	filepath.Walk(path, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
