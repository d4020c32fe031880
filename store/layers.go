package store

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/store/layer"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
)

// Locally every layer blob is an uncompressed tar, so a layer's blob digest
// is its diffID and one digest names the blob, the snapshot and the layer.

var unpacks singleflight.Group

// CommitSnapshot turns the fs of the uncommitted snapshot id into a layer:
// it tars the directory once (streaming into the blob store and digesting in
// the same pass) and registers the snapshot under the resulting diffID. It
// returns the id of the committed snapshot, which is an older one when an
// identical layer already existed.
func (s *Store) CommitSnapshot(ctx context.Context, id string, clamp time.Time) (record.Layer, string, error) {
	w, err := s.Content.NewWriter()
	if err != nil {
		return record.Layer{}, "", err
	}
	defer w.Close()
	diffID, size, err := layer.WriteTar(ctx, s.Snapshots.FS(id), w, layer.WriteOptions{Clamp: clamp})
	if err != nil {
		return record.Layer{}, "", fmt.Errorf("commit layer: %w", err)
	}
	if _, err := w.Commit(diffID, -1); err != nil {
		return record.Layer{}, "", err
	}
	committed, err := s.Snapshots.Commit(id, diffID)
	if err != nil {
		return record.Layer{}, "", err
	}
	return record.Layer{DiffID: diffID, Size: size}, committed, nil
}

// Snapshot returns the snapshot holding layer diffID, unpacking its blob
// the first time it is needed.
func (s *Store) Snapshot(ctx context.Context, diffID digest.Digest) (string, error) {
	if id, err := s.Snapshots.Lookup(diffID); err == nil {
		return id, nil
	}
	v, err, _ := unpacks.Do(s.Root+string(diffID), func() (any, error) {
		if id, err := s.Snapshots.Lookup(diffID); err == nil {
			return id, nil
		}
		f, err := s.Content.Open(diffID)
		if err != nil {
			return "", fmt.Errorf("layer %s: %w", diffID, err)
		}
		defer f.Close()
		id, err := s.Snapshots.New()
		if err != nil {
			return "", err
		}
		got, _, err := layer.Apply(ctx, f, s.Snapshots.FS(id))
		if err == nil && got != diffID {
			err = fmt.Errorf("content does not match its digest (got %s)", got)
		}
		if err != nil {
			s.Snapshots.Remove(id)
			return "", fmt.Errorf("unpack layer %s: %w", diffID, err)
		}
		return s.Snapshots.Commit(id, diffID)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// Snapshots resolves a whole layer stack (bottom first), unpacking layers
// in parallel: they are independent of each other.
func (s *Store) SnapshotStack(ctx context.Context, layers []record.Layer) ([]string, error) {
	ids := make([]string, len(layers))
	errs := make(chan error, len(layers))
	for i, l := range layers {
		go func() {
			id, err := s.Snapshot(ctx, l.DiffID)
			ids[i] = id
			errs <- err
		}()
	}
	var first error
	for range layers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return ids, first
}
