package buildcache

import (
	"context"
	"errors"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter/compression"
)

// ErrRegistryUnsupported: registry caches need kiln's registry client.
var ErrRegistryUnsupported = errors.New("registry build caches are not supported yet: use type=local")

// ExportRegistry pushes the cache artifact to ref.
func ExportRegistry(ctx context.Context, store *cache.Store, records []*record.Record, ref string, comp compression.Options) error {
	return ErrRegistryUnsupported
}

// ImportRegistry reads the cache artifact at ref.
func ImportRegistry(ctx context.Context, store *cache.Store, ref string) (*Source, error) {
	return nil, ErrRegistryUnsupported
}
