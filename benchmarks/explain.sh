#!/usr/bin/env bash
# benchmarks/explain.sh: what explaining every miss costs. Times the same
# builds with two kiln binaries — BASE (built from the commit before
# explain, default 8c5f4ad) and NEW (this tree, run with --explain) —
# alternating A/B per repetition, and prints medians and NEW/BASE ratios:
#
#   cold   a fresh store: NFILES context files, COPY . /src, three RUNs
#   warm   the same build again: every step a cache hit
#   edit   one context file edited: COPY and the RUNs miss, with HISTORY
#          earlier builds on record (the journals explain reads)
#
#   bash benchmarks/explain.sh
#   REPS=9 NFILES=20000 HISTORY=20 BASE_REF=8c5f4ad bash benchmarks/explain.sh
#
# Needs root (runc, overlayfs). Results: a table on stdout and in
# benchmarks/results/explain-latest.txt.
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-5}
NFILES=${NFILES:-5000}
HISTORY=${HISTORY:-8}
BASE_REF=${BASE_REF:-8c5f4ad}
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }

WORK=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/kiln-explain-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log() { printf '[explain-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

NEW_REV=$(git -C "$REPO" rev-parse --short HEAD)
log "building NEW (this tree, $NEW_REV) and BASE ($BASE_REF)"
(cd "$REPO" && go build -o "$WORK/new" ./cmd/kiln) || exit 1
mkdir "$WORK/base-src" && git -C "$REPO" archive "$BASE_REF" | tar -x -C "$WORK/base-src" || exit 1
(cd "$WORK/base-src" && go build -o "$WORK/base" ./cmd/kiln) || exit 1

sh "$REPO/scripts/busybox-rootfs.sh" "$WORK/busybox.tar" >/dev/null || exit 1
CTX=$WORK/ctx
mkdir -p "$CTX/src"
for i in $(seq 1 "$NFILES"); do
	d=$CTX/src/d$((i % 50))
	[ -d "$d" ] || mkdir -p "$d"
	echo "file $i" >"$d/f$i.txt"
done
cat >"$CTX/Dockerfile" <<'EOF'
FROM busybox
COPY . /src
RUN ls -R /src | wc -l
RUN echo two > /two
RUN echo three > /three
EOF

# run BIN ROOT ARGS...: seconds of one kiln build
run() {
	local bin=$1 root=$2
	shift 2
	local t0 t1
	t0=$(date +%s.%N)
	"$bin" --root "$root" build --progress plain "$@" "$CTX" >"$WORK/last.log" 2>&1 || {
		cat "$WORK/last.log" >&2
		exit 1
	}
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A T
for rep in $(seq 1 "$REPS"); do
	sides="base new"
	[ $((rep % 2)) = 0 ] && sides="new base" # ABBA: neither side always goes first
	for side in $sides; do
		bin=$WORK/$side
		extra=()
		[ $side = new ] && extra=(--explain)
		root=$WORK/root-$side
		rm -rf "$root"
		"$bin" --root "$root" import "$WORK/busybox.tar" busybox:latest >/dev/null
		sync # the removal's writeback is not the next build's cost
		T[cold-$side]+="$(run "$bin" "$root" "${extra[@]}") "
		T[warm-$side]+="$(run "$bin" "$root" "${extra[@]}") "
		for h in $(seq 1 "$HISTORY"); do
			echo "$h" >"$CTX/src/history.txt"
			run "$bin" "$root" "${extra[@]}" >/dev/null
		done
		echo "edit $rep $side" >"$CTX/src/d1/f1.txt" # never a content built before
		T[edit-$side]+="$(run "$bin" "$root" "${extra[@]}") "
		rm -f "$CTX/src/history.txt"
	done
	log "repetition $rep/$REPS done"
done

OUT=$REPO/benchmarks/results/explain-latest.txt
{
	echo "# benchmarks/explain.sh $(date -u +%FT%TZ): NEW=$NEW_REV (--explain) vs BASE=$BASE_REF"
	echo "# NFILES=$NFILES HISTORY=$HISTORY REPS=$REPS nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
	printf '%-8s %10s %10s %8s\n' workload base_s new_s ratio
	for w in cold warm edit; do
		b=$(echo "${T[$w-base]}" | tr ' ' '\n' | grep . | median)
		n=$(echo "${T[$w-new]}" | tr ' ' '\n' | grep . | median)
		printf '%-8s %10.3f %10.3f %8.3f\n' "$w" "$b" "$n" "$(echo "$n / $b" | bc -l)"
	done
	for w in cold warm edit; do
		echo "# raw $w base: ${T[$w-base]}"
		echo "# raw $w new:  ${T[$w-new]}"
	done
} | tee "$OUT"
