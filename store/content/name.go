package content

import (
	"errors"
	"fmt"

	"github.com/distribution/reference"
)

// NormalizeName turns a user's image name into the full form the store
// keys tags by: "app" → "docker.io/library/app:latest".
func NormalizeName(s string) (string, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", fmt.Errorf("invalid reference format %q: %w", s, err)
	}
	return reference.TagNameOnly(n).String(), nil
}

// ErrDigestName is returned by NormalizeTag for a name that carries a
// digest: naming an image "app@sha256:…" would claim content it may not
// have, so docker refuses it and so does kiln.
var ErrDigestName = errors.New("a name to give an image cannot contain a digest")

// NormalizeTag is NormalizeName for a name kiln is about to give an image
// (tag, build -t, import, push destination): one with a digest is refused.
func NormalizeTag(s string) (string, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", fmt.Errorf("invalid reference format %q: %w", s, err)
	}
	if _, ok := n.(reference.Digested); ok {
		return "", fmt.Errorf("%q: %w", s, ErrDigestName)
	}
	return reference.TagNameOnly(n).String(), nil
}

// FamiliarName is how docker shows a full name: "docker.io/library/app:1"
// → "app:1".
func FamiliarName(s string) string {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return s
	}
	return reference.FamiliarString(n)
}

// SplitName splits a familiar name into repository and tag for listings.
func SplitName(full string) (repo, tag string) {
	n, err := reference.ParseNormalizedNamed(full)
	if err != nil {
		return full, ""
	}
	repo = reference.FamiliarName(n)
	if t, ok := n.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return repo, tag
}
