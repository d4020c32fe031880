#!/usr/bin/env bash
# benchmarks/run.sh: kiln vs docker's BuildKit on the same workloads, in one run.
#
#   make bench                      # = deps + kiln + bash benchmarks/run.sh
#   QUICK=1 REPS=1 bash benchmarks/run.sh
#
# Environment:
#   REPS=3          timed repetitions per workload and side (median reported)
#   QUICK=1         small sizes (2,000-file context, 50 MB layer) for a sanity run
#   WORKLOADS="1 2 3 4 5 6"   which workloads to run (see benchmarks/README.md)
#   CPU_LOOP=1500000          iterations of the busybox sh loop in each CPU stage
#   NFILES=, BIG_MB=          override the context size / layer size
#   KILN=path       kiln binary (default: ./bin/kiln, built with `make kiln` if missing)
#   BENCH_TMPDIR=/tmp         where the work directory goes (needs ~4 GB free)
#   BENCH_PRIVATE_CONTAINERD=1  always run dockerd with its own containerd
#   KEEP=1          keep the work directory (logs) instead of deleting it
#
# Everything lives in a fresh temp directory: a private kiln --root, a private
# dockerd (own data root, exec root /tmp/kb-XXXXXX, socket, CLI config, and its
# own containerd when a system containerd is running). On exit the script
# stops exactly the daemons it started, kills anything left that names its
# directories, unmounts whatever is still mounted below them and removes them.
# Results: a table on stdout and in benchmarks/results/latest.txt.
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-3}
QUICK=${QUICK:-0}
WORKLOADS=${WORKLOADS:-"1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"}
CPU_LOOP=${CPU_LOOP:-1500000}
if [ "$QUICK" = 1 ]; then
	NFILES=${NFILES:-2000}
	BIG_MB=${BIG_MB:-50}
else
	NFILES=${NFILES:-20000}
	BIG_MB=${BIG_MB:-500}
fi
DOCKER=/usr/bin/docker # never /usr/local/bin/docker (mismatched client)
DOCKERD=/usr/sbin/dockerd
TIME=/usr/bin/time
RESULTS_DIR=$REPO/benchmarks/results

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

case $REPS in '' | *[!0-9]* | 0) die "REPS must be a positive integer (got '$REPS')" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (runc, overlayfs, dockerd)"

# --- tools -------------------------------------------------------------------
if [ ! -x "$TIME" ]; then
	log "installing GNU time ($TIME missing)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >&2 ||
		die "could not install the 'time' package"
fi
"$TIME" -f %M -o /dev/null true || die "$TIME -f %M does not work"
for b in "$DOCKER" "$DOCKERD" /bin/busybox; do
	[ -x "$b" ] || die "$b not found (bash scripts/install-deps.sh)"
done
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || die "runc not found"
if [ -z "${KILN:-}" ]; then
	KILN=$REPO/bin/kiln
	if [ ! -x "$KILN" ]; then
		log "building kiln (make kiln)"
		make -C "$REPO" kiln >&2 || die "make kiln failed"
	fi
fi
[ -x "$KILN" ] || die "kiln binary $KILN not found"

# No DOCKER_* from the caller's environment; the client talks only to our daemon.
for v in $(compgen -e | grep '^DOCKER_' || true); do unset "$v"; done

# --- work directory and cleanup ---------------------------------------------
TMPBASE=${BENCH_TMPDIR:-/tmp}
WORK=$(mktemp -d "$TMPBASE/kiln-bench.XXXXXX") || die "mktemp failed"
EXECROOT="" # /tmp/kb-XXXXXX, set when dockerd is started
DOCKERD_PID=""
CTRD_PID=""
CLEANED=0

# procs_naming ROOT...: pids (with descendants) whose command line names a
# path at or below one of ROOTs. Never this shell.
procs_naming() {
	# roots via the environment: on awk's command line they would match awk.
	ps -e -o pid=,ppid=,args= 2>/dev/null | BENCH_ROOTS="$*" awk -v self="$$" '
	BEGIN { n = split(ENVIRON["BENCH_ROOTS"], r, " ") }
	{
		pid = $1; ppid = $2; parent[pid] = ppid
		$1 = ""; $2 = ""; args = $0
		for (i = 1; i <= n; i++) if (r[i] != "" && index(args, r[i]) > 0) { hit[pid] = 1; break }
	}
	END {
		# add descendants, a few rounds are plenty
		for (round = 0; round < 8; round++)
			for (p in parent) if (!(p in hit) && (parent[p] in hit)) hit[p] = 1
		for (p in hit) if (p + 0 != self + 0 && p + 0 > 1) print p
	}'
}

# mounts_under ROOT...: mount points at or below ROOTs, in mountinfo order.
mounts_under() {
	awk -v roots="$*" '
	BEGIN { n = split(roots, r, " ") }
	{
		mp = $5; gsub(/\\040/, " ", mp)
		for (i = 1; i <= n; i++) if (r[i] != "" && (mp == r[i] || index(mp, r[i] "/") == 1)) { print mp; break }
	}' /proc/self/mountinfo
}

# unmount_under ROOT...: unmount everything below ROOTs, newest first (lazy as
# a last resort). Prints what was left over, if anything.
unmount_under() {
	local round mps i
	for round in 1 2 3 4 5; do
		mapfile -t mps < <(mounts_under "$@")
		[ ${#mps[@]} -eq 0 ] && return 0
		[ "$round" = 1 ] && log "unmounting ${#mps[@]} leftover mount(s) under $*"
		for ((i = ${#mps[@]} - 1; i >= 0; i--)); do
			umount "${mps[i]}" 2>/dev/null || umount -l "${mps[i]}" 2>/dev/null || true
		done
	done
	mapfile -t mps < <(mounts_under "$@")
	if [ ${#mps[@]} -gt 0 ]; then
		log "WARNING: mounts left: ${mps[*]}"
		return 1
	fi
}

# pid_alive PID: exists and is not a zombie.
pid_alive() {
	local st
	st=$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# stop_pid PID NAME SECONDS: SIGTERM, wait, then SIGKILL its process group and it.
stop_pid() {
	local pid=$1 name=$2 secs=$3 i
	[ -n "$pid" ] || return 0
	if pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < secs * 10; i++)); do
			pid_alive "$pid" || break
			sleep 0.1
		done
		if pid_alive "$pid"; then
			log "WARNING: $name (pid $pid) ignored SIGTERM for ${secs}s; killing"
			kill -KILL -- "-$pid" 2>/dev/null || true
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
		fi
	fi
	wait "$pid" 2>/dev/null || true
}

stop_docker() {
	local roots="$WORK/docker $EXECROOT" before left i
	[ -n "$DOCKERD_PID$CTRD_PID" ] || return 0
	# Remember the daemons' process trees before they go.
	before=$( (procs_naming $roots; for p in $DOCKERD_PID $CTRD_PID; do echo "$p"; done) | sort -u)
	stop_pid "$DOCKERD_PID" dockerd 20
	stop_pid "$CTRD_PID" containerd 10
	DOCKERD_PID="" CTRD_PID=""
	# Leftovers (shims, containers, a containerd that outlived dockerd).
	for ((i = 0; i < 100; i++)); do
		left=$( (procs_naming $roots; for p in $before; do pid_alive "$p" && echo "$p"; done) | sort -u)
		[ -z "$left" ] && break
		[ "$i" = 0 ] && log "killing leftover processes of the private dockerd: $(echo $left)"
		kill -KILL $left 2>/dev/null || true
		sleep 0.1
	done
}

cleanup() {
	local rc=$?
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	trap '' INT TERM HUP
	stop_docker
	declare -F stop_registry >/dev/null && stop_registry
	# kiln runs in the foreground, but an interrupted build may leave runc
	# containers that name the kiln store.
	local left
	left=$(procs_naming "$WORK")
	if [ -n "$left" ]; then
		log "killing leftover processes under $WORK: $(echo $left)"
		kill -KILL $left 2>/dev/null || true
		sleep 0.2
	fi
	if unmount_under "$WORK" ${EXECROOT:+"$EXECROOT"}; then
		if [ "${KEEP:-0}" = 1 ]; then
			log "kept $WORK"
		else
			rm -rf "$WORK"
		fi
		[ -n "$EXECROOT" ] && rm -rf "$EXECROOT"
	else
		log "WARNING: not removing $WORK / $EXECROOT: mounts remain"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p "$WORK"/{ctx,logs,out,kiln} "$RESULTS_DIR"
log "work directory $WORK"

# --- private dockerd ----------------------------------------------------------
DDIR=$WORK/docker
DATAROOT=$DDIR/data
CLICONF=$DDIR/cli-config
dk() {
	DOCKER_HOST="unix://$SOCK" DOCKER_BUILDKIT=1 DOCKER_CONFIG="$CLICONF" "$DOCKER" "$@"
}
# dockerd/containerd get Debian's sbin and bin first (runc, containerd,
# docker-init). Started as `env ... setsid DAEMON &` (no shell function, so no
# subshell): $! is the daemon itself, in its own session and process group.
DAEMON_PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

start_docker() {
	local i args ctrdsock
	mkdir -p "$DATAROOT" "$CLICONF"
	chmod 700 "$DATAROOT" "$CLICONF"
	# An empty daemon.json so a host /etc/docker/daemon.json can't clash with our flags.
	echo '{}' >"$DDIR/daemon.json"
	EXECROOT=$(mktemp -d /tmp/kb-XXXXXX) || die "mktemp exec root"
	SOCK=$EXECROOT/docker.sock
	args=(--config-file "$DDIR/daemon.json" --data-root "$DATAROOT" --exec-root "$EXECROOT"
		--host "unix://$SOCK" --pidfile "$DDIR/pid"
		--iptables=false --ip-masq=false --bridge=none --userland-proxy=false)
	# dockerd 20.10 uses a running system containerd instead of starting its
	# own; give it a private one then.
	if [ -S /run/containerd/containerd.sock ] || [ "${BENCH_PRIVATE_CONTAINERD:-0}" = 1 ]; then
		local croot=$DATAROOT/containerd/daemon cstate=$EXECROOT/containerd/daemon
		ctrdsock=$EXECROOT/containerd/containerd.sock
		mkdir -p "$croot" "$cstate"
		chmod 711 "$croot" "$cstate"
		cat >"$EXECROOT/containerd/containerd.toml" <<EOF
version = 2
root = "$croot"
state = "$cstate"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$ctrdsock"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$DATAROOT/containerd/opt"
EOF
		env PATH="$DAEMON_PATH" setsid containerd --config "$EXECROOT/containerd/containerd.toml" \
			>>"$DDIR/containerd.log" 2>&1 </dev/null &
		CTRD_PID=$!
		for ((i = 0; i < 300; i++)); do
			[ -S "$ctrdsock" ] && break
			pid_alive "$CTRD_PID" || die "containerd exited during startup; see $DDIR/containerd.log: $(tail -5 "$DDIR/containerd.log")"
			sleep 0.1
		done
		[ -S "$ctrdsock" ] || die "containerd socket did not appear: $(tail -5 "$DDIR/containerd.log")"
		args+=(--containerd "$ctrdsock")
		log "private containerd (pid $CTRD_PID) at $ctrdsock"
	fi
	env PATH="$DAEMON_PATH" setsid "$DOCKERD" "${args[@]}" >>"$DDIR/dockerd.log" 2>&1 </dev/null &
	DOCKERD_PID=$!
	for ((i = 0; i < 600; i++)); do
		pid_alive "$DOCKERD_PID" || die "dockerd exited during startup: $(tail -20 "$DDIR/dockerd.log")"
		if [ -S "$SOCK" ] && dk version --format '{{.Server.Version}}' >/dev/null 2>&1; then
			break
		fi
		sleep 0.1
	done
	dk version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
		die "dockerd not ready after 60s: $(tail -20 "$DDIR/dockerd.log")"
	if [ -s "$DDIR/pid" ] && [ "$(cat "$DDIR/pid")" != "$DOCKERD_PID" ]; then
		die "dockerd pidfile says $(cat "$DDIR/pid"), started $DOCKERD_PID"
	fi
	log "private dockerd $(dk version --format '{{.Server.Version}}') (pid $DOCKERD_PID) at $SOCK"
}

# --- measurement helpers -------------------------------------------------------
ELAPSED="" RSS_KB=""
# timed LOGFILE CMD...: runs CMD with output to LOGFILE; sets ELAPSED (s) and
# RSS_KB (peak RSS of the largest process in the tree, from GNU time).
timed() {
	local logf=$1 t0 t1 rc
	shift
	sync
	t0=$(date +%s.%N)
	"$TIME" -f %M -o "$WORK/rss" "$@" >"$logf" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	RSS_KB=$(tail -n 1 "$WORK/rss" 2>/dev/null)
	case $RSS_KB in '' | *[!0-9]*) RSS_KB=0 ;; esac
	return $rc
}

KROOT=$WORK/kiln/root
BBTAR=$WORK/busybox-rootfs.tar
kiln() { "$KILN" --root "$KROOT" "$@"; }

# fresh_kiln: a new, empty kiln store with only busybox:latest imported (untimed).
fresh_kiln() {
	if [ -d "$KROOT" ]; then
		unmount_under "$KROOT" || true
		rm -rf "$KROOT"
	fi
	mkdir -p "$KROOT"
	# a fixed created time: every fresh store gets the same base image digest,
	# like machines pulling one base image from a registry
	SOURCE_DATE_EPOCH=0 kiln import "$BBTAR" busybox:latest >"$WORK/logs/kiln-import.log" 2>&1
}

kbuild() { # kbuild LOG TAG DIR [extra...]: timed kiln build
	local logf=$1 tag=$2 dir=$3
	shift 3
	timed "$logf" "$KILN" --root "$KROOT" build --progress plain "$@" -t "$tag" "$dir"
}
dbuild() { # dbuild LOG TAG DIR [extra...]: timed docker (BuildKit) build
	local logf=$1 tag=$2 dir=$3
	shift 3
	timed "$logf" env DOCKER_HOST="unix://$SOCK" DOCKER_BUILDKIT=1 DOCKER_CONFIG="$CLICONF" \
		"$DOCKER" build --network host --progress plain "$@" -t "$tag" "$dir"
}

# docker_cold TAG: no build cache, no previous result image (untimed).
docker_cold() {
	dk rmi -f "$1" >/dev/null 2>&1 || true
	dk builder prune -af >/dev/null 2>&1
}

# Results, per workload id.
declare -A NAME KT DT KRSS KFAIL DFAIL KONLY # KONLY[w]: kiln-only workload
# record SIDE W: after a timed run, append the time (and kiln's RSS).
record() {
	local side=$1 w=$2
	if [ "$side" = kiln ]; then
		KT[$w]="${KT[$w]:-} $ELAPSED"
		if [ "$RSS_KB" -gt "${KRSS[$w]:-0}" ]; then KRSS[$w]=$RSS_KB; fi
	else
		DT[$w]="${DT[$w]:-} $ELAPSED"
	fi
}
# fail SIDE W LOG MSG: mark a side of a workload failed and show why.
fail() {
	local side=$1 w=$2 logf=$3 msg=$4
	if [ "$side" = kiln ]; then KFAIL[$w]=$msg; else DFAIL[$w]=$msg; fi
	log "FAIL [${NAME[$w]}] $side: $msg (log $logf); last lines:"
	tail -n 15 "$logf" 2>/dev/null | sed 's/^/    | /' >&2
	FAILS+=("[${NAME[$w]}] $side: $msg"$'\n'"$(tail -n 15 "$logf" 2>/dev/null | sed 's/^/    | /')")
}
FAILS=()
ok() { # ok SIDE W: true if that side of workload W has not failed yet
	if [ "$1" = kiln ]; then [ -z "${KFAIL[$2]:-}" ]; else [ -z "${DFAIL[$2]:-}" ]; fi
}
progress() { # progress W SIDE REP
	local extra=""
	[ "$2" = kiln ] && extra=" (peak RSS $((RSS_KB / 1024)) MB)"
	log "[${NAME[$1]}] rep $3/$REPS $2 ${ELAPSED}s$extra"
}

median() { # median NUMBERS...
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit
		if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# cold_workload W CTXDIR TAG: fresh kiln store / empty BuildKit cache each rep.
cold_workload() {
	local w=$1 ctx=$2 tag=$3 r lg
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln "$w"; then
			lg=$WORK/logs/w$w-kiln-$r.log
			if ! fresh_kiln; then
				fail kiln "$w" "$WORK/logs/kiln-import.log" "kiln import failed"
			elif kbuild "$lg" "$tag" "$ctx"; then
				record kiln "$w"
				progress "$w" kiln "$r"
			else
				fail kiln "$w" "$lg" "kiln build exited non-zero"
			fi
		fi
		if ok docker "$w"; then
			lg=$WORK/logs/w$w-docker-$r.log
			docker_cold "$tag"
			if dbuild "$lg" "$tag" "$ctx"; then
				record docker "$w"
				progress "$w" docker "$r"
			else
				fail docker "$w" "$lg" "docker build exited non-zero"
			fi
		fi
	done
}

# --- contexts -------------------------------------------------------------------
make_contexts() {
	local c i j k n per
	# 1, 2: examples/hello, copied so concurrent edits in the repo can't interfere.
	cp -r "$REPO/examples/hello" "$WORK/ctx/hello"

	# 3: 50 consecutive RUN steps.
	c=$WORK/ctx/runs50
	mkdir -p "$c"
	{
		echo "FROM busybox"
		for ((i = 1; i <= 50; i++)); do echo "RUN echo $i > /f$i"; done
	} >"$c/Dockerfile"

	# 4: four independent CPU-busy stages, combined at the end.
	c=$WORK/ctx/cpu4
	mkdir -p "$c"
	{
		for ((i = 1; i <= 4; i++)); do
			echo "FROM busybox AS s$i"
			echo "RUN i=0; while [ \$i -lt $CPU_LOOP ]; do i=\$((i+1)); done; echo stage$i \$i > /out$i"
			echo
		done
		echo "FROM busybox"
		for ((i = 1; i <= 4; i++)); do echo "COPY --from=s$i /out$i /out$i"; done
	} >"$c/Dockerfile"

	# 5: NFILES small files in nested dirs (20 x 10 x NFILES/200).
	c=$WORK/ctx/files
	per=$((NFILES / 200))
	[ "$per" -ge 1 ] || per=1
	n=0
	local d f
	for ((i = 0; i < 20; i++)); do
		for ((j = 0; j < 10; j++)); do
			printf -v d '%s/src/d%02d/s%02d' "$c" "$i" "$j"
			mkdir -p "$d"
			for ((k = 0; k < per; k++)); do
				printf -v f '%s/f%05d.txt' "$d" "$n"
				printf 'file %d of the context\n' "$n" >"$f"
				n=$((n + 1))
			done
		done
	done
	NFILES_ACTUAL=$n
	printf 'FROM busybox\nCOPY src/ /src/\nRUN ls -R /src | wc -l\n' >"$c/Dockerfile"
	EARLY_FILE=$c/src/d00/s00/f00000.txt

	# 7: a "compiler" with a cache mount: each of 8 sources costs a CPU loop
	# unless its checksum is already in the cache mount; one source changes.
	c=$WORK/ctx/cachemount
	mkdir -p "$c/src"
	for ((i = 0; i < 8; i++)); do printf 'module %d\n' "$i" >"$(printf '%s/src/m%02d.c' "$c" "$i")"; done
	{
		echo 'FROM busybox'
		echo 'COPY src/ /src/'
		echo "RUN --mount=type=cache,target=/cache,id=bench-objs sh -c 'mkdir -p /out; for f in /src/*.c; do k=\$(md5sum \"\$f\" | cut -c1-32); if [ ! -f /cache/\$k ]; then i=0; while [ \$i -lt $((CPU_LOOP / 4)) ]; do i=\$((i+1)); done; cp \"\$f\" /cache/\$k; fi; cp /cache/\$k /out/\$(basename \"\$f\" .c).o; done'"
	} >"$c/Dockerfile"

	# 6: one incompressible layer.
	c=$WORK/ctx/big
	mkdir -p "$c"
	head -c "$((BIG_MB * 1024 * 1024))" /dev/urandom >"$c/big.bin"
	printf 'FROM busybox\nCOPY big.bin /\n' >"$c/Dockerfile"
}

# --- workloads ---------------------------------------------------------------------
NAME[1]="hello cold"
NAME[2]="hello no-op rebuild"
NAME[3]="50 RUN steps cold"
NAME[4]="4 parallel CPU stages cold"
NAME[5]="1-file change, ${NFILES}-file ctx"
NAME[6]="save ${BIG_MB} MB layer"
NAME[7]="1 of 8 sources, cache mount"
NAME[8]="push ${BIG_MB} MB image"

w_hello_cold() { cold_workload 1 "$WORK/ctx/hello" bench-hello:cold; }

w_hello_noop() {
	local w=2 r lg ctx=$WORK/ctx/hello tag=bench-hello:noop
	# Setup (untimed): one full build on each side.
	lg=$WORK/logs/w2-kiln-setup.log
	if ! fresh_kiln; then
		fail kiln $w "$WORK/logs/kiln-import.log" "kiln import failed"
	elif ! kbuild "$lg" "$tag" "$ctx"; then
		fail kiln $w "$lg" "setup build failed"
	fi
	lg=$WORK/logs/w2-docker-setup.log
	docker_cold "$tag"
	dbuild "$lg" "$tag" "$ctx" || fail docker $w "$lg" "setup build failed"
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln $w; then
			lg=$WORK/logs/w2-kiln-$r.log
			if kbuild "$lg" "$tag" "$ctx"; then
				record kiln $w
				progress $w kiln "$r"
				grep -q 'CACHED' "$lg" || log "WARNING: kiln no-op rebuild shows no CACHED step ($lg)"
			else
				fail kiln $w "$lg" "kiln build exited non-zero"
			fi
		fi
		if ok docker $w; then
			lg=$WORK/logs/w2-docker-$r.log
			if dbuild "$lg" "$tag" "$ctx"; then
				record docker $w
				progress $w docker "$r"
			else
				fail docker $w "$lg" "docker build exited non-zero"
			fi
		fi
	done
}

w_runs50() { cold_workload 3 "$WORK/ctx/runs50" bench-runs50:cold; }
w_cpu4() { cold_workload 4 "$WORK/ctx/cpu4" bench-cpu4:cold; }

w_files() { changed_rebuild_workload 5 "$WORK/ctx/files" bench-files:latest "$EARLY_FILE"; }
w_cachemount() { changed_rebuild_workload 7 "$WORK/ctx/cachemount" bench-cachemount:latest "$WORK/ctx/cachemount/src/m03.c"; }

# changed_rebuild_workload W CTX TAG FILE: one untimed build on each side,
# then per rep a new content for FILE (untimed) and a timed rebuild.
changed_rebuild_workload() {
	local w=$1 ctx=$2 tag=$3 changed=$4 r lg side
	# Setup (untimed): the first build of the whole context on each side.
	lg=$WORK/logs/w$w-kiln-setup.log
	if ! fresh_kiln; then
		fail kiln $w "$WORK/logs/kiln-import.log" "kiln import failed"
	elif ! kbuild "$lg" "$tag" "$ctx"; then
		fail kiln $w "$lg" "setup build failed"
	else
		log "[${NAME[$w]}] kiln setup build ${ELAPSED}s (untimed)"
	fi
	lg=$WORK/logs/w$w-docker-setup.log
	docker_cold "$tag"
	if dbuild "$lg" "$tag" "$ctx"; then
		log "[${NAME[$w]}] docker setup build ${ELAPSED}s (untimed)"
	else
		fail docker $w "$lg" "setup build failed"
	fi
	for ((r = 1; r <= REPS; r++)); do
		for side in kiln docker; do
			ok $side $w || continue
			# A content no build on either side has seen (untimed).
			printf 'changed for %s rep %d at %s\n' "$side" "$r" "$(date +%s.%N)" >"$changed"
			lg=$WORK/logs/w$w-$side-$r.log
			if [ $side = kiln ]; then
				if kbuild "$lg" "$tag" "$ctx"; then
					record kiln $w
					progress $w kiln "$r"
				else
					fail kiln $w "$lg" "kiln build exited non-zero"
				fi
			else
				if dbuild "$lg" "$tag" "$ctx"; then
					record docker $w
					progress $w docker "$r"
				else
					fail docker $w "$lg" "docker build exited non-zero"
				fi
			fi
		done
	done
}

w_save() {
	local w=6 r lg ctx=$WORK/ctx/big tag=bench-big:latest out
	lg=$WORK/logs/w6-kiln-setup.log
	if ! fresh_kiln; then
		fail kiln $w "$WORK/logs/kiln-import.log" "kiln import failed"
	elif ! kbuild "$lg" "$tag" "$ctx"; then
		fail kiln $w "$lg" "setup build failed"
	else
		log "[${NAME[$w]}] kiln setup build ${ELAPSED}s (untimed)"
	fi
	lg=$WORK/logs/w6-docker-setup.log
	docker_cold "$tag"
	if dbuild "$lg" "$tag" "$ctx"; then
		log "[${NAME[$w]}] docker setup build ${ELAPSED}s (untimed)"
	else
		fail docker $w "$lg" "setup build failed"
	fi
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln $w; then
			out=$WORK/out/kiln-save.tar
			rm -f "$out"
			lg=$WORK/logs/w6-kiln-$r.log
			if timed "$lg" "$KILN" --root "$KROOT" save -o "$out" "$tag" && [ -s "$out" ]; then
				record kiln $w
				progress $w kiln "$r"
				[ "$r" = 1 ] && log "  kiln save tar: $(du -m "$out" | cut -f1) MB"
			else
				fail kiln $w "$lg" "kiln save failed"
			fi
			rm -f "$out"
		fi
		if ok docker $w; then
			out=$WORK/out/docker-save.tar
			rm -f "$out"
			lg=$WORK/logs/w6-docker-$r.log
			if timed "$lg" env DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$CLICONF" "$DOCKER" save -o "$out" "$tag" && [ -s "$out" ]; then
				record docker $w
				progress $w docker "$r"
				[ "$r" = 1 ] && log "  docker save tar: $(du -m "$out" | cut -f1) MB"
			else
				fail docker $w "$lg" "docker save failed"
			fi
			rm -f "$out"
		fi
	done
}

# w_push: the image of workload 6 (busybox + a BIG_MB random layer), built
# untimed on each side, pushed to the private registry (start_registry, in
# registry-workloads.sh). Each rep pushes to a new repository, and before
# each rep (untimed) the registry loses every earlier push repository and
# their blobs (garbage-collect), so every push uploads everything. kiln's
# remembered compressed copies (and its notes of where blobs were pushed)
# are dropped too, so each kiln push compresses like docker's does.
w_push() {
	local w=8 r lg ctx=$WORK/ctx/big tag=bench-push:latest ref k f
	start_registry
	lg=$WORK/logs/w8-kiln-setup.log
	if ! fresh_kiln; then
		fail kiln $w "$WORK/logs/kiln-import.log" "kiln import failed"
	elif ! kbuild "$lg" "$tag" "$ctx"; then
		fail kiln $w "$lg" "setup build failed"
	fi
	lg=$WORK/logs/w8-docker-setup.log
	docker_cold "$tag"
	dbuild "$lg" "$tag" "$ctx" || fail docker $w "$lg" "setup build failed"
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln $w; then
			push_reset
			for f in "$KROOT"/content/compressed/*/*; do
				[ -f "$f" ] && k=$(cat "$f") && rm -f "$KROOT/content/blobs/sha256/${k#sha256:}"
			done
			rm -rf "$KROOT/content/compressed" "$KROOT/content/sources"
			lg=$WORK/logs/w8-kiln-$r.log
			ref=$REG_ADDR/bench/push-kiln-$r:latest
			if timed "$lg" "$KILN" --root "$KROOT" push "$tag" "$ref"; then
				record kiln $w
				progress $w kiln "$r"
			else
				fail kiln $w "$lg" "kiln push exited non-zero"
			fi
		fi
		if ok docker $w; then
			push_reset
			lg=$WORK/logs/w8-docker-$r.log
			ref=$REG_ADDR/bench/push-docker-$r:latest
			dk tag "$tag" "$ref"
			if timed "$lg" env DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$CLICONF" "$DOCKER" push "$ref"; then
				record docker $w
				progress $w docker "$r"
			else
				fail docker $w "$lg" "docker push exited non-zero"
			fi
			dk rmi "$ref" >/dev/null 2>&1
		fi
	done
	push_reset
}

# push_reset: the registry forgets workload 8's pushes (untimed).
push_reset() {
	local repos=$WORK/registry/data/docker/registry/v2/repositories
	rm -rf "$repos/bench/push-"*
	[ -d "$repos" ] || return 0 # nothing pushed yet (garbage-collect fails on an empty storage)
	docker-registry garbage-collect --delete-untagged "$WORK/registry/config.yml" >>"$WORK/logs/w8-gc.log" 2>&1 ||
		log "WARNING: registry garbage-collect failed (see $WORK/logs/w8-gc.log)"
}

# --- main ------------------------------------------------------------------------------
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
bash "$REPO/scripts/busybox-rootfs.sh" "$BBTAR" || die "busybox-rootfs.sh failed"
log "generating contexts (NFILES=$NFILES, BIG_MB=$BIG_MB, CPU_LOOP=$CPU_LOOP)"
make_contexts
start_docker
dk import "$BBTAR" busybox:latest >/dev/null || die "docker import failed"

# shellcheck source=benchmarks/registry-workloads.sh
. "$REPO/benchmarks/registry-workloads.sh"
# shellcheck source=benchmarks/store-workloads.sh
. "$REPO/benchmarks/store-workloads.sh"
# shellcheck source=benchmarks/container-workloads.sh
. "$REPO/benchmarks/container-workloads.sh"

# Warm-up (untimed): first BuildKit solve in a new daemon, binaries in page cache.
mkdir -p "$WORK/ctx/warm"
printf 'FROM busybox\nRUN echo warm > /warm\n' >"$WORK/ctx/warm/Dockerfile"
fresh_kiln || die "kiln import failed: $(tail -5 "$WORK/logs/kiln-import.log")"
kbuild "$WORK/logs/warm-kiln.log" bench-warm "$WORK/ctx/warm" || log "WARNING: kiln warm-up build failed (see $WORK/logs/warm-kiln.log)"
dbuild "$WORK/logs/warm-docker.log" bench-warm "$WORK/ctx/warm" || log "WARNING: docker warm-up build failed: $(tail -5 "$WORK/logs/warm-docker.log")"

for w in $WORKLOADS; do
	case $w in
	1) w_hello_cold ;;
	2) w_hello_noop ;;
	3) w_runs50 ;;
	4) w_cpu4 ;;
	5) w_files ;;
	6) w_save ;;
	7) w_cachemount ;;
	8) w_push ;;
	9) w_registry_cache ;;
	10) w_pull20 ;;
	11) w_df_many ;;
	12) w_images_many ;;
	13) w_gc ;;
	14) w_run_rm ;;
	15) w_run_detached ;;
	*) die "unknown workload '$w' (1-15)" ;;
	esac
done

# --- report ------------------------------------------------------------------------------
fmt_row() { printf '%-32s %8s %12s %7s %18s\n' "$@"; }
table() {
	fmt_row workload kiln_s buildkit_s ratio kiln_peak_rss_MB
	local w k d ratio rss
	for w in $WORKLOADS; do
		k=FAIL d=FAIL ratio=- rss=-
		if [ -z "${KFAIL[$w]:-}" ] && [ -n "${KT[$w]:-}" ]; then
			# shellcheck disable=SC2086
			k=$(median ${KT[$w]})
			rss=$(awk -v k="${KRSS[$w]:-0}" 'BEGIN { printf "%.1f", k / 1024 }')
		fi
		if [ -n "${KONLY[$w]:-}" ]; then
			d=-
		elif [ -z "${DFAIL[$w]:-}" ] && [ -n "${DT[$w]:-}" ]; then
			# shellcheck disable=SC2086
			d=$(median ${DT[$w]})
		fi
		if [ "$k" != FAIL ] && [ "$d" != FAIL ] && [ "$d" != - ]; then
			ratio=$(awk -v k="$k" -v d="$d" 'BEGIN { if (d > 0) printf "%.2f", k / d; else print "n/a" }')
		fi
		fmt_row "${NAME[$w]}" "$k" "$d" "$ratio" "$rss"
	done
}
raw() {
	local w
	echo "raw times (s), in run order:"
	for w in $WORKLOADS; do
		printf '  %-32s kiln:%s  buildkit:%s\n' "${NAME[$w]}" "${KT[$w]:- -}" "${DT[$w]:- -}"
	done
}
kiln_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | grep -v '^?? benchmarks/' || true)" ]; then
	kiln_rev="$kiln_rev+dirty"
fi
header() {
	echo "# kiln benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# kiln $kiln_rev ($KILN); docker $(dk version --format '{{.Server.Version}}' 2>/dev/null) BuildKit; runc $(runc --version 2>/dev/null | awk 'NR==1{print $3}')"
	echo "# $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), fs $(stat -f -c %T "$WORK")"
	echo "# load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews results)"
	echo "# REPS=$REPS QUICK=$QUICK NFILES=$NFILES_ACTUAL BIG_MB=$BIG_MB CPU_LOOP=$CPU_LOOP; median of REPS, kiln/docker alternating; wall seconds"
}
{
	header
	echo
	table
	echo
	raw
	if [ ${#FAILS[@]} -gt 0 ]; then
		echo
		echo "failures:"
		printf '%s\n' "${FAILS[@]}"
	fi
} >"$RESULTS_DIR/latest.txt"
echo
cat "$RESULTS_DIR/latest.txt"
log "done in $(($(date +%s) - START))s; results in $RESULTS_DIR/latest.txt"
