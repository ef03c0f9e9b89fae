#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/harm.bats: the shim does no harm where it used to.  Log lines
# never go into a socket a daemon got as fd 2 (a redis client once got
# "-ERR unknown command 'bulwark[...]:'"); a FIFO as BULWARK_LOG_FILE or
# BULWARK_POLICY_FILE never hangs the program before main, and a symbolic
# link as the policy file is refused; one-way protocols (nc -N: send,
# shutdown(SHUT_WR), read the peer's close) do not trip the breaker; one
# slow exchange per connection (each curl run) does trip
# breaker.slow_calls.  Every program that could hang runs under timeout.

load ../lib/common

# The interpreter itself, not a wrapper script (pyenv's shims run several
# processes, each of which would log its own line).
PY=$(python3 -c 'import sys; print(sys.executable)')

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT \
		BULWARK_LOG BULWARK_LOG_FILE
}

field() { bw_field "$@"; }

accepted_count() { stats_get accepted; }

# no_stderr CMD ARGS...: CMD with fd 2 closed, as a daemon runs (inside
# the function: bats' run sends fd 2 to its capture).
no_stderr() {
	"$@" 2>&-
}

# shim_to SECONDS CMD ARGS...: CMD under the shim, killed after SECONDS.
# The shim is preloaded into CMD only: a timeout(1) that hung in our
# constructor could not stop anything.
shim_to() {
	local t=$1
	shift
	timeout "$t" env LD_PRELOAD="$BW_LIB${LD_PRELOAD:+:$LD_PRELOAD}" "$@"
}

# start_redis: a redis-server on a free loopback port, no persistence.
# Exports REDIS_PORT.
start_redis() {
	require_cmd redis-server redis-cli
	REDIS_PORT=$(free_port)
	start_bg redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
		--save '' --appendonly no --dir "$BW_TMP"
	wait_until 5 redis_up || {
		cat "$BW_TMP"/bg.*.out >&2
		return 1
	}
	export REDIS_PORT
}

redis_up() {
	[ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ]
}

# ---- log lines and fd 2 -----------------------------------------------------

@test "redis-cli with fd 2 closed: a log line never goes into its connection" {
	start_redis
	# breaker.slow=1us: every connect is a slow call, logged at info
	# right after the connect, when the client's socket is fd 2.
	export BULWARK_LOG=info
	export BULWARK_POLICY="127.0.0.1 breaker.slow=1us retry.attempts=1"
	run no_stderr shim_to 10 redis-cli -p "$REDIS_PORT" PING
	[ "$status" -eq 0 ]
	[ "$output" = PONG ]
	# The connect was seen (and judged slow): the line was due, and dropped.
	[ "$(field "127.0.0.1:$REDIS_PORT" slow_calls)" -ge 1 ]
	run redis-cli -p "$REDIS_PORT" DBSIZE
	[ "$output" = 0 ]
}

@test "a python client with fd 2 closed: a refused connect's log lines stay out of its redis connection" {
	start_redis
	local refused
	refused=$(free_port)
	cat >"$BW_TMP/client.py" <<'EOF'
import socket, sys
port, refused = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
if s.fileno() != 2:
    print("socket is fd", s.fileno())
    sys.exit(3)
t = socket.socket()
try:
    t.connect(("127.0.0.1", refused))
except OSError:
    pass
t.close()
s.sendall(b"PING\r\n")
print(s.recv(200).decode().strip())
EOF
	export BULWARK_LOG=info
	export BULWARK_POLICY="127.0.0.1 retry.attempts=2 retry.backoff=1ms"
	run no_stderr shim_to 10 "$PY" "$BW_TMP/client.py" "$REDIS_PORT" "$refused"
	[ "$status" -eq 0 ]
	[ "$output" = "+PONG" ]
	[ "$(field "127.0.0.1:$refused" failed_calls)" -ge 1 ]
}

@test "fd 2 still the standard error the program started with: lines go there" {
	start_faultsrv --mode refuse
	export BULWARK_POLICY="127.0.0.1 retry.attempts=2 retry.backoff=1ms"
	export BULWARK_LOG=info
	shim_to 10 "$PY" -c '
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    pass' "$FS_PORT" 2>"$BW_TMP/err"
	grep -q "event=retry dest=127.0.0.1:$FS_PORT attempt=2" "$BW_TMP/err"
}

@test "fd 2 is a TCP connection from the start (inetd style): no line goes into it" {
	# The client's side reads whatever the program's fd 2 carries; the
	# program logs a policy error before main.
	cat >"$BW_TMP/inetd.py" <<'EOF'
import os, socket, subprocess, sys
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
env = dict(os.environ, LD_PRELOAD=sys.argv[1])
subprocess.run([sys.executable, "-c", "print('main ran')"], stderr=a,
               env=env, timeout=10, check=True)
a.close()
c.settimeout(5)
got = c.recv(4096)
print("main ran, fd 2 got %d bytes" % len(got))
EOF
	export BULWARK_POLICY='* breaker.failures=many'
	run timeout 20 "$PY" "$BW_TMP/inetd.py" "$BW_LIB"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "main ran" ]
	[ "${lines[1]}" = "main ran, fd 2 got 0 bytes" ]
}

# ---- FIFOs and links --------------------------------------------------------

@test "BULWARK_LOG_FILE is a FIFO nobody reads: the program runs and exits at once" {
	mkfifo "$BW_TMP/log.fifo"
	export BULWARK_LOG_FILE=$BW_TMP/log.fifo
	# An invalid policy logs a line before main.
	export BULWARK_POLICY='* breaker.failures=many'
	run shim_to 10 "$PY" -c 'print("main ran")'
	[ "$status" -eq 0 ]
	[ "$output" = "main ran" ]
}

@test "BULWARK_LOG_FILE is a FIFO with a reader: the line goes through" {
	mkfifo "$BW_TMP/log.fifo"
	exec 8<>"$BW_TMP/log.fifo" # a reader that never blocks anyone (bats owns fd 3)
	export BULWARK_LOG_FILE=$BW_TMP/log.fifo
	export BULWARK_POLICY='* breaker.failures=many'
	run shim_to 10 "$PY" -c 'print("main ran")'
	[ "$output" = "main ran" ]
	local line=''
	read -r -t 5 -u 8 line
	exec 8<&-
	[[ $line == *"event=policy_error"*"breaker.failures"* ]]
}

@test "BULWARK_LOG_FILE is a symbolic link: not followed, the line is dropped" {
	echo keep >"$BW_TMP/target"
	ln -s "$BW_TMP/target" "$BW_TMP/log.link"
	export BULWARK_LOG_FILE=$BW_TMP/log.link
	export BULWARK_POLICY='* breaker.failures=many'
	run shim_to 10 "$PY" -c 'print("main ran")'
	[ "$output" = "main ran" ] # nothing on standard error either
	[ "$(cat "$BW_TMP/target")" = keep ]
}

@test "BULWARK_POLICY_FILE is a FIFO: a policy error, the program runs" {
	mkfifo "$BW_TMP/policy.fifo"
	export BULWARK_POLICY_FILE=$BW_TMP/policy.fifo
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	run shim_to 10 "$PY" -c 'print("main ran")'
	[ "$status" -eq 0 ]
	[ "$output" = "main ran" ]
	grep -q "event=policy_error.*policy file $BW_TMP/policy.fifo: not a regular file.*action=pass-through" "$BULWARK_LOG_FILE"
	# BULWARK_STRICT=1: exit 2 before main, at once.
	BULWARK_STRICT=1 run shim_to 10 "$PY" -c 'print("main ran")'
	[ "$status" -eq 2 ]
	[[ $output != *"main ran"* ]]
}

@test "BULWARK_POLICY_FILE is a symbolic link: refused, nothing applied" {
	start_faultsrv --mode refuse
	echo "127.0.0.1:$FS_PORT breaker.failures=1 retry.attempts=1" >"$BW_TMP/policy"
	ln -s "$BW_TMP/policy" "$BW_TMP/policy.link"
	export BULWARK_POLICY_FILE=$BW_TMP/policy.link
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	local connect='
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    print(e.strerror)'
	run shim_to 10 "$PY" -c "$connect" "$FS_PORT"
	[ "$output" = "Connection refused" ]
	grep -q "event=policy_error.*policy file $BW_TMP/policy.link: a symbolic link (not followed)" "$BULWARK_LOG_FILE"
	[ "$(field "127.0.0.1:$FS_PORT" total_calls)" -eq 0 ]
	# The file itself applies.
	export BULWARK_POLICY_FILE=$BW_TMP/policy
	: >"$BULWARK_LOG_FILE"
	run shim_to 10 "$PY" -c "$connect" "$FS_PORT"
	[ "$output" = "Connection refused" ]
	[ "$(field "127.0.0.1:$FS_PORT" failed_calls)" -eq 1 ]
	[ "$(field "127.0.0.1:$FS_PORT" state)" = open ]
	[ "$(grep -c event=policy_error "$BULWARK_LOG_FILE")" -eq 0 ]
}

@test "bulwark check: a FIFO or a link as the policy file is an error, at once" {
	mkfifo "$BW_TMP/policy.fifo"
	run timeout 10 "$BW_CLI" check --policy-file "$BW_TMP/policy.fifo"
	[ "$status" -eq 2 ]
	[[ $output == *"policy file '$BW_TMP/policy.fifo': not a regular file"* ]]
	echo '* breaker.failures=3' >"$BW_TMP/policy"
	ln -s "$BW_TMP/policy" "$BW_TMP/policy.link"
	run timeout 10 "$BW_CLI" check --policy-file "$BW_TMP/policy.link"
	[ "$status" -eq 2 ]
	[[ $output == *"a symbolic link (not followed)"* ]]
	BULWARK_POLICY_FILE=$BW_TMP/policy.fifo run timeout 10 "$BW_CLI" run -- true
	[ "$status" -eq 2 ]
	[[ $output == *"not a regular file"* ]]
}

# ---- one-way protocols ------------------------------------------------------

@test "nc -N one-way sends to a sink: 10 runs with breaker.failures=5, none refused, no failed call" {
	require_cmd nc
	# stall without --stall: reads until the client's FIN, then closes,
	# never answering (graphite plaintext, syslog over TCP).
	start_faultsrv --mode stall
	export BULWARK_POLICY="127.0.0.1:$FS_PORT breaker.failures=5 retry.attempts=1"
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	local i
	for i in $(seq 1 10); do
		echo "metric.$i 1 1700000000" | shim_to 10 nc -N 127.0.0.1 "$FS_PORT"
	done
	[ "$(accepted_count)" -eq 10 ]
	[ "$(field "127.0.0.1:$FS_PORT" failed_calls)" -eq 0 ]
	[ "$(field "127.0.0.1:$FS_PORT" rejected_calls)" -eq 0 ]
	[ "$(field "127.0.0.1:$FS_PORT" successful_calls)" -eq 20 ] # 10 connects, 10 exchanges
	[ "$(field "127.0.0.1:$FS_PORT" state)" = closed ]
}

@test "a one-way send the server resets: still a failed exchange" {
	# nc never reads a reset socket (it polls POLLERR and quits), so a
	# python client: send, shutdown(SHUT_WR), receive.
	start_faultsrv --mode reset --stall 2000 # RST once the bytes came
	export BULWARK_POLICY="127.0.0.1:$FS_PORT breaker.failures=5 retry.attempts=1"
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	run shim_to 10 "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"metric 1 1700000000\n")
try:
    s.shutdown(socket.SHUT_WR)
except OSError:
    pass  # the reset may come first
try:
    print(len(s.recv(100)))
except OSError as e:
    print(e.strerror)' "$FS_PORT"
	[ "$output" = "Connection reset by peer" ]
	[ "$(field "127.0.0.1:$FS_PORT" failed_calls)" -eq 1 ]
	[ "$(field "127.0.0.1:$FS_PORT" successful_calls)" -eq 1 ] # the connect
}

# ---- slow calls, one exchange per connection ------------------------------

@test "six curl runs of 120 ms with breaker.slow=50ms breaker.slow_calls=3: the breaker opens" {
	require_cmd curl
	start_faultsrv --mode http --stall 120
	export BULWARK_POLICY="127.0.0.1:$FS_PORT breaker.slow=50ms breaker.slow_calls=3 retry.attempts=1"
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	local i codes=()
	for i in 1 2 3 4 5 6; do
		run shim_to 10 curl -s --max-time 5 "http://127.0.0.1:$FS_PORT/"
		codes+=("$status")
	done
	echo "curl exit codes: ${codes[*]}"
	[ "${codes[0]}" -eq 0 ] # the first run is answered
	[ "${codes[5]}" -eq 7 ] # the last is refused (ECONNREFUSED)
	[ "$(field "127.0.0.1:$FS_PORT" state)" = open ]
	grep -q "event=breaker_open dest=127.0.0.1:$FS_PORT .*reason=slow" "$BULWARK_LOG_FILE"
}
