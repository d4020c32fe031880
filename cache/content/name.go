package content

import (
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
