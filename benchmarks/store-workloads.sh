# Store workloads for benchmarks/run.sh (sourced; uses its helpers).
# 11: kiln df on a store of MANY images   (docker system df on the same images)
# 12: kiln images on it                   (docker images)
# 13: the end-of-build GC of a store over its budget (kiln only: the time
#     the collection itself took, as the build reports it)
# kiln df and kiln images must stay interactive: well under a second.

MANY=${MANY:-200}
GC_N=${GC_N:-10}
GC_MB=${GC_MB:-20}
MROOT=$WORK/kiln/many
MANY_KILN="" MANY_DOCKER="" # ok / fail once set up

NAME[11]="df, $MANY images"
NAME[12]="images, $MANY images"
NAME[13]="end-of-build GC, ${GC_N}x${GC_MB} MB over"
KONLY[13]=1

# many_setup (untimed, once per side): MANY images, each FROM busybox plus
# one small RUN layer, built 4 at a time, so that each store holds MANY
# images, layers and cache records. kiln's go into their own store, which
# the other workloads' fresh_kiln leaves alone.
many_setup() {
	local c=$WORK/ctx/many i
	if [ ! -d "$c" ]; then
		for ((i = 0; i < MANY; i++)); do
			mkdir -p "$c/$i"
			printf 'FROM busybox\nRUN echo %d > /n\n' "$i" >"$c/$i/Dockerfile"
		done
	fi
	if [ -z "$MANY_KILN" ]; then
		log "building $MANY images with kiln (untimed)"
		MANY_KILN=fail
		rm -rf "$MROOT"
		mkdir -p "$MROOT"
		if SOURCE_DATE_EPOCH=0 "$KILN" --root "$MROOT" import "$BBTAR" busybox:latest >"$WORK/logs/many-kiln.log" 2>&1 &&
			seq 0 $((MANY - 1)) | xargs -P 4 -I{} "$KILN" --root "$MROOT" build --progress plain -t bench-many:{} "$c/{}" >>"$WORK/logs/many-kiln.log" 2>&1; then
			MANY_KILN=ok
		fi
	fi
	if [ -z "$MANY_DOCKER" ]; then
		log "building $MANY images with docker (untimed)"
		MANY_DOCKER=fail
		if seq 0 $((MANY - 1)) | xargs -P 4 -I{} env DOCKER_HOST="unix://$SOCK" DOCKER_BUILDKIT=1 DOCKER_CONFIG="$CLICONF" \
			"$DOCKER" build --network host --progress plain -t bench-many:{} "$c/{}" >"$WORK/logs/many-docker.log" 2>&1; then
			MANY_DOCKER=ok
		fi
	fi
}

# many_workload W "KILN ARGS" "DOCKER ARGS": one listing command, timed on
# the store of MANY images.
many_workload() {
	local w=$1 kargs=$2 dargs=$3 r lg
	many_setup
	[ "$MANY_KILN" = ok ] || fail kiln "$w" "$WORK/logs/many-kiln.log" "building $MANY images failed"
	[ "$MANY_DOCKER" = ok ] || fail docker "$w" "$WORK/logs/many-docker.log" "building $MANY images failed"
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln "$w"; then
			lg=$WORK/logs/w$w-kiln-$r.log
			# shellcheck disable=SC2086
			if timed "$lg" "$KILN" --root "$MROOT" $kargs; then
				record kiln "$w"
				progress "$w" kiln "$r"
			else
				fail kiln "$w" "$lg" "kiln $kargs exited non-zero"
			fi
		fi
		if ok docker "$w"; then
			lg=$WORK/logs/w$w-docker-$r.log
			# shellcheck disable=SC2086
			if timed "$lg" env DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$CLICONF" "$DOCKER" $dargs; then
				record docker "$w"
				progress "$w" docker "$r"
			else
				fail docker "$w" "$lg" "docker $dargs exited non-zero"
			fi
		fi
	done
}

w_df_many() {
	many_workload 11 df "system df"
	grep -Eq "^Images +$((MANY + 1)) " "$WORK/logs/w11-kiln-1.log" 2>/dev/null ||
		log "WARNING: kiln df did not count $((MANY + 1)) images (see $WORK/logs/w11-kiln-1.log)"
}

w_images_many() { many_workload 12 images images; }

# w_gc: per rep (untimed) a fresh store gets GC_N untagged images of GC_MB
# random bytes each (twice that on disk: blob and snapshot) with GC off;
# then a small build with a budget of 2.5 x GC_MB ends over it and
# collects. The time recorded is the collection's own, from the build's
# report line ("... reclaimed X in 0.27s").
w_gc() {
	local w=13 r lg c=$WORK/ctx/gc i secs
	for ((i = 0; i < GC_N; i++)); do
		mkdir -p "$c/$i"
		printf 'FROM busybox\nRUN head -c %d /dev/urandom > /big-%d\n' $((GC_MB * 1000000)) "$i" >"$c/$i/Dockerfile"
	done
	mkdir -p "$c/final"
	printf 'FROM busybox\nRUN echo gc > /gc\n' >"$c/final/Dockerfile"
	for ((r = 1; r <= REPS; r++)); do
		ok kiln $w || break
		lg=$WORK/logs/w13-kiln-setup-$r.log
		if ! fresh_kiln; then
			fail kiln $w "$WORK/logs/kiln-import.log" "kiln import failed"
			break
		fi
		for ((i = 0; i < GC_N; i++)); do
			kiln build --progress plain --cache-max off "$c/$i" >>"$lg" 2>&1 || break
		done
		if [ "$i" -lt "$GC_N" ]; then
			fail kiln $w "$lg" "setup build $i failed"
			break
		fi
		lg=$WORK/logs/w13-kiln-$r.log
		if timed "$lg" "$KILN" --root "$KROOT" build --progress plain --cache-max "$((GC_MB * 5 / 2))MB" -t bench-gc "$c/final"; then
			secs=$(sed -n 's/^build cache .* over its budget .* in \([0-9.]*\)s$/\1/p' "$lg")
			if [ -n "$secs" ]; then
				ELAPSED=$secs
				record kiln $w
				progress $w kiln "$r"
			else
				fail kiln $w "$lg" "the build did not collect"
			fi
		else
			fail kiln $w "$lg" "kiln build exited non-zero"
		fi
	done
}
