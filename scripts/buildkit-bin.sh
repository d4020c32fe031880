#!/bin/sh
# buildkit-bin.sh: print the directory holding buildkitd and buildctl built
# from the github.com/moby/buildkit version that kiln's go.mod requires,
# building them first if this machine has not yet done so.
#
# The binaries are cached outside the repository, in
# ${KILN_BUILDKIT_CACHE:-/var/cache/kiln-buildkit}/VERSION/bin, so a machine
# (a CI runner) builds them once. `go install` of BuildKit's commands is
# refused (its go.mod has exclude directives), so the module is downloaded
# with `go mod download`, copied to VERSION/src, made writable and built
# there with GOFLAGS=-mod=mod. Takes a minute or two the first time; needs
# the Go module proxy (or a module cache that already has the dependencies).
#
# Output: one line, the bin directory. Messages go to stderr. Exit 1 when
# the build is impossible (the caller then falls back to docker's BuildKit).
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
version=$($GO list -m -f '{{.Version}}' github.com/moby/buildkit)
cache=${KILN_BUILDKIT_CACHE:-/var/cache/kiln-buildkit}/$version
bin=$cache/bin

if [ -x "$bin/buildkitd" ] && [ -x "$bin/buildctl" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
# One builder per machine at a time.
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi
if [ -x "$bin/buildkitd" ] && [ -x "$bin/buildctl" ]; then
	echo "$bin"
	exit 0
fi

echo "buildkit-bin: building buildkitd and buildctl $version in $cache (once per machine)" >&2
json=$($GO mod download -json "github.com/moby/buildkit@$version" 2>&1) || true
dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
	echo "buildkit-bin: go mod download github.com/moby/buildkit@$version gave no directory:" >&2
	printf '%s\n' "$json" >&2
	exit 1
fi
rm -rf "$cache/src" "$cache/bin.tmp"
cp -R "$dir" "$cache/src"
chmod -R u+w "$cache/src"
mkdir -p "$cache/bin.tmp"
(cd "$cache/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off $GO build -ldflags "-X github.com/moby/buildkit/version.Version=$version" -o ../bin.tmp/ ./cmd/buildkitd ./cmd/buildctl) >&2
rm -rf "$bin"
mv "$cache/bin.tmp" "$bin"
echo "buildkit-bin: built $("$bin/buildctl" --version)" >&2
echo "$bin"
