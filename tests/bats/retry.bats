#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/retry.bats: reconnect retries (bulwark-policy(7) retry.*) with real
# clients against a server that refuses for a while and then listens:
# blocking Python, curl (non-blocking, poll), Python asyncio (non-blocking,
# epoll + SO_ERROR); the backoff schedule as the wire sees it (SYNs counted
# on lo), the retry budget across 20 processes, an asyncio program whose
# loop keeps its pace while one of its connects retries, and the cases
# that must never be retried.

load ../lib/common

PY=$(python3 -c 'import sys; print(sys.executable)')
SYNCOUNT=$BW_ROOT/tests/clients/syncount.py

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
}

field() { bw_field "$@"; }

# count_syns PORT SECONDS: capture SYNs to PORT in the background into
# $SYNS_FILE (needs root: CAP_NET_RAW).
count_syns() {
	[[ $(id -u) == 0 ]] || skip "counting SYNs needs CAP_NET_RAW"
	SYNS_FILE=$BW_TMP/syns.$1
	: >"$SYNS_FILE"
	"$PY" "$SYNCOUNT" "$1" "$SYNS_FILE" "$2" >"$BW_TMP/syncount.out" 2>&1 &
	bw_track_pid $!
	wait_until 5 grep -q ready "$BW_TMP/syncount.out"
}

BLOCKING_CLIENT='
import socket, sys, errno
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    print(s.recv(100).split(b"\r\n")[0].decode())
except OSError as e:
    print(errno.errorcode[e.errno])'

ASYNCIO_CLIENT='
import asyncio, sys, errno
async def main():
    try:
        r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        print((await r.readline()).decode().strip())
        w.close()
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e)))
asyncio.run(main())'

@test "blocking Python client: refused for 300 ms, then served; SYNs follow the backoff" {
	local port
	port=$(free_port)
	count_syns "$port" 10 # capturing before the server's clock starts
	start_faultsrv --mode http --refuse-for 300 --listen "127.0.0.1:$port"
	BULWARK_POLICY="* retry.attempts=5 retry.backoff=100ms" \
		run run_shim "$PY" -c "$BLOCKING_CLIENT" "$FS_PORT"
	[ "$output" = "HTTP/1.1 200 OK" ]
	sleep 0.2
	mapfile -t t <"$SYNS_FILE"
	echo "# SYN times: ${t[*]}" >&3
	(( ${#t[@]} >= 3 ))
	# Gap k (1-based) is the backoff 100 ms x 2^(k-1), jitter +-10 %,
	# plus a little scheduling slack.
	local k gap want
	for ((k = 1; k < ${#t[@]}; k++)); do
		gap=$(((t[k] - t[k - 1]) / 1000000))
		want=$((100 << (k - 1)))
		echo "# gap $k: $gap ms (backoff $want ms)" >&3
		(( gap >= want * 9 / 10 - 2 && gap <= want * 11 / 10 + 30 ))
	done
	[ "$(field 127.0.0.1:$FS_PORT retries)" -eq $((${#t[@]} - 1)) ]
}

@test "the same client without bulwark fails with Connection refused" {
	start_faultsrv --mode http --refuse-for 300
	run "$PY" -c "$BLOCKING_CLIENT" "$FS_PORT"
	[ "$output" = ECONNREFUSED ]
}

@test "curl (non-blocking, poll) succeeds through retries; plain curl fails" {
	start_faultsrv --mode http --refuse-for 300
	run curl -sS "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 7 ]
	stop_servers
	start_faultsrv --mode http --refuse-for 300
	BULWARK_POLICY="* retry.attempts=5 retry.backoff=100ms" \
		run run_shim curl -sS "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 0 ]
	[ "$output" = ok ]
}

@test "Python asyncio (non-blocking, epoll) succeeds through retries; plain fails" {
	start_faultsrv --mode http --refuse-for 300
	run "$PY" -c "$ASYNCIO_CLIENT" "$FS_PORT"
	[ "$output" = ECONNREFUSED ]
	stop_servers
	start_faultsrv --mode http --refuse-for 300
	BULWARK_POLICY="* retry.attempts=5 retry.backoff=100ms" \
		run run_shim "$PY" -c "$ASYNCIO_CLIENT" "$FS_PORT"
	[ "$output" = "HTTP/1.1 200 OK" ]
}

@test "asyncio with 100 echo connections: the retries never stall the loop" {
	start_faultsrv --mode echo
	local echo_port=$FS_PORT
	start_faultsrv --mode refuse
	local dead=$FS_PORT
	# retry.attempts=4: delays 100 + 200 + 400 ms, +-10 %.
	BULWARK_POLICY="127.0.0.1:$dead retry.attempts=4 retry.backoff=100ms retry.budget=100%" \
		run run_shim "$PY" -c "
import asyncio, time
async def echo(r, w, stop):
    n = 0
    while not stop.is_set():
        w.write(b'x'); await r.readexactly(1); n += 1
    return n
async def ticker(stop, lags):
    while not stop.is_set():
        t = time.monotonic(); await asyncio.sleep(0.005)
        lags.append(time.monotonic() - t - 0.005)
async def main():
    conns = [await asyncio.open_connection('127.0.0.1', $echo_port) for _ in range(100)]
    stop, lags = asyncio.Event(), []
    tasks = [asyncio.create_task(echo(r, w, stop)) for r, w in conns]
    tick = asyncio.create_task(ticker(stop, lags))
    await asyncio.sleep(0.1)
    try:
        await asyncio.open_connection('127.0.0.1', $dead)
        print('connected?')
    except OSError:
        pass
    await asyncio.sleep(0.1)
    stop.set()
    n = sum(await asyncio.gather(*tasks)); await tick
    print(int(max(lags) * 1000), n)
asyncio.run(main())"
	echo "# max loop lag (ms), echoes: $output" >&3
	local lag=${output%% *} echoes=${output##* }
	(( echoes > 100 ))
	# the retries happen in the loop's own epoll_wait calls: the ticker
	# keeps its pace (the old shim slept the 700 ms of backoff in the
	# loop's thread)
	(( lag <= 50 ))
	[ "$(field 127.0.0.1:$dead retries)" -eq 3 ]
}

# files_are GLOB N: exactly N files match GLOB (wait_until re-runs it).
files_are() {
	local f=($1)
	[[ -e ${f[0]} ]] && [ "${#f[@]}" -eq "$2" ]
}

# lines_at_least FILE N: FILE has N lines or more.
lines_at_least() {
	[ "$(wc -l <"$1")" -ge "$2" ]
}

@test "retry budget: 20 processes against a dead destination stay within it" {
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 30
	export BULWARK_POLICY="* breaker=off retry.attempts=5 retry.backoff=50ms retry.budget=20%"
	local go=$BW_TMP/go pids=() i
	for i in $(seq 1 20); do
		run_shim "$PY" -c "
import os, socket, time
open('$BW_TMP/ready.$i', 'w').close()
while not os.path.exists('$go'): time.sleep(0.005)
try: socket.socket().connect(('127.0.0.1', $FS_PORT))
except OSError: pass" &
		pids+=($!)
	done
	wait_until 30 files_are "$BW_TMP/ready.*" 20
	touch "$go"
	wait "${pids[@]}" || true
	local syns retries calls
	retries=$(field "127.0.0.1:$FS_PORT" retries)
	calls=$(field "127.0.0.1:$FS_PORT" failed_calls)
	wait_until 2 lines_at_least "$SYNS_FILE" $((20 + retries)) || true
	syns=$(wc -l <"$SYNS_FILE")
	echo "# SYNs: $syns, attempts: $calls, retries: $retries (without a budget: up to 100)" >&3
	# 20 first attempts; retries at most max(3, 20 % of 20) = 4, plus
	# one per process racing a budget half-window rollover at most.
	(( retries <= 6 ))
	(( calls == 20 + retries ))
	# On the wire: never more (the capture may miss one on a loaded
	# machine, never invent one).
	(( syns <= 20 + retries ))
}

@test "errnos outside retry.on are never retried" {
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 10
	BULWARK_POLICY="* retry.attempts=5 retry.backoff=50ms retry.on=timeout" \
		run run_shim "$PY" -c "$BLOCKING_CLIENT" "$FS_PORT"
	[ "$output" = ECONNREFUSED ]
	sleep 0.2
	[ "$(wc -l <"$SYNS_FILE")" -eq 1 ]
	[ "$(field 127.0.0.1:$FS_PORT retries)" -eq 0 ]
}

@test "no retry after data was sent: a reset exchange is not reconnected" {
	start_faultsrv --mode reset --stall 0
	BULWARK_POLICY="* retry.attempts=5 retry.backoff=50ms retry.on=refused,timeout,unreachable,reset" \
		run run_shim "$PY" -c "$BLOCKING_CLIENT" "$FS_PORT"
	[ "$output" = ECONNRESET ]
	[ "$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' "$FS_STATS")" -eq 1 ]
	[ "$(field 127.0.0.1:$FS_PORT retries)" -eq 0 ]
}

@test "no retry once the breaker is open" {
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 10
	BULWARK_POLICY="* breaker.failures=2 retry.attempts=5 retry.backoff=20ms" \
		run run_shim "$PY" -c "$BLOCKING_CLIENT" "$FS_PORT"
	[ "$output" = ECONNREFUSED ]
	sleep 0.2
	[ "$(wc -l <"$SYNS_FILE")" -eq 2 ]
	[ "$(field 127.0.0.1:$FS_PORT state)" = open ]
}

@test "retry events are logged" {
	start_faultsrv --mode refuse
	BULWARK_LOG=info BULWARK_POLICY="* retry.attempts=3 retry.backoff=20ms" \
		run run_shim "$PY" -c "$BLOCKING_CLIENT" "$FS_PORT"
	grep -q "event=retry dest=127.0.0.1:$FS_PORT attempt=2" "$BULWARK_LOG_FILE"
	grep -q "event=retry_exhausted dest=127.0.0.1:$FS_PORT attempts=3 errno=ECONNREFUSED reason=attempts" "$BULWARK_LOG_FILE"
}

@test "connect.timeout with retries on a refused port: ECONNREFUSED after the schedule, exactly 3 failed connects" {
	# Each timed attempt's error is read from SO_ERROR, which leaves the
	# failed attempt in the kernel: without a reset before the next one,
	# that next connect answers ECONNABORTED and counts as a failure of
	# its own.
	start_faultsrv --mode refuse
	BULWARK_POLICY="127.0.0.1 connect.timeout=1s retry.attempts=3 retry.backoff=50ms breaker.failures=100" \
		run timeout 20 env LD_PRELOAD="$BW_LIB" "$PY" -c "$BLOCKING_CLIENT" "$FS_PORT"
	echo "# $output" >&3
	[ "$output" = ECONNREFUSED ]
	[ "$(field "127.0.0.1:$FS_PORT" failed_calls)" = 3 ]
	[ "$(field "127.0.0.1:$FS_PORT" total_calls)" = 3 ]
	[ "$(field "127.0.0.1:$FS_PORT" retries)" = 2 ]
}
