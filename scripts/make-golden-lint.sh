#!/bin/sh
# make-golden-lint.sh: rebuild the lint goldens
# (frontend/dockerfile/testdata/lint/*/buildkit.txt) with BuildKit's own
# check. `make golden-lint` runs it.
#
# The reference is the standalone BuildKit at the version of kiln's
# github.com/moby/buildkit dependency (buildkitd + buildctl, built once per
# machine by scripts/buildkit-bin.sh), with busybox:latest from a private
# registry on 127.0.0.1. For each case, e2e/lint runs
#   buildctl build --frontend dockerfile.v0 --opt requestid=frontend.lint
# (the dockerfile frontend's lint subrequest, what `docker build --check`
# calls) and keeps what it prints, then checks kiln against it. There is no
# fallback: docker's BuildKit is older and its rules differ.
# Needs root, runc, docker-registry, skopeo (scripts/install-deps.sh).
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
bkbin=$(sh scripts/buildkit-bin.sh)
exec $GO test -count=1 -timeout 20m -v -run '^TestCheckMatchesBuildKit$' ./e2e/lint -args -golden "-buildkit-bin=$bkbin"
