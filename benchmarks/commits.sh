#!/usr/bin/env bash
# benchmarks/commits.sh: kiln against kiln at an earlier commit, interleaved
# (A B A B ...), on the workloads a change to the build path could slow down.
# It is how a claim like "explain costs nothing on a cold build" is checked.
#
#   bash benchmarks/commits.sh BASE_REV            # BASE_REV vs the working tree
#   REPS=9 bash benchmarks/commits.sh HEAD~3
#
# Environment:
#   REPS=7          repetitions per side and workload (median reported)
#   NFILES=2000     files in the context of the cold and edit workloads
#   NEW_FLAGS=...   extra flags for the new binary's builds (default --explain
#                   when the new binary knows it)
#   KEEP=1          keep the work directory
#
# Workloads (each build in its own store, busybox imported untimed):
#   cold      a 3-stage, 12-step build of a NFILES-file context, empty store
#   edit      the same after one context file changed (every step after the
#             COPY misses: the path explain works on)
#   noop      the same again, nothing changed (every step a cache hit)
# Results: a table on stdout and in benchmarks/results/commits-latest.txt;
# ratio = new / base (above 1: the new commit is slower).
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_REV=${1:?usage: commits.sh BASE_REV}
REPS=${REPS:-7}
NFILES=${NFILES:-2000}
log() { printf '[commits %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root (runc, overlayfs)"

WORK=$(mktemp -d /tmp/kiln-commits.XXXXXX) || die mktemp
cleanup() {
	local m
	for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/self/mounts | sort -r); do
		umount -l "$m" 2>/dev/null
	done
	git -C "$REPO" worktree remove --force "$WORK/base-src" 2>/dev/null
	[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

log "building kiln at $BASE_REV and at the working tree"
git -C "$REPO" worktree add -q --detach "$WORK/base-src" "$BASE_REV" || die "no such revision $BASE_REV"
(cd "$WORK/base-src" && go build -o "$WORK/kiln-base" ./cmd/kiln) || die "build base"
(cd "$REPO" && go build -o "$WORK/kiln-new" ./cmd/kiln) || die "build new"
NEW_FLAGS=${NEW_FLAGS-$("$WORK/kiln-new" build --help 2>&1 | grep -q -- '--explain' && echo --explain)}
bash "$REPO/scripts/busybox-rootfs.sh" "$WORK/busybox.tar" >/dev/null || die "busybox rootfs"

# the context: NFILES small files in 20 directories, a 3-stage Dockerfile
CTX=$WORK/ctx
mkdir -p "$CTX/src"
for ((i = 0; i < NFILES; i++)); do
	d=$CTX/src/d$((i % 20))
	[ -d "$d" ] || mkdir -p "$d"
	printf 'file %d\n' "$i" >"$d/f$i.txt"
done
cat >"$CTX/Dockerfile" <<'EOF'
FROM busybox AS deps
ARG VERSION=1
WORKDIR /deps
RUN echo "deps $VERSION" > list && sleep 0.1
RUN mkdir -p lib && for i in 1 2 3 4 5; do echo $i > lib/$i; done

FROM busybox AS build
WORKDIR /src
COPY src/ ./
RUN find . -type f | wc -l > count
RUN cat count && ls > listing
COPY --from=deps /deps/lib /src/lib

FROM busybox
COPY --from=build /src/count /src/listing /app/
COPY --from=build /src/lib /app/lib
RUN ls -l /app > /app/manifest
ENV APP=/app
CMD ["cat", "/app/manifest"]
EOF

now() { date +%s.%N; }
# one SIDE WORKLOAD: a fresh store, the untimed preparation, the timed build
one() {
	local side=$1 w=$2 bin flags root t0 t1
	bin=$WORK/kiln-$side root=$WORK/root-$side
	flags=""
	[ "$side" = new ] && flags=$NEW_FLAGS
	rm -rf "$root"
	mkdir -p "$root"
	SOURCE_DATE_EPOCH=0 "$bin" --root "$root" import "$WORK/busybox.tar" busybox:latest >/dev/null 2>&1 || die "$side: import"
	printf 'file 0\n' >"$CTX/src/d0/f0.txt"
	if [ "$w" != cold ]; then
		"$bin" --root "$root" build --progress plain -t app "$CTX" >"$WORK/prep.log" 2>&1 || die "$side: prepare $w: $(tail -5 "$WORK/prep.log")"
		[ "$w" = edit ] && printf 'file 0 edited\n' >"$CTX/src/d0/f0.txt"
	fi
	sync
	t0=$(now)
	# shellcheck disable=SC2086
	"$bin" --root "$root" build --progress plain $flags -t app "$CTX" >"$WORK/$side-$w.log" 2>&1 || die "$side $w: $(tail -5 "$WORK/$side-$w.log")"
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
	for m in $(awk -v w="$root" '$2 ~ "^"w {print $2}' /proc/self/mounts | sort -r); do umount -l "$m"; done
	rm -rf "$root"
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

out=$REPO/benchmarks/results/commits-latest.txt
mkdir -p "$(dirname "$out")"
{
	echo "# kiln $(git -C "$REPO" describe --always --dirty) (new, flags: ${NEW_FLAGS:-none}) vs $BASE_REV = $(git -C "$REPO" rev-parse --short "$BASE_REV") (base)"
	echo "# $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), REPS=$REPS, NFILES=$NFILES"
	printf '%-10s %10s %10s %8s   %s\n' workload base_s new_s ratio "raw (base | new)"
} | tee "$out"
for w in cold edit noop; do
	b=() n=()
	for ((r = 0; r < REPS; r++)); do
		log "$w rep $((r + 1))/$REPS"
		b+=("$(one base "$w")")
		n+=("$(one new "$w")")
	done
	mb=$(median "${b[@]}") mn=$(median "${n[@]}")
	printf '%-10s %10s %10s %8s   %s | %s\n' "$w" "$mb" "$mn" "$(awk -v a="$mb" -v b="$mn" 'BEGIN { printf "%.3f", b / a }')" "${b[*]}" "${n[*]}" | tee -a "$out"
done
