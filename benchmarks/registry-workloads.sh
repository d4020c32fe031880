# Registry workloads for benchmarks/run.sh (sourced; uses its helpers).
#  9: second machine builds from a registry build cache
# 10: pull + unpack of a 20-layer image
# A private Debian docker-registry on a free 127.0.0.1 port serves both
# sides; it is started on first use and stopped by run.sh's cleanup.

REG_PID=""
REG_ADDR=""
start_registry() {
	[ -n "$REG_ADDR" ] && return 0
	local port dir=$WORK/registry
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$dir/data"
	cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CFG
	setsid docker-registry serve "$dir/config.yml" >"$WORK/logs/registry.log" 2>&1 &
	REG_PID=$!
	REG_ADDR=127.0.0.1:$port
	local i
	for ((i = 0; i < 100; i++)); do
		curl -fsS "http://$REG_ADDR/v2/" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "registry did not start: $(tail -5 "$WORK/logs/registry.log")"
}
stop_registry() {
	[ -n "$REG_PID" ] && stop_pid "$REG_PID" registry 10
	REG_PID=""
}

NAME[9]="2nd machine, registry cache"
NAME[10]="pull + unpack, 20 layers"

w_registry_cache() {
	local w=9 r lg ctx=$WORK/ctx/regcache kref dref
	start_registry
	kref=$REG_ADDR/bench/kiln-cache:latest
	dref=$REG_ADDR/bench/docker-inline:latest
	mkdir -p "$ctx/src"
	for ((r = 0; r < 20; r++)); do printf 'source %d\n' "$r" >"$ctx/src/s$r.txt"; done
	cat >"$ctx/Dockerfile" <<DF
FROM busybox AS build
COPY src/ /src/
RUN i=0; while [ \$i -lt $((CPU_LOOP / 2)) ]; do i=\$((i+1)); done; cat /src/* > /built
RUN head -c 20000000 /dev/urandom > /blob
FROM busybox
COPY --from=build /built /built
COPY --from=build /blob /blob
RUN i=0; while [ \$i -lt $((CPU_LOOP / 2)) ]; do i=\$((i+1)); done; wc -c /blob > /size
DF
	# First machine (untimed): build and export the cache.
	fresh_kiln || { fail kiln $w "$WORK/logs/kiln-import.log" "kiln import failed"; }
	if ok kiln $w && ! kbuild "$WORK/logs/w9-kiln-setup.log" bench-regcache "$ctx" --cache-to "type=registry,ref=$kref,mode=max"; then
		fail kiln $w "$WORK/logs/w9-kiln-setup.log" "cache export build failed"
	fi
	docker_cold "$dref"
	if ! dbuild "$WORK/logs/w9-docker-setup.log" "$dref" "$ctx" --build-arg BUILDKIT_INLINE_CACHE=1 ||
		! dk push "$dref" >>"$WORK/logs/w9-docker-setup.log" 2>&1; then
		fail docker $w "$WORK/logs/w9-docker-setup.log" "inline cache build/push failed"
	fi
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln $w; then
			lg=$WORK/logs/w9-kiln-$r.log
			fresh_kiln # the second machine: an empty store (busybox imported, untimed)
			if kbuild "$lg" bench-regcache "$ctx" --cache-from "type=registry,ref=$kref"; then
				record kiln $w
				progress $w kiln "$r"
			else
				fail kiln $w "$lg" "kiln build exited non-zero"
			fi
		fi
		if ok docker $w; then
			lg=$WORK/logs/w9-docker-$r.log
			docker_cold "$dref"
			docker_cold bench-regcache
			if dbuild "$lg" bench-regcache "$ctx" --cache-from "$dref"; then
				record docker $w
				progress $w docker "$r"
			else
				fail docker $w "$lg" "docker build exited non-zero"
			fi
		fi
	done
}

w_pull20() {
	local w=10 r lg ctx=$WORK/ctx/layers20 ref i
	start_registry
	ref=$REG_ADDR/bench/layers20:latest
	mkdir -p "$ctx"
	{
		echo "FROM busybox"
		for ((i = 1; i <= 20; i++)); do echo "RUN head -c $((BIG_MB * 1024 * 1024 / 50)) /dev/urandom > /layer$i"; done
	} >"$ctx/Dockerfile"
	# Setup (untimed): build once with kiln, push it with skopeo from a save.
	fresh_kiln
	if ! kbuild "$WORK/logs/w10-setup.log" bench-layers20 "$ctx" ||
		! kiln save -o "$WORK/out/layers20.tar" bench-layers20 >>"$WORK/logs/w10-setup.log" 2>&1 ||
		! skopeo copy --dest-tls-verify=false "oci-archive:$WORK/out/layers20.tar:latest" "docker://$ref" >>"$WORK/logs/w10-setup.log" 2>&1; then
		fail kiln $w "$WORK/logs/w10-setup.log" "setup failed"
		fail docker $w "$WORK/logs/w10-setup.log" "setup failed"
		return
	fi
	rm -f "$WORK/out/layers20.tar"
	for ((r = 1; r <= REPS; r++)); do
		if ok kiln $w; then
			lg=$WORK/logs/w10-kiln-$r.log
			fresh_kiln
			# pull, then unpack every layer (docker pull unpacks too)
			if timed "$lg" sh -c "'$KILN' --root '$KROOT' pull '$ref' && '$KILN' --root '$KROOT' run --rm '$ref' true"; then
				record kiln $w
				progress $w kiln "$r"
			else
				fail kiln $w "$lg" "kiln pull/run exited non-zero"
			fi
		fi
		if ok docker $w; then
			lg=$WORK/logs/w10-docker-$r.log
			dk rmi -f "$ref" >/dev/null 2>&1
			if timed "$lg" env DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$CLICONF" "$DOCKER" pull "$ref"; then
				record docker $w
				progress $w docker "$r"
			else
				fail docker $w "$lg" "docker pull exited non-zero"
			fi
		fi
	done
}
