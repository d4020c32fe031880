package registry

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
)

// Source says that a registry repository holds a compressed copy of a
// layer: docker's "v2 metadata". A push records one for every layer it
// sent or found; a pull may record the blobs it fetched (RememberSources).
// A later push of the same layer to another repository of that registry
// mounts the blob from there (cross-repository mount) instead of
// uploading it; a push of a layer kiln has no compressed copy of, but
// which the registry holds (pulled from it), refers to that blob without
// compressing anything.
type Source struct {
	Registry   string        `json:"registry"`   // host[:port] as in the reference
	Repository string        `json:"repository"` // path in that registry, e.g. team/app
	Digest     digest.Digest `json:"digest"`     // the compressed blob
	Size       int64         `json:"size"`
	MediaType  string        `json:"mediaType"`
	Time       time.Time     `json:"time"` // when it was last seen there
}

// The records are the content store's layer notes of kind
// content.NoteSources: one small JSON list per layer.

// maxSources bounds the records kept per layer (the newest win).
const maxSources = 16

// Sources returns what is known about where layer diffID is in registry
// (all registries when registry is ""), newest first.
func Sources(cs *content.Store, diffID digest.Digest, registry string) []Source {
	if diffID.Validate() != nil {
		return nil
	}
	b, err := cs.ReadNote(content.NoteSources, diffID)
	if err != nil {
		return nil
	}
	var all []Source
	if json.Unmarshal(b, &all) != nil {
		return nil
	}
	var out []Source
	for _, s := range all {
		if (registry == "" || s.Registry == registry) && s.Digest.Validate() == nil {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}

// RememberSources records that the given blobs of layer diffID are in
// these repositories. The records are hints: a failure to write them is
// not an error for the caller, and a lost update (two processes at once)
// only costs a mount later.
func RememberSources(cs *content.Store, diffID digest.Digest, srcs ...Source) error {
	if diffID.Validate() != nil || len(srcs) == 0 {
		return nil
	}
	all := Sources(cs, diffID, "")
	now := time.Now().UTC()
	for _, s := range srcs {
		if s.Time.IsZero() {
			s.Time = now
		}
		kept := all[:0]
		for _, o := range all {
			if o.Registry != s.Registry || o.Repository != s.Repository || o.Digest != s.Digest {
				kept = append(kept, o)
			}
		}
		all = append([]Source{s}, kept...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.After(all[j].Time) })
	if len(all) > maxSources {
		all = all[:maxSources]
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return cs.WriteNote(content.NoteSources, diffID, b)
}
