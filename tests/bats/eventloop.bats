#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/eventloop.bats: non-blocking connects are retried, queued and
# timed out inside the program's own waits, never by stalling its thread
# (README "Retries of non-blocking connects: design and limits").
# A C client (tests/fixtures/loopclient.c) drives one connect with each
# kind of wait and a 5 ms ticker; Python asyncio, selectors and select
# clients (tests/clients/loopticker.py) do the same; curl runs queue in
# the bulkhead.  Every wait bound here is an order of magnitude below
# the backoff the old shim slept in the program's thread.

load ../lib/common

PY=$(python3 -c 'import sys; print(sys.executable)')
LOOPCLIENT=$BW_BUILD/fixtures/loopclient
TICKER=$BW_ROOT/tests/clients/loopticker.py

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	[[ -x $LOOPCLIENT ]] || skip "loopclient not built"
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
}

# val KEY: KEY's value in $output ("result=ok elapsed_ms=12 ...").
val() {
	local kv
	for kv in $output; do
		[[ ${kv%%=*} == "$1" ]] && { echo "${kv#*=}"; return 0; }
	done
	return 1
}

# late MODE: MODE's connect to a server that refuses for 300 ms and then
# listens, retry.attempts=5 retry.backoff=100ms: connected, and the loop's
# worst gap stays far below the 100 ms backoff.
late() {
	start_faultsrv --mode http --refuse-for 300
	BULWARK_POLICY="127.0.0.1 retry.attempts=5 retry.backoff=100ms retry.budget=100%" \
		run run_shim "$LOOPCLIENT" "$1" 127.0.0.1 "$FS_PORT"
	echo "# $1: $output" >&3
	[ "$(val result)" = ok ]
	(( $(val max_gap_ms) <= 50 ))
	[ "$(bw_field "127.0.0.1:$FS_PORT" retries)" -ge 1 ]
}

@test "poll: a late server is reached through retries made inside the loop's polls" {
	late poll
}

@test "ppoll: retries inside the loop's ppoll calls" {
	late ppoll
}

@test "select: retries inside the loop's select calls" {
	late select
}

@test "pselect: retries inside the loop's pselect calls" {
	late pselect
}

@test "epoll level-triggered: retries inside epoll_wait, the program's data kept" {
	late epoll-lt
}

@test "epoll edge-triggered: the re-added registration reports the connect" {
	late epoll-et
}

@test "EPOLLONESHOT: the re-added registration is armed again" {
	late epoll-oneshot
}

@test "one fd in two epoll sets: both get it back after each backoff" {
	late epoll-two
}

@test "two threads waiting on one epoll fd: neither sees the retried failures" {
	late epoll-threads
}

@test "re-called connect (HAProxy): EALREADY while retried, then connected" {
	late reconnect
}

@test "busy loop (no wait at all): its connect calls make the retries" {
	late busy
}

@test "busy loop sending (no wait): EAGAIN while retried, then the request goes out" {
	late sendloop
}

@test "socket options set before the connect survive the retries" {
	late sockopt
	[ "$(val nodelay)" = 1 ]
	(( $(val rcvbuf) >= 65536 ))
}

@test "never listening: the final ECONNREFUSED after the whole schedule, no stall, for every wait" {
	local m
	for m in poll select epoll-lt epoll-et reconnect busy sendloop; do
		# a destination of its own each: the retry budget (at least 3
		# retries per 10 s) is per destination
		stop_servers
		start_faultsrv --mode refuse
		BULWARK_POLICY="127.0.0.1 retry.attempts=4 retry.backoff=50ms retry.budget=100% breaker.failures=1000" \
			run run_shim "$LOOPCLIENT" "$m" 127.0.0.1 "$FS_PORT"
		echo "# $m: $output" >&3
		[ "$(val result)" = ECONNREFUSED ]
		# 50 + 100 + 200 ms of backoff, jitter 10 %
		(( $(val elapsed_ms) >= 300 ))
		(( $(val max_gap_ms) <= 50 ))
		# 4 attempts, each a failed call
		[ "$(bw_field "127.0.0.1:$FS_PORT" failed_calls)" -eq 4 ]
	done
}

@test "asyncio with a 5 ms ticker: a server up after 700 ms is reached, worst tick gap <= 20 ms" {
	start_faultsrv --mode http --refuse-for 700
	BULWARK_POLICY="127.0.0.1 retry.attempts=6 retry.backoff=200ms retry.budget=100%" \
		run run_shim "$PY" "$TICKER" asyncio 127.0.0.1 "$FS_PORT"
	echo "# $output" >&3
	[ "$(val result)" = ok ]
	# At least two attempts were refused (the server's 700 ms run from
	# its own start, before the client's), so at least two backoffs
	# passed: 200 + 400 ms less 10 % jitter is 540 ms.  (The third
	# attempt may find the server up: 600 ms was a flaky bound.)
	(( $(val elapsed_ms) >= 500 ))
	[ "$(bw_field "127.0.0.1:$FS_PORT" retries)" -ge 2 ]
	(( $(val max_gap_ms) <= 20 ))
}

@test "asyncio with a 5 ms ticker: never listening, ConnectionRefusedError after the schedule, worst gap <= 20 ms" {
	start_faultsrv --mode refuse
	BULWARK_POLICY="127.0.0.1 retry.attempts=6 retry.backoff=200ms retry.budget=100% breaker.failures=100" \
		run run_shim "$PY" "$TICKER" asyncio 127.0.0.1 "$FS_PORT"
	echo "# $output" >&3
	[ "$(val result)" = ConnectionRefusedError ]
	# the schedule the retry budget allows one lone connect (3 retries:
	# 200 + 400 + 800 ms, jitter 10 %)
	(( $(val elapsed_ms) >= 1200 ))
	[ "$(bw_field "127.0.0.1:$FS_PORT" retries)" -ge 3 ]
	(( $(val max_gap_ms) <= 20 ))
}

@test "Python selectors and select.select clients: retried inside their waits" {
	local k
	for k in selectors select poll; do
		stop_servers
		start_faultsrv --mode http --refuse-for 300
		BULWARK_POLICY="127.0.0.1 retry.attempts=5 retry.backoff=100ms retry.budget=100%" \
			run run_shim "$PY" "$TICKER" "$k" 127.0.0.1 "$FS_PORT"
		echo "# $k: $output" >&3
		[ "$(val result)" = ok ]
		(( $(val max_gap_ms) <= 50 ))
	done
}

@test "connect.timeout for a non-blocking connect: aborted in the loop, ETIMEDOUT after the retries" {
	start_faultsrv --mode queue-full
	BULWARK_POLICY="127.0.0.1 connect.timeout=100ms retry.attempts=3 retry.backoff=50ms retry.budget=100% breaker.failures=100" \
		run run_shim "$LOOPCLIENT" epoll-lt 127.0.0.1 "$FS_PORT"
	echo "# $output" >&3
	[ "$(val result)" = ETIMEDOUT ]
	# 3 attempts of 100 ms and two backoffs, far from the kernel's minutes
	(( $(val elapsed_ms) >= 300 && $(val elapsed_ms) < 3000 ))
	(( $(val max_gap_ms) <= 50 ))
}

# curls N POLICY: N concurrent curl runs against $FS_PORT; their
# "<exit> <time_total>" lines in $BW_TMP/curl.*.
curls() {
	local n=$1 i pids=()
	for ((i = 0; i < n; i++)); do
		BULWARK_POLICY=$2 LD_PRELOAD=$BW_LIB curl -sS -o /dev/null \
			-w '%{time_total}\n' "http://127.0.0.1:$FS_PORT/" \
			>"$BW_TMP/curl.$i" 2>/dev/null &
		pids+=($!)
	done
	for ((i = 0; i < n; i++)); do
		wait "${pids[i]}" && echo "0 $(<"$BW_TMP/curl.$i")" >"$BW_TMP/curl.$i" ||
			echo "$? x" >"$BW_TMP/curl.$i"
	done
}

@test "30 concurrent curl, bulkhead.max=4 bulkhead.wait=20s: all succeed, never more than 4 at the server" {
	start_faultsrv --mode stall --http --stall 300
	curls 30 "127.0.0.1 bulkhead.max=4 bulkhead.wait=20s"
	local ok
	ok=$(cat "$BW_TMP"/curl.* | grep -c '^0 ')
	echo "# ok: $ok; $(cat "$FS_STATS")" >&3
	[ "$ok" -eq 30 ]
	stats_is peak -le 4
	stats_is requests -eq 30
}

@test "bulkhead.wait=0: the excess curl runs fail at once" {
	start_faultsrv --mode stall --http --stall 300
	curls 30 "127.0.0.1 bulkhead.max=4 bulkhead.wait=0"
	local ok fail
	ok=$(cat "$BW_TMP"/curl.* | grep -c '^0 ')
	fail=$(cat "$BW_TMP"/curl.* | grep -c ' x$')
	echo "# ok: $ok fail: $fail; $(cat "$FS_STATS")" >&3
	(( fail >= 1 && ok >= 4 ))
	stats_is peak -le 4
}

@test "bulkhead.queue=5: beyond 4 running and 5 queued, curl fails at once; the queued ones succeed" {
	start_faultsrv --mode stall --http --stall 1000
	curls 30 "127.0.0.1 bulkhead.max=4 bulkhead.wait=20s bulkhead.queue=5"
	local ok fail
	ok=$(cat "$BW_TMP"/curl.* | grep -c '^0 ')
	fail=$(cat "$BW_TMP"/curl.* | grep -c ' x$')
	echo "# ok: $ok fail: $fail; $(cat "$FS_STATS")" >&3
	(( ok >= 9 && fail >= 1 ))
	stats_is peak -le 4
}

@test "a queued connect closed before its turn leaves the queue: the next one gets the slot" {
	start_faultsrv --mode stall --http
	local pol="127.0.0.1 bulkhead.max=1 bulkhead.wait=20s"
	# the holder: connected, keeps the slot while its stdin is open
	mkfifo "$BW_TMP/hold"
	BULWARK_POLICY=$pol LD_PRELOAD=$BW_LIB "$LOOPCLIENT" hold 127.0.0.1 "$FS_PORT" \
		<"$BW_TMP/hold" >"$BW_TMP/holder.out" &
	local holder=$!
	bw_track_pid $holder
	exec 5>"$BW_TMP/hold"
	wait_until 5 grep -q result=ok "$BW_TMP/holder.out"
	# a queued connect that gives up (closes) after 200 ms
	BULWARK_POLICY=$pol run run_shim "$PY" -c '
import socket, sys, time, select
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except BlockingIOError:
    pass
p = select.poll(); p.register(s, select.POLLOUT)
t0 = time.monotonic()
while time.monotonic() - t0 < 0.2:
    assert not p.poll(10), "a queued connect must not look connected"
s.close()
print("closed")' "$FS_PORT"
	[ "$output" = closed ]
	[ "$(bw_field "127.0.0.1:$FS_PORT" bulkhead.waiting)" -eq 0 ]
	exec 5>&-
	wait $holder || true
	# the slot and the queue are free again: a new connect goes at once
	BULWARK_POLICY="$pol bulkhead.wait=0" run run_shim "$LOOPCLIENT" epoll-lt 127.0.0.1 "$FS_PORT"
	[ "$(val result)" = ok ]
	[ "$(bw_field "127.0.0.1:$FS_PORT" bulkhead.active)" -eq 0 ]
}

@test "a connect closed during its backoff is neither a success nor a failure after its first attempt" {
	start_faultsrv --mode refuse
	BULWARK_POLICY="127.0.0.1 retry.attempts=5 retry.backoff=300ms retry.budget=100%" \
		run run_shim "$PY" -c '
import socket, sys, time, select
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except BlockingIOError:
    pass
p = select.poll(); p.register(s, select.POLLOUT)
t0 = time.monotonic()
while time.monotonic() - t0 < 0.15:
    assert not p.poll(10), "the retried failure must be hidden"
s.close()
time.sleep(0.6)   # past the backoff: no attempt may be made any more
print("closed")' "$FS_PORT"
	[ "$output" = closed ]
	# one failed attempt, the retry never made
	[ "$(bw_field "127.0.0.1:$FS_PORT" failed_calls)" -eq 1 ]
}

@test "a fork child does not make the parent's pending retries; the parent does" {
	start_faultsrv --mode http --refuse-for 400
	BULWARK_POLICY="127.0.0.1 retry.attempts=6 retry.backoff=100ms retry.budget=100%" \
		run run_shim "$PY" -c '
import os, socket, sys, time, select
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except BlockingIOError:
    pass
pid = os.fork()
if pid == 0:
    # the child waits too, and must leave the connect alone
    p = select.poll(); p.register(s, select.POLLOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        p.poll(10)
    os._exit(0)
p = select.poll(); p.register(s, select.POLLOUT)
t0 = time.monotonic()
while not p.poll(10):
    if time.monotonic() - t0 > 10:
        print("stuck"); sys.exit(1)
print("parent", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
os.waitpid(pid, 0)' "$FS_PORT"
	echo "# $output" >&3
	[ "$output" = "parent 0" ]
}

@test "a subprocess spawned during a backoff (vfork, close_range in the child) leaves the parent's connect going" {
	[[ -x /usr/bin/python3.11 ]] || skip "Debian's python3.11 (vfork in subprocess)"
	start_faultsrv --mode http --refuse-for 400
	BULWARK_POLICY="127.0.0.1 retry.attempts=6 retry.backoff=100ms retry.budget=100%" \
		run run_shim /usr/bin/python3.11 -c '
import socket, select, subprocess, sys, time
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except BlockingIOError:
    pass
p = select.poll(); p.register(s, select.POLLOUT)
p.poll(50)                      # the first attempt is refused: a backoff
subprocess.run(["true"])        # vfork; the child close_ranges fd 3 away
t0 = time.monotonic()
while not p.poll(10):
    if time.monotonic() - t0 > 10:
        print("stuck"); sys.exit(1)
try:
    print("connected", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), s.getpeername()[1] == int(sys.argv[1]))
except OSError as e:
    print("not connected", e)' "$FS_PORT"
	echo "# $output" >&3
	[ "$output" = "connected 0 True" ]
}
