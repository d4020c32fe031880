#!/bin/sh
# busybox-rootfs.sh OUT.tar: write a small, deterministic root filesystem tar
# built from Debian's busybox-static. It is the base image for kiln's tests
# and demos:
#
#   kiln import OUT.tar busybox:latest
#   /usr/bin/docker import OUT.tar busybox:latest
#
# Contents: /bin/busybox, a symlink /bin/APPLET -> busybox for every applet
# (including /bin/sh), the directories /dev /etc /home /proc /root (0700)
# /sys /tmp (1777) /usr/bin /var, /etc/passwd and /etc/group with root, app
# (1000:1000, home /home/app owned 1000:1000) and nobody/nogroup (65534).
#
# Output is byte-for-byte reproducible: entries are sorted by name, owners are
# numeric and fixed, every mtime is $SOURCE_DATE_EPOCH (default 0). Root is not
# needed. Environment: BUSYBOX overrides the busybox binary (/bin/busybox).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUT.tar" >&2
	exit 2
fi
out=$1
busybox=${BUSYBOX:-/bin/busybox}
epoch=${SOURCE_DATE_EPOCH:-0}

if [ ! -x "$busybox" ]; then
	echo "busybox-rootfs: $busybox not found (apt-get install busybox-static)" >&2
	exit 1
fi
if ! tar --version 2>/dev/null | grep -q 'GNU tar'; then
	echo "busybox-rootfs: GNU tar is required" >&2
	exit 1
fi

umask 022
tmp=$(mktemp -d "${TMPDIR:-/tmp}/busybox-rootfs.XXXXXX")
case $tmp in /*) ;; *) tmp=$(pwd)/$tmp ;; esac
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
root=$tmp/root
mkdir -p "$root"

for d in bin dev etc home home/app proc root sys tmp usr usr/bin var; do
	mkdir -p "$root/$d"
	chmod 0755 "$root/$d"
done
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
"$busybox" --list | LC_ALL=C sort -u | while IFS= read -r applet; do
	case "$applet" in
	"" | busybox | */*) continue ;;
	esac
	ln -s busybox "$root/bin/$applet"
done
if [ ! -L "$root/bin/sh" ]; then
	ln -s busybox "$root/bin/sh"
fi

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nogroup:x:65534:
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group"

# Three passes so the archive stays sorted by name while /home/app gets its
# own owner without needing root (or chown) here.
common="--format=gnu --numeric-owner --mtime=@$epoch --sort=name --no-acls --no-xattrs --no-selinux"
tarball=$tmp/out.tar
# shellcheck disable=SC2086
(cd "$root" && LC_ALL=C tar $common --owner=0 --group=0 -cf "$tarball" \
	bin dev etc && LC_ALL=C tar $common --owner=0 --group=0 --no-recursion -rf "$tarball" home)
# shellcheck disable=SC2086
(cd "$root" && LC_ALL=C tar $common --owner=1000 --group=1000 -rf "$tarball" home/app)
# shellcheck disable=SC2086
(cd "$root" && LC_ALL=C tar $common --owner=0 --group=0 -rf "$tarball" \
	proc root sys tmp usr var)

mv -f "$tarball" "$out"
