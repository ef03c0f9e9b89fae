#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/observe.bats: what the shim records (bulwark-policy(7) CALLS) for
# real clients against the fault server: connect attempts (blocking,
# non-blocking, abandoned), exchanges (ok, reset, peer close, slow), counters
# exact under 32 threads, dup and fork sharing, host rules, and the fall-backs
# of bulwark(1) DIAGNOSTICS (invalid policy, BULWARK_STRICT, BULWARK_DISABLE, a
# bad segment).

load ../lib/common

PYCLIENT=$BW_ROOT/tests/clients/pyclient.py
# The interpreter itself, not a wrapper script (pyenv's shims run several
# processes, each of which would log its own line).
PY=$(python3 -c 'import sys; print(sys.executable)')

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	# Every destination under the rule '*' (with no rule at all it would
	# be observed only: observe_only.bats), one attempt per connect, so
	# each call counted here is the program's own (retries have their own
	# tests: retry.bats).
	export BULWARK_POLICY='*' BULWARK_RETRY_ATTEMPTS=1
}

# field DEST KEY: one number from `bulwark status --json` (0 if absent).
field() { bw_field "$@"; }

@test "blocking connect to a closed port is one failed call" {
	start_faultsrv --mode refuse
	run run_shim "$PY" "$PYCLIENT" connect "$FS_PORT"
	[ "$output" = ECONNREFUSED ]
	[ "$(field 127.0.0.1:$FS_PORT failed_calls)" = 1 ]
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 1 ]
}

@test "blocking connect that succeeds is one successful call" {
	start_faultsrv --mode echo
	run run_shim "$PY" "$PYCLIENT" connect "$FS_PORT"
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT successful_calls)" = 1 ]
	[ "$(field 127.0.0.1:$FS_PORT failed_calls)" = 0 ]
}

@test "non-blocking connect: outcome taken from the program's SO_ERROR" {
	start_faultsrv --mode refuse
	local refused=$FS_PORT
	start_faultsrv --mode echo
	run run_shim "$PY" "$PYCLIENT" nbconnect "$refused"
	[ "$output" = ECONNREFUSED ]
	run run_shim "$PY" "$PYCLIENT" nbconnect "$FS_PORT"
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$refused failed_calls)" = 1 ]
	[ "$(field 127.0.0.1:$FS_PORT successful_calls)" = 1 ]
}

@test "a connect closed before it completes is neither success nor failure" {
	start_faultsrv --mode queue-full
	run run_shim "$PY" "$PYCLIENT" nbabandon "$FS_PORT"
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 0 ]
}

@test "exchanges: each request/response is a call" {
	start_faultsrv --mode echo
	run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT" 10
	[ "$output" = ok ]
	# 1 connect + 10 exchanges
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 11 ]
	[ "$(field 127.0.0.1:$FS_PORT successful_calls)" = 11 ]
}

@test "an exchange reset by the peer is a failed call" {
	start_faultsrv --mode reset --stall 0
	run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$status" -eq 1 ]
	[ "$(field 127.0.0.1:$FS_PORT failed_calls)" = 1 ]
}

@test "a peer that closes before answering fails the exchange" {
	start_faultsrv --mode close --stall 200
	run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$status" -eq 1 ]
	[ "$(field 127.0.0.1:$FS_PORT failed_calls)" = 1 ]
	[ "$(field 127.0.0.1:$FS_PORT successful_calls)" = 1 ] # the connect
}

@test "breaker.slow marks a slow exchange" {
	start_faultsrv --mode echo --stall 150
	BULWARK_POLICY='* breaker.slow=50ms' run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT" 2
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT slow_calls)" = 2 ]
}

@test "32 threads x 1000 exchanges: counters are exact" {
	start_faultsrv --mode echo
	run run_shim "$PY" "$PYCLIENT" threads "$FS_PORT" 32 1000
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 32032 ]
	[ "$(field 127.0.0.1:$FS_PORT successful_calls)" = 32032 ]
	[ "$(field 127.0.0.1:$FS_PORT failed_calls)" = 0 ]
}

@test "a request written on a dup and answered on the original is one exchange" {
	start_faultsrv --mode echo
	run run_shim "$PY" "$PYCLIENT" dupsplit "$FS_PORT"
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 2 ]
}

@test "a forked child's exchange on the parent's connection is recorded" {
	start_faultsrv --mode echo
	run run_shim "$PY" "$PYCLIENT" forkchild "$FS_PORT"
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 2 ]
}

@test "a host rule matches the addresses the program resolved" {
	start_faultsrv --mode echo
	BULWARK_POLICY="localhost:$FS_PORT breaker.failures=7" \
		run run_shim "$PY" "$PYCLIENT" name localhost "$FS_PORT"
	[ "$output" = ok ]
	"$BW_CLI" status --json | grep -q "\"rule\": \"localhost:$FS_PORT\""
}

@test "an unmatched destination is observed only" {
	start_faultsrv --mode echo
	BULWARK_POLICY="10.0.0.0/8 breaker.failures=7" \
		run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	"$BW_CLI" status --json | grep -q '"rule": "(observed)"'
	[ "$(field "127.0.0.1:$FS_PORT" total_calls)" = 2 ]
}

@test "a rule with 'off' records nothing" {
	start_faultsrv --mode echo
	BULWARK_POLICY="127.0.0.1:$FS_PORT off" \
		run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 0 ]
}

@test "one process alternating between destinations: each keeps its own rule" {
	# The shim remembers the destination it bound last (shim/connect.c);
	# a connect elsewhere must still be matched and counted on its own.
	start_faultsrv --mode echo
	local a=$FS_PORT
	start_faultsrv --mode echo
	local b=$FS_PORT
	start_faultsrv --mode echo
	local c=$FS_PORT
	BULWARK_POLICY="127.0.0.1:$a breaker.failures=3; 127.0.0.1:$b off; * bulkhead.max=4" \
		run run_shim "$PY" "$PYCLIENT" alternate "$a" "$b" 10
	[ "$output" = ok ]
	BULWARK_POLICY="127.0.0.1:$a breaker.failures=3; 127.0.0.1:$b off; * bulkhead.max=4" \
		run run_shim "$PY" "$PYCLIENT" alternate "$c" "$a" 5
	[ "$output" = ok ]
	[ "$(field 127.0.0.1:$a rule)" = "127.0.0.1:$a" ]
	[ "$(field 127.0.0.1:$a successful_calls)" -eq 30 ] # 15 connects, 15 exchanges
	[ "$(field 127.0.0.1:$b total_calls)" = 0 ]
	[ "$(field 127.0.0.1:$c rule)" = "*" ]
	[ "$(field 127.0.0.1:$c successful_calls)" -eq 10 ]
	[ "$(field 127.0.0.1:$c bulkhead.max)" -eq 4 ]
}

@test "an invalid policy: one error line, the program runs untouched" {
	start_faultsrv --mode echo
	BULWARK_POLICY='* breaker.failure=3' run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	[ "$(grep -c 'event=policy_error' "$BULWARK_LOG_FILE")" = 1 ]
	grep -q "did you mean 'breaker.failures'" "$BULWARK_LOG_FILE"
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 0 ]
}

@test "BULWARK_STRICT=1: an invalid policy exits 2 before main" {
	BULWARK_STRICT=1 BULWARK_POLICY='* retry.attempts=zero' \
		run run_shim "$PY" -c 'print("main ran")'
	[ "$status" -eq 2 ]
	[[ $output != *"main ran"* ]]
}

@test "an illegal state name is a policy error" {
	start_faultsrv --mode echo
	BULWARK_STATE='../etc' run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	grep -q 'event=policy_error.*BULWARK_STATE' "$BULWARK_LOG_FILE"
	[ ! -e "/dev/shm/bulwark-$UID-../etc" ]
}

@test "BULWARK_DISABLE=1 is pure pass-through" {
	start_faultsrv --mode echo
	BULWARK_DISABLE=1 run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	[ ! -e "$(bw_state_file)" ]
}

@test "a segment with the wrong mode is not trusted: warning, private state" {
	start_faultsrv --mode echo
	local f; f=$(bw_state_file)
	head -c 4096 /dev/zero >"$f"
	chmod 0644 "$f"
	run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	[ "$(grep -c 'event=state_error' "$BULWARK_LOG_FILE")" = 1 ]
	[ "$(stat -c %s "$f")" = 4096 ] # untouched
}

@test "a segment replaced by a symlink is not followed" {
	start_faultsrv --mode echo
	local f; f=$(bw_state_file)
	ln -s "$BW_TMP/target" "$f"
	run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	grep -q 'event=state_error' "$BULWARK_LOG_FILE"
	[ ! -e "$BW_TMP/target" ]
	rm -f "$f"
}

@test "BULWARK_STATE=private shares nothing" {
	start_faultsrv --mode echo
	BULWARK_STATE=private run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	[ ! -e /dev/shm/bulwark-$UID-private ]
}

@test "connections of many short-lived processes add up in the shared state" {
	start_faultsrv --mode echo
	for i in 1 2 3 4 5; do
		run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT" >/dev/null
	done
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 10 ]
}

@test "a full state: new destinations still work, untracked, and a warning says so" {
	start_faultsrv --mode echo
	# 16384 slots: fill them with refused destinations (closed ports on
	# 127.0.0.2..), then talk to a healthy server.
	BULWARK_POLICY='* breaker=off' run run_shim "$PY" -c "
import socket
n = 0
for a in range(2, 4):
    for port in range(1, 9000):
        s = socket.socket()
        try: s.connect(('127.0.0.%d' % a, port))
        except OSError: n += 1
        s.close()
print(n)"
	[ "$output" -ge 17000 ]
	run run_shim "$PY" "$PYCLIENT" exchange "$FS_PORT"
	[ "$output" = ok ]
	grep -q 'event=state_error.*no room for this destination' "$BULWARK_LOG_FILE"
	[ "$(field 127.0.0.1:$FS_PORT total_calls)" = 0 ] # passed through
	"$BW_CLI" status --prometheus | grep -q '^bulwark_state_full_total{state_name="'"$BULWARK_STATE"'"} [1-9]'
}

@test "sendto with MSG_FASTOPEN is a connect: counted, and refused by an open breaker" {
	start_faultsrv --mode echo
	local tfo='
import socket, sys, errno
s = socket.socket()
try:
    s.sendto(b"ping", socket.MSG_FASTOPEN, ("127.0.0.1", int(sys.argv[1])))
    print(s.recv(10).decode())
except OSError as e:
    print(errno.errorcode[e.errno])'
	run run_shim "$PY" -c "$tfo" "$FS_PORT"
	[ "$output" = ping ]
	# the connect and the exchange it carried
	[ "$(field 127.0.0.1:$FS_PORT successful_calls)" = 2 ]
	"$BW_CLI" force "127.0.0.1:$FS_PORT" open
	run run_shim "$PY" -c "$tfo" "$FS_PORT"
	[ "$output" = ECONNREFUSED ]
	[ "$(stats_get accepted)" = 1 ]
}
