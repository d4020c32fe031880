# Container workloads for benchmarks/run.sh (sourced; uses its helpers).
# 14: kiln run --rm busybox true        (docker run --rm busybox true)
# 15: kiln run -d busybox sleep 60, then kiln rm -f it   (the same in docker)
# Both sides use --network none (the private dockerd has no bridge) and
# the same busybox image; the store is made once, untimed.

NAME[14]="run --rm true"
NAME[15]="run -d + rm -f"

# container_workload W "KILN SCRIPT" "DOCKER SCRIPT": each side's script is
# run by sh, with $K / $D the kiln / docker command.
container_workload() {
	local w=$1 kscript=$2 dscript=$3 r lg
	fresh_kiln || fail kiln "$w" "$WORK/logs/kiln-import.log" "kiln import failed"
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln "$w"; then
			lg=$WORK/logs/w$w-kiln-$r.log
			if timed "$lg" env K="$KILN --root $KROOT" sh -ec "$kscript"; then
				record kiln "$w"
				progress "$w" kiln "$r"
			else
				fail kiln "$w" "$lg" "kiln: $kscript exited non-zero"
			fi
		fi
		if ok docker "$w"; then
			lg=$WORK/logs/w$w-docker-$r.log
			if timed "$lg" env D="env DOCKER_HOST=unix://$SOCK DOCKER_CONFIG=$CLICONF $DOCKER" sh -ec "$dscript"; then
				record docker "$w"
				progress "$w" docker "$r"
			else
				fail docker "$w" "$lg" "docker: $dscript exited non-zero"
			fi
		fi
	done
}

w_run_rm() {
	container_workload 14 '$K run --rm --network none busybox true' '$D run --rm --network none busybox true'
}

w_run_detached() {
	container_workload 15 'id=$($K run -d --network none busybox sleep 60); $K rm -f "$id"' \
		'id=$($D run -d --network none busybox sleep 60); $D rm -f "$id"'
}
