#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/policy_live.bats: `bulwark policy push|show|history|rollback|
# clear` change the policy of running programs (README "Changing the
# policy of running programs", man/bulwark.1).  A Python loop connecting
# every 50 ms to a refused port under a breaker that never trips gets the
# pushed breaker's errno within a second, without a restart; rollback and
# clear undo it the same way; an invalid push exits 2 with check's message
# and changes nothing; show and history say who pushed what; a connection
# open before a push takes the pushed rule at its next exchange; a raised
# bulkhead.max admits a waiter; 8 processes
# of 4 threads calling while 200 pushes alternate two policies all end on
# the last generation, none crashing.

load ../lib/common

PY=$(python3 -c 'import sys; print(sys.executable)')
OWN='127.0.0.1 retry.attempts=1 breaker.failures=1000'
TRIP='127.0.0.1 retry.attempts=1 breaker.failures=2 breaker.errno=EHOSTUNREACH'

setup() {
	bw_setup
	require_shim
	require_cli
	local v
	for v in $(compgen -e); do
		[[ $v == BULWARK_* && $v != BULWARK_STATE ]] && unset "$v"
	done
	PORT=$(free_port)
	return 0
}

teardown() {
	[[ -n ${BW_TMP:-} ]] && touch "$BW_TMP/stop"
	bw_teardown
}

# Connects to $1 every 50 ms; prints "EPOCH_MS RESULT" per attempt.
LOOP='
import errno, socket, sys, time
while True:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    s.close()
    print(int(time.time() * 1000), r, flush=True)
    time.sleep(0.05)'

start_loop() {
	BULWARK_POLICY=$OWN BULWARK_LOG=info start_bg --shim "$PY" -c "$LOOP" "$PORT"
	LOOP_PID=$BG_PID
	LOOP_OUT=$BW_TMP/bg.$BW_SERVER_N.out
	LOOP_ERR=$BW_TMP/bg.$BW_SERVER_N.err
	wait_until 10 grep -q ECONNREFUSED "$LOOP_OUT"
}

# The loop's first line saying $1 after epoch ms $2, waited for (bounded);
# prints the milliseconds from $2 to it.
first_after() {
	local want=$1 since=$2
	wait_until 10 awk -v s="$since" -v w="$want" \
		'$1 > s && $2 == w { f = 1 } END { exit !f }' "$LOOP_OUT" ||
		{ echo "never saw $want after $since"; tail -5 "$LOOP_OUT"; return 1; }
	awk -v s="$since" -v w="$want" '$1 > s && $2 == w { print $1 - s; exit }' "$LOOP_OUT"
}

@test "a push reaches a running loop within a second; rollback and clear undo it" {
	start_loop
	# The breaker never trips under the loop's own policy.
	local t0
	t0=$(now_ms)
	sleep 0.5
	run awk -v s="$t0" '$1 > s && $2 != "ECONNREFUSED"' "$LOOP_OUT"
	[ -z "$output" ]

	t0=$(now_ms)
	run "$BW_CLI" policy push "$TRIP"
	[ "$status" -eq 0 ]
	[[ $output == *"generation 1"* ]]
	local ms
	ms=$(first_after EHOSTUNREACH "$t0")
	echo "push: EHOSTUNREACH after $ms ms"
	[ "$ms" -lt 1000 ]

	# rollback (to before the first push: the loop's own policy): the
	# breaker stays open (counters and breakers are kept), but refuses
	# with the own policy's errno again.
	t0=$(now_ms)
	run "$BW_CLI" policy rollback
	[ "$status" -eq 0 ]
	ms=$(first_after ECONNREFUSED "$t0")
	echo "rollback: ECONNREFUSED after $ms ms"
	[ "$ms" -lt 1000 ]
	run awk -v s="$((t0 + ms))" '$1 > s && $2 == "EHOSTUNREACH"' "$LOOP_OUT"
	[ -z "$output" ]

	t0=$(now_ms)
	run "$BW_CLI" policy push "$TRIP"
	[ "$status" -eq 0 ]
	ms=$(first_after EHOSTUNREACH "$t0")
	[ "$ms" -lt 1000 ]

	t0=$(now_ms)
	run "$BW_CLI" policy clear
	[ "$status" -eq 0 ]
	ms=$(first_after ECONNREFUSED "$t0")
	echo "clear: ECONNREFUSED after $ms ms"
	[ "$ms" -lt 1000 ]

	# Each generation said once, at info level.
	run grep -c 'event=policy_applied generation=1 ' "$LOOP_ERR"
	[ "$output" -eq 1 ]
	grep -q 'event=policy_applied generation=4 policy=own' "$LOOP_ERR"
	kill -0 "$LOOP_PID"
}

@test "a process started after a push starts with it" {
	run "$BW_CLI" policy push "$TRIP"
	[ "$status" -eq 0 ]
	# Three connects: refused, refused (the breaker opens), then the
	# open breaker's errno.
	run env BULWARK_LOG=off BULWARK_POLICY="$OWN" LD_PRELOAD="$BW_LIB" "$PY" -c '
import errno, socket, sys
for i in range(3):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", int(sys.argv[1]))); r = "ok"
    except OSError as e:
        r = errno.errorcode[e.errno]
    s.close()
print(r)' "$PORT"
	[ "$status" -eq 0 ]
	[ "$output" = EHOSTUNREACH ]
	# Without the push, the same program gets its own policy.
	"$BW_CLI" policy clear
	run env BULWARK_LOG=off BULWARK_STATE=other-$BULWARK_STATE BULWARK_POLICY="$OWN" \
		LD_PRELOAD="$BW_LIB" "$PY" -c '
import errno, socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    print(errno.errorcode[e.errno])' "$PORT"
	rm -f "$(bw_state_file other-$BULWARK_STATE)"
	[ "$output" = ECONNREFUSED ]
}

@test "an invalid push exits 2 with check's message and changes nothing" {
	run "$BW_CLI" policy push "$TRIP"
	[ "$status" -eq 0 ]
	local bad='127.0.0.1 breaker.failure=2'
	run "$BW_CLI" check "$bad"
	[ "$status" -eq 2 ]
	local want=$output
	run "$BW_CLI" policy push "$bad"
	[ "$status" -eq 2 ]
	[ "$output" = "$want" ]
	[[ $output == *"did you mean 'breaker.failures'"* ]]
	run "$BW_CLI" policy push '127.0.0.1 breaker.errno=EWHAT'
	[ "$status" -eq 2 ]
	printf '127.0.0.1 retry.attempts=x\n' >"$BW_TMP/bad.policy"
	run "$BW_CLI" policy push --file "$BW_TMP/bad.policy"
	[ "$status" -eq 2 ]
	[[ $output == *"file:1:"* ]]
	run "$BW_CLI" policy push '# only a comment'
	[ "$status" -eq 2 ]
	run "$BW_CLI" policy show
	[ "$status" -eq 0 ]
	[[ $output == *"generation: 1"* ]]
	[[ $output == *"breaker.errno=EHOSTUNREACH"* ]]
	run "$BW_CLI" policy history
	[ "$(grep -c . <<<"$output")" -eq 1 ]
}

@test "show and history say the generation, who pushed it and when" {
	run "$BW_CLI" policy show
	[ "$status" -eq 0 ]
	[[ $output == *"generation: none"* ]]
	start_loop
	printf '# the database\n127.0.0.1:%s breaker.failures=3\n* retry.attempts=1\n' \
		"$PORT" >"$BW_TMP/p.policy"
	run "$BW_CLI" policy push --file "$BW_TMP/p.policy"
	[ "$status" -eq 0 ]
	run "$BW_CLI" policy push "$TRIP"
	[ "$status" -eq 0 ]
	[[ $output == *"generation 2"* ]]
	wait_until 5 grep -q 'policy_applied generation=2' "$LOOP_ERR"
	run "$BW_CLI" policy show
	[ "$status" -eq 0 ]
	echo "$output"
	[[ $output == *"generation: 2"* ]]
	[[ $output =~ pushed:\ 20[0-9-]+T[0-9:]+Z\ by\ uid\ $UID\ pid\ [0-9]+ ]]
	[[ $output == *"processes: 1 live running generation 2, 0 on another"* ]]
	[[ $output == *"policy: $TRIP"* ]]
	[[ $output =~ breaker.errno=EHOSTUNREACH\ +#\ rule ]]
	run "$BW_CLI" policy history
	[ "$status" -eq 0 ]
	echo "$output"
	[[ ${lines[0]} =~ ^\*\ 2\ .*uid=$UID\ pid=[0-9]+\ +$TRIP$ ]]
	[[ ${lines[1]} == "  1 "*"# the database; 127.0.0.1:$PORT breaker.failures=3; * retry.attempts=1" ]]
	run "$BW_CLI" policy rollback
	[ "$status" -eq 0 ]
	[[ $output == *"rolled back to generation 1: generation 3"* ]]
	run "$BW_CLI" policy show
	[[ $output == *"generation: 3"* ]]
	[[ $output == *"127.0.0.1:$PORT breaker.failures=3"* ]]
	# The loop's process is gone: it no longer counts.
	stop_pid "$LOOP_PID"
	run "$BW_CLI" policy show
	[[ $output == *"processes: 0 live"* ]]
}

@test "policy: usage errors exit 2, --help exits 0" {
	run "$BW_CLI" policy --help
	[ "$status" -eq 0 ]
	[[ $output == *"bulwark policy push"* ]]
	run "$BW_CLI" policy
	[ "$status" -eq 2 ]
	run "$BW_CLI" policy frob
	[ "$status" -eq 2 ]
	run "$BW_CLI" policy push
	[ "$status" -eq 2 ]
	run "$BW_CLI" policy push '* retry.attempts=1' --file /dev/null
	[ "$status" -eq 2 ]
	run "$BW_CLI" policy show --state 'bad name'
	[ "$status" -eq 2 ]
	run "$BW_CLI" policy rollback
	[ "$status" -eq 1 ]
}

@test "8 processes x 4 threads calling while 200 pushes alternate: all end on the last generation" {
	local A="127.0.0.1 retry.attempts=1 breaker=off"
	local B="127.0.0.1 retry.attempts=1 breaker=off breaker.failures=7 connect.timeout=2s"
	local i
	for i in $(seq 8); do
		BULWARK_POLICY="$OWN" start_bg --shim "$PY" -c '
import os, socket, sys, threading
port, stop = int(sys.argv[1]), sys.argv[2]
n = [0] * 4
def run(k):
    while not os.path.exists(stop):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            pass
        s.close()
        n[k] += 1
ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(n))' "$PORT" "$BW_TMP/stop"
		PIDS+=("$BG_PID")
	done
	wait_until 10 bash -c "\"$BW_CLI\" policy show | grep -q 'processes: 8 live'"
	for i in $(seq 200); do
		if ((i % 2)); then
			"$BW_CLI" policy push "$A" >/dev/null
		else
			"$BW_CLI" policy push "$B" >/dev/null
		fi
	done
	wait_until 10 bash -c "\"$BW_CLI\" policy show | grep -q 'processes: 8 live running generation 200, 0 on another'"
	run "$BW_CLI" policy show
	[[ $output == *"connect.timeout=2s"* ]]
	touch "$BW_TMP/stop"
	for i in "${PIDS[@]}"; do
		wait "$i"
	done
	for i in $(seq 8); do
		# Each printed its call count (exited normally) and said no error.
		[ "$(cat "$BW_TMP/bg.$i.out")" -gt 0 ]
		! grep -q 'policy_error\|state_error' "$BW_TMP/bg.$i.err"
	done
}

@test "raising bulkhead.max wakes a waiter at the next connect; lowering it closes nothing" {
	require_faultsrv
	start_faultsrv --mode stall
	local pol="127.0.0.1 retry.attempts=1 bulkhead.max=1 bulkhead.wait=20s"
	# The holder: connects, says so, keeps the connection until told to
	# stop, then sends on it.
	BULWARK_POLICY=$pol start_bg --shim "$PY" -c '
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("held", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
s.sendall(b"x")
print("alive", flush=True)' "$FS_PORT" "$BW_TMP/stop"
	local holder=$BG_PID hout=$BW_TMP/bg.$BW_SERVER_N.out
	wait_until 10 grep -q held "$hout"
	# The waiter: a blocking connect that finds the bulkhead full.
	BULWARK_POLICY=$pol start_bg --shim "$PY" -c '
import socket, sys, time
t = time.monotonic()
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1]))); r = "ok"
except OSError as e:
    r = "error %d" % e.errno
print(r, int((time.monotonic() - t) * 1000), flush=True)' "$FS_PORT"
	local waiter=$BG_PID wout=$BW_TMP/bg.$BW_SERVER_N.out
	# Asleep on the bulkhead's futex (system call 202).
	wait_until 10 grep -q '^202 ' "/proc/$waiter/syscall"
	run "$BW_CLI" policy push "127.0.0.1 retry.attempts=1 bulkhead.max=2 bulkhead.wait=20s"
	[ "$status" -eq 0 ]
	# The next connect under the raised limit wakes the waiter, which
	# takes the new slot (first come, first served).
	BULWARK_POLICY=$pol start_bg --shim "$PY" -c '
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])))' "$FS_PORT"
	wait_until 10 grep -q . "$wout"
	run cat "$wout"
	echo "$output"
	[[ $output == ok* ]]
	(( ${output#ok } < 10000 ))
	# Lowering the limit revokes no connection: the holder still sends.
	run "$BW_CLI" policy push "$pol"
	[ "$status" -eq 0 ]
	touch "$BW_TMP/stop"
	wait_until 10 grep -q alive "$hout"
}

@test "a connection open before a push takes the pushed rule at its next exchange" {
	require_faultsrv
	start_faultsrv --mode stall --stall 300
	# One connection, one request at a time: each answer takes 300 ms;
	# prints "EPOCH_MS ok" or "EPOCH_MS ERRNAME" per exchange, ends at
	# the first failure.
	BULWARK_POLICY="127.0.0.1 retry.attempts=1" start_bg --shim "$PY" -c '
import errno, os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while True:
    try:
        s.sendall(b"x")
        s.recv(16)
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print(int(time.time() * 1000), r, flush=True)
    if r != "ok":
        break
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)' "$FS_PORT" "$BW_TMP/stop"
	LOOP_OUT=$BW_TMP/bg.$BW_SERVER_N.out
	local pid=$BG_PID
	wait_until 10 grep -q ok "$LOOP_OUT"
	local t0
	t0=$(now_ms)
	run "$BW_CLI" policy push "127.0.0.1 retry.attempts=1 io.timeout=100ms"
	[ "$status" -eq 0 ]
	# The exchange after the push times out (100 ms < 300 ms): within a
	# second, on the same connection.
	local ms
	ms=$(first_after ETIMEDOUT "$t0")
	echo "ETIMEDOUT after $ms ms"
	[ "$ms" -lt 1000 ]
	run "$BW_CLI" policy show
	[[ $output == *"processes: 1 live running generation 1"* ]]
}
