#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/eventloop_clients.bats: event loops are never stalled (the
# acceptance tests of that issue, client side), with real programs whose
# connects are non-blocking: Python loops on selectors (epoll),
# select.select and poll; curl --parallel (one thread, many transfers);
# node's http.get (libuv, epoll); redis-benchmark (hiredis, ae's epoll
# loop) against a bulkhead.  The contract (README, man/bulwark-policy.7):
# for a non-blocking socket every wait the shim adds happens inside the
# program's own poll/select/epoll_wait, never longer than the program asked
# that call to wait, while its other fds are served as usual; the program
# sees the connect in progress until its final outcome.
#
# A "tick" gap is the time between two returns of the loop's wait; the
# loops ask for 5 ms, so a gap is 5 ms plus scheduling noise unless the
# shim holds the thread (before this work: the whole backoff, hundreds of
# ms).  Timing claims stay orders of magnitude: 20 ms for a 5 ms tick.

load ../lib/common

PY=$(python3 -c 'import sys; print(sys.executable)')
LOOP=$BW_ROOT/tests/clients/loop_client.py

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
}

field() { bw_field "$@"; }

# js KEY: a field of the JSON line in $output (its last line).
js() {
	"$PY" -c 'import json, sys; print(json.loads(sys.argv[1].splitlines()[-1]).get(sys.argv[2]))' \
		"$output" "$1"
}

# ms_le VALUE LIMIT: VALUE (may have decimals) <= LIMIT.
ms_le() {
	"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$1" "$2"
}

# tick_gap_ok: the worst tick gap of the run in $output is far below a
# backoff (100 ms: a hard bound, every run), and sets MET=1 when it is
# within the stated 20 ms.  A shared 2-CPU machine's scheduling noise
# sometimes holds a process that long on its own, so the tests below run
# up to 3 times until one meets the 20 ms: a shim that sleeps through a
# backoff (hundreds of ms) or holds every run fails all three.
tick_gap_ok() {
	ms_le "$(js worst_gap_ms)" 100
	if ms_le "$(js worst_gap_ms)" 20; then MET=1; fi
}

# loop MODE PORT: tests/clients/loop_client.py under the shim, bounded.
loop() {
	run timeout 20 env LD_PRELOAD="$BW_LIB" "$PY" "$LOOP" "$1" 127.0.0.1 "$2"
	echo "# $1: $output" >&3
	[ "$status" -eq 0 ]
}

# late_server: an HTTP server refusing for its first 700 ms (port bound,
# not listening), then serving; FS_PORT.
late_server() {
	start_faultsrv --mode http --refuse-for 700
}

# retried_to_late_server MODE: MODE's loop, against late_server, connects
# through the retries (attempts at 0, 200, 600, 1400 ms +-10 % after the
# client's start: a later one finds the server listening) and its ticks go
# on meanwhile.
retried_to_late_server() {
	MET=0
	local round
	for round in 1 2 3; do
		late_server_round "$1"
		((MET == 0)) || break
	done
	((MET == 1))
}

late_server_round() {
	late_server
	export BULWARK_POLICY="127.0.0.1:$FS_PORT retry.attempts=6 retry.backoff=200ms; * retry.attempts=1"
	loop "$1" "$FS_PORT"
	[ "$(js result)" = ok ]
	[ "$(js status)" = "HTTP/1.1 200 OK" ]
	# Retried (the server refused its first 700 ms; how much of that is
	# left when the client starts depends on the machine, so at least one
	# backoff): the program saw one connect in progress until it
	# succeeded.
	(($(js connect_ms) >= 150))
	(($(field "127.0.0.1:$FS_PORT" retries) >= 1))
	# The loop went on ticking meanwhile: about 5 ms per tick (at least
	# one per 10 ms), none of them held.
	(($(js ticks) * 10 >= $(js connect_ms)))
	tick_gap_ok
}

@test "eventloop: Python selectors (epoll) loop, late server, retries: connected, ticks never stalled" {
	retried_to_late_server selectors
}

@test "eventloop: Python select.select loop, late server, retries: connected, ticks never stalled" {
	retried_to_late_server select
}

@test "eventloop: Python select.poll loop, late server, retries: connected, ticks never stalled" {
	retried_to_late_server poll
}

@test "eventloop: selectors loop, a port that never listens: ECONNREFUSED after the whole schedule, ticks never stalled" {
	MET=0
	local round
	for round in 1 2 3; do
		never_listens_round
		((MET == 0)) || break
	done
	((MET == 1))
}

never_listens_round() {
	start_faultsrv --mode refuse
	# attempts at 0, 100, 300, 700 ms (+-10 %), then the final error.
	export BULWARK_POLICY="127.0.0.1:$FS_PORT retry.attempts=4 retry.backoff=100ms; * retry.attempts=1"
	loop selectors "$FS_PORT"
	[ "$(js result)" = ECONNREFUSED ]
	(($(js connect_ms) >= 600))
	(($(js connect_ms) < 2000))
	[ "$(field "127.0.0.1:$FS_PORT" retries)" -eq 3 ]
	tick_gap_ok
}

@test "eventloop: curl --parallel, 4 of 8 URLs refused and retried: the 4 good transfers do not wait for the retries" {
	require_cmd curl
	start_faultsrv --mode http
	local good=$FS_PORT bad=() urls=() outs=() i
	for i in 1 2 3 4; do
		start_faultsrv --mode refuse
		bad+=("$FS_PORT")
	done
	# The refused ones first: curl starts them first, so a shim that
	# sleeps through a backoff in curl's thread holds the good ones.
	for i in 0 1 2 3; do urls+=("http://127.0.0.1:${bad[i]}/bad$i"); done
	for i in 0 1 2 3; do urls+=("http://127.0.0.1:$good/good$i"); done
	for i in 1 2 3 4 5 6 7 8; do outs+=(-o /dev/null); done
	# Retry schedule of a refused URL: 300 + 600 + 1200 ms (+-10 %).
	export BULWARK_POLICY="127.0.0.1 retry.attempts=4 retry.backoff=300ms; * retry.attempts=1"
	run timeout 30 env LD_PRELOAD="$BW_LIB" curl -s --no-progress-meter --parallel --parallel-max 8 \
		--write-out '%{url} %{exitcode} %{http_code} %{time_total}\n' \
		"${outs[@]}" "${urls[@]}"
	echo "# $output" | tr '\n' ' ' >&3
	echo >&3
	[ "$(grep -c ' 0 200 ' <<<"$output")" -eq 4 ]
	local url rc code t ngood=0 nbad=0
	while read -r url rc code t; do
		case $url in
		*/good*)
			# done long before the first backoff (300 ms) is over
			ms_le "$t" 0.25
			ngood=$((ngood + 1))
			;;
		*/bad*)
			[ "$rc" -eq 7 ] # couldn't connect, after the whole schedule
			ms_le 1.8 "$t"
			nbad=$((nbad + 1))
			;;
		esac
	done <<<"$output"
	[ "$ngood" -eq 4 ]
	[ "$nbad" -eq 4 ]
	for i in 0 1 2 3; do
		[ "$(field "127.0.0.1:${bad[i]}" retries)" -eq 3 ]
	done
	[ "$(field "127.0.0.1:$good" retries)" -eq 0 ]
}

@test "eventloop: curl --parallel, 12 transfers under bulkhead.max=3 bulkhead.wait=20s: all succeed, server peak <= 3" {
	require_cmd curl
	start_faultsrv --mode stall --stall 300 --http
	local urls=() outs=() i
	for i in $(seq 1 12); do
		urls+=("http://127.0.0.1:$FS_PORT/t$i")
		outs+=(-o /dev/null)
	done
	# One curl thread, 12 connects: 3 at a time, the others queued
	# inside curl's own poll (4 rounds of 300 ms).
	export BULWARK_POLICY="127.0.0.1:$FS_PORT bulkhead.max=3 bulkhead.wait=20s; * retry.attempts=1"
	run timeout 30 env LD_PRELOAD="$BW_LIB" curl -s --no-progress-meter --parallel --parallel-immediate \
		--parallel-max 12 --write-out '%{exitcode} %{http_code} %{time_total}\n' \
		"${outs[@]}" "${urls[@]}"
	echo "# $(tr '\n' ' ' <<<"$output") $(cat "$FS_STATS")" >&3
	[ "$status" -eq 0 ]
	[ "$(grep -c '^0 200 ' <<<"$output")" -eq 12 ]
	[ "$(stats_get peak)" -le 3 ]
	[ "$(stats_get accepted)" -eq 12 ]
	[ "$(field "127.0.0.1:$FS_PORT" rejected_calls)" -eq 0 ]
}

@test "eventloop: curl --parallel, one URL's SYNs dropped: connect.timeout ends its attempts in curl's own poll, the others are not held" {
	require_cmd curl
	start_faultsrv --mode queue-full
	local full=$FS_PORT
	start_faultsrv --mode http
	local good=$FS_PORT i urls=("http://127.0.0.1:$full/full") outs=(-o /dev/null)
	for i in 1 2 3; do
		urls+=("http://127.0.0.1:$good/good$i")
		outs+=(-o /dev/null)
	done
	# Two attempts of 300 ms, 100 ms apart: ETIMEDOUT after about
	# 0.7 s, long before curl's own --connect-timeout (5 s).
	export BULWARK_POLICY="127.0.0.1:$full connect.timeout=300ms retry.attempts=2 retry.backoff=100ms breaker=off; * retry.attempts=1"
	run timeout 30 env LD_PRELOAD="$BW_LIB" curl -s --no-progress-meter --parallel \
		--parallel-immediate --parallel-max 4 --connect-timeout 5 \
		--write-out '%{url} %{exitcode} %{http_code} %{time_total}\n' \
		"${outs[@]}" "${urls[@]}"
	echo "# $(tr '\n' ' ' <<<"$output")" >&3
	local url rc code t
	while read -r url rc code t; do
		case $url in
		*/good*)
			[ "$code" = 200 ]
			ms_le "$t" 0.25
			;;
		*/full)
			[ "$rc" -ne 0 ]
			ms_le 0.55 "$t" # both attempts ran
			ms_le "$t" 2    # ...and ended by the shim, not curl
			;;
		esac
	done <<<"$output"
	[ "$(grep -c ' 0 200 ' <<<"$output")" -eq 3 ]
	[ "$(field "127.0.0.1:$full" retries)" -eq 1 ]
	[ "$(field "127.0.0.1:$full" failed_calls)" -eq 2 ]
}

NODE_CLIENT='
const http = require("http");
const port = Number(process.argv[1]);
let last = process.hrtime.bigint(), worst = 0n, ticks = 0;
const tick = setInterval(() => {
  const n = process.hrtime.bigint();
  if (n - last > worst) worst = n - last;
  last = n; ticks++;
}, 5);
const t0 = process.hrtime.bigint();
last = t0;
const done = (o) => {
  clearInterval(tick);
  const n = process.hrtime.bigint();
  if (n - last > worst) worst = n - last;
  o.ms = Number((n - t0) / 1000000n);
  o.ticks = ticks;
  o.worst_gap_ms = Number(worst / 1000n) / 1000;
  console.log(JSON.stringify(o));
};
http.get({ host: "127.0.0.1", port: port, path: "/", agent: false }, (res) => {
  let body = "";
  res.on("data", (d) => (body += d));
  res.on("end", () => done({ status: res.statusCode, body: body.trim() }));
}).on("error", (e) => done({ error: e.code }));
'

@test "eventloop: node http.get to a late server: retried, connected, the 5 ms ticker never stalled" {
	require_cmd node
	MET=0
	local round
	for round in 1 2 3; do
		node_round
		((MET == 0)) || break
	done
	((MET == 1))
}

node_round() {
	late_server
	export BULWARK_POLICY="127.0.0.1:$FS_PORT retry.attempts=6 retry.backoff=200ms; * retry.attempts=1"
	run timeout 20 env LD_PRELOAD="$BW_LIB" node -e "$NODE_CLIENT" "$FS_PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[ "$(js error)" = None ]
	[ "$(js status)" = 200 ]
	[ "$(js body)" = ok ]
	(($(js ms) >= 150))                # at least one backoff
	(($(field "127.0.0.1:$FS_PORT" retries) >= 1))
	(($(js ticks) * 10 >= $(js ms)))   # about one tick per 5 ms
	tick_gap_ok
}

@test "eventloop: node without the shim fails at once against the late server (the test's premise)" {
	require_cmd node
	late_server
	run timeout 20 node -e "$NODE_CLIENT" "$FS_PORT"
	echo "# $output" >&3
	[ "$(js error)" = ECONNREFUSED ]
}

# A Redis poller outside the shim: the server's connected clients (minus
# the poller's own connection) every 5 ms, until $BW_TMP/stop exists or
# 60 s; the peak into $BW_TMP/peak.
REDIS_POLLER='
import os, socket, sys, time
port, stop, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
peak, samples, t0 = 0, 0, time.monotonic()
while not os.path.exists(stop) and time.monotonic() - t0 < 60:
    s.sendall(b"INFO clients\r\n")
    n = int(f.readline()[1:])
    body = f.read(n + 2).decode()
    for line in body.splitlines():
        if line.startswith("connected_clients:"):
            peak = max(peak, int(line.split(":")[1]) - 1)
    samples += 1
    with open(out + ".tmp", "w") as o:
        o.write("%d %d\n" % (peak, samples))
    os.replace(out + ".tmp", out)
    time.sleep(0.005)
'

@test "eventloop: redis-benchmark -c 50 under bulkhead.max=8 bulkhead.wait=5s: no errors, server peak <= 8" {
	require_cmd redis-server redis-benchmark redis-cli
	local port
	port=$(free_port)
	start_bg redis-server --port "$port" --bind 127.0.0.1 --save '' \
		--appendonly no --daemonize no --dir "$BW_TMP"
	wait_until 5 redis-cli -h 127.0.0.1 -p "$port" ping
	start_bg "$PY" -c "$REDIS_POLLER" "$port" "$BW_TMP/stop" "$BW_TMP/peak"
	wait_until 5 test -s "$BW_TMP/peak"
	export BULWARK_POLICY="127.0.0.1:$port bulkhead.max=8 bulkhead.wait=5s; * retry.attempts=1"
	run timeout 60 env LD_PRELOAD="$BW_LIB" redis-benchmark -h 127.0.0.1 -p "$port" \
		-c 50 -n 2000 -t ping -q
	touch "$BW_TMP/stop"
	echo "# $output" | tr '\r' '\n' | grep -v '^ *$' | tail -4 >&3
	local peak samples
	read -r peak samples <"$BW_TMP/peak"
	echo "# server peak: $peak clients ($samples samples)" >&3
	[ "$status" -eq 0 ]
	grep -q 'PING_INLINE: .* requests per second' <<<"$output"
	grep -q 'PING_MBULK: .* requests per second' <<<"$output"
	! grep -qi 'error\|could not connect\|refused' <<<"$output"
	((samples >= 10))
	((peak >= 1))
	((peak <= 8))
	[ "$(field "127.0.0.1:$port" bulkhead.active)" -eq 0 ]
	[ "$(field "127.0.0.1:$port" rejected_calls)" -eq 0 ]
}

# node (libuv) closes every socket with a raw close system call that no
# hook sees: under a bulkhead, the slots of its closed connections must
# still come back (shim/closing.c finds them when the bulkhead is full).
NODE_MANY='
const http = require("http");
const port = Number(process.argv[1]), n = Number(process.argv[2]);
let ok = 0, bad = 0, left = n;
for (let i = 0; i < n; i++) {
  http.get({ host: "127.0.0.1", port: port, path: "/", agent: false }, (res) => {
    res.resume();
    res.on("end", () => { if (res.statusCode === 200) ok++; else bad++; if (--left === 0) fin(); });
  }).on("error", (e) => { bad++; if (--left === 0) fin(); });
}
function fin() { console.log(JSON.stringify({ ok: ok, bad: bad })); }
'

@test "eventloop: node under bulkhead.max=2: 8 concurrent http.get all served (libuv's raw close gives the slots back)" {
	require_cmd node
	start_faultsrv --mode stall --http --stall 200
	export BULWARK_POLICY="127.0.0.1:$FS_PORT bulkhead.max=2 bulkhead.wait=20s retry.attempts=1"
	run timeout 30 env LD_PRELOAD="$BW_LIB" node -e "$NODE_MANY" "$FS_PORT" 8
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[ "$(js ok)" = 8 ]
	[ "$(js bad)" = 0 ]
	stats_is peak -le 2
	[ "$(field "127.0.0.1:$FS_PORT" bulkhead.active)" = 0 ]
}
