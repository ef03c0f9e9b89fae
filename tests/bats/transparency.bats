#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/transparency.bats: the transparency matrix.  With the shim
# preloaded and the bare rule '*' (every default), unmodified programs talking to healthy
# local servers (and to a refused port) print the same thing and exit with
# the same status as without it; UDP, Unix sockets, fork/exec chains, a
# second preload (jemalloc) and a daemon that closes every fd change nothing.
#
# Each test runs the client twice, plain and under the shim, through
# same_with_shim, and also checks the plain run did the real work (so a
# test cannot pass by both runs failing alike).

load ../lib/common

JEMALLOC=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}

setup() {
	bw_setup
	require_shim
	require_faultsrv
	# The bare rule '*' (every default applies: breaker, retries, all
	# armed), default log level.  With no policy at all every destination
	# is only observed (observe_only.bats); this is the stricter test.
	unset BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_LOG \
		BULWARK_LOG_FILE BULWARK_STRICT
	export BULWARK_POLICY='*'
}

# same_with_shim CMD ARGS...: run CMD plain, then with the shim preloaded
# (each under a 60 s timeout); fail unless stdout and exit status match.
# Sets PLAIN_OUT, PLAIN_STATUS for further checks, and SHIM_ERR (the shim
# run's stderr).
same_with_shim() {
	local shim_out shim_status
	PLAIN_OUT=$(timeout 60 "$@" 2>"$BW_TMP/plain.err" 3>&-) && PLAIN_STATUS=0 ||
		PLAIN_STATUS=$?
	shim_out=$(run_shim timeout 60 "$@" 2>"$BW_TMP/shim.err" 3>&-) &&
		shim_status=0 || shim_status=$?
	SHIM_ERR=$(<"$BW_TMP/shim.err")
	if [[ $PLAIN_OUT != "$shim_out" || $PLAIN_STATUS != "$shim_status" ]]; then
		{
			echo "# command: $*"
			echo "# plain: status $PLAIN_STATUS, stdout:"
			printf '%s\n' "$PLAIN_OUT" | head -20 | sed 's/^/#   /'
			echo "# shim: status $shim_status, stdout:"
			printf '%s\n' "$shim_out" | head -20 | sed 's/^/#   /'
			echo "# shim stderr:"
			head -20 "$BW_TMP/shim.err" | sed 's/^/#   /'
		} >&2
		return 1
	fi
}

# The shim said nothing about a healthy run (no warnings at the default
# level).
shim_quiet() {
	if grep -q 'bulwark' "$BW_TMP/shim.err"; then
		echo "# the shim logged on a healthy run:" >&2
		sed 's/^/#   /' "$BW_TMP/shim.err" >&2
		return 1
	fi
}

# A python3 UDP echo server on 127.0.0.1; exports UDP_PORT.
start_udp_echo() {
	python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    d, a = s.recvfrom(65536)
    s.sendto(d, a)
' "$BW_TMP/udp.port" >/dev/null 2>&1 3>&- &
	bw_track_pid $!
	wait_until 5 test -s "$BW_TMP/udp.port"
	UDP_PORT=$(<"$BW_TMP/udp.port")
}

# start_redis [--shim]: redis-server on a free loopback port, no
# persistence (under the shim with --shim); exports REDIS_PORT, REDIS_PID.
start_redis() {
	REDIS_PORT=$(free_port)
	start_bg "$@" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
		--save '' --appendonly no --daemonize no --dir "$BW_TMP" \
		--logfile "$BW_TMP/redis.log"
	REDIS_PID=$BG_PID
	wait_until 10 bash -c "redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG"
}

@test "transparency: the shim is really loaded, and into children" {
	run run_shim cat /proc/self/maps
	[ "$status" -eq 0 ]
	[[ $output == *libbulwark.so* ]]
	run run_shim bash -c 'sh -c "cat /proc/self/maps"'
	[[ $output == *libbulwark.so* ]]
	run run_shim sh -c 'exit 42'
	[ "$status" -eq 42 ]
}

@test "transparency: curl to a healthy http server" {
	start_faultsrv --mode http --body 'hello from faultsrv'
	same_with_shim curl -sS --max-time 20 "http://127.0.0.1:$FS_PORT/x"
	[ "$PLAIN_STATUS" -eq 0 ]
	[ "$PLAIN_OUT" = "hello from faultsrv" ]
	shim_quiet
	# headers too (-i), and two URLs on a keep-alive connection
	same_with_shim curl -sS -i --max-time 20 "http://127.0.0.1:$FS_PORT/"
	[[ $PLAIN_OUT == "HTTP/1.1 200 OK"* ]]
	stats_wait accepted -eq 4
}

@test "transparency: curl with keep-alive, several requests on one connection" {
	start_faultsrv --mode http --keep-alive
	same_with_shim curl -sS --max-time 20 "http://127.0.0.1:$FS_PORT/1" \
		"http://127.0.0.1:$FS_PORT/2" "http://127.0.0.1:$FS_PORT/3"
	[ "$PLAIN_OUT" = $'ok\nok\nok' ]
	stats_wait requests -eq 6
	stats_is accepted -eq 2
	shim_quiet
}

@test "transparency: curl to a refused port (exit 7 both ways)" {
	local port
	port=$(free_port)
	same_with_shim curl -sS --max-time 20 "http://127.0.0.1:$port/"
	[ "$PLAIN_STATUS" -eq 7 ]
	[ -z "$PLAIN_OUT" ]
}

@test "transparency: curl over IPv6 ([::1])" {
	python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null ||
		skip "no ::1 on this machine"
	start_faultsrv --mode http --listen '[::1]:0'
	same_with_shim curl -sS -g --max-time 20 "http://[::1]:$FS_PORT/"
	[ "$PLAIN_OUT" = ok ]
	shim_quiet
}

@test "transparency: curl downloads 4 MiB from python's http.server intact" {
	head -c 4194304 /dev/urandom >"$BW_TMP/blob"
	local port
	port=$(free_port)
	(cd "$BW_TMP" && exec python3 -m http.server --bind 127.0.0.1 "$port") \
		>/dev/null 2>&1 3>&- &
	bw_track_pid $!
	wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$port/"
	same_with_shim bash -c "curl -sS --max-time 30 http://127.0.0.1:$port/blob | sha256sum"
	[ "$PLAIN_OUT" = "$(sha256sum <"$BW_TMP/blob")" ]
}

@test "transparency: wget" {
	require_cmd wget
	start_faultsrv --mode http --body 'wget body'
	same_with_shim wget -q -O - --tries=1 --timeout=20 "http://127.0.0.1:$FS_PORT/"
	[ "$PLAIN_STATUS" -eq 0 ]
	[ "$PLAIN_OUT" = "wget body" ]
	shim_quiet
	# and wget against a refused port: exit 4 (network failure) both ways
	local port
	port=$(free_port)
	same_with_shim wget -q -O - --tries=1 --timeout=20 "http://127.0.0.1:$port/"
	[ "$PLAIN_STATUS" -eq 4 ]
}

@test "transparency: python3 blocking socket client" {
	start_faultsrv --mode echo
	cat >"$BW_TMP/client.py" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for i in range(20):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    msg = b"message %d " % i * 100
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    print(i, len(got), got == msg)
# makefile()/readline and sendfile over the same kind of socket
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rwb")
f.write(b"line one\nline two\n"); f.flush()
print(f.readline().decode().strip(), f.readline().decode().strip())
s.close()
EOF
	same_with_shim python3 "$BW_TMP/client.py" "$FS_PORT"
	[ "$PLAIN_STATUS" -eq 0 ]
	[[ $PLAIN_OUT == *"19 1"*" True"* ]]
	[[ $PLAIN_OUT != *False* ]]
	[[ $PLAIN_OUT == *"line one line two" ]]
	shim_quiet
}

@test "transparency: python3 asyncio client (non-blocking, 50 concurrent)" {
	start_faultsrv --mode echo
	cat >"$BW_TMP/aclient.py" <<'EOF'
import asyncio, sys
port = int(sys.argv[1])
async def one(i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    msg = ("task %d\n" % i).encode()
    w.write(msg)
    await w.drain()
    line = await r.readline()
    w.close()
    await w.wait_closed()
    return line == msg
async def main():
    res = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 30)
    print(sum(res), "of", len(res))
    # a refused port the asyncio way
    try:
        await asyncio.open_connection("127.0.0.1", int(sys.argv[2]))
        print("connected?")
    except ConnectionRefusedError:
        print("refused")
asyncio.run(main())
EOF
	local refused
	refused=$(free_port)
	same_with_shim python3 "$BW_TMP/aclient.py" "$FS_PORT" "$refused"
	[ "$PLAIN_STATUS" -eq 0 ]
	[ "$PLAIN_OUT" = $'50 of 50\nrefused' ]
}

@test "transparency: redis-cli against redis-server" {
	require_cmd redis-server redis-cli
	start_redis
	redis-cli -p "$REDIS_PORT" del counter >/dev/null
	# INCR after DEL keeps the two runs' output identical
	local script='SET greeting hello
GET greeting
INCR counter
INCR counter
LPUSH l a b c
LRANGE l 0 -1
DEL l
DEL counter
PING'
	same_with_shim bash -c "printf '%s\n' '$script' | redis-cli -p $REDIS_PORT"
	[ "$PLAIN_STATUS" -eq 0 ]
	[[ $PLAIN_OUT == *hello* ]]
	[[ $PLAIN_OUT == *PONG ]]
	same_with_shim redis-cli -p "$REDIS_PORT" --no-raw ping
	[ "$PLAIN_OUT" = PONG ]
	shim_quiet
}

@test "transparency: redis-server itself under the shim serves redis-cli" {
	require_cmd redis-server redis-cli
	start_redis --shim
	# the server really runs with the shim
	grep -q libbulwark "/proc/$REDIS_PID/maps"
	same_with_shim redis-cli -p "$REDIS_PORT" set k v
	[ "$PLAIN_OUT" = OK ]
	same_with_shim redis-cli -p "$REDIS_PORT" get k
	[ "$PLAIN_OUT" = v ]
}

@test "transparency: nc (openbsd) to an echo server and to a refused port" {
	start_faultsrv --mode echo
	same_with_shim bash -c "printf 'one\ntwo\n' | nc -N 127.0.0.1 $FS_PORT"
	[ "$PLAIN_OUT" = $'one\ntwo' ]
	shim_quiet
	same_with_shim nc -z 127.0.0.1 "$FS_PORT"
	[ "$PLAIN_STATUS" -eq 0 ]
	local port
	port=$(free_port)
	same_with_shim nc -z -w 5 127.0.0.1 "$port"
	[ "$PLAIN_STATUS" -eq 1 ]
}

@test "transparency: socat as client, and as server and client" {
	require_cmd socat
	start_faultsrv --mode echo
	same_with_shim bash -c "printf 'via socat\n' | socat -t 5 - TCP:127.0.0.1:$FS_PORT"
	[ "$PLAIN_OUT" = "via socat" ]
	shim_quiet
	# socat as a TCP server (accept path) under the shim, socat client too
	local port
	port=$(free_port)
	start_bg --shim socat TCP-LISTEN:"$port",bind=127.0.0.1,reuseaddr,fork \
		EXEC:cat
	wait_until 10 nc -z 127.0.0.1 "$port"
	same_with_shim bash -c "printf 'round trip\n' | socat -t 5 - TCP:127.0.0.1:$port"
	[ "$PLAIN_OUT" = "round trip" ]
}

@test "transparency: a bash -c chain that forks and execs several clients" {
	require_cmd wget
	start_faultsrv --mode http --body $'chain\n'
	local http=$FS_PORT
	start_faultsrv --mode echo
	local echo=$FS_PORT
	local chain="
		set -e
		curl -sS --max-time 20 http://127.0.0.1:$http/
		wget -q -O - --tries=1 http://127.0.0.1:$http/
		printf 'nc line\n' | nc -N 127.0.0.1 $echo
		( printf 'subshell\n' | nc -N 127.0.0.1 $echo ) &
		wait
		python3 -c 'import os, socket
pid = os.fork()
if pid == 0:
    s = socket.create_connection((\"127.0.0.1\", $echo)); s.sendall(b\"child\n\"); print(s.recv(10).decode().strip(), flush=True); os._exit(0)
os.waitpid(pid, 0)
s = socket.create_connection((\"127.0.0.1\", $echo)); s.sendall(b\"parent\n\"); print(s.recv(10).decode().strip())'
		sh -c 'curl -sS http://127.0.0.1:$http/ | tr a-z A-Z'
		exit 3"
	same_with_shim bash -c "$chain"
	[ "$PLAIN_STATUS" -eq 3 ] || { echo "# $PLAIN_OUT" >&2; false; }
	[ "$PLAIN_OUT" = $'chain\nchain\nnc line\nsubshell\nchild\nparent\nCHAIN' ]
	shim_quiet
}

@test "transparency: jemalloc and bulwark preloaded together" {
	[[ -f $JEMALLOC ]] || skip "libjemalloc not installed: $JEMALLOC"
	start_faultsrv --mode http --body 'malloc'
	local url="http://127.0.0.1:$FS_PORT/"
	# jemalloc first, bulwark appended (run_shim prepends, so build it here)
	local plain shim1 shim2
	plain=$(LD_PRELOAD=$JEMALLOC timeout 60 curl -sS "$url" 3>&-)
	[ "$plain" = malloc ]
	shim1=$(LD_PRELOAD="$JEMALLOC:$BW_LIB" timeout 60 curl -sS "$url" 3>&-)
	[ "$shim1" = "$plain" ]
	shim2=$(LD_PRELOAD="$BW_LIB:$JEMALLOC" timeout 60 curl -sS "$url" 3>&-)
	[ "$shim2" = "$plain" ]
	# python (many allocations, threads) with both, against echo
	start_faultsrv --mode echo
	local py='import socket, sys, threading
port = int(sys.argv[1]); out = []
def go(i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"x" * 1000); n = 0
    while n < 1000:
        n += len(s.recv(4096))
    out.append(n)
ts = [threading.Thread(target=go, args=(i,)) for i in range(20)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(out), sum(out))'
	run env LD_PRELOAD="$JEMALLOC:$BW_LIB" timeout 60 python3 -c "$py" "$FS_PORT"
	[ "$status" -eq 0 ]
	[ "$output" = "20 20000" ]
	# both libraries are in the process
	run env LD_PRELOAD="$JEMALLOC:$BW_LIB" cat /proc/self/maps
	[[ $output == *libjemalloc* ]]
	[[ $output == *libbulwark* ]]
}

@test "transparency: a daemon that closes every fd (close_range) then talks" {
	start_faultsrv --mode echo
	start_udp_echo
	cat >"$BW_TMP/daemon.py" <<'EOF'
import ctypes, os, socket, sys
tcp_port, udp_port, sock_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
def talk(tag):
    s = socket.create_connection(("127.0.0.1", tcp_port), timeout=10)
    s.sendall(tag.encode() + b"\n")
    r = s.recv(100).decode().strip()
    s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(10)
    u.sendto(b"udp-" + tag.encode(), ("127.0.0.1", udp_port))
    ur = u.recv(100).decode()
    u.close()
    a, b = socket.socketpair()
    a.sendall(b"pair"); pr = b.recv(10).decode()
    a.close(); b.close()
    print(tag, r, ur, pr, flush=True)
talk("before")
# a keeper connection opened before the purge: its fd dies with it
keep = socket.create_connection(("127.0.0.1", tcp_port), timeout=10)
sys.stdout.flush()
os.closerange(3, 65536)                  # Python uses close_range(2) here
try:
    keep.send(b"x")
    print("keeper still open?")
except OSError as e:
    print("keeper closed:", e.errno == 9)
keep.detach()
talk("after-closerange")
# the libc calls themselves
if hasattr(libc, "close_range"):
    s = socket.create_connection(("127.0.0.1", tcp_port), timeout=10)
    s.detach()
    rc = libc.close_range(3, 0xFFFFFFFF, 0)
    print("close_range rc", rc)
    talk("after-close_range")
if hasattr(libc, "closefrom"):
    s = socket.create_connection(("127.0.0.1", tcp_port), timeout=10)
    s.detach()
    libc.closefrom(3)
    talk("after-closefrom")
# fd numbers get reused for new sockets and files: still fine
for i in range(5):
    f = open(os.devnull); f.close()
    talk("reuse%d" % i)
EOF
	same_with_shim python3 "$BW_TMP/daemon.py" "$FS_PORT" "$UDP_PORT" "$BW_TMP/sock"
	[ "$PLAIN_STATUS" -eq 0 ]
	[[ ${PLAIN_OUT} == *"before before udp-before pair"* ]]
	[[ ${PLAIN_OUT} == *"keeper closed: True"* ]]
	[[ ${PLAIN_OUT} == *"after-closerange after-closerange udp-after-closerange pair"* ]]
	[[ ${PLAIN_OUT} == *"reuse4 reuse4 udp-reuse4 pair"* ]]
}

@test "transparency: UDP traffic is unchanged" {
	start_udp_echo
	cat >"$BW_TMP/udp.py" <<'EOF'
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for i in range(50):
    s.sendto(b"dgram %d" % i, ("127.0.0.1", port))
    print(s.recv(100).decode())
# a connected UDP socket (connect() on UDP must pass through)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(10)
c.connect(("127.0.0.1", port))
c.send(b"connected udp")
print(c.recv(100).decode())
# UDP connect to a port with no listener: ICMP -> ECONNREFUSED on recv
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.settimeout(10)
d.connect(("127.0.0.1", int(sys.argv[2])))
d.send(b"anyone?")
try:
    d.recv(100)
    print("answer?")
except ConnectionRefusedError:
    print("udp refused")
EOF
	local closed
	closed=$(free_port)
	same_with_shim python3 "$BW_TMP/udp.py" "$UDP_PORT" "$closed"
	[ "$PLAIN_STATUS" -eq 0 ]
	[[ $PLAIN_OUT == "dgram 0"* ]]
	[[ $PLAIN_OUT == *$'dgram 49\nconnected udp\nudp refused' ]]
	shim_quiet
	# socat and nc over UDP too
	same_with_shim bash -c "printf 'socat udp\n' | socat -t 2 - UDP:127.0.0.1:$UDP_PORT"
	[ "$PLAIN_OUT" = "socat udp" ]
}

@test "transparency: Unix-domain stream and datagram sockets are unchanged" {
	require_cmd socat
	local path=$BW_TMP/echo.sock
	start_bg socat UNIX-LISTEN:"$path",fork EXEC:cat
	wait_until 10 test -S "$path"
	same_with_shim bash -c "printf 'unix stream\n' | socat -t 5 - UNIX-CONNECT:$path"
	[ "$PLAIN_OUT" = "unix stream" ]
	same_with_shim bash -c "printf 'nc unix\n' | nc -N -U $path"
	[ "$PLAIN_OUT" = "nc unix" ]
	cat >"$BW_TMP/unix.py" <<'EOF'
import os, socket, sys
d = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
p1 = os.path.join(d, "dg-srv-%d" % os.getpid())
srv.bind(p1)
cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
cli.connect(p1)
for i in range(10):
    cli.send(b"dg %d" % i)
    print(srv.recv(100).decode())
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.sendall(b"pair stream")
print(b.recv(100).decode())
os.unlink(p1)
EOF
	same_with_shim python3 "$BW_TMP/unix.py" "$BW_TMP"
	[ "$PLAIN_STATUS" -eq 0 ]
	[[ $PLAIN_OUT == $'dg 0\n'*$'dg 9\npair stream' ]]
	shim_quiet
}

@test "transparency: the shim counted the TCP calls, and only those" {
	require_cli
	require_cmd socat
	start_faultsrv --mode http
	local tcp=$FS_PORT
	start_udp_echo
	local path=$BW_TMP/u.sock
	start_bg socat UNIX-LISTEN:"$path",fork EXEC:cat
	wait_until 10 test -S "$path"
	run run_shim curl -sS --max-time 20 "http://127.0.0.1:$tcp/"
	[ "$output" = ok ]
	run run_shim python3 -c '
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)
u.connect(("127.0.0.1", int(sys.argv[1]))); u.send(b"x"); print(u.recv(10).decode())
' "$UDP_PORT"
	[ "$output" = x ]
	run run_shim bash -c "printf 'y\n' | socat -t 5 - UNIX-CONNECT:$path"
	[ "$output" = y ]
	run "$BW_CLI" status --state "$BULWARK_STATE" --json
	[ "$status" -eq 0 ]
	run python3 -c '
import json, sys
rows = json.loads(sys.stdin.read() or "[]")
for r in rows:
    print(r["destination"], r["successful_calls"], r["failed_calls"])
' <<<"$output"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ ${lines[0]} == "127.0.0.1:$tcp "[1-9]*" 0" ]]
}
