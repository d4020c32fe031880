package main

import (
	"encoding/csv"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/kiln-build/kiln/builder"
)

// parseCacheSpecs reads --cache-from/--cache-to values like buildx:
// "type=local,src=DIR", "type=local,dest=DIR,mode=max",
// "type=registry,ref=REF"; a bare value is a registry ref.
func parseCacheSpecs(flag string, in []string) ([]builder.CacheSpec, error) {
	var out []builder.CacheSpec
	for _, v := range in {
		if !strings.Contains(v, "=") {
			// like buildx, a bare value is a registry reference
			if _, err := reference.ParseNormalizedNamed(v); err != nil {
				return nil, fmt.Errorf("%s %q: not an image reference (for a directory use type=local,%s=DIR)", flag, v, localAttr(flag))
			}
			out = append(out, builder.CacheSpec{Type: "registry", Attrs: map[string]string{"ref": v}})
			continue
		}
		fields, err := csv.NewReader(strings.NewReader(v)).Read()
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flag, v, err)
		}
		spec := builder.CacheSpec{Attrs: map[string]string{}}
		for _, f := range fields {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("%s %q: invalid value %q (expected KEY=VALUE)", flag, v, f)
			}
			if k = strings.ToLower(strings.TrimSpace(k)); k == "type" {
				spec.Type = val
			} else {
				spec.Attrs[k] = val
			}
		}
		switch spec.Type {
		case "local":
			if spec.Attrs[localAttr(flag)] == "" {
				return nil, fmt.Errorf("%s %q: type=local needs %s=DIR", flag, v, localAttr(flag))
			}
		case "registry":
			ref := spec.Attrs["ref"]
			if ref == "" {
				return nil, fmt.Errorf("%s %q: type=registry needs ref=REGISTRY/REPO:TAG", flag, v)
			}
			if _, err := reference.ParseNormalizedNamed(ref); err != nil {
				return nil, fmt.Errorf("%s %q: ref %q is not an image reference", flag, v, ref)
			}
		case "":
			return nil, fmt.Errorf("%s %q: type is required (local or registry)", flag, v)
		default:
			return nil, fmt.Errorf("%s %q: cache type %q is not supported (local, registry)", flag, v, spec.Type)
		}
		if m := spec.Attrs["mode"]; m != "" && m != "min" && m != "max" {
			return nil, fmt.Errorf("%s %q: mode must be min or max", flag, v)
		}
		out = append(out, spec)
	}
	return out, nil
}

// localAttr is the attribute naming a type=local cache directory: dest
// for --cache-to, src for --cache-from.
func localAttr(flag string) string {
	if flag == "--cache-to" {
		return "dest"
	}
	return "src"
}
