// Package record keeps build cache records: cache key → the layers a step
// produced. One small JSON file per key (cache/<hex>), written atomically,
// so concurrent builds need no database lock.
//
// A key is a named list of components (op definition, input keys, source
// digests, ...) hashed only at the end; the record keeps the components so
// that a miss can be explained by which component changed.
package record

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-build/kiln/internal/atomicfile"
	digest "github.com/opencontainers/go-digest"
)

// Component is one named input of a cache key.
type Component struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Key is a cache key and what it was computed from.
type Key struct {
	Digest     digest.Digest
	Components []Component
}

// NewKey hashes components in order. Names and values are length-prefixed,
// so no two different lists encode alike.
func NewKey(components []Component) Key {
	h := sha256.New()
	for _, c := range components {
		fmt.Fprintf(h, "%d:%s%d:%s", len(c.Name), c.Name, len(c.Value), c.Value)
	}
	return Key{
		Digest:     digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))),
		Components: components,
	}
}

// Layer is one layer of a step's result.
type Layer struct {
	DiffID digest.Digest `json:"diffID"`
	Size   int64         `json:"size"`
}

// Record is the stored result of one step.
type Record struct {
	Key        digest.Digest `json:"key"`
	Components []Component   `json:"components"`
	// Layers is the step's whole result, bottom first (inherited layers included).
	Layers  []Layer   `json:"layers"`
	Created time.Time `json:"created"`
}

// ErrNotFound is a cache miss.
var ErrNotFound = errors.New("no cache record")

// Store is the cache/ directory.
type Store struct{ dir string }

// Open creates dir if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// Dir is the directory of the records (one file per key, written
// atomically there).
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(key digest.Digest) string { return filepath.Join(s.dir, key.Encoded()) }

// Get returns the record for key and marks it used (its mtime is the LRU
// clock for GC).
func (s *Store) Get(key digest.Digest) (*Record, error) {
	b, err := os.ReadFile(s.path(key))
	if os.IsNotExist(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil || r.Key != key {
		// a damaged record is a miss, never a wrong hit
		return nil, ErrNotFound
	}
	now := time.Now()
	os.Chtimes(s.path(key), now, now)
	return &r, nil
}

// Put stores r, replacing any record with the same key. Atomic.
func (s *Store) Put(r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path(r.Key), b, 0o600)
}

// All lists every record (for explain, df and GC). It skips what is not
// a readable record, as Entries tells; a record filed under another key's
// name is still listed.
func (s *Store) All() ([]*Record, error) {
	ents, err := s.Entries()
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, e := range ents {
		if e.parsed != nil {
			out = append(out, e.parsed)
		}
	}
	return out, nil
}

// Entry is one name in the records directory and what it holds, as
// Entries finds it: the store's usage, GC and fsck go by it.
type Entry struct {
	Name    string // a record's key (its hex), or whatever else is there
	Path    string
	Size    int64
	ModTime time.Time // a record's last use: Get touches it, GC goes by it
	Temp    bool      // a Put's temp file (in progress, or left by a killed one); not read
	Dir     bool      // a directory: never a record

	// Record is the record the file holds, if it is the record of the key
	// it is named after. Otherwise (and not Temp) Err says why not: the
	// file could not be read (Damaged false), or it holds no record of
	// that key (Damaged true: Get takes it for a miss).
	Record  *Record
	Err     error
	Damaged bool

	parsed *Record // what the file decodes to, whatever its key
}

// Entries lists everything in the records directory, temp files and
// damaged records included, and reads each file that is not a temp file.
// A name that is gone before it can be looked at is left out.
func (s *Store) Entries() ([]Entry, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(ents))
	for _, de := range ents {
		fi, err := de.Info()
		if err != nil {
			continue
		}
		e := Entry{
			Name:    de.Name(),
			Path:    filepath.Join(s.dir, de.Name()),
			Size:    fi.Size(),
			ModTime: fi.ModTime(),
			Temp:    atomicfile.IsTemp(de.Name()),
			Dir:     de.IsDir(),
		}
		if !e.Temp {
			e.read()
		}
		out = append(out, e)
	}
	return out, nil
}

func (e *Entry) read() {
	b, err := os.ReadFile(e.Path)
	if err != nil {
		e.Err = err
		return
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		e.Err, e.Damaged = err, true
		return
	}
	e.parsed = &r
	if r.Key.Validate() != nil || r.Key.Encoded() != e.Name {
		e.Err, e.Damaged = fmt.Errorf("its key is %s", r.Key), true
		return
	}
	e.Record = &r
}

// Delete removes a record.
func (s *Store) Delete(key digest.Digest) error {
	err := os.Remove(s.path(key))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}
