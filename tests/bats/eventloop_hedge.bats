#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/eventloop_hedge.bats: hedge.delay for NON-blocking connects
# (the acceptance test of "Event loops are never stalled", item 3).  A name
# defined in a private /etc/hosts (a mount namespace of the client's own,
# unshare --mount) resolves to 127.0.0.2 first, where a fault server's
# accept queue is full (SYNs dropped: the connect hangs), and to 127.0.0.3
# second, where an HTTP server answers, both on one port.  With
# hedge.delay=100ms the shim races a connect to the second address after
# 100 ms inside the program's own wait; the winner ends up under the
# program's fd.  Python's socket.create_connection(..., timeout=3) (a
# non-blocking socket under poll) and curl (non-blocking, poll) both get
# through in well under a second instead of their own timeouts.
#
# 127.0.0.2 and 127.0.0.3 are both loopback with the same prefix against
# the source 127.0.0.1: getaddrinfo keeps the /etc/hosts order (checked by
# the first test).
#
# Also: errno.  The spare's connect (EINPROGRESS) and the swap run inside
# the program's wait; a wait that succeeds, or a blocking connect the hedge
# wins, leaves the program's errno as it was (tests/fixtures/sigclient.c -e).

load ../lib/common

PY=$(python3 -c 'import sys; print(sys.executable)')
NAME=hedge-loop.bulwark.test
SIGCLIENT=$BW_BUILD/fixtures/sigclient
[[ $SIGCLIENT == /* ]] || SIGCLIENT=$PWD/$SIGCLIENT

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	require_cmd unshare mount
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	printf '127.0.0.2 %s\n127.0.0.3 %s\n' "$NAME" "$NAME" >"$BW_TMP/hosts"
}

# in_names CMD...: CMD in a private mount namespace whose /etc/hosts is
# $BW_TMP/hosts.
in_names() {
	unshare --mount bash -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' \
		_ "$BW_TMP/hosts" "$@"
}

# port_free_on PORT: nobody listens on PORT at 127.0.0.2 nor 127.0.0.3.
port_free_on() {
	"$PY" -c '
import socket, sys
for a in ("127.0.0.2", "127.0.0.3"):
    s = socket.socket(); s.bind((a, int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
}

# hedge_env: the full accept queue on 127.0.0.2:PORT and the HTTP server
# on 127.0.0.3:PORT; exports PORT.
hedge_env() {
	local i
	for i in 1 2 3 4 5; do
		PORT=$(free_port 127.0.0.2)
		port_free_on "$PORT" && break
	done
	start_faultsrv --mode queue-full --listen "127.0.0.2:$PORT"
	start_faultsrv --mode http --listen "127.0.0.3:$PORT"
	export PORT
}

# js KEY: a field of the JSON line in $output.
js() {
	"$PY" -c 'import json, sys; print(json.loads(sys.argv[1].splitlines()[-1]).get(sys.argv[2]))' \
		"$output" "$1"
}

# Python's own way to a name: getaddrinfo, then each address in turn, each
# with the timeout (settimeout: a non-blocking socket, poll inside).
CREATE_CONNECTION='
import json, socket, sys, time
t0 = time.monotonic()
out = {}
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    out["connect_ms"] = int((time.monotonic() - t0) * 1000)
    out["peer"] = s.getpeername()[0]
    out["timeout"] = s.gettimeout()
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    out["status"] = s.recv(200).split(b"\r\n")[0].decode()
except OSError as e:
    out["connect_ms"] = int((time.monotonic() - t0) * 1000)
    out["error"] = type(e).__name__
print(json.dumps(out))
'

@test "eventloop hedge: the private name resolves to 127.0.0.2 first, 127.0.0.3 second" {
	run in_names "$PY" -c '
import socket, sys
print(" ".join(a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80,
      socket.AF_INET, socket.SOCK_STREAM)))' "$NAME"
	[ "$status" -eq 0 ]
	[ "$output" = "127.0.0.2 127.0.0.3" ]
}

@test "eventloop hedge: without the shim create_connection(timeout=3) waits out the first address (the test's premise)" {
	hedge_env
	run in_names timeout 20 "$PY" -c "$CREATE_CONNECTION" "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[ "$(js peer)" = 127.0.0.3 ]
	(($(js connect_ms) >= 2900))
}

@test "eventloop hedge: Python create_connection(timeout=3), first address drops SYNs, hedge.delay=100ms: connected well under a second" {
	hedge_env
	export BULWARK_POLICY="* hedge.delay=100ms retry.attempts=1"
	run in_names timeout 20 env LD_PRELOAD="$BW_LIB" "$PY" -c "$CREATE_CONNECTION" "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[ "$(js error)" = None ]
	[ "$(js peer)" = 127.0.0.3 ]
	[ "$(js status)" = "HTTP/1.1 200 OK" ]
	[ "$(js timeout)" = 3.0 ] # the program's socket as it made it
	(($(js connect_ms) >= 90))  # not before the delay
	(($(js connect_ms) < 1000))
}

@test "eventloop hedge: curl, first address drops SYNs, hedge.delay=100ms: connected well under a second" {
	require_cmd curl
	hedge_env
	export BULWARK_POLICY="* hedge.delay=100ms retry.attempts=1"
	run in_names timeout 20 env LD_PRELOAD="$BW_LIB" curl -s -o /dev/null \
		--connect-timeout 3 --max-time 10 \
		-w '%{http_code} %{remote_ip} %{time_connect}' "http://$NAME:$PORT/"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	local code ip t
	read -r code ip t <<<"$output"
	[ "$code" = 200 ]
	[ "$ip" = 127.0.0.3 ]
	"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 1.0 else 1)' "$t"
}

@test "eventloop hedge: curl without the shim waits on the first address (the test's premise)" {
	require_cmd curl
	hedge_env
	run in_names timeout 20 curl -s -o /dev/null --connect-timeout 3 --max-time 10 \
		-w '%{http_code} %{remote_ip} %{time_connect}' "http://$NAME:$PORT/"
	echo "# $output" >&3
	local code ip t
	read -r code ip t <<<"$output"
	[ "$code" = 200 ]
	[ "$ip" = 127.0.0.3 ]
	"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1.0 else 1)' "$t"
}

# sc ARGS...: sigclient under the shim in the private names, bounded; its
# line in $output.
sc() {
	[[ -x $SIGCLIENT ]] || skip "sigclient not built: $SIGCLIENT"
	run in_names timeout 20 env LD_PRELOAD="$BW_LIB" "$SIGCLIENT" "$@"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
}

# val KEY: KEY=VALUE from sigclient's line.
val() {
	sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$output"
}

@test "eventloop hedge: a poll, ppoll or epoll_wait that sees the hedge win leaves errno as the program had it" {
	hedge_env
	export BULWARK_POLICY="* hedge.delay=100ms retry.attempts=1"
	local mode
	for mode in poll ppoll epoll; do
		sc -e "$mode" "$NAME" "$PORT" 3000
		[ "$(val rc)" = 1 ]      # the program's fd, writable: connected
		[ "$(val errno)" = 1234 ] # not the spare's EINPROGRESS
		[ "$(val final)" = 0 ]
		(($(val ms) >= 90 && $(val ms) < 2000)) # the hedge, not the timeout
	done
}

@test "eventloop hedge: a blocking connect the hedge wins leaves errno as the program had it" {
	hedge_env
	export BULWARK_POLICY="* hedge.delay=100ms connect.timeout=3s retry.attempts=1"
	sc -e connect "$NAME" "$PORT"
	[ "$(val rc)" = 0 ]
	[ "$(val errno)" = 1234 ]
	(($(val ms) >= 90 && $(val ms) < 2000))
}
