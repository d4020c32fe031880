#!/bin/sh
# install-deps.sh: make sure the system tools kiln's tests and demos use are
# installed (Debian bookworm packages). Idempotent and quiet when everything is
# already present; otherwise runs `apt-get update` once and installs the
# packages. Works as root on a full system or in a minimal debootstrap root;
# falls back to sudo when not root and sudo exists.
set -eu

PACKAGES="runc busybox-static docker.io containerd tini skopeo umoci docker-registry iproute2 ca-certificates tar gzip xz-utils bzip2"

# have_cmd NAME: true if NAME (a command name or an absolute path) is available.
have_cmd() {
	case "$1" in
	/*) [ -x "$1" ] ;;
	*) command -v "$1" >/dev/null 2>&1 ;;
	esac
}

missing=""
# dockerd lives in /usr/sbin on Debian; accept /usr/bin too.
if ! have_cmd /usr/sbin/dockerd && ! have_cmd /usr/bin/dockerd; then
	missing="$missing dockerd"
fi
for c in runc /bin/busybox /usr/bin/docker containerd containerd-shim-runc-v2 \
	skopeo umoci docker-registry ip tar gzip xz bzip2; do
	# runc, containerd and ip are in sbin on some layouts; PATH may lack sbin.
	if ! have_cmd "$c" && ! have_cmd "/usr/sbin/$c" && ! have_cmd "/sbin/$c"; then
		missing="$missing $c"
	fi
done
if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then
	missing="$missing ca-certificates"
fi

if [ -z "$missing" ]; then
	exit 0
fi

echo "install-deps: missing:$missing; installing:" $PACKAGES >&2

SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-deps: not root and no sudo; cannot install" >&2
		exit 1
	fi
fi

# Keep package maintainer scripts from starting system services (a system
# dockerd/containerd would only get in the way of the per-test daemons).
# Only installed if no policy-rc.d exists, and removed again afterwards.
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
	$SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 0755 $policy"
	added_policy=1
fi
cleanup() {
	if [ -n "$added_policy" ]; then
		$SUDO rm -f "$policy"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES

# Verify.
still=""
if ! have_cmd /usr/sbin/dockerd && ! have_cmd /usr/bin/dockerd; then
	still="$still dockerd"
fi
for c in /bin/busybox /usr/bin/docker; do
	have_cmd "$c" || still="$still $c"
done
if [ -n "$still" ]; then
	echo "install-deps: still missing after install:$still" >&2
	exit 1
fi
echo "install-deps: done" >&2
