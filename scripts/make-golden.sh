#!/bin/sh
# make-golden.sh: rebuild the goldens of the Dockerfile conformance suite
# (testdata/conformance/*/buildkit.json) with BuildKit. `make golden` runs it.
#
# The reference is the standalone BuildKit at the version of kiln's
# github.com/moby/buildkit dependency (buildkitd + buildctl, built once per
# machine by scripts/buildkit-bin.sh), pulling busybox:latest from a private
# docker-registry on 127.0.0.1. Docker's built-in BuildKit (Debian docker.io,
# older) builds every case too; where it disagrees the case gets a
# docker-differs.txt. If the standalone BuildKit cannot be built or started,
# docker's BuildKit makes the goldens instead (said loudly, and recorded in
# each golden's "oracle").
#
# Environment:
#   ORACLE=auto|standalone|docker|both   (default auto)
#   CASE=NAME                             only this case (a -run pattern)
#   KILN_BUILDKIT_CACHE=DIR               where buildkit-bin.sh caches (default /var/cache/kiln-buildkit)
# Needs root, runc, dockerd, docker-registry, skopeo (scripts/install-deps.sh).
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
ORACLE=${ORACLE:-auto}

bkbin=""
case $ORACLE in
docker) ;;
auto | standalone | both)
	if ! bkbin=$(sh scripts/buildkit-bin.sh); then
		if [ "$ORACLE" != auto ]; then
			echo "make-golden: cannot build the standalone BuildKit (ORACLE=$ORACLE)" >&2
			exit 1
		fi
		echo "make-golden: cannot build the standalone BuildKit; FALLING BACK to docker's BuildKit" >&2
		bkbin=""
	fi
	;;
*)
	echo "make-golden: ORACLE=$ORACLE: want auto, standalone, docker or both" >&2
	exit 2
	;;
esac

run="^TestConformance\$"
if [ -n "${CASE:-}" ]; then
	run="$run/^$CASE\$"
fi
set -- -golden "-oracle=$ORACLE"
if [ -n "$bkbin" ]; then
	set -- "$@" "-buildkit-bin=$bkbin"
fi
exec $GO test -count=1 -timeout 60m -v -run "$run" ./e2e/conformance -args "$@"
