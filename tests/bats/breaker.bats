#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/breaker.bats: the circuit breaker (bulwark-policy(7), bulwark(1))
# with real programs: a loop of short-lived curl runs against a server that
# resets, recovery through a half-open probe, connect.timeout against a
# blackholed test host, exactly breaker.probes trial connects from 40 processes,
# io.timeout, forced states, log lines.  Time is only checked in orders of
# magnitude; the benchmarks measure it.

load ../lib/common
load ../lib/netns

PY=$(python3 -c 'import sys; print(sys.executable)')
PYCLIENT=$BW_ROOT/tests/clients/pyclient.py

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	# One attempt per connect, so each call counted here is the program's
	# own (retries have their own tests: retry.bats).
	export BULWARK_RETRY_ATTEMPTS=1
}

field() { bw_field "$@"; }

accepted() { stats_get accepted; }

@test "20 curl runs against a resetting server: the breaker opens and refuses at once" {
	start_faultsrv --mode reset --stall 0 --http
	export BULWARK_POLICY="127.0.0.1:$FS_PORT breaker.failures=3 breaker.open=60s"
	local i refused=0 reset=0
	for i in $(seq 1 20); do
		run run_shim curl -sv --max-time 5 "http://127.0.0.1:$FS_PORT/"
		case $output in
		*"Connection reset by peer"*) reset=$((reset + 1)) ;;
		*"Connection refused"*) refused=$((refused + 1)) ;;
		esac
	done
	[ "$reset" -eq 3 ]
	[ "$refused" -eq 17 ]
	[ "$(accepted)" -eq 3 ] # the server saw nothing after the threshold
	[ "$(field 127.0.0.1:$FS_PORT state)" = open ]
	[ "$(field 127.0.0.1:$FS_PORT rejected_calls)" -eq 17 ]
	grep -q "event=breaker_open dest=127.0.0.1:$FS_PORT failures=3 open_for=60s" "$BULWARK_LOG_FILE"
	grep -q "event=reject_open dest=127.0.0.1:$FS_PORT errno=ECONNREFUSED" "$BULWARK_LOG_FILE"
}

@test "after breaker.open one probe goes through; a healthy server closes it" {
	start_faultsrv --mode reset --stall 0 --http
	local port=$FS_PORT pid=$FS_PID
	export BULWARK_POLICY="127.0.0.1:$port breaker.failures=2 breaker.open=1s"
	export BULWARK_LOG=info # transitions back to health are info lines
	run_shim curl -s "http://127.0.0.1:$port/" || true
	run_shim curl -s "http://127.0.0.1:$port/" || true
	[ "$(field 127.0.0.1:$port state)" = open ]
	run run_shim curl -s "http://127.0.0.1:$port/"
	[ "$status" -eq 7 ]
	# The server comes back healthy on the same port.
	stop_pid "$pid"
	start_faultsrv --mode http --listen "127.0.0.1:$port"
	sleep 1.2
	[ "$(field 127.0.0.1:$port state)" = half_open ]
	run run_shim curl -s "http://127.0.0.1:$port/"
	[ "$status" -eq 0 ]
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$port state)" = closed ]
	run run_shim curl -s "http://127.0.0.1:$port/"
	[ "$output" = ok ]
	grep -q "event=breaker_half_open dest=127.0.0.1:$port" "$BULWARK_LOG_FILE"
	grep -q "event=breaker_close dest=127.0.0.1:$port" "$BULWARK_LOG_FILE"
}

@test "a refused destination trips on consecutive connect failures" {
	start_faultsrv --mode refuse
	export BULWARK_POLICY="* breaker.failures=5"
	for i in 1 2 3 4 5 6 7; do
		run_shim "$PY" "$PYCLIENT" connect "$FS_PORT" >/dev/null || true
	done
	[ "$(field 127.0.0.1:$FS_PORT failed_calls)" -eq 5 ]
	[ "$(field 127.0.0.1:$FS_PORT rejected_calls)" -eq 2 ]
	[ "$(field 127.0.0.1:$FS_PORT state)" = open ]
}

@test "healthy traffic between failures keeps the breaker closed" {
	start_faultsrv --mode echo
	export BULWARK_POLICY="* breaker.failures=2"
	for i in 1 2 3 4 5; do
		run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT" 3 >/dev/null
	done
	[ "$(field 127.0.0.1:$FS_PORT state)" = closed ]
	[ "$(field 127.0.0.1:$FS_PORT failure_count)" -eq 0 ]
}

@test "breaker.rate over a count window with min_calls" {
	start_faultsrv --mode refuse
	local bad=$FS_PORT
	export BULWARK_POLICY="* breaker.failures=0 breaker.rate=50% breaker.window=10 breaker.min_calls=4 group=g1"
	start_faultsrv --mode echo
	run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT" 1 >/dev/null
	run_shim "$PY" "$PYCLIENT" connect "$bad" || true
	[ "$(field g1 state)" = closed ] # 3 calls: below min_calls
	run_shim "$PY" "$PYCLIENT" connect "$bad" || true
	run_shim "$PY" "$PYCLIENT" connect "$bad" || true
	[ "$(field g1 state)" = open ]
}

@test "connect.timeout bounds a blackholed connect, then the breaker fails fast" {
	netns_up || skip "network namespaces unavailable: $NETNS_REASON"
	local port=7411
	netns_blackhole "$port"
	export BULWARK_POLICY="$NETNS_NS_IP breaker.failures=3 connect.timeout=300ms"
	local t0 t1 i
	for i in 1 2 3; do
		t0=$(now_ms)
		run run_shim "$PY" -c "
import socket, errno
s = socket.socket()
try:
    s.connect(('$NETNS_NS_IP', $port)); print('connected')
except OSError as e:
    print(errno.errorcode[e.errno])"
		t1=$(now_ms)
		[ "$output" = ETIMEDOUT ]
		(( t1 - t0 >= 250 && t1 - t0 < 2000 ))
	done
	for i in 1 2 3; do
		t0=$(now_ms)
		run run_shim "$PY" -c "
import socket, errno
s = socket.socket()
try:
    s.connect(('$NETNS_NS_IP', $port)); print('connected')
except OSError as e:
    print(errno.errorcode[e.errno])"
		t1=$(now_ms)
		[ "$output" = ECONNREFUSED ]
		(( t1 - t0 < 250 )) # python's start-up; the refusal itself is µs
	done
	# Without bulwark the same connect is still hanging after 2 s.
	run timeout 2 "$PY" -c "
import socket
socket.socket().connect(('$NETNS_NS_IP', $port))"
	[ "$status" -eq 124 ]
}

@test "40 processes against a half-open destination: exactly breaker.probes connects reach it" {
	netns_up || skip "network namespaces unavailable: $NETNS_REASON"
	local port=7412
	# Count (and drop) the SYNs that reach the test host.
	ip netns exec "$NETNS_NAME" nft -f - <<EOF
table inet bwtest {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport $port tcp flags & (syn | ack) == syn counter drop
	}
}
EOF
	export BULWARK_POLICY="$NETNS_NS_IP breaker.failures=1 breaker.open=1s breaker.probes=2 connect.timeout=500ms"
	export BULWARK_LOG=info
	run_shim "$PY" -c "
import socket
s = socket.socket(); s.settimeout(None)
try: s.connect(('$NETNS_NS_IP', $port))
except OSError: pass" || true
	[ "$(field $NETNS_NS_IP:$port state)" = open ]
	sleep 1.1
	# 40 processes, released together.
	local go=$BW_TMP/go pids=() i
	for i in $(seq 1 40); do
		run_shim "$PY" -c "
import os, socket, time
while not os.path.exists('$go'): time.sleep(0.005)
s = socket.socket()
try: s.connect(('$NETNS_NS_IP', $port))
except OSError: pass" &
		pids+=($!)
	done
	sleep 1
	touch "$go"
	wait "${pids[@]}" || true
	local syns
	syns=$(ip netns exec "$NETNS_NAME" nft list ruleset | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
	# 1 SYN from the tripping connect, then exactly 2 probes.
	# (connect.timeout ends each attempt before the first SYN retransmit)
	echo "# SYNs at the test host: $syns" >&3
	[ "$syns" -eq 3 ] || grep -v reject_open "$BULWARK_LOG_FILE" >&3
	[ "$syns" -eq 3 ]
	[ "$(field $NETNS_NS_IP:$port rejected_calls)" -eq 38 ]
}

@test "io.timeout: a blocking receive waiting too long fails with ETIMEDOUT" {
	start_faultsrv --mode stall --stall 3000
	BULWARK_POLICY="* io.timeout=200ms" run run_shim "$PY" -c "
import socket, errno
s = socket.socket()   # blocking, no Python-level timeout
s.connect(('127.0.0.1', $FS_PORT))
s.send(b'x')
try: print(s.recv(10))
except OSError as e: print(errno.errorcode[e.errno])"
	[ "$output" = ETIMEDOUT ]
	[ "$(field 127.0.0.1:$FS_PORT failed_calls)" -eq 1 ]
}

@test "io.timeout leaves a non-blocking receive alone" {
	start_faultsrv --mode echo --stall 300
	BULWARK_POLICY="* io.timeout=100ms" run run_shim "$PY" -c "
import socket, select
s = socket.create_connection(('127.0.0.1', $FS_PORT))
s.setblocking(False)
s.send(b'x')
select.select([s], [], [], 5)
print(s.recv(10).decode())"
	[ "$output" = x ]
}

@test "bulwark force open / disabled / auto" {
	start_faultsrv --mode echo
	"$BW_CLI" force "127.0.0.1:$FS_PORT" open
	run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ECONNREFUSED ]
	[ "$(accepted)" -eq 0 ]
	[ "$(field 127.0.0.1:$FS_PORT state)" = forced_open ]
	"$BW_CLI" force "127.0.0.1:$FS_PORT" disabled
	BULWARK_POLICY='* breaker.failures=1' run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT state)" = disabled ]
	"$BW_CLI" force "127.0.0.1:$FS_PORT" auto
	[ "$(field 127.0.0.1:$FS_PORT state)" = closed ]
}

@test "breaker.errno sets the errno of a refused connect" {
	start_faultsrv --mode refuse
	export BULWARK_POLICY="* breaker.failures=1 breaker.errno=EHOSTUNREACH"
	run_shim "$PY" "$PYCLIENT" connect "$FS_PORT" || true
	run run_shim "$PY" "$PYCLIENT" connect "$FS_PORT"
	[ "$output" = EHOSTUNREACH ]
}

@test "bulwark reset closes an open breaker" {
	start_faultsrv --mode refuse
	export BULWARK_POLICY="* breaker.failures=1"
	run_shim "$PY" "$PYCLIENT" connect "$FS_PORT" || true
	[ "$(field 127.0.0.1:$FS_PORT state)" = open ]
	"$BW_CLI" reset "127.0.0.1:$FS_PORT"
	[ "$(field 127.0.0.1:$FS_PORT state)" = closed ]
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" -eq 0 ]
}

@test "an open breaker refuses in well under a millisecond (order of magnitude)" {
	start_faultsrv --mode refuse
	export BULWARK_POLICY="* breaker.failures=1 breaker.open=60s"
	run run_shim "$PY" -c "
import socket, time
def attempt():
    s = socket.socket()
    try: s.connect(('127.0.0.1', $FS_PORT))
    except OSError: pass
    s.close()
attempt()
t = time.perf_counter()
for _ in range(1000): attempt()
print(int((time.perf_counter() - t) * 1e6 / 1000))"
	# µs per refused connect, Python's socket object included
	(( output < 500 ))
	[ "$(field 127.0.0.1:$FS_PORT rejected_calls)" -eq 1000 ]
}
