#!/usr/bin/env bash
# benchmarks/layers.sh: how long kiln layers and kiln diff take on a big
# image, against reading every layer tar's headers once (GNU tar -tv, which
# seeks over contents in a regular file, as kiln does). dive, the tool
# people use for "why is my image big", is not in Debian bookworm.
#
#   bash benchmarks/layers.sh                  # ~500 MB in 20 layers, REPS=5
#   BIG_MB=50 REPS=3 bash benchmarks/layers.sh # a quick run
#
# Environment:
#   LAYERS=19       RUN layers on top of busybox (the image has LAYERS+1)
#   BIG_MB=500      total size of the RUN layers, in MB (split evenly)
#   SMALL=500       small files per RUN layer (entries, so headers matter)
#   REPS=5          timed repetitions (median reported)
#   KILN=path       kiln binary (default ./bin/kiln, built if missing)
#   BENCH_TMPDIR=/tmp  where the private store goes (needs ~2×BIG_MB free)
#   KEEP=1          keep the work directory
#
# Untimed setup: a private --root, busybox imported, two images built from
# Dockerfiles that differ in their last RUN only (every third layer deletes
# the big file of the layer before it, so there are wasted bytes to find).
# Page cache warm for every side (one untimed run each first).
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAYERS=${LAYERS:-19}
BIG_MB=${BIG_MB:-500}
SMALL=${SMALL:-500}
REPS=${REPS:-5}
KILN=${KILN:-$REPO/bin/kiln}

log() { printf '[layers-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root (runc, overlayfs)"
if [ ! -x "$KILN" ]; then
	log "building $KILN"
	(cd "$REPO" && go build -o "$KILN" ./cmd/kiln) || die "go build failed"
fi
WORK=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/kiln-layers-bench-XXXXXX")
cleanup() { [ "${KEEP:-0}" = 1 ] && log "kept $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT
ROOT=$WORK/root
k() { "$KILN" --root "$ROOT" "$@"; }

sh "$REPO/scripts/busybox-rootfs.sh" "$WORK/busybox.tar" >/dev/null 2>&1 || die "scripts/busybox-rootfs.sh failed"
k import "$WORK/busybox.tar" busybox:latest >/dev/null || die "import failed"

# dockerfile LAST: LAYERS RUNs, each writing its share of BIG_MB in one file
# and SMALL small files; LAST is the last RUN's small-file content.
per=$((BIG_MB / LAYERS))
dockerfile() {
	local i
	echo "FROM busybox"
	for ((i = 1; i <= LAYERS; i++)); do
		local rm=""
		[ $((i % 3)) = 0 ] && rm=" && rm /big$((i - 1))"
		local body=$i
		[ "$i" = "$LAYERS" ] && body=$1
		echo "RUN mkdir /d$i && dd if=/dev/zero of=/big$i bs=1M count=$per 2>/dev/null && for n in \$(seq $SMALL); do echo $body \$n > /d$i/f\$n; done$rm"
	done
}
for v in one two; do
	mkdir -p "$WORK/ctx-$v"
	dockerfile "$v" >"$WORK/ctx-$v/Dockerfile"
	log "building image $v (untimed)"
	k build --progress plain -t "bench-$v" "$WORK/ctx-$v" >"$WORK/build-$v.log" 2>&1 || die "build $v failed: $(tail -5 "$WORK/build-$v.log")"
done

mapfile -t BLOBS < <(k inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' bench-one | sed -n 's|^sha256:|'"$ROOT"'/content/blobs/sha256/|p')
[ "${#BLOBS[@]}" -gt 0 ] || die "no layers found"
size=$(du -cb "${BLOBS[@]}" | tail -1 | cut -f1)
entries=$(for b in "${BLOBS[@]}"; do tar -tf "$b"; done | wc -l)

# median SECONDS... : the middle value
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# bench NAME CMD...: REPS timed runs after one untimed, median in seconds
declare -A MED
bench() {
	local name=$1 r t0 t1 times=()
	shift
	"$@" >/dev/null 2>&1 || die "$name failed: $*"
	for ((r = 1; r <= REPS; r++)); do
		t0=$(date +%s.%N)
		"$@" >/dev/null 2>&1
		t1=$(date +%s.%N)
		times+=("$(echo "$t1 - $t0" | bc)")
	done
	MED[$name]=$(median "${times[@]}")
}
tar_all() { for b in "${BLOBS[@]}"; do tar -tvf "$b"; done; }
tar_both() { tar_all && tar_all; }

bench "tar -tv, every layer" tar_all
bench "kiln layers" k layers bench-one
bench "kiln layers --json" k layers --json bench-one
bench "tar -tv, both images" tar_both
bench "kiln diff" k diff bench-one bench-two

wasted=$(k layers --json bench-one | sed -n 's/^  "wasted_bytes": \([0-9]*\),/\1/p')
changes=$(k diff bench-one bench-two | wc -l)
printf '\nimage: %d layers, %d MB of layer tars, %d tar entries, %d MB wasted; diff: %d changed paths\n' \
	"${#BLOBS[@]}" $((size / 1000000)) "$entries" $((wasted / 1000000)) "$changes"
printf 'kiln %s, %d cores, load %s, median of %d\n\n' "$(git -C "$REPO" rev-parse --short HEAD)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$REPS"
printf '%-24s %10s %8s\n' "command" "seconds" "ratio"
row() { printf '%-24s %10.3f %8.2f\n' "$1" "${MED[$1]}" "$(echo "${MED[$1]} / ${MED[$2]}" | bc -l)"; }
row "tar -tv, every layer" "tar -tv, every layer"
row "kiln layers" "tar -tv, every layer"
row "kiln layers --json" "tar -tv, every layer"
row "tar -tv, both images" "tar -tv, both images"
row "kiln diff" "tar -tv, both images"
