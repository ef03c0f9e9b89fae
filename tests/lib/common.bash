# SPDX-License-Identifier: MIT
# tests/lib/common.bash: helpers shared by the bats tests (load with
# `load ../lib/common`) and bench/run (free ports, waits, server pids).
# Paths to the build, fault servers started in the background and stopped
# at teardown, a private shared-state name per test, and readers for
# faultsrv's stats file.
#
# Never aims anything outside 127.0.0.0/8, ::1 or a namespace of the test's
# own (tests/lib/netns.bash).  Every server started here is tracked by pid and
# only those pids are ever signalled.
#
# Environment (all overridable before the tests run):
#   BW_ROOT   the repository (default: two levels above this file)
#   BW_BUILD  the build directory (default $BW_ROOT/build)
#   BW_LIB    the shim, $BW_BUILD/libbulwark.so
#   BW_CLI    the command, $BW_BUILD/bulwark
#   FAULTSRV  the fault server, $BW_BUILD/fixtures/faultsrv
#   BW_FAULTSRV_DURATION  safety-net lifetime of each fault server (s, 300)

BW_ROOT=${BW_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BW_BUILD=${BW_BUILD:-build}
# Absolute paths: a relative LD_PRELOAD entry is resolved against each
# process's own cwd and silently ignored where it does not exist.  A
# relative BW_BUILD is the Makefile's B, so relative to the repository;
# other relative paths are relative to the caller's cwd.
[[ $BW_BUILD == /* ]] || BW_BUILD=$BW_ROOT/$BW_BUILD
BW_LIB=${BW_LIB:-$BW_BUILD/libbulwark.so}
BW_CLI=${BW_CLI:-$BW_BUILD/bulwark}
FAULTSRV=${FAULTSRV:-$BW_BUILD/fixtures/faultsrv}
[[ $BW_LIB == /* ]] || BW_LIB=$PWD/$BW_LIB
[[ $BW_CLI == /* ]] || BW_CLI=$PWD/$BW_CLI
[[ $FAULTSRV == /* ]] || FAULTSRV=$PWD/$FAULTSRV
export BW_ROOT BW_BUILD BW_LIB BW_CLI FAULTSRV

# Pids of everything started with start_faultsrv / bw_track_pid.
BW_PIDS=()
BW_SERVER_N=0

# ---- setup / teardown ------------------------------------------------------

# Call from setup(): a private state segment name and a scratch directory.
# Exports BULWARK_STATE and BW_TMP.
bw_setup() {
	BW_TMP=${BATS_TEST_TMPDIR:-$(mktemp -d "${TMPDIR:-/tmp}/bwtest.XXXXXX")}
	export BW_TMP
	# Letters, digits, '.', '_', '-' only (BULWARK_STATE in bulwark(1));
	# unique per test run.
	BULWARK_STATE="bats-$$-${BATS_SUITE_TEST_NUMBER:-${BATS_TEST_NUMBER:-0}}"
	export BULWARK_STATE
	BW_PIDS=()
	BW_SERVER_N=0
}

# Call from teardown(): stops servers, drops the namespace (if netns.bash made
# one) and the state segment.
bw_teardown() {
	stop_servers
	if declare -F netns_down >/dev/null; then
		netns_down
	fi
	bw_state_remove
}

# Defaults; a test file that defines its own setup/teardown after loading
# this file should call bw_setup / bw_teardown from them.
setup() { bw_setup; }
teardown() { bw_teardown; }

# /dev/shm file of the test's state segment (bulwark(1) FILES).
bw_state_file() {
	echo "/dev/shm/bulwark-${UID}-${1:-$BULWARK_STATE}"
}

bw_state_remove() {
	[[ -n ${BULWARK_STATE:-} ]] || return 0
	rm -f "$(bw_state_file "$BULWARK_STATE")"
}

# ---- requirements ----------------------------------------------------------

# skip the test unless the shim has been built.
require_shim() {
	[[ -f $BW_LIB ]] || skip "shim not built: $BW_LIB"
}

require_cli() {
	[[ -x $BW_CLI ]] || skip "command not built: $BW_CLI"
}

require_faultsrv() {
	[[ -x $FAULTSRV ]] || skip "fault server not built: $FAULTSRV"
}

# require_cmd NAME...: skip unless every command exists.
require_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c not installed"
	done
}

# ---- running under the shim ------------------------------------------------

# run_shim CMD ARGS...: CMD with the shim preloaded (ahead of any LD_PRELOAD
# already set).  Use as `run run_shim curl ...`.
run_shim() {
	LD_PRELOAD="$BW_LIB${LD_PRELOAD:+:$LD_PRELOAD}" "$@"
}

# start_bg [--shim] CMD ARGS...: start CMD in the background (under the shim
# with --shim), stdout and stderr to $BW_TMP/bg.N.out/.err, stopped at
# teardown.  Exports BG_PID (CMD's own pid, not a subshell's).
start_bg() {
	local preload=${LD_PRELOAD:-}
	if [[ $1 == --shim ]]; then
		preload="$BW_LIB${LD_PRELOAD:+:$LD_PRELOAD}"
		shift
	fi
	local n=$((++BW_SERVER_N))
	local base="${BW_TMP:-/tmp}/bg.$n"
	LD_PRELOAD=$preload "$@" >"$base.out" 2>"$base.err" 3>&- &
	BG_PID=$!
	bw_track_pid "$BG_PID"
	export BG_PID
}

# ---- time and waiting ------------------------------------------------------

now_ms() {
	local t=${EPOCHREALTIME/./}
	echo $((t / 1000))
}

# wait_until TIMEOUT_S CMD ARGS...: retry CMD every 50 ms until it succeeds;
# returns 1 when TIMEOUT_S pass first.
wait_until() {
	local timeout_s=$1
	shift
	local deadline=$(($(now_ms) + timeout_s * 1000))
	until "$@"; do
		(($(now_ms) < deadline)) || return 1
		sleep 0.05
	done
}

# ---- ports -----------------------------------------------------------------

# free_port [ADDR]: a TCP port nobody listens on at ADDR (127.0.0.1).  Taken
# from below the kernel's ephemeral range, so client sockets do not grab it
# meanwhile; there is still a small race, as with any such helper.
free_port() {
	python3 - "${1:-127.0.0.1}" <<'EOF'
import random, socket, sys
addr = sys.argv[1]
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
lo = 20000
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo = min(lo, int(f.read().split()[0]) - 2000)
except OSError:
    pass
lo = max(lo, 10000)
for _ in range(100):
    port = random.randrange(lo, lo + 10000)
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.bind((addr, port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
s = socket.socket(fam, socket.SOCK_STREAM)
s.bind((addr, 0))
print(s.getsockname()[1])
EOF
}

# ---- fault servers ---------------------------------------------------------

# bw_track_pid PID: stop PID at teardown (stop_servers).
bw_track_pid() {
	BW_PIDS+=("$1")
}

# start_faultsrv ARGS...: start $FAULTSRV in the background (prefixed by
# $FS_EXEC, e.g. "ip netns exec NS", when set) and wait until it prints its
# port.  Adds --stats, --log, --port-file, --pid-file and --duration unless
# given.  Exports:
#   FS_PORT   the port         FS_PID    its pid
#   FS_STATS  the stats file   FS_LOG    the accept log
#   FS_OUT    its stdout, FS_ERR its stderr
# Returns 1 (after printing its stderr) if it does not come up in 5 s.
start_faultsrv() {
	local n=$((++BW_SERVER_N))
	local dir=${BW_TMP:-${BATS_TEST_TMPDIR:-/tmp}}
	local base="$dir/faultsrv.$n"
	local args=("$@") a have_stats='' have_log='' have_dur=''
	for a in "$@"; do
		case $a in
		--stats) have_stats=1 ;;
		--log) have_log=1 ;;
		--duration) have_dur=1 ;;
		esac
	done
	FS_STATS=$base.stats
	FS_LOG=$base.log
	FS_OUT=$base.out
	FS_ERR=$base.err
	[[ -n $have_stats ]] || args+=(--stats "$FS_STATS")
	[[ -n $have_log ]] || args+=(--log "$FS_LOG")
	[[ -n $have_dur ]] || args+=(--duration "${BW_FAULTSRV_DURATION:-300}")
	# An explicit --stats/--log wins: point FS_STATS/FS_LOG at it.
	local i
	for ((i = 0; i < ${#args[@]} - 1; i++)); do
		case ${args[i]} in
		--stats) FS_STATS=${args[i + 1]} ;;
		--log) FS_LOG=${args[i + 1]} ;;
		esac
	done
	rm -f "$base.port" "$base.pid"
	# shellcheck disable=SC2086 # FS_EXEC is a command prefix on purpose
	${FS_EXEC:-} "$FAULTSRV" "${args[@]}" --port-file "$base.port" \
		--pid-file "$base.pid" >"$FS_OUT" 2>"$FS_ERR" 3>&- &
	local bgpid=$!
	bw_track_pid "$bgpid"
	local deadline=$(($(now_ms) + 5000))
	while [[ ! -s $base.port ]]; do
		if ! kill -0 "$bgpid" 2>/dev/null || (($(now_ms) > deadline)); then
			echo "# faultsrv $* did not start:" >&2
			sed 's/^/#   /' "$FS_ERR" >&2
			return 1
		fi
		sleep 0.02
	done
	FS_PORT=$(<"$base.port")
	FS_PID=$(<"$base.pid")
	# With a prefix (ip netns exec) the pid we hold may differ.
	[[ $FS_PID == "$bgpid" ]] || bw_track_pid "$FS_PID"
	export FS_PORT FS_PID FS_STATS FS_LOG FS_OUT FS_ERR
}

# stop_pid PID: SIGTERM, wait up to 2 s, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# stop_servers: stop everything tracked (newest first).
stop_servers() {
	local i
	for ((i = ${#BW_PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${BW_PIDS[i]}"
	done
	BW_PIDS=()
}

# ---- faultsrv stats and log --------------------------------------------------

# stats_get KEY [FILE]: the value of KEY in faultsrv's stats file
# ($FS_STATS by default); prints nothing and returns 1 if absent.
stats_get() {
	local key=$1 file=${2:-$FS_STATS} kv
	[[ -r $file ]] || return 1
	for kv in $(<"$file"); do
		if [[ ${kv%%=*} == "$key" ]]; then
			echo "${kv#*=}"
			return 0
		fi
	done
	return 1
}

# stats_is KEY OP VALUE [FILE]: numeric test of a stats value (OP: -eq, -ge,
# -le, -gt, -lt, -ne).
stats_is() {
	local v
	v=$(stats_get "$1" "${4:-$FS_STATS}") || return 1
	test "$v" "$2" "$3"
}

# stats_wait KEY OP VALUE [TIMEOUT_S] [FILE]: wait (default 5 s) until
# stats_is holds; on timeout prints the stats and returns 1.
stats_wait() {
	local file=${5:-$FS_STATS}
	if ! wait_until "${4:-5}" stats_is "$1" "$2" "$3" "$file"; then
		echo "# stats_wait $1 $2 $3 timed out: $(cat "$file" 2>/dev/null)" >&2
		return 1
	fi
}

# log_count [FILE]: accepted connections in faultsrv's accept log.
log_count() {
	local file=${1:-$FS_LOG}
	[[ -r $file ]] || { echo 0; return; }
	grep -c '^accept ' "$file" || true
}

# ---- small clients -----------------------------------------------------------

# tcp_try HOST PORT TIMEOUT_S: one python3 connect; prints "ok", "timeout",
# or the errno name (ECONNREFUSED...).  Exit 0 only for "ok".
tcp_try() {
	python3 - "$1" "$2" "$3" <<'EOF'
import errno, socket, sys
host, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(t)
try:
    s.connect((host, port))
    print("ok")
    sys.exit(0)
except socket.timeout:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
sys.exit(1)
EOF
}

# ---- what the shim recorded --------------------------------------------

# bw_field DEST KEY: one value of `bulwark status --json` for destination
# DEST ("127.0.0.1:8080", or a group): KEY is a top-level key or a
# bulkhead one ("bulkhead.active"); 0 when DEST is not there yet.
bw_field() {
	"$BW_CLI" status --json | python3 -c '
import json, sys
dest, key = sys.argv[1], sys.argv[2]
for row in json.load(sys.stdin):
    if row["destination"] == dest:
        v = row
        for k in key.split("."):
            v = v[k]
        print(v)
        break
else:
    print(0)' "$1" "$2"
}
