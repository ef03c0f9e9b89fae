# SPDX-License-Identifier: MIT
# bench/lib/driver.bash: bench/run's housekeeping: progress lines, TAP
# bookkeeping, cleanup at exit (servers, the namespace, state segments, the
# scratch directory), compiling the bench programs and bench/stats, the
# echo server every latency bench talks to.  Servers are tracked and
# stopped with tests/lib/common.bash's bw_track_pid / stop_servers.

say() { echo "# [$(($(date +%s) - ${T_START:-$(date +%s)}))s] $*" >&2; }

cleanup() {
	stop_servers
	netns_down
	rm -f /dev/shm/bulwark-"$UIDN"-"$ST"-* 2>/dev/null
	rm -rf "$TMP"
}

# want SECTION: whether BENCH_ONLY (default: every section) names it.
want() { [ -z "$ONLY" ] || [[ " ${ONLY//,/ } " == *" $1 "* ]]; }

# TAP bookkeeping: ok/not ok/skip lines in --tap mode, progress otherwise.
TAPN=0 TAPFAIL=0
tap_ok() {
	TAPN=$((TAPN + 1))
	if [ "$TAP" = 1 ]; then echo "ok $TAPN - $*"; else say "ok: $*"; fi
}
tap_fail() {
	TAPN=$((TAPN + 1)) TAPFAIL=$((TAPFAIL + 1))
	if [ "$TAP" = 1 ]; then echo "not ok $TAPN - $*"; else say "FAILED: $*"; fi
}
tap_skip() {
	TAPN=$((TAPN + 1))
	if [ "$TAP" = 1 ]; then echo "ok $TAPN - $1 # skip $2"; else say "skipped: $1 ($2)"; fi
}

is_num() { [[ ${1:-} =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# st COMMAND ARGS...: bench/stats (every median, ratio, verdict and number
# format of the report).
st() { "$BIN/stats" "$@"; }

# wait_listen PORT [PID]: until something listens on 127.0.0.1:PORT (5 s);
# fails at once when PID is gone.
wait_listen() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ] && return 0
		if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
		sleep 0.05
	done
	return 1
}

# wait_port_file FILE: the port a server printed as the first line of FILE
# (it binds port 0 and prints what it got); waits up to 5 s, prints nothing
# and fails without one.
wait_port_file() {
	wait_until 5 _port_in "$1" || return 1
	head -n1 "$1"
}
_port_in() { is_num "$(head -n1 "$1" 2>/dev/null)"; }

# ---- helpers: compiled here, without the shim's objects --------------------
build_helpers() {
	local cf=(-std=c11 -D_GNU_SOURCE -I. -Wall -Wextra -Werror -Wshadow
		-Wstrict-prototypes -Wmissing-prototypes -O2 -g) p
	mkdir -p "$BIN" || return 1
	for p in write pingpong connect epoll echo_server alloc lockstep; do
		"$CC" "${cf[@]}" -o "$BIN/bench_$p" "bench/bench_$p.c" \
			-lpthread 2>>"$LOG" || return 1
	done
	"$CC" "${cf[@]}" -o "$BIN/stats" bench/stats.c -lm 2>>"$LOG" || return 1
	# bench_state links core/state.c and whatever it needs from the other
	# non-hook modules, through an archive so that only those are pulled
	# (not shim/init.c: no constructor; bench_state defines bw_g itself).
	mkdir -p "$BIN/obj" && rm -f "$BIN/obj"/*.o "$BIN/libbwstate.a"
	for p in policy/*.c shim/*.c core/*.c; do
		[ -f "$p" ] || continue
		case $p in shim/hook_* | shim/init.c) continue ;; esac
		"$CC" "${cf[@]}" -c -o "$BIN/obj/$(basename "${p%.c}").o" "$p" \
			2>>"$LOG" || return 1
	done
	ar rcs "$BIN/libbwstate.a" "$BIN/obj"/*.o 2>>"$LOG" || return 1
	"$CC" "${cf[@]}" -o "$BIN/bench_state" bench/bench_state.c \
		"$BIN/libbwstate.a" -ldl -lpthread 2>>"$LOG" || return 1
	# --no-as-needed: the weak mallctl reference alone would not keep
	# libjemalloc linked (Debian's gcc passes --as-needed).
	JEMALLOC=1
	"$CC" "${cf[@]}" -o "$BIN/bench_alloc_je" bench/bench_alloc.c \
		-Wl,--no-as-needed -ljemalloc 2>>"$LOG" || JEMALLOC=0
	return 0
}

# start_echo: the echo server of every latency bench; sets ECHO_PORT.
start_echo() {
	"${PIN[@]}" "$BIN/bench_echo_server" 127.0.0.1 0 >"$TMP/echo.port" 2>>"$LOG" &
	bw_track_pid $!
	ECHO_PORT=$(wait_port_file "$TMP/echo.port")
}
