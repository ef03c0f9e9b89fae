#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/hedge.bats: hedged connects (bulwark-policy(7) hedge.delay).  A
# name defined in a private /etc/hosts (a mount namespace of the client's own,
# unshare --mount) resolves to a blackholed test host (a network namespace,
# tests/lib/netns.bash) first and to a healthy server on 127.0.0.1 second,
# both on one port.  A blocking Python client connects through the healthy
# one within hedge.delay plus a connect time, and cannot tell: same fd,
# same options, still blocking, still close-on-exec.  Without hedge.delay
# it waits connect.timeout first.  hedge.delay=0 takes no new code path.
#
# glibc's getaddrinfo sorts by RFC 6724, not by /etc/hosts order: 127.0.0.1
# would come first.  The private namespace also binds a gai.conf that gives
# the test range 10.213.0.0/16 the highest precedence, so the answer is in
# the order the test wants (checked by "the private name resolves ...").

load ../lib/common
load ../lib/netns

PY=$(python3 -c 'import sys; print(sys.executable)')
CLIENT=$BW_ROOT/tests/clients/hedge_client.py
NAME=hedge.bulwark.test

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	require_cmd unshare mount
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
}

# names FIRST SECOND: $NAME resolves to FIRST then SECOND inside in_names.
names() {
	printf '%s %s\n%s %s\n' "$1" "$NAME" "$2" "$NAME" >"$BW_TMP/hosts"
	cat >"$BW_TMP/gai.conf" <<'EOF2'
precedence ::1/128 50
precedence ::/0 40
precedence 2002::/16 30
precedence ::/96 20
precedence ::ffff:0:0/96 10
precedence ::ffff:10.213.0.0/112 100
EOF2
}

# in_names CMD...: CMD in a private mount namespace seeing names' files.
in_names() {
	unshare --mount bash -c 'mount --bind "$1" /etc/hosts &&
		mount --bind "$2" /etc/gai.conf && shift 2 && exec "$@"' \
		_ "$BW_TMP/hosts" "$BW_TMP/gai.conf" "$@"
}

# hedge_env: a blackholed port on the test host and a healthy HTTP server
# on 127.0.0.1 at the same port; exports PORT and BH (the test host's IP).
hedge_env() {
	netns_up || skip "network namespaces unavailable: $NETNS_REASON"
	PORT=$(free_port)
	netns_blackhole "$PORT"
	start_faultsrv --mode http --listen "127.0.0.1:$PORT"
	BH=$NETNS_NS_IP
	export PORT BH
}

# client: the Python client under the shim, inside in_names; JSON in
# $output.
client() {
	run in_names env LD_PRELOAD="$BW_LIB" "$PY" "$CLIENT" "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
}

# js KEY: a field of the client's JSON line.
js() {
	"$PY" -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' \
		"$output" "$1"
}

# stat DEST FIELD: a field of bulwark status for DEST (0 when absent).
stat() {
	"$BW_CLI" status --json | "$PY" -c '
import json, sys
for row in json.load(sys.stdin):
    if row["destination"] == sys.argv[1]:
        print(row[sys.argv[2]])
        break
else:
    print(0)' "$1" "$2"
}

@test "hedge: the private name resolves blackhole first, healthy second" {
	hedge_env
	names "$BH" 127.0.0.1
	run in_names "$PY" -c '
import socket, sys
print(" ".join(a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80,
      socket.AF_INET, socket.SOCK_STREAM)))' "$NAME"
	[ "$status" -eq 0 ]
	[ "$output" = "$BH 127.0.0.1" ]
}

@test "hedge: a blackholed first address is raced after hedge.delay; the healthy one wins" {
	hedge_env
	names "$BH" 127.0.0.1
	export BULWARK_POLICY="* hedge.delay=200ms connect.timeout=2s retry.attempts=1"
	client
	[ "$(js error)" = None ]
	[ "$(js tries)" = 1 ]                  # one program connect
	(($(js connect_ms) >= 190))            # not before the delay
	(($(js connect_ms) < 500))             # delay + a connect + slack
	[ "$(js peer)" = 127.0.0.1 ]
	[[ $(js status) == "HTTP/1.1 200"* ]]
	# The program cannot tell its socket was swapped.
	[ "$(js blocking)" = True ]
	[ "$(js cloexec)" = True ]
	[ "$(js nodelay)" = 1 ]
	[ "$(js keepalive)" = 1 ]
	[ "$(js keepidle)" = 77 ]
	[ "$(js rcvbuf)" = 131072 ]
	# The winner is a success of its own destination (its connect, then
	# the request's exchange); the loser counts as neither success nor
	# failure.
	[ "$(stat "127.0.0.1:$PORT" successful_calls)" = 2 ]
	[ "$(stat "127.0.0.1:$PORT" failed_calls)" = 0 ]
	[ "$(stat "$BH:$PORT" total_calls)" = 0 ]
}

@test "hedge: without hedge.delay the client waits connect.timeout first" {
	hedge_env
	names "$BH" 127.0.0.1
	export BULWARK_POLICY="* connect.timeout=2s retry.attempts=1"
	client
	[ "$(js tries)" = 2 ]                  # timed out, then the next one
	(($(js connect_ms) >= 1900))
	[ "$(js peer)" = 127.0.0.1 ]
	[[ $(js status) == "HTTP/1.1 200"* ]]
	[ "$(stat "$BH:$PORT" failed_calls)" = 1 ]
}

@test "hedge: both fail: the program's attempt's error, at connect.timeout" {
	hedge_env
	names "$BH" 127.0.0.2
	# Nothing listens on 127.0.0.2 (the server is on 127.0.0.1): the
	# hedge is refused at once, and the program's attempt decides.
	export BULWARK_POLICY="* hedge.delay=100ms connect.timeout=1s retry.attempts=1"
	run in_names env LD_PRELOAD="$BW_LIB" "$PY" -c '
import socket, sys, time, errno
s = socket.socket()
t0 = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except OSError as e:
    print(errno.errorcode[e.errno], int((time.monotonic() - t0) * 1000))
' "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	read -r e ms <<<"$output"
	[ "$e" = ETIMEDOUT ]
	((ms >= 900 && ms < 1500))
}

# syscalls HEDGE: strace the client's connect with hedge.delay=HEDGE and
# no connect.timeout, to a name whose first address is the healthy one (it
# connects at once) and whose second is 127.0.0.2 (nothing listens).
syscalls() {
	require_cmd strace
	PORT=$(free_port)
	start_faultsrv --mode http --listen "127.0.0.1:$PORT"
	names 127.0.0.1 127.0.0.2
	export BULWARK_POLICY="* hedge.delay=$1 retry.attempts=1"
	run in_names env LD_PRELOAD="$BW_LIB" strace -f -qq -o "$BW_TMP/trace" \
		-e trace=socket,connect,getsockname,fcntl,poll,dup3 \
		"$PY" "$CLIENT" "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[ "$(js peer)" = 127.0.0.1 ]
	# From the program's TCP socket on (Python's own start-up is noise).
	sed -n '/socket(AF_INET, SOCK_STREAM/,$p' "$BW_TMP/trace" >"$BW_TMP/tcp"
	cat "$BW_TMP/tcp" | sed 's/^/# /' >&3
}

@test "hedge: hedge.delay=0 takes no new code path (plain blocking connect)" {
	syscalls 0
	# The connect is the kernel's own blocking one: no O_NONBLOCK toggle,
	# no bind check, no poll, one TCP socket.
	! grep -q 'getsockname\|O_NONBLOCK\|poll(' "$BW_TMP/tcp"
	[ "$(grep -c 'socket(AF_INET, SOCK_STREAM' "$BW_TMP/tcp")" = 1 ]
	grep -q "connect(.*127.0.0.1.*) = 0" "$BW_TMP/tcp"
}

@test "hedge: a connect that completes before hedge.delay makes no second socket" {
	syscalls 200ms
	# The hedged path ran (bind check, non-blocking attempt under poll)...
	grep -q 'getsockname' "$BW_TMP/tcp"
	grep -q 'O_NONBLOCK' "$BW_TMP/tcp"
	# ...but the attempt won before the delay: no spare socket, no dup3.
	[ "$(grep -c 'socket(AF_INET, SOCK_STREAM' "$BW_TMP/tcp")" = 1 ]
	! grep -q 'dup3' "$BW_TMP/tcp"
}

# ---- non-blocking connects: the race runs inside the program's waits ----

@test "hedge: socket.create_connection(timeout=3) gets through the second address in well under a second" {
	hedge_env
	names "$BH" 127.0.0.1
	export BULWARK_POLICY="* hedge.delay=100ms retry.attempts=1"
	# create_connection with a timeout connects non-blocking and waits in
	# poll(); without the race in that poll it waits the whole 3 s on the
	# blackholed first address.
	run in_names env LD_PRELOAD="$BW_LIB" "$PY" -c '
import socket, sys, time
t0 = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
ms = int((time.monotonic() - t0) * 1000)
s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
status = s.makefile("rb").readline().decode().strip()
print(ms, s.getpeername()[0], s.gettimeout(), status)
' "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	read -r ms peer tmo st _ <<<"$output"
	((ms < 800))
	[ "$peer" = 127.0.0.1 ]
	[ "$tmo" = 3.0 ]                       # still the program's timeout mode
	[ "$st" = HTTP/1.1 ]
	# One connect, on the winner's destination (its connect, then the
	# request's exchange); the loser is no call.
	[ "$(stat "127.0.0.1:$PORT" successful_calls)" = 2 ]
	[ "$(stat "127.0.0.1:$PORT" failed_calls)" = 0 ]
	[ "$(stat "$BH:$PORT" total_calls)" = 0 ]
}

@test "hedge: options set before a non-blocking connect survive the swap; the fd keeps its flags" {
	hedge_env
	names "$BH" 127.0.0.1
	export BULWARK_POLICY="* hedge.delay=100ms retry.attempts=1"
	run in_names env LD_PRELOAD="$BW_LIB" "$PY" -c '
import fcntl, os, select, socket, sys, time
ai = socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), socket.AF_INET,
                        socket.SOCK_STREAM)[0]
s = socket.socket(ai[0], ai[1] | socket.SOCK_NONBLOCK)
fd = s.fileno()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
before = sorted(os.listdir("/proc/self/fd"))
t0 = time.monotonic()
assert s.connect_ex(ai[4]) == 115            # EINPROGRESS
p = select.poll()
p.register(fd, select.POLLOUT)
ev = p.poll(3000)
ms = int((time.monotonic() - t0) * 1000)
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
print(ms, err, ev[0][1] if ev else 0, s.fileno() == fd,
      s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
      s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
      s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
      bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
      bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
      s.getpeername()[0], sorted(os.listdir("/proc/self/fd")) == before)
' "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	read -r ms err ev same nodelay ka idle nb cloexec peer fds <<<"$output"
	((ms >= 90 && ms < 800))               # not before the delay
	[ "$err" = 0 ]
	[ "$ev" = 4 ]                          # POLLOUT alone
	[ "$same" = True ]
	[ "$nodelay" = 1 ]
	[ "$ka" = 1 ]
	[ "$idle" = 77 ]
	[ "$nb" = True ]
	[ "$cloexec" = True ]
	[ "$peer" = 127.0.0.1 ]
	[ "$fds" = True ]                      # the spare's fd is gone
}

@test "hedge: curl connects through the second address in well under a second" {
	require_cmd curl
	hedge_env
	names "$BH" 127.0.0.1
	export BULWARK_POLICY="* hedge.delay=100ms retry.attempts=1"
	# --connect-timeout 7: without the race curl gives the first address
	# half of it (3.5 s) before it tries the second.
	run in_names env LD_PRELOAD="$BW_LIB" curl -s -o /dev/null \
		--connect-timeout 7 -w '%{http_code} %{time_connect}\n' \
		"http://$NAME:$PORT/"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	read -r code tc <<<"$output"
	[ "$code" = 200 ]
	awk -v t="$tc" 'BEGIN {exit !(t < 0.8)}'
	[ "$(stat "$BH:$PORT" total_calls)" = 0 ]
}

@test "hedge: a non-blocking connect that completes before hedge.delay makes no second socket" {
	require_cmd strace
	PORT=$(free_port)
	start_faultsrv --mode http --listen "127.0.0.1:$PORT"
	names 127.0.0.1 127.0.0.2
	export BULWARK_POLICY="* hedge.delay=200ms retry.attempts=1"
	run in_names env LD_PRELOAD="$BW_LIB" strace -f -qq -o "$BW_TMP/trace" \
		-e trace=socket,connect,dup3 "$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.getpeername()[0])
s.close()
' "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[ "$output" = 127.0.0.1 ]
	sed -n '/socket(AF_INET, SOCK_STREAM/,$p' "$BW_TMP/trace" >"$BW_TMP/tcp"
	[ "$(grep -c 'socket(AF_INET, SOCK_STREAM' "$BW_TMP/tcp")" = 1 ]
	! grep -q 'dup3' "$BW_TMP/tcp"
}

@test "hedge: an epoll client's registration survives the swap (EPOLLOUT, then its data)" {
	# The race runs inside epoll_wait only where the shim hooks it.
	nm -D --defined-only "$BW_LIB" | grep -qw epoll_wait ||
		skip "this shim does not hook epoll_wait"
	hedge_env
	names "$BH" 127.0.0.1
	export BULWARK_POLICY="* hedge.delay=100ms retry.attempts=1"
	run in_names env LD_PRELOAD="$BW_LIB" "$PY" -c '
import select, socket, sys, time
ai = socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), socket.AF_INET,
                        socket.SOCK_STREAM)[0]
s = socket.socket(ai[0], ai[1] | socket.SOCK_NONBLOCK)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
ep = select.epoll()
ep.register(s.fileno(), select.EPOLLOUT)     # before the connect
t0 = time.monotonic()
assert s.connect_ex(ai[4]) == 115            # EINPROGRESS
ev = ep.poll(3)
ms = int((time.monotonic() - t0) * 1000)
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
s.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
ep.modify(s.fileno(), select.EPOLLIN)
ev2 = ep.poll(3)
data = s.recv(100).split(b"\r\n")[0].decode() if ev2 else ""
print(ms, err, ev, ev2, s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
      data.replace(" ", "_"))
' "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	read -r ms err _ <<<"$output"
	((ms < 800))
	[ "$err" = 0 ]
	[[ $output =~ \[\([0-9]+,\ 4\)\] ]]   # EPOLLOUT alone, its fd as data
	[[ $output == *" 1 HTTP/1.1_200_OK" ]]
}

@test "hedge: a non-blocking connect with connect.timeout and retries (an async attempt) is hedged too; one connect counted" {
	hedge_env
	names "$BH" 127.0.0.1
	export BULWARK_POLICY="* hedge.delay=100ms connect.timeout=2s retry.attempts=3"
	run in_names env LD_PRELOAD="$BW_LIB" "$PY" -c '
import socket, sys, time
t0 = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
ms = int((time.monotonic() - t0) * 1000)
s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
print(ms, s.getpeername()[0], s.makefile("rb").readline().decode().split()[1])
' "$NAME" "$PORT"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	read -r ms peer code <<<"$output"
	((ms < 800))                           # not connect.timeout (2 s)
	[ "$peer" = 127.0.0.1 ]
	[ "$code" = 200 ]
	[ "$(stat "127.0.0.1:$PORT" successful_calls)" = 2 ]
	[ "$(stat "127.0.0.1:$PORT" failed_calls)" = 0 ]
	[ "$(stat "$BH:$PORT" total_calls)" = 0 ]
}
