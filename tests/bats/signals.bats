#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/signals.bats: a program's own signals interrupt the shim's
# waits exactly as they would interrupt its calls without the shim: EINTR
# when the handler lacks SA_RESTART, otherwise the call goes on to its
# deadline (io.timeout, connect.timeout, hedge.delay, the retries' backoff).
# Also: errno after a successful connect, and after a successful wait with
# a non-blocking connect's retries inside, a poll's timeout with retries
# inside, and a close of the fd by another thread during a backoff.  The
# driver is tests/fixtures/sigclient.c (SIGALRM from an interval timer).

load ../lib/common
load ../lib/netns

SIGCLIENT=$BW_BUILD/fixtures/sigclient
[[ $SIGCLIENT == /* ]] || SIGCLIENT=$PWD/$SIGCLIENT

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	[[ -x $SIGCLIENT ]] || skip "sigclient not built: $SIGCLIENT"
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
}

# sc ARGS...: sigclient under the shim, bounded; its line in $output.
sc() {
	run timeout 10 env LD_PRELOAD="$BW_LIB" "$SIGCLIENT" "$@"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
}

# val KEY: KEY=VALUE from sigclient's line.
val() {
	sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$output"
}

@test "io.timeout: one signal without SA_RESTART ends the receive with EINTR" {
	start_faultsrv --mode stall
	BULWARK_POLICY="127.0.0.1 io.timeout=2s retry.attempts=1" \
		sc -s norestart -i 100 -1 recv 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = EINTR ]
	(( $(val ms) < 1000 ))
}

@test "io.timeout: SA_RESTART signals every 50 ms neither end nor stretch the receive" {
	start_faultsrv --mode stall
	BULWARK_POLICY="127.0.0.1 io.timeout=300ms retry.attempts=1" \
		sc -s restart -i 50 recv 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = ETIMEDOUT ]
	(( $(val sigs) >= 2 ))
	(( $(val ms) >= 250 && $(val ms) < 2000 ))
}

@test "io.timeout: a handler installed, no signal: the plain timeout" {
	start_faultsrv --mode stall
	BULWARK_POLICY="127.0.0.1 io.timeout=300ms retry.attempts=1" \
		sc -s restart recv 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = ETIMEDOUT ]
	(( $(val ms) < 2000 ))
}

@test "connect.timeout: SA_RESTART signals every 50 ms give ETIMEDOUT after the timeout, not EINTR" {
	start_faultsrv --mode queue-full
	BULWARK_POLICY="127.0.0.1 connect.timeout=1s retry.attempts=1" \
		sc -s restart -i 50 connect 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = ETIMEDOUT ]
	(( $(val sigs) >= 5 ))
	(( $(val ms) >= 900 && $(val ms) < 3000 ))
}

@test "handlers that disagree: SA_RESTART signals still neither end nor stretch io.timeout and connect.timeout" {
	# SIGUSR1 has a handler without SA_RESTART (never sent): the shim
	# must tell which signal came, not guess from the handlers.
	start_faultsrv --mode stall
	BULWARK_POLICY="127.0.0.1 io.timeout=300ms retry.attempts=1" \
		sc -m -s restart -i 50 recv 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = ETIMEDOUT ]
	(( $(val sigs) >= 2 ))
	start_faultsrv --mode queue-full
	BULWARK_POLICY="127.0.0.1 connect.timeout=500ms retry.attempts=1" \
		sc -m -s restart -i 50 connect 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = ETIMEDOUT ]
	(( $(val sigs) >= 5 ))
	(( $(val ms) >= 400 && $(val ms) < 2000 ))
}

@test "connect.timeout: a signal without SA_RESTART ends the connect with EINTR" {
	start_faultsrv --mode queue-full
	BULWARK_POLICY="127.0.0.1 connect.timeout=1s retry.attempts=1" \
		sc -s norestart -i 50 connect 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = EINTR ]
	(( $(val ms) < 900 ))
}

@test "hedge.delay: SA_RESTART signals do not turn the hedged connect into EINTR" {
	require_cmd unshare mount
	netns_up || skip "network namespaces unavailable: $NETNS_REASON"
	local port name=sig.bulwark.test
	port=$(free_port)
	netns_blackhole "$port"
	start_faultsrv --mode http --listen "127.0.0.1:$port"
	printf '%s %s\n%s %s\n' "$NETNS_NS_IP" "$name" 127.0.0.1 "$name" \
		>"$BW_TMP/hosts"
	printf 'precedence ::ffff:10.213.0.0/112 100\nprecedence ::/0 40\nprecedence ::ffff:0:0/96 10\n' \
		>"$BW_TMP/gai.conf"
	BULWARK_POLICY="* hedge.delay=200ms connect.timeout=3s retry.attempts=1" \
		run timeout 20 unshare --mount bash -c \
		'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/gai.conf &&
		 shift 2 && exec env LD_PRELOAD="$BW_LIB" "$@"' _ \
		"$BW_TMP/hosts" "$BW_TMP/gai.conf" \
		"$SIGCLIENT" -s restart -i 50 connect "$name" "$port"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[ "$(val rc)" = 0 ]
	(( $(val sigs) >= 2 ))
	(( $(val ms) < 2000 ))
}

@test "retries: SA_RESTART signals every 20 ms leave every attempt of the schedule; ECONNREFUSED" {
	start_faultsrv --mode refuse
	BULWARK_POLICY="127.0.0.1 retry.attempts=3 retry.backoff=200ms breaker.failures=100" \
		sc -s restart -i 20 connect 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = ECONNREFUSED ]
	(( $(val sigs) >= 5 ))
	[ "$(bw_field "127.0.0.1:$FS_PORT" failed_calls)" = 3 ]
	[ "$(bw_field "127.0.0.1:$FS_PORT" total_calls)" = 3 ]
}

@test "retries: a signal without SA_RESTART during the backoff ends the connect with EINTR" {
	start_faultsrv --mode refuse
	BULWARK_POLICY="127.0.0.1 retry.attempts=3 retry.backoff=500ms breaker.failures=100" \
		sc -s norestart -i 100 connect 127.0.0.1 "$FS_PORT"
	[ "$(val errno)" = EINTR ]
	(( $(val ms) < 450 ))
	[ "$(bw_field "127.0.0.1:$FS_PORT" failed_calls)" = 1 ]
}

@test "a successful connect with connect.timeout leaves errno as the program had it" {
	start_faultsrv --mode echo
	BULWARK_POLICY="127.0.0.1 connect.timeout=1s retry.attempts=1" \
		sc -e connect 127.0.0.1 "$FS_PORT"
	[ "$(val rc)" = 0 ]
	[ "$(val errno)" = 1234 ]
}

@test "a connect that succeeds on a retry leaves errno as the program had it" {
	start_faultsrv --mode echo --refuse-for 150
	BULWARK_POLICY="127.0.0.1 connect.timeout=1s retry.attempts=5 retry.backoff=100ms breaker.failures=100" \
		sc -e connect 127.0.0.1 "$FS_PORT"
	[ "$(val rc)" = 0 ]
	[ "$(val errno)" = 1234 ]
	(( $(bw_field "127.0.0.1:$FS_PORT" failed_calls) >= 1 ))
}

@test "a connect that succeeds on a retry without connect.timeout leaves errno as the program had it" {
	start_faultsrv --mode echo --refuse-for 150
	BULWARK_POLICY="127.0.0.1 retry.attempts=5 retry.backoff=100ms breaker.failures=100" \
		sc -e connect 127.0.0.1 "$FS_PORT"
	[ "$(val rc)" = 0 ]
	[ "$(val errno)" = 1234 ]
	(( $(bw_field "127.0.0.1:$FS_PORT" failed_calls) >= 1 ))
}

@test "a poll or epoll_wait that sees a non-blocking connect succeed on a retry leaves errno as the program had it" {
	local mode
	for mode in poll epoll; do
		start_faultsrv --mode echo --refuse-for 150
		BULWARK_POLICY="127.0.0.1 retry.attempts=5 retry.backoff=100ms breaker.failures=100" \
			sc -e "$mode" 127.0.0.1 "$FS_PORT" 3000
		[ "$(val rc)" = 1 ]
		[ "$(val errno)" = 1234 ] # the retries ran inside the wait
		[ "$(val final)" = 0 ]
		(( $(bw_field "127.0.0.1:$FS_PORT" failed_calls) >= 1 ))
	done
}

@test "poll(500) with a connect retried inside (backoff 400 ms) returns within its timeout" {
	start_faultsrv --mode refuse
	BULWARK_POLICY="127.0.0.1 retry.attempts=3 retry.backoff=400ms breaker.failures=100" \
		sc poll 127.0.0.1 "$FS_PORT" 500
	(( $(val ms) < 1000 ))
	# The retries left over go on in the program's next polls.
	[ "$(val final)" = ECONNREFUSED ]
	[ "$(bw_field "127.0.0.1:$FS_PORT" failed_calls)" = 3 ]
}

@test "ppoll(500 ms) with a connect retried inside returns within its timeout too" {
	start_faultsrv --mode refuse
	BULWARK_POLICY="127.0.0.1 retry.attempts=3 retry.backoff=400ms breaker.failures=100" \
		sc ppoll 127.0.0.1 "$FS_PORT" 500
	(( $(val ms) < 1000 ))
	[ "$(val final)" = ECONNREFUSED ]
	[ "$(bw_field "127.0.0.1:$FS_PORT" failed_calls)" = 3 ]
}

@test "a close during another thread's backoff: EBADF, no slot leaked, no other destination charged" {
	start_faultsrv --mode refuse
	local refused=$FS_PORT
	start_faultsrv --mode echo
	local good=$FS_PORT
	BULWARK_LOG=info \
	BULWARK_POLICY="127.0.0.1 retry.attempts=3 retry.backoff=500ms bulkhead.max=1 breaker.failures=100" \
		sc closerace 127.0.0.1 "$refused" "$good" "$BULWARK_LOG_FILE"
	[ "$(val a_errno)" = EBADF ]
	[ "$(val b_rc)" = 0 ]
	[ "$(val c_rc)" = 0 ] # the good destination's one slot came back
	[ "$(bw_field "127.0.0.1:$good" rejected_calls)" = 0 ]
	[ "$(bw_field "127.0.0.1:$good" failed_calls)" = 0 ]
	[ "$(bw_field "127.0.0.1:$good" total_calls)" = 2 ]
	[ "$(bw_field "127.0.0.1:$refused" total_calls)" = 1 ]
	[ "$(bw_field "127.0.0.1:$refused" bulkhead.active)" = 0 ]
	[ "$(bw_field "127.0.0.1:$good" bulkhead.active)" = 0 ]
}

# A Python blocking connect interrupted by its own signal (Python installs
# handlers without SA_RESTART): CPython takes EINTR from connect as "the
# connect goes on", polls and reads SO_ERROR.  The shim's wait was before
# or between attempts, so no connect is going on: SO_ERROR must say how it
# ended, never 0 (a connect that never happened reported as connected).
pyintr() {
	run timeout 20 env LD_PRELOAD="$BW_LIB" python3 -c '
import signal, socket, sys, time
signal.signal(signal.SIGALRM, lambda *a: None)
port = int(sys.argv[1])
held = []
if sys.argv[2] == "bulkhead":
    h = socket.create_connection(("127.0.0.1", port)); held.append(h)
signal.setitimer(signal.ITIMER_REAL, 0.15)
s = socket.socket()
try:
    s.connect(("127.0.0.1", port))
    print("connected")
except OSError as e:
    print("error", e.errno)
' "$@"
	echo "# $output" >&3
}

@test "python: a signal during the bulkhead wait ends the connect refused, not connected" {
	start_faultsrv --mode echo
	BULWARK_POLICY="127.0.0.1 bulkhead.max=1 bulkhead.wait=3s retry.attempts=1" \
		pyintr "$FS_PORT" bulkhead
	[ "$status" -eq 0 ]
	[ "$output" = "error 111" ]
}

@test "python: a signal during the retries' backoff ends the connect with the last error, not connected" {
	port=$(free_port)
	BULWARK_POLICY="127.0.0.1 retry.attempts=3 retry.backoff=2s" \
		pyintr "$port" backoff
	[ "$status" -eq 0 ]
	[ "$output" = "error 111" ]
}
