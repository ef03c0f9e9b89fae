#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/state.bats: the shared state never fills for good (idle
# destinations give up their slots, reset --all frees them, status says how
# full it is), and values read from the segment are bounded (an open
# deadline far in the future) or, when no program writes them (a breaker
# state, a forced mode), counted as corruption and repaired.  Real python3
# clients on loopback only.

load ../lib/common

POKE=${POKE:-$BW_BUILD/fixtures/statepoke}

# connect_many N BASE_PORT: N connects under the shim to distinct closed
# loopback destinations 127.77.X.Y:PORT (refused at once); prints how many
# were refused.
connect_many() {
	LD_PRELOAD="$BW_LIB" python3 - "$1" "$2" <<'PY'
import socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
refused = 0
for i in range(n):
    s = socket.socket()
    try:
        s.connect(("127.77.%d.%d" % (i >> 8, i & 255), port))
    except ConnectionRefusedError:
        refused += 1
    except OSError:
        pass
    finally:
        s.close()
print(refused)
PY
}

@test "state: the table never fills for good (status shows it, idle ones give way, reset --all frees)" {
	require_shim
	require_cli
	[[ -x $POKE ]] || skip "statepoke not built"
	local port
	port=$(free_port)
	export BULWARK_POLICY="127.0.0.0/8 retry.attempts=1 breaker.failures=1000"
	export BULWARK_LOG_FILE=$BW_TMP/log
	# More destinations than slots: the table fills.
	run connect_many 17000 "$port"
	[ "$status" -eq 0 ]
	[ "$output" -eq 17000 ]
	# (A few slots lie on no probe sequence of these keys.)
	run "$BW_CLI" status
	[ "$status" -eq 0 ]
	[[ ${lines[-1]} =~ ^slots:\ (16[0-9]{3})\ of\ 16384\ in\ use.*\;\ [0-9]+\ new\ destinations\ found\ no\ room\ and\ went\ unprotected$ ]]
	local used=${BASH_REMATCH[1]}
	[ "$used" -ge 16000 ]
	run "$BW_CLI" status --prometheus
	[[ $output == *$'\nbulwark_state_slots_used{state_name="'"$BULWARK_STATE"'"} '"$used"$'\n'* ]]
	[[ $output == *$'\nbulwark_state_slots{state_name="'"$BULWARK_STATE"'"} 16384'* ]]
	grep -q 'event=state_error.*no room' "$BW_TMP/log"
	# A destination that found no room finds none again while every slot
	# was used just now (a new one could still land on one of the few
	# free slots if its probe sequence crosses one: take one that did not).
	local victim
	victim=$(sed -n 's/.*event=state_error dest=\(127\.77\.[0-9.]*\):[0-9]* msg="no room.*/\1/p' "$BW_TMP/log" | tail -n 1)
	[ -n "$victim" ]
	run run_shim python3 -c "import socket; s = socket.socket(); s.connect_ex(('$victim', $port))"
	[ "$(bw_field "$victim:$port" failed_calls)" = 0 ]
	# Once they have been idle 10 minutes (aged in the segment), it takes
	# the slot of one of them.
	run "$POKE" "$(bw_state_file)" - age-all
	[ "$status" -eq 0 ]
	run run_shim python3 -c "import socket; s = socket.socket(); s.connect_ex(('$victim', $port))"
	[ "$(bw_field "$victim:$port" failed_calls)" = 1 ]
	run "$BW_CLI" status
	[[ ${lines[-1]} == "slots: $used of 16384 in use"* ]]
	# reset --all frees every slot not forced.
	"$BW_CLI" force 127.0.0.2:1 open >/dev/null
	run "$BW_CLI" status
	[[ ${lines[-1]} =~ ^slots:\ ([0-9]+)\ of ]]
	used=${BASH_REMATCH[1]}
	run "$BW_CLI" reset --all
	[ "$status" -eq 0 ]
	[ "$output" = "reset $used destinations in state '$BULWARK_STATE': $((used - 1)) slots freed, 1 kept (forced, or a bulkhead slot held)" ]
	run "$BW_CLI" status
	[[ ${lines[-1]} == "slots: 1 of 16384 in use"* ]]
	[[ $output == *forced_open* ]]
	# New destinations are protected again.
	run connect_many 100 "$port"
	[ "$output" -eq 100 ]
	[ "$(bw_field "127.77.0.99:$port" failed_calls)" = 1 ]
	run "$BW_CLI" status
	[[ ${lines[-1]} == "slots: 101 of 16384 in use"* ]]
}

@test "state: an open deadline far in the future is bounded by breaker.open_max" {
	require_shim
	require_cli
	require_faultsrv
	[[ -x $POKE ]] || skip "statepoke not built"
	local port
	port=$(free_port)
	export BULWARK_POLICY="127.0.0.1:$port breaker.failures=1 breaker.open=1s retry.attempts=1"
	export BULWARK_LOG_FILE=$BW_TMP/log
	run run_shim tcp_try 127.0.0.1 "$port" 2
	[ "$output" = ECONNREFUSED ]
	[ "$(bw_field "127.0.0.1:$port" state)" = open ]
	# What a corrupt segment, or a process in another time namespace,
	# can leave: open for 34 years.
	run "$POKE" "$(bw_state_file)" "127.0.0.1:$port" deadline-max
	[ "$status" -eq 0 ]
	# status shows no more than the open time.
	local left
	left=$(bw_field "127.0.0.1:$port" open_remaining_ms)
	[ "$left" -le 1000 ]
	start_faultsrv --mode echo --port "$port"
	# Refused for at most about open_max, then the probe closes it.
	wait_until 10 run_shim tcp_try 127.0.0.1 "$port" 2
	[ "$(bw_field "127.0.0.1:$port" state)" = closed ]
	grep -q 'event=state_error.*action=bounded' "$BW_TMP/log"
}

@test "state: an impossible breaker state or forced mode is counted, repaired, and the breaker opens again" {
	require_shim
	require_cli
	[[ -x $POKE ]] || skip "statepoke not built"
	local port dest
	port=$(free_port) # nothing listens: every connect is refused
	dest=127.0.0.1:$port
	export BULWARK_POLICY="$dest breaker.failures=2 breaker.open=60s retry.attempts=1"
	export BULWARK_LOG_FILE=$BW_TMP/log
	run run_shim tcp_try 127.0.0.1 "$port" 2
	[ "$output" = ECONNREFUSED ]
	[ "$(bw_field "$dest" state)" = closed ]
	[ "$(bw_field "$dest" breaker_corrupt)" -eq 0 ]
	# What a corrupt segment can leave: state bits no transition writes.
	run "$POKE" "$(bw_state_file)" "$dest" state-3
	[ "$status" -eq 0 ]
	# status only reads: it shows such a word as closed, counts nothing
	[ "$(bw_field "$dest" breaker_corrupt)" -eq 0 ]
	# The first connect repairs and counts it; the failures then open
	# the breaker as breaker.failures says (on the old code the word
	# stayed corrupt and the breaker never opened).
	run run_shim tcp_try 127.0.0.1 "$port" 2
	[ "$output" = ECONNREFUSED ]
	run run_shim tcp_try 127.0.0.1 "$port" 2
	[ "$output" = ECONNREFUSED ]
	[ "$(bw_field "$dest" state)" = open ]
	[ "$(bw_field "$dest" breaker_corrupt)" -eq 1 ]
	grep -q "state_error.*breaker_corrupt=1 repaired=closed" "$BULWARK_LOG_FILE"
	run "$BW_CLI" status --prometheus
	[[ $output == *"bulwark_breaker_corrupt_total{destination=\"$dest\""*"} 1"* ]]
	# A forced mode bulwark force never writes: back to auto, counted.
	"$BW_CLI" reset "$dest" >/dev/null
	run "$POKE" "$(bw_state_file)" "$dest" forced-7
	[ "$status" -eq 0 ]
	run run_shim tcp_try 127.0.0.1 "$port" 2
	[ "$output" = ECONNREFUSED ]
	run run_shim tcp_try 127.0.0.1 "$port" 2
	[ "$output" = ECONNREFUSED ]
	[ "$(bw_field "$dest" state)" = open ]
	[ "$(bw_field "$dest" breaker_corrupt)" -eq 2 ]
}

@test "state: truncating the segment's file does not kill a client; it falls back to private state once" {
	require_shim
	require_cli
	local port
	port=$(free_port)
	export BULWARK_POLICY="127.0.0.0/8 retry.attempts=1 breaker.failures=1000"
	export BULWARK_LOG_FILE=$BW_TMP/log
	# A client that connects in a loop until told to stop, then says how
	# many connects it made.
	LD_PRELOAD="$BW_LIB" python3 - "$port" "$BW_TMP/stop" >"$BW_TMP/client.out" 2>&1 <<'PY' &
import os, socket, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
n = 0
deadline = time.time() + 60
while not os.path.exists(stop) and time.time() < deadline:
    s = socket.socket()
    s.connect_ex(("127.0.0.1", port + n % 20))
    s.close()
    n += 1
print("survived", n)
PY
	local pid=$!
	bw_track_pid "$pid"
	wait_until 10 test -s "$(bw_state_file)"
	wait_until 10 bash -c '[ "$("$BW_CLI" status --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")" -ge 5 ]'
	truncate -s 0 "$(bw_state_file)"
	# It goes on connecting after the truncation (the log line comes
	# from the fault; without the guard it dies of SIGBUS there), then
	# stops when told.
	wait_until 10 bash -c "grep -qs 'fell back to private state' '$BW_TMP/log' || ! kill -0 $pid"
	touch "$BW_TMP/stop"
	local rc=0
	wait "$pid" || rc=$?
	cat "$BW_TMP/client.out"
	[ "$rc" -eq 0 ]
	[[ $(cat "$BW_TMP/client.out") == "survived "* ]]
	[ "$(grep -c 'event=state_error.*fell back to private state' "$BW_TMP/log")" -eq 1 ]
}

@test "state: the program's own SIGBUS disposition is kept (its handler runs, SIG_DFL still kills)" {
	require_shim
	export BULWARK_POLICY="127.0.0.1 retry.attempts=1"
	# What the program set is what it reads back; its handler gets a
	# SIGBUS that is not the segment's.
	run run_shim python3 -c '
import signal, os
print(signal.getsignal(signal.SIGBUS) == signal.SIG_DFL)
got = []
signal.signal(signal.SIGBUS, lambda s, f: got.append(s))
os.kill(os.getpid(), signal.SIGBUS)
print(got == [signal.SIGBUS], signal.getsignal(signal.SIGBUS) is not None)'
	[ "$status" -eq 0 ]
	[ "$output" = $'True\nTrue True' ]
	# A real fault outside the segment (a truncated file of its own) ends
	# the program with SIGBUS, as without bulwark.
	run run_shim python3 -c '
import mmap, os, tempfile
f = tempfile.TemporaryFile()
f.write(b"x" * 8192); f.flush()
m = mmap.mmap(f.fileno(), 8192)
os.ftruncate(f.fileno(), 0)
print(m[4096])'
	[ "$status" -eq 135 ]
	run run_shim python3 -c 'import os, signal; os.kill(os.getpid(), signal.SIGBUS)'
	[ "$status" -eq 135 ]
}
