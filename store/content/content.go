// Package content is kiln's blob store: a valid OCI image layout
// (oci-layout, index.json, blobs/sha256/...) that skopeo, umoci and crane can
// read. Blobs are written to a temp file in the same filesystem, verified
// against their digest and renamed into place, so a reader never sees a
// partial blob. Tags live in index.json as manifest descriptors annotated
// with the image name; index.json is rewritten atomically under a short
// flock so that several kiln processes can tag at once.
package content

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/readers"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNotFound is returned for blobs or names the store does not hold.
var ErrNotFound = errors.New("not found")

// Store is an OCI image layout on disk.
type Store struct {
	dir string
}

// Open creates the layout in dir if needed and returns the store.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	s := &Store{dir: dir}
	layout := filepath.Join(dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); os.IsNotExist(err) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := atomicfile.WriteFile(layout, b, 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(s.indexPath()); os.IsNotExist(err) {
		if err := s.writeIndex(&ocispec.Index{}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Dir is the layout's directory.
func (s *Store) Dir() string { return s.dir }

// WriteDirs are the directories where the content store writes files
// atomically (blob ingests, index.json), for the store's cleanup of temp
// files.
func (s *Store) WriteDirs() []string {
	return []string{filepath.Join(s.dir, "blobs", "sha256"), s.dir}
}

// BlobPath is where the blob with digest d lives (whether or not it exists).
func (s *Store) BlobPath(d digest.Digest) string {
	return filepath.Join(s.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// Has reports whether the blob exists and returns its size.
func (s *Store) Has(d digest.Digest) (int64, bool) {
	fi, err := os.Stat(s.BlobPath(d))
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

// Open opens a blob for reading.
func (s *Store) Open(d digest.Digest) (*os.File, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.BlobPath(d))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	return f, err
}

// ReadBlob reads a whole (small) blob and verifies its digest.
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	f, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	if digest.FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s: content does not match its digest", d)
	}
	return b, nil
}

// Writer ingests one blob. Its digest is known only at Commit, so callers can
// stream (e.g. tar a directory) without knowing the digest up front.
type Writer struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	size int64
	done bool
}

// NewWriter starts an ingest in the blobs directory (same filesystem, so the
// commit is a rename).
func (s *Store) NewWriter() (*Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "blobs", "sha256"), atomicfile.TempPrefix)
	if err != nil {
		return nil, err
	}
	return &Writer{s: s, f: f, h: sha256.New()}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.size += int64(n)
	return n, err
}

// Digest is the digest of what was written so far.
func (w *Writer) Digest() digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(w.h.Sum(nil)))
}

// UnknownSize, given to Commit, skips the size check.
const UnknownSize = -1

// Commit syncs the blob and moves it into place, then syncs the blobs
// directory so the new name is durable. If expected is not empty the
// content must match it, and if size is not UnknownSize exactly size bytes
// must have been written (a descriptor's size and digest are both checked,
// as containerd's content writer does). Committing a blob that already
// exists is a no-op. A failed Commit leaves no blob behind.
func (w *Writer) Commit(expected digest.Digest, size int64) (ocispec.Descriptor, error) {
	defer w.Close()
	if size != UnknownSize && size != w.size {
		return ocispec.Descriptor{}, fmt.Errorf("blob size mismatch: expected %d bytes, got %d", size, w.size)
	}
	d := w.Digest()
	if expected != "" && expected != d {
		return ocispec.Descriptor{}, fmt.Errorf("blob digest mismatch: expected %s, got %s", expected, d)
	}
	if err := w.f.Sync(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := w.f.Chmod(0o444); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := w.f.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := atomicfile.Rename(w.f.Name(), w.s.BlobPath(d)); err != nil {
		return ocispec.Descriptor{}, err
	}
	w.done = true
	return ocispec.Descriptor{Digest: d, Size: w.size}, nil
}

// Close abandons an uncommitted ingest.
func (w *Writer) Close() error {
	if !w.done {
		w.done = true
		w.f.Close()
		return os.Remove(w.f.Name())
	}
	return nil
}

// Write ingests r as one blob, verifying it against expected if not empty.
func (s *Store) Write(ctx context.Context, r io.Reader, expected digest.Digest) (ocispec.Descriptor, error) {
	return s.WriteSized(ctx, r, expected, UnknownSize)
}

// WriteSized is Write checking the size as well, for blobs a descriptor
// names (digest and size, both from a manifest): a blob of another size is
// refused at commit even where the digest cannot tell (size UnknownSize
// checks nothing).
func (s *Store) WriteSized(ctx context.Context, r io.Reader, expected digest.Digest, size int64) (ocispec.Descriptor, error) {
	if expected != "" {
		if have, ok := s.Has(expected); ok && (size == UnknownSize || have == size) {
			return ocispec.Descriptor{Digest: expected, Size: have}, nil
		}
	}
	w, err := s.NewWriter()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	if _, err := io.Copy(w, readers.WithContext(ctx, r)); err != nil {
		return ocispec.Descriptor{}, err
	}
	return w.Commit(expected, size)
}

// WriteJSON marshals v and stores it as a blob of the given media type.
func (s *Store) WriteJSON(v any, mediaType string) (ocispec.Descriptor, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	d := digest.FromBytes(b)
	if _, ok := s.Has(d); !ok {
		if err := atomicfile.WriteFile(s.BlobPath(d), b, 0o444); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, b, nil
}

// Blobs lists the digests of every committed blob.
func (s *Store) Blobs() ([]digest.Digest, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, e := range ents {
		if atomicfile.IsTemp(e.Name()) {
			continue
		}
		out = append(out, digest.NewDigestFromEncoded(digest.SHA256, e.Name()))
	}
	return out, nil
}

// Delete removes a blob; deleting a missing blob is not an error.
func (s *Store) Delete(d digest.Digest) error {
	err := os.Remove(s.BlobPath(d))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}
