// Package archive moves images between kiln's store and tarballs: Save
// writes one tar that is both an OCI image layout and a docker-save archive
// (manifest.json), Load reads either kind back in one streaming pass, and
// Import turns a root filesystem tar into a one-layer image, like
// `docker import`.
//
// The store keeps every layer as an uncompressed tar whose digest is its
// diffID, so Save streams layers as stored and Load decompresses gzip or
// zstd layers on the fly.
package archive

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// Files of an image tarball besides the blobs.
const (
	ociLayoutFile      = "oci-layout"
	indexFile          = "index.json"
	dockerManifestFile = "manifest.json"
	repositoriesFile   = "repositories"
)

// tagged parses a name into a tagged reference (adding ":latest" to a bare
// repository). Names pinned by digest only have no tag to save or load.
func tagged(name string) (reference.NamedTagged, error) {
	n, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("invalid reference format %q: %w", name, err)
	}
	t, ok := reference.TagNameOnly(n).(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("%q has no tag", name)
	}
	return t, nil
}

// looksLikeName tells a full image name in an OCI ref.name annotation
// ("app:1.0", "example.com/app") from a bare tag ("1.0", "latest").
func looksLikeName(s string) bool {
	return strings.ContainsAny(s, ":/@")
}
