#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/observe_only.bats: a destination that no rule matches is
# observed only (man/bulwark-policy.7): its calls are counted and shown by
# `bulwark status`, and nothing is refused, retried, delayed or logged.
# Preloading the shim with no policy changes nothing the program sees: a
# refused connect is one SYN, fails at once and prints nothing; a
# wait-until-up loop sees the server the moment it listens, even when a
# process with a rule has opened the destination's breaker.  A bare rule
# '*' applies every default, and BULWARK_<KEY> variables with no rules act
# as the rule '*'.

load ../lib/common

PY=$(python3 -c 'import sys; print(sys.executable)')
PYCLIENT=$BW_ROOT/tests/clients/pyclient.py
SYNCOUNT=$BW_ROOT/tests/clients/syncount.py

setup() {
	bw_setup
	require_shim
	require_cli
	require_faultsrv
	# Nothing but the state: exactly what preloading the shim alone gives
	# (logs, if any, would go to the program's standard error).
	local v
	for v in $(compgen -e); do
		[[ $v == BULWARK_* && $v != BULWARK_STATE ]] && unset "$v"
	done
	return 0
}

field() { bw_field "$@"; }

# One blocking connect: prints the outcome (ok or the errno name) and the
# milliseconds the connect call took.
CLIENT='
import errno, socket, sys, time
s = socket.socket()
t = time.monotonic()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    r = "ok"
except OSError as e:
    r = errno.errorcode[e.errno]
print(r, int((time.monotonic() - t) * 1000))'

# shim_client PORT: CLIENT under the shim; stdout to $OUT, stderr to $ERR.
shim_client() {
	OUT=$BW_TMP/client.out ERR=$BW_TMP/client.err
	LD_PRELOAD=$BW_LIB "$PY" -c "$CLIENT" "$1" >"$OUT" 2>"$ERR" || true
}

# count_syns PORT SECONDS: SYNs to PORT on lo into $SYNS_FILE, as the
# server's side of the wire sees them (needs CAP_NET_RAW); a no-op that
# sets SYNS_FILE empty when not root.
count_syns() {
	SYNS_FILE=
	[[ $(id -u) == 0 ]] || return 0
	SYNS_FILE=$BW_TMP/syns.$1
	: >"$SYNS_FILE"
	"$PY" "$SYNCOUNT" "$1" "$SYNS_FILE" "$2" >"$BW_TMP/syncount.out" 2>&1 &
	bw_track_pid $!
	wait_until 5 grep -q ready "$BW_TMP/syncount.out"
}

# syns_are N: exactly N SYNs were captured (waits for stragglers up to
# 0.5 s for N, then checks none more came); true when not root.
syns_are() {
	[[ -n $SYNS_FILE ]] || return 0
	wait_until 2 test "$(wc -l <"$SYNS_FILE")" -ge "$1" || true
	local n
	n=$(wc -l <"$SYNS_FILE")
	echo "# SYNs seen: $n (want $1)" >&3
	[ "$n" -eq "$1" ]
}

@test "no policy: a refused connect is one attempt, fails at once, prints nothing" {
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 10
	shim_client "$FS_PORT"
	read -r what ms <"$OUT"
	echo "# $what after $ms ms; stderr: $(cat "$ERR")" >&3
	[ "$what" = ECONNREFUSED ]
	# Retries would take 0.3 s at the defaults (100 + 200 ms backoff).
	(( ms < 150 ))
	[ ! -s "$ERR" ]
	syns_are 1
	# Counted, as one call, with no retry.
	[ "$(field "127.0.0.1:$FS_PORT" total_calls)" = 1 ]
	[ "$(field "127.0.0.1:$FS_PORT" failed_calls)" = 1 ]
	[ "$(field "127.0.0.1:$FS_PORT" retries)" = 0 ]
}

@test "no policy: curl to a closed port: one attempt, curl's own exit status, nothing printed" {
	require_cmd curl
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 10
	local rc=0
	LD_PRELOAD=$BW_LIB curl -s "http://127.0.0.1:$FS_PORT/" \
		>"$BW_TMP/curl.out" 2>"$BW_TMP/curl.err" || rc=$?
	[ "$rc" -eq 7 ]
	[ ! -s "$BW_TMP/curl.err" ]
	syns_are 1
	[ "$(field "127.0.0.1:$FS_PORT" total_calls)" = 1 ]
	[ "$(field "127.0.0.1:$FS_PORT" retries)" = 0 ]
}

@test "no policy: asyncio (epoll, SO_ERROR) to a closed port: one attempt, at once" {
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 10
	LD_PRELOAD=$BW_LIB run "$PY" -c '
import asyncio, errno, sys, time
async def main():
    t = time.monotonic()
    try:
        await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e))
    print(r, int((time.monotonic() - t) * 1000))
asyncio.run(main())' "$FS_PORT"
	[ "$status" -eq 0 ]
	[ "${lines[0]%% *}" = ECONNREFUSED ]
	(( ${lines[0]##* } < 150 ))
	[ "${#lines[@]}" -eq 1 ] # nothing on stderr either (run merges it)
	syns_are 1
	[ "$(field "127.0.0.1:$FS_PORT" failed_calls)" = 1 ]
}

@test "no policy: a wait-until-up loop connects on its first try once the server is up" {
	local port i slowest=0 said=
	port=$(free_port)
	# Ten tries while nothing listens (a pg_isready-style loop, one
	# process per try): each refused; none delayed or logged (checked
	# below, after the point of the test).
	for ((i = 0; i < 10; i++)); do
		shim_client "$port"
		read -r what ms <"$OUT"
		[ "$what" = ECONNREFUSED ]
		(( ms > slowest )) && slowest=$ms
		said+=$(cat "$ERR")
	done
	start_faultsrv --mode echo --listen "127.0.0.1:$port"
	# The first try after the server is up connects: no open breaker.
	shim_client "$port"
	read -r what ms <"$OUT"
	[ "$what" = ok ]
	(( slowest < 150 ))
	[ -z "$said" ]
	[ "$(field "127.0.0.1:$port" failed_calls)" = 10 ]
	[ "$(field "127.0.0.1:$port" successful_calls)" = 1 ]
	[ "$(field "127.0.0.1:$port" rejected_calls)" = 0 ]
	[ "$(field "127.0.0.1:$port" state)" = closed ]
}

@test "no policy: status shows the observed destination with its counts" {
	start_faultsrv --mode echo
	LD_PRELOAD=$BW_LIB run "$PY" "$PYCLIENT" exchange "$FS_PORT" 3
	[ "$output" = ok ]
	local d=127.0.0.1:$FS_PORT
	# 1 connect + 3 exchanges.
	[ "$(field "$d" rule)" = "(observed)" ]
	[ "$(field "$d" total_calls)" = 4 ]
	[ "$(field "$d" successful_calls)" = 4 ]
	[ "$(field "$d" failed_calls)" = 0 ]
	run "$BW_CLI" status
	[ "$status" -eq 0 ]
	[[ $output == *"$d"*"(observed)"* ]]
	run "$BW_CLI" status --prometheus
	[ "$status" -eq 0 ]
	[[ $output == *"rule=\"(observed)\""* ]]
}

@test "no policy: a breaker opened by a process with a rule does not refuse an observed connect" {
	local port
	port=$(free_port)
	# A process whose rule opens the breaker at the first failure.
	BULWARK_POLICY="127.0.0.1:$port breaker.failures=1 retry.attempts=1" \
		BULWARK_LOG=off shim_client "$port"
	read -r what ms <"$OUT"
	[ "$what" = ECONNREFUSED ]
	[ "$(field "127.0.0.1:$port" state)" = open ]
	start_faultsrv --mode echo --listen "127.0.0.1:$port"
	# No policy: the shared breaker is not ours to obey.
	shim_client "$port"
	read -r what ms <"$OUT"
	[ "$what" = ok ]
	[ ! -s "$ERR" ]
	[ "$(field "127.0.0.1:$port" rejected_calls)" = 0 ]
	# The observed success did not move the breaker either.
	[ "$(field "127.0.0.1:$port" state)" = open ]
	# The process with the rule is still refused by it.
	BULWARK_POLICY="127.0.0.1:$port breaker.failures=1 retry.attempts=1" \
		BULWARK_LOG=off shim_client "$port"
	read -r what ms <"$OUT"
	[ "$what" = ECONNREFUSED ]
	[ "$(field "127.0.0.1:$port" rejected_calls)" = 1 ]
}

@test "rules that do not match loopback leave it observed only" {
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 10
	local i
	# No traffic ever goes to 10.0.0.0/8: the rule only has to exist.
	for ((i = 0; i < 6; i++)); do
		BULWARK_POLICY='10.0.0.0/8 breaker.failures=1' BULWARK_LOG=debug \
			shim_client "$FS_PORT"
		read -r what ms <"$OUT"
		[ "$what" = ECONNREFUSED ]
		(( ms < 150 ))
		[ ! -s "$ERR" ]
	done
	syns_are 6
	local d=127.0.0.1:$FS_PORT
	[ "$(field "$d" rule)" = "(observed)" ]
	[ "$(field "$d" failed_calls)" = 6 ]
	[ "$(field "$d" rejected_calls)" = 0 ]
	[ "$(field "$d" state)" = closed ]
}

@test "BULWARK_<KEY> with no rules act as the rule '*': the breaker opens after 2 failures" {
	start_faultsrv --mode refuse
	export BULWARK_BREAKER_FAILURES=2 BULWARK_RETRY_ATTEMPTS=1
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	shim_client "$FS_PORT"
	shim_client "$FS_PORT"
	local d=127.0.0.1:$FS_PORT
	[ "$(field "$d" rule)" = "*" ]
	[ "$(field "$d" state)" = open ]
	grep -q "event=breaker_open dest=$d failures=2" "$BW_TMP/bulwark.log"
	# The third is refused by the breaker: never on the network.
	shim_client "$FS_PORT"
	[ "$(field "$d" rejected_calls)" = 1 ]
	[ "$(field "$d" failed_calls)" = 2 ]
	# bulwark check says where the rule comes from.
	run "$BW_CLI" check
	[ "$status" -eq 0 ]
	[[ $output == *"policy ok: 1 rule ('*', made by the BULWARK_<KEY> variables"* ]]
	[[ $output == *"breaker.failures=2"*"# env"* ]]
}

@test "a bare rule '*' applies every default: 3 attempts at the server" {
	start_faultsrv --mode refuse
	count_syns "$FS_PORT" 10
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	BULWARK_POLICY='*' shim_client "$FS_PORT"
	read -r what ms <"$OUT"
	[ "$what" = ECONNREFUSED ]
	syns_are 3
	local d=127.0.0.1:$FS_PORT
	[ "$(field "$d" rule)" = "*" ]
	[ "$(field "$d" failed_calls)" = 3 ]
	[ "$(field "$d" retries)" = 2 ]
	grep -q "event=retry_exhausted dest=$d attempts=3" "$BW_TMP/bulwark.log"
}

@test "check with no rules says every destination is observed only" {
	run "$BW_CLI" check
	[ "$status" -eq 0 ]
	[[ ${lines[0]} == "policy ok: no rules; every destination is observed only" ]]
	[[ $output == *"no rules: every destination is observed only"* ]]
	run "$BW_CLI" check '10.0.0.0/8 breaker.failures=1'
	[ "$status" -eq 0 ]
	[[ $output == *"destinations no rule matches: observed only"* ]]
}
