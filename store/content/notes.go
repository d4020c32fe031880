package content

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/atomicfile"
	digest "github.com/opencontainers/go-digest"
)

// Layer notes are small records about one layer that live and die with it,
// kept beside the blobs and written only through these functions:
//
//	content/compressed/<algorithm>-<level>/<diffID hex>  the digest of a compressed copy (exporter/compression)
//	content/sources/<diffID hex>                         where registries hold the layer (transport/registry)
//
// Each note is replaced atomically: readers see the old or the new one.
// Notes are hints — a lost note only means compressing or uploading again
// — and GC removes a layer's notes with the layer.

// NoteSources is the kind of the notes saying where registries hold a layer.
const NoteSources = "sources"

// NoteCompressed is the kind of the notes naming a layer's compressed copy
// made with key ("gzip-6", "zstd-3").
func NoteCompressed(key string) string { return "compressed/" + key }

// Note is one file in the notes' directories.
type Note struct {
	// Kind is NoteSources or NoteCompressed(key).
	Kind string
	// DiffID is the layer the note is about; "" for a file that is no
	// note (a temp file, a foreign name), which only takes space.
	DiffID digest.Digest
	// Path and Size are where the file is and what it takes, for
	// measuring and removing it.
	Path string
	Size int64
}

// NotePath is the file of the note of kind about layer diffID.
func (s *Store) NotePath(kind string, diffID digest.Digest) string {
	return filepath.Join(s.dir, filepath.FromSlash(kind), diffID.Encoded())
}

// ReadNote returns the note of kind about layer diffID; a missing note is
// an error satisfying errors.Is(err, fs.ErrNotExist).
func (s *Store) ReadNote(kind string, diffID digest.Digest) ([]byte, error) {
	if err := diffID.Validate(); err != nil {
		return nil, err
	}
	return os.ReadFile(s.NotePath(kind, diffID))
}

// WriteNote replaces the note of kind about layer diffID, atomically. It
// also removes temp files a killed kiln left among the notes of that kind
// (a note is a few bytes, so a temp file older than a minute belongs to
// nobody).
func (s *Store) WriteNote(kind string, diffID digest.Digest, data []byte) error {
	if err := diffID.Validate(); err != nil {
		return err
	}
	p := s.NotePath(kind, diffID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, data, 0o644); err != nil {
		return err
	}
	sweepTemps(filepath.Dir(p))
	return nil
}

// Compressed returns the compressed copy of layer diffID remembered under
// key, whether or not its blob is still in the store.
func (s *Store) Compressed(diffID digest.Digest, key string) (digest.Digest, error) {
	b, err := s.ReadNote(NoteCompressed(key), diffID)
	if err != nil {
		return "", err
	}
	return digest.Parse(strings.TrimSpace(string(b)))
}

// RememberCompressed notes blob as the compressed copy of layer diffID
// made with key.
func (s *Store) RememberCompressed(diffID digest.Digest, key string, blob digest.Digest) error {
	return s.WriteNote(NoteCompressed(key), diffID, []byte(blob.String()+"\n"))
}

// Notes lists every layer note, and whatever else is in their
// directories. A directory that cannot be read adds nothing.
func (s *Store) Notes() ([]Note, error) {
	var out []Note
	add := func(kind string) error {
		dir := filepath.Join(s.dir, filepath.FromSlash(kind))
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil || e.IsDir() {
				continue // gone meanwhile
			}
			n := Note{Kind: kind, Path: filepath.Join(dir, e.Name()), Size: fi.Size()}
			if d := digest.NewDigestFromEncoded(digest.SHA256, e.Name()); !atomicfile.IsTemp(e.Name()) && d.Validate() == nil {
				n.DiffID = d
			}
			out = append(out, n)
		}
		return nil
	}
	if err := add(NoteSources); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	algos, err := os.ReadDir(filepath.Join(s.dir, "compressed"))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, a := range algos {
		if a.IsDir() {
			add(NoteCompressed(a.Name()))
		}
	}
	return out, nil
}

// CompressedTarget reads what a compressed-copy note names.
func (n Note) CompressedTarget() (digest.Digest, error) {
	if !strings.HasPrefix(n.Kind, "compressed/") {
		return "", fmt.Errorf("%s is not a compressed-copy note", n.Path)
	}
	b, err := os.ReadFile(n.Path)
	if err != nil {
		return "", err
	}
	return digest.Parse(strings.TrimSpace(string(b)))
}

func sweepTemps(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !atomicfile.IsTemp(e.Name()) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
