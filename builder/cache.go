package builder

import (
	"context"
	"fmt"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/transport/buildcache"
	"github.com/kiln-build/kiln/transport/registry"
	digest "github.com/opencontainers/go-digest"
)

func cacheTag(spec CacheSpec) string {
	if t := spec.Attrs["tag"]; t != "" {
		return t
	}
	return "latest"
}

// importCache reads one --cache-from; a registry is reached as reg says.
func importCache(ctx context.Context, st *store.Store, spec CacheSpec, reg registry.Config) (*buildcache.Source, error) {
	switch spec.Type {
	case "local":
		src := spec.Attrs["src"]
		if src == "" {
			return nil, fmt.Errorf("type=local needs src=DIR")
		}
		s, _, err := buildcache.ImportLocal(ctx, st, src, cacheTag(spec))
		return s, err
	case "registry":
		return buildcache.ImportRegistry(ctx, st, spec.Attrs["ref"], reg)
	}
	return nil, fmt.Errorf("cache type %q is not supported (local, registry)", spec.Type)
}

// exportCache writes one --cache-to; a registry is reached as reg says.
func exportCache(ctx context.Context, st *store.Store, spec CacheSpec, records []*record.Record, reg registry.Config) error {
	comp, err := compression.Parse(spec.Attrs["compression"], spec.Attrs["compression-level"])
	if err != nil {
		return err
	}
	switch spec.Type {
	case "local":
		dest := spec.Attrs["dest"]
		if dest == "" {
			return fmt.Errorf("type=local needs dest=DIR")
		}
		return buildcache.ExportLocal(ctx, st, records, dest, cacheTag(spec), comp)
	case "registry":
		return buildcache.ExportRegistry(ctx, st, records, spec.Attrs["ref"], comp, reg)
	}
	return fmt.Errorf("cache type %q is not supported (local, registry)", spec.Type)
}

// records returns the cache records of this build's steps: with all, every
// step of every stage (mode=max); otherwise the steps of the target stage
// only (mode=min, BuildKit's default).
func (jr *journal) records(st *store.Store, target *solver.Vertex, all bool) []*record.Record {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	want := map[*solver.Vertex]bool{}
	if all {
		for v := range jr.steps {
			want[v] = true
		}
	} else {
		for v := target; v != nil; {
			want[v] = true
			if len(v.Inputs) == 0 {
				break
			}
			v = v.Inputs[0]
		}
	}
	seen := map[string]bool{}
	var out []*record.Record
	for v, s := range jr.steps {
		if !want[v] || v.Source || s.Key == "" || seen[s.Key] {
			continue
		}
		seen[s.Key] = true
		if r, err := st.Records.Get(digest.Digest(s.Key)); err == nil {
			out = append(out, r)
		}
	}
	return out
}
