#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/faultsrv.bats: the fault server itself, checked with real
# clients (curl, nc, python3) before other tests trust it.  No shim here.

load ../lib/common
load ../lib/netns

setup() {
	bw_setup
	require_faultsrv
}

# elapsed_ms CMD...: run CMD (output discarded), print its wall time in ms.
elapsed_ms() {
	local t0 t1
	t0=$(now_ms)
	"$@" >/dev/null 2>&1 || true
	t1=$(now_ms)
	echo $((t1 - t0))
}

@test "faultsrv: bad usage exits 2, --help exits 0" {
	run "$FAULTSRV"
	[ "$status" -eq 2 ]
	run "$FAULTSRV" --mode nosuch
	[ "$status" -eq 2 ]
	[[ $output == *"unknown mode"* ]]
	run "$FAULTSRV" --help
	[ "$status" -eq 0 ]
	[[ $output == *queue-full* ]]
}

@test "faultsrv: refuse: curl exits 7, connect gets ECONNREFUSED" {
	start_faultsrv --mode refuse
	run curl -sS --max-time 5 "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 7 ]
	run tcp_try 127.0.0.1 "$FS_PORT" 2
	[ "$output" = ECONNREFUSED ]
	stats_is accepted -eq 0
	# the port stays reserved: nobody else can listen there meanwhile
	run python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("bound")
except OSError as e:
    print("in use")
' "$FS_PORT"
	[ "$output" = "in use" ]
}

@test "faultsrv: reset: curl exits 56 with a connection reset" {
	start_faultsrv --mode reset
	run curl -sS --max-time 5 "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 56 ]
	[[ $output == *"reset"* ]]
	stats_wait accepted -eq 1
}

@test "faultsrv: reset: a python client's recv gets ECONNRESET" {
	start_faultsrv --mode reset
	run python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"ping\n")
try:
    print("data", s.recv(100))
except ConnectionResetError:
    print("ECONNRESET")
' "$FS_PORT"
	[ "$output" = ECONNRESET ]
}

@test "faultsrv: close: curl gets an empty reply (exit 52)" {
	start_faultsrv --mode close
	run curl -sS --max-time 5 "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 52 ]
	stats_wait accepted -eq 1
}

@test "faultsrv: http: 200 with Content-Length and the body" {
	start_faultsrv --mode http --body 'hello faultsrv'
	run curl -sS -i --max-time 5 "http://127.0.0.1:$FS_PORT/a/b?c=d"
	[ "$status" -eq 0 ]
	[[ ${lines[0]} == "HTTP/1.1 200 OK"* ]]
	[[ $output == *"Content-Length: 14"* ]]
	[[ $output == *"Connection: close"* ]]
	[[ ${lines[-1]} == "hello faultsrv" ]]
	# a request with a body, and HTTP/1.0
	run curl -sS --max-time 5 -d 'x=1&y=2' "http://127.0.0.1:$FS_PORT/post"
	[ "$output" = "hello faultsrv" ]
	run curl -sS -0 --max-time 5 "http://127.0.0.1:$FS_PORT/"
	[ "$output" = "hello faultsrv" ]
	stats_wait requests -eq 3
	stats_wait accepted -eq 3
	stats_wait current -eq 0
}

@test "faultsrv: http --keep-alive serves two requests on one connection" {
	start_faultsrv --mode http --keep-alive
	run curl -sS --max-time 5 "http://127.0.0.1:$FS_PORT/1" \
		"http://127.0.0.1:$FS_PORT/2"
	[ "$status" -eq 0 ]
	[ "$output" = $'ok\nok' ]
	stats_wait requests -eq 2
	stats_is accepted -eq 1
}

@test "faultsrv: wget and python http.client read the http answer" {
	require_cmd wget
	start_faultsrv --mode http
	run wget -q -O - --tries=1 --timeout=5 "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 0 ]
	[ "$output" = ok ]
	run python3 -c '
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/")
r = c.getresponse()
print(r.status, r.read().decode().strip())
' "$FS_PORT"
	[ "$output" = "200 ok" ]
}

@test "faultsrv: stall --http answers after at least the stall" {
	start_faultsrv --mode stall --http --stall 800
	local ms
	ms=$(elapsed_ms curl -sS --max-time 10 "http://127.0.0.1:$FS_PORT/")
	[ "$ms" -ge 750 ]
	[ "$ms" -lt 8000 ]
	run curl -sS --max-time 10 "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 0 ]
	[ "$output" = ok ]
}

@test "faultsrv: stall without --stall never answers" {
	start_faultsrv --mode stall --http
	run curl -sS --max-time 1 "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 28 ]
	stats_wait requests -eq 1
	# the server noticed the client leave
	stats_wait current -eq 0
}

@test "faultsrv: echo: bytes come back unchanged (python and nc)" {
	start_faultsrv --mode echo
	run python3 -c '
import os, socket, sys
data = os.urandom(200000)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
print("same" if got == data else "differ %d" % len(got))
' "$FS_PORT"
	[ "$output" = same ]
	run bash -c "printf 'hello\nworld\n' | nc -N 127.0.0.1 $FS_PORT"
	[ "$output" = $'hello\nworld' ]
	stats_wait bytes_in -ge 200012
	stats_wait bytes_out -ge 200012
}

@test "faultsrv: echo --stall delays each answer" {
	start_faultsrv --mode echo --stall 500
	local ms
	ms=$(elapsed_ms bash -c "printf 'x\n' | nc -N 127.0.0.1 $FS_PORT")
	[ "$ms" -ge 450 ]
	run bash -c "printf 'abc\n' | nc -N 127.0.0.1 $FS_PORT"
	[ "$output" = abc ]
}

@test "faultsrv: IPv6 [::1] listener echoes" {
	python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null ||
		skip "no ::1 on this machine"
	start_faultsrv --mode echo --listen '[::1]:0'
	run bash -c "printf 'six\n' | nc -N ::1 $FS_PORT"
	[ "$output" = six ]
	grep -q '^accept [0-9]* \[::1\]:[0-9]*$' "$FS_LOG"
}

@test "faultsrv: queue-full: connects time out, nothing is accepted" {
	start_faultsrv --mode queue-full
	run tcp_try 127.0.0.1 "$FS_PORT" 0.5
	[ "$output" = timeout ]
	run tcp_try 127.0.0.1 "$FS_PORT" 0.5
	[ "$output" = timeout ]
	stats_is accepted -eq 0
}

@test "faultsrv: flap alternates between accepting and refusing" {
	start_faultsrv --mode flap --flap 200:200 --http
	local i ok=0 refused=0 r
	for ((i = 0; i < 40; i++)); do
		r=$(tcp_try 127.0.0.1 "$FS_PORT" 1 || true)
		case $r in
		ok) ok=$((ok + 1)) ;;
		ECONNREFUSED) refused=$((refused + 1)) ;;
		*) echo "# unexpected: $r" >&2; return 1 ;;
		esac
		sleep 0.05
	done
	echo "# ok=$ok refused=$refused" >&3
	[ "$ok" -ge 3 ]
	[ "$refused" -ge 3 ]
	# and it still answers HTTP while up
	wait_until 5 curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$FS_PORT/"
}

@test "faultsrv: refuse-for: refused first, then listening on the same port" {
	start_faultsrv --mode http --refuse-for 1500
	run tcp_try 127.0.0.1 "$FS_PORT" 2
	[ "$output" = ECONNREFUSED ]
	run curl -sS --max-time 5 "http://127.0.0.1:$FS_PORT/"
	[ "$status" -eq 7 ]
	wait_until 10 curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$FS_PORT/"
	run curl -sS --max-time 5 "http://127.0.0.1:$FS_PORT/"
	[ "$output" = ok ]
}

@test "faultsrv: stats: peak concurrency of 10 parallel curls is 10" {
	start_faultsrv --mode stall --http --stall 1500
	local i pids=()
	for ((i = 0; i < 10; i++)); do
		curl -s --max-time 20 -o /dev/null "http://127.0.0.1:$FS_PORT/" 3>&- &
		pids+=($!)
	done
	stats_wait current -eq 10 10
	for i in "${pids[@]}"; do
		wait "$i"
	done
	stats_wait current -eq 0
	stats_is peak -eq 10
	stats_is accepted -eq 10
	stats_is requests -eq 10
	[ "$(log_count)" -eq 10 ]
}

@test "faultsrv: accept log: one line per connection with time and peer" {
	start_faultsrv --mode http
	local before after
	before=$(date +%s%N)
	curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$FS_PORT/"
	curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$FS_PORT/"
	after=$(date +%s%N)
	wait_until 5 test "$(log_count)" -eq 2
	run cat "$FS_LOG"
	local line ts
	for line in "${lines[@]}"; do
		[[ $line =~ ^accept\ ([0-9]+)\ 127\.0\.0\.1:[0-9]+$ ]]
		ts=${BASH_REMATCH[1]}
		[ "$ts" -ge "$before" ] && [ "$ts" -le "$after" ]
	done
}

@test "faultsrv: holds 300 concurrent connections" {
	start_faultsrv --mode echo
	run python3 -c '
import socket, sys, time
port = int(sys.argv[1])
socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(300)]
for i, s in enumerate(socks):
    s.sendall(b"%d\n" % i)
bad = sum(1 for i, s in enumerate(socks) if s.recv(100) != b"%d\n" % i)
print("bad", bad)
with open(sys.argv[2]) as f:
    print(f.read().split()[1])
' "$FS_PORT" "$FS_STATS"
	[ "${lines[0]}" = "bad 0" ]
	[ "${lines[1]}" = "current=300" ]
	stats_wait current -eq 0
	stats_is peak -eq 300
}

@test "faultsrv: --max-conns queues connections beyond N" {
	start_faultsrv --mode stall --http --stall 600 --max-conns 2
	local i pids=()
	for ((i = 0; i < 5; i++)); do
		curl -s --max-time 20 -o /dev/null "http://127.0.0.1:$FS_PORT/" 3>&- &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i"
	done
	stats_wait accepted -eq 5
	stats_is peak -eq 2
}

@test "faultsrv: SIGTERM ends it with status 0 and removes the pid file" {
	local pidf=$BW_TMP/fs.pid
	"$FAULTSRV" --mode echo --pid-file "$pidf" --duration 60 >"$BW_TMP/port" 3>&- &
	local pid=$!
	bw_track_pid "$pid"
	wait_until 5 test -s "$BW_TMP/port"
	[ "$(cat "$pidf")" -eq "$pid" ]
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
	[ ! -e "$pidf" ]
}

@test "faultsrv: --duration ends it" {
	"$FAULTSRV" --mode http --duration 1 >"$BW_TMP/port" 3>&- &
	local pid=$!
	bw_track_pid "$pid"
	wait_until 5 test -s "$BW_TMP/port"
	wait_until 10 bash -c "! kill -0 $pid 2>/dev/null"
}

@test "faultsrv: in a namespace: open port answers, blackholed port times out" {
	netns_up || skip "network namespaces unavailable: $NETNS_REASON"
	netns_start_faultsrv --mode http
	local open=$FS_PORT
	run curl -sS --max-time 5 "http://$NETNS_NS_IP:$open/"
	[ "$status" -eq 0 ]
	[ "$output" = ok ]
	netns_start_faultsrv --mode http
	local holed=$FS_PORT
	netns_blackhole "$holed"
	run tcp_try "$NETNS_NS_IP" "$holed" 0.5
	[ "$output" = timeout ]
	run curl -sS --max-time 1 "http://$NETNS_NS_IP:$holed/"
	[ "$status" -eq 28 ]
	# the drop rule is per port: the open one still answers
	run tcp_try "$NETNS_NS_IP" "$open" 2
	[ "$output" = ok ]
	# and a port nobody listens on inside is refused, not dropped
	run tcp_try "$NETNS_NS_IP" 9 2
	[ "$output" = ECONNREFUSED ]
	netns_unblackhole
	run tcp_try "$NETNS_NS_IP" "$holed" 2
	[ "$output" = ok ]
}

@test "faultsrv: netns_down removes the namespace and its veth" {
	netns_up || skip "network namespaces unavailable: $NETNS_REASON"
	local ns=$NETNS_NAME hif=$NETNS_HOST_IF
	ip netns list | grep -q "^$ns\b"
	ip link show "$hif" >/dev/null
	netns_start_faultsrv --mode echo
	local pid=$FS_PID
	netns_down
	run ip netns list
	[[ $output != *"$ns"* ]]
	run ip link show "$hif"
	[ "$status" -ne 0 ]
	run kill -0 "$pid"
	[ "$status" -ne 0 ]
}
