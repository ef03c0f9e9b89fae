#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/cli.bats: the bulwark command (bulwark(1)): --version and
# --help, exit statuses, check's output and error format, run's environment
# and LD_PRELOAD handling and its warnings, status/--json/--prometheus on a
# missing and on a real segment, force and reset; and the shim's linkage
# (it never calls its own exported hooks).
#
# Each test gets its own state name from bw_setup (BULWARK_STATE) and
# teardown removes /dev/shm/bulwark-UID-NAME.  BW_BUILD picks the build
# (default build/).

# Single-quoted $VARS below are for the child shell to expand.
# shellcheck disable=SC2016

bats_require_minimum_version 1.5.0
load ../lib/common

CMDS=(run check status reset force trace)

setup() {
	bw_setup
	require_cli
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_LOG \
		BULWARK_LOG_FILE BULWARK_STRICT BULWARK_LIB
	STATE=$BULWARK_STATE
}

teardown() {
	bw_teardown
}

# ---- version and help ------------------------------------------------------

@test "--version prints the Makefile's version" {
	local want
	want=$(sed -n 's/^VERSION := //p' "$BW_ROOT/Makefile")
	run "$BW_CLI" --version
	[ "$status" -eq 0 ]
	[ "$output" = "bulwark $want" ]
}

@test "--help lists every subcommand, exit 0" {
	run "$BW_CLI" --help
	[ "$status" -eq 0 ]
	[[ ${lines[0]} == "Usage: bulwark "* ]]
	local c
	for c in "${CMDS[@]}"; do
		[[ $output == *"  $c "* ]]
	done
}

@test "CMD --help and help CMD print the same usage for every subcommand" {
	local c a b
	for c in "${CMDS[@]}"; do
		run "$BW_CLI" "$c" --help
		[ "$status" -eq 0 ]
		[[ ${lines[0]} == "Usage: bulwark $c"* ]]
		[[ $output == *"Exit status"* ]]
		a=$output
		run "$BW_CLI" help "$c"
		[ "$status" -eq 0 ]
		b=$output
		# trace --help may come from the reporter itself when built.
		[[ $c == trace || $a == "$b" ]]
	done
}

@test "no command, an unknown command or option: exit 2" {
	run "$BW_CLI"
	[ "$status" -eq 2 ]
	run "$BW_CLI" frobnicate
	[ "$status" -eq 2 ]
	[[ $output == *"unknown command 'frobnicate'"* ]]
	run "$BW_CLI" stauts
	[ "$status" -eq 2 ]
	[[ $output == *"did you mean 'status'?"* ]]
	run "$BW_CLI" --frob
	[ "$status" -eq 2 ]
	run "$BW_CLI" status --frob
	[ "$status" -eq 2 ]
	[[ $output == *"unknown option '--frob'"* ]]
	run "$BW_CLI" help nosuch
	[ "$status" -eq 2 ]
}

# ---- check -----------------------------------------------------------------

@test "check: a valid policy exits 0 and shows every effective setting" {
	run "$BW_CLI" check '127.0.0.1:6379 breaker.failures=3 bulkhead.max=8; * retry.attempts=1'
	[ "$status" -eq 0 ]
	[[ $output == *"2 rules"* ]]
	# Set by the rule, marked as such; the others at their defaults.
	[[ $output =~ breaker\.failures=3\ +#\ rule ]]
	[[ $output =~ bulkhead\.max=8\ +#\ rule ]]
	[[ $output =~ retry\.attempts=1\ +#\ rule ]]
	[[ $output == *"breaker.errno=ECONNREFUSED"* ]]
	[[ $output == *"bulkhead.scope=shared"* ]]
	[[ $output == *"defaults (where every rule starts; a bare rule applies them all)"* ]]
	[[ $output == *"destinations no rule matches: observed only"* ]]
	# Every key, in every rule and in the defaults: 3 times each.
	[ "$(grep -c '^    breaker\.open=' <<<"$output")" -eq 3 ]
}

@test "check: a BULWARK_<KEY> variable is an effective default" {
	BULWARK_BREAKER_FAILURES=9 run "$BW_CLI" check '*:80'
	[ "$status" -eq 0 ]
	[[ $output =~ breaker\.failures=9\ +#\ env ]]
}

@test "check: a misspelt key is exit 2 with policy:LINE:COL and a suggestion" {
	run "$BW_CLI" check 'redis.internal:6379 breaker.failure=3'
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ $output =~ ^bulwark:\ policy:1:21:\ .*\'breaker\.failure\'.*did\ you\ mean\ \'breaker\.failures\'\?$ ]]
}

@test "check: with no argument, BULWARK_POLICY and BULWARK_POLICY_FILE" {
	BULWARK_POLICY='*:443 retry.attempts=5' run "$BW_CLI" check
	[ "$status" -eq 0 ]
	[[ $output =~ retry\.attempts=5\ +#\ rule ]]
	printf '# comment\n*:80 retry.atempts=2\n' >"$BW_TMP/p"
	BULWARK_POLICY_FILE=$BW_TMP/p run "$BW_CLI" check
	[ "$status" -eq 2 ]
	[[ $output =~ ^bulwark:\ file:2:[0-9]+:\ .*did\ you\ mean\ \'retry\.attempts\'\?$ ]]
}

@test "check --policy-file; a missing file is exit 2" {
	printf '10.0.0.0/8:5432 breaker.rate=50%%\n' >"$BW_TMP/p"
	run "$BW_CLI" check --policy-file "$BW_TMP/p"
	[ "$status" -eq 0 ]
	[[ $output =~ breaker\.rate=50%\ +#\ rule ]]
	run "$BW_CLI" check --policy-file "$BW_TMP/nope"
	[ "$status" -eq 2 ]
	[[ $output == *"cannot read policy file"* ]]
}

# ---- run -------------------------------------------------------------------

@test "run: the exit status is the program's" {
	require_shim
	run "$BW_CLI" run -- sh -c 'exit 7'
	[ "$status" -eq 7 ]
	run "$BW_CLI" run sh -c 'exit 0'
	[ "$status" -eq 0 ]
}

@test "run: LD_PRELOAD is appended to, not replaced, and never twice" {
	require_shim
	local out lib
	lib=$(realpath "$BW_LIB")
	out=$(LD_PRELOAD=/x "$BW_CLI" run -- sh -c 'echo "$LD_PRELOAD"' 2>/dev/null)
	[ "$out" = "/x:$lib" ]
	out=$(LD_PRELOAD=$lib "$BW_CLI" run -- sh -c 'echo "$LD_PRELOAD"')
	[ "$out" = "$lib" ]
	out=$("$BW_CLI" run -- sh -c 'echo "$LD_PRELOAD"')
	[ "$out" = "$lib" ]
}

@test "run: sets BULWARK_POLICY, _POLICY_FILE, _STATE, _LOG, _STRICT" {
	require_shim
	printf '*:80 retry.attempts=2\n' >"$BW_TMP/p"
	run "$BW_CLI" run --policy '*:443 retry.attempts=4' \
		--policy-file "$BW_TMP/p" --state "$STATE" --log debug --strict \
		-- sh -c 'printf "%s|%s|%s|%s|%s\n" "$BULWARK_POLICY" \
			"$BULWARK_POLICY_FILE" "$BULWARK_STATE" "$BULWARK_LOG" \
			"$BULWARK_STRICT"'
	[ "$status" -eq 0 ]
	[ "${lines[-1]}" = "*:443 retry.attempts=4|$(realpath "$BW_TMP/p")|$STATE|debug|1" ]
}

@test "run: a bad policy is exit 2 and the program never starts" {
	require_shim
	run "$BW_CLI" run --policy '* breaker.failure=3' -- touch "$BW_TMP/ran"
	[ "$status" -eq 2 ]
	[[ $output == *"bulwark: policy:1:"*"did you mean 'breaker.failures'?"* ]]
	[ ! -e "$BW_TMP/ran" ]
	BULWARK_POLICY='* bogus=1' run "$BW_CLI" run -- touch "$BW_TMP/ran"
	[ "$status" -eq 2 ]
	[ ! -e "$BW_TMP/ran" ]
}

@test "run: bad usage is 2; not found 127, not executable 126; no shim 1" {
	require_shim
	run "$BW_CLI" run
	[ "$status" -eq 2 ]
	run "$BW_CLI" run --log loud -- true
	[ "$status" -eq 2 ]
	run "$BW_CLI" run --state 'bad name' -- true
	[ "$status" -eq 2 ]
	run -127 "$BW_CLI" run -- bulwark-no-such-program
	[ "$status" -eq 127 ]
	[[ $output == *"command not found"* ]]
	printf 'x\n' >"$BW_TMP/notexec"
	chmod 0644 "$BW_TMP/notexec"
	run -126 "$BW_CLI" run -- "$BW_TMP/notexec"
	[ "$status" -eq 126 ]
	BULWARK_LIB=$BW_TMP/none.so run "$BW_CLI" run -- true
	[ "$status" -eq 1 ]
	[[ $output == *"BULWARK_LIB"* ]]
}

@test "run: warns that a statically linked program cannot be interposed" {
	require_shim
	local dir=${BATS_TMPDIR:-/tmp}/bwcli-static-$$
	mkdir -p "$dir"
	printf 'int main(void) { return 3; }\n' >"$dir/s.c"
	cc -static -o "$dir/s" "$dir/s.c" 2>/dev/null ||
		{ rm -rf "$dir"; skip "cc -static does not work here"; }
	run "$BW_CLI" run -- "$dir/s"
	rm -rf "$dir"
	[ "$status" -eq 3 ]
	[[ $output == *"bulwark: warning: "*"statically linked"* ]]
	# A dynamically linked program: no warning.
	run "$BW_CLI" run -- true
	[ "$status" -eq 0 ]
	[[ $output != *warning* ]]
}

# mkelf FILE CLASS(32|64) ORDER(<|>) INTERP(0|1): an ELF executable for a
# machine no kernel runs (execvp then hands it to sh), with or without
# PT_INTERP.
mkelf() {
	python3 - "$@" <<'PY'
import struct, sys
path, bits, order, interp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
types = [1, 3] if interp else [1, 1]          # PT_LOAD, PT_INTERP
if bits == 64:
    ehsize, phsize = 64, 56
    ident = b"\x7fELF" + bytes([2, 1 if order == "<" else 2, 1]) + bytes(9)
    eh = ident + struct.pack(order + "HHIQQQIHHHHHH", 2, 0xBEEF, 1, 0, ehsize, 0, 0, ehsize, phsize, len(types), 64, 0, 0)
    ph = b"".join(struct.pack(order + "IIQQQQQQ", t, 0, 0, 0, 0, 0, 0, 0) for t in types)
else:
    ehsize, phsize = 52, 32
    ident = b"\x7fELF" + bytes([1, 1 if order == "<" else 2, 1]) + bytes(9)
    eh = ident + struct.pack(order + "HHIIIIIHHHHHH", 2, 0xBEEF, 1, 0, ehsize, 0, 0, ehsize, phsize, len(types), 40, 0, 0)
    ph = b"".join(struct.pack(order + "IIIIIIII", t, 0, 0, 0, 0, 0, 0, 0) for t in types)
open(path, "wb").write(eh + ph)
PY
	chmod +x "$1"
}

@test "run: reads 32- and 64-bit, little- and big-endian program headers" {
	require_shim
	require_cmd python3
	local bits order out
	for bits in 32 64; do
		for order in '<' '>'; do
			mkelf "$BW_TMP/static" "$bits" "$order" 0
			out=$("$BW_CLI" run -- "$BW_TMP/static" 2>&1) || true
			[[ $out == *"$BW_TMP/static is statically linked"* ]]
			mkelf "$BW_TMP/dynamic" "$bits" "$order" 1
			out=$("$BW_CLI" run -- "$BW_TMP/dynamic" 2>&1) || true
			[[ $out != *"statically linked"* ]]
		done
	done
}

@test "run: a static interpreter behind #! is found too" {
	require_shim
	local dir=${BATS_TMPDIR:-/tmp}/bwcli-shebang-$$
	mkdir -p "$dir"
	printf 'int main(void) { return 0; }\n' >"$dir/s.c"
	cc -static -o "$dir/interp" "$dir/s.c" 2>/dev/null ||
		{ rm -rf "$dir"; skip "cc -static does not work here"; }
	printf '#!%s\n' "$dir/interp" >"$dir/script"
	chmod +x "$dir/script"
	run "$BW_CLI" run -- "$dir/script"
	rm -rf "$dir"
	[ "$status" -eq 0 ]
	[[ $output == *"statically linked"* ]]
}

# ---- status, force, reset --------------------------------------------------

@test "status: a missing state is reported, exit 0, empty table and []" {
	run "$BW_CLI" status --state "$STATE"
	[ "$status" -eq 0 ]
	[[ $output == *"no state '$STATE' yet (no program has run under bulwark with it)"* ]]
	[[ $output == *DESTINATION* ]]
	local out
	out=$("$BW_CLI" status --state "$STATE" --json 2>/dev/null)
	[ "$out" = "[]" ]
	# status never creates the segment.
	[ ! -e "$(bw_state_file)" ]
}

@test "force creates the destination; status shows forced_open" {
	run "$BW_CLI" force --state "$STATE" 127.0.0.1:1 open
	[ "$status" -eq 0 ]
	[ -f "$(bw_state_file)" ]
	[ "$(stat -c %a "$(bw_state_file)")" = 600 ]
	run "$BW_CLI" status --state "$STATE"
	[ "$status" -eq 0 ]
	[[ ${lines[0]} == DESTINATION* ]]
	[[ ${lines[1]} =~ ^127\.0\.0\.1:1\ +\(forced\)\ +forced_open ]]
	run "$BW_CLI" force --state "$STATE" '[::1]:80' disabled
	[ "$status" -eq 0 ]
	run "$BW_CLI" status --state "$STATE"
	[[ ${lines[2]} =~ ^\[::1\]:80\ +\(forced\)\ +disabled ]]
	run "$BW_CLI" force --state "$STATE" 127.0.0.1:1 auto
	[ "$status" -eq 0 ]
	run "$BW_CLI" status --state "$STATE"
	[[ ${lines[1]} =~ ^127\.0\.0\.1:1\ +\(forced\)\ +closed ]]
}

@test "force: bad mode or DEST is 2, auto on an unknown address is 1" {
	run "$BW_CLI" force --state "$STATE" 127.0.0.1:1 shut
	[ "$status" -eq 2 ]
	run "$BW_CLI" force --state "$STATE" 127.0.0.1 open
	[ "$status" -eq 2 ]
	run "$BW_CLI" force --state "$STATE" 127.0.0.1:70000 open
	[ "$status" -eq 2 ]
	run "$BW_CLI" force --state "$STATE" 127.0.0.1:5 auto
	[ "$status" -eq 1 ]
	[ ! -e "$(bw_state_file)" ]
}

@test "status --json: valid JSON with the keys of bulwark(1) status in order" {
	require_cmd python3
	"$BW_CLI" force --state "$STATE" 127.0.0.1:1 open >/dev/null
	"$BW_CLI" force --state "$STATE" '[::1]:8080' disabled >/dev/null
	run "$BW_CLI" status --state "$STATE" --json
	[ "$status" -eq 0 ]
	python3 -m json.tool <<<"$output" >/dev/null
	run python3 -c '
import json, sys
rows = json.load(sys.stdin)
want = ["destination", "rule", "state", "failure_count", "total_calls",
        "successful_calls", "failed_calls", "rejected_calls", "slow_calls",
        "success_rate", "health_score", "bulkhead", "retries",
        "open_remaining_ms"]
assert len(rows) == 2, rows
for r in rows:
    assert list(r)[:len(want)] == want, list(r)
    assert list(r["bulkhead"])[:3] == ["active", "max", "rejected"]
    assert r["success_rate"] == 1.0 and r["health_score"] == 1.0
print(rows[0]["destination"], rows[0]["state"], rows[1]["destination"],
      rows[1]["state"])
' <<<"$output"
	[ "$status" -eq 0 ]
	[ "$output" = "127.0.0.1:1 forced_open [::1]:8080 disabled" ]
}

@test "status --prometheus: HELP/TYPE lines, bulwark_ names, labels" {
	"$BW_CLI" force --state "$STATE" 127.0.0.1:1 open >/dev/null
	run "$BW_CLI" status --state "$STATE" --prometheus
	[ "$status" -eq 0 ]
	[[ $output == *'# TYPE bulwark_calls_total counter'* ]]
	[[ $output == *'# HELP bulwark_calls_total '* ]]
	[[ $output == *'bulwark_breaker_state{destination="127.0.0.1:1",rule="(forced)",state_name="'$STATE'",state="forced_open"} 1'* ]]
	[[ $output == *'bulwark_bulkhead_active{destination="127.0.0.1:1",rule="(forced)",state_name="'$STATE'"} 0'* ]]
	[[ $output == *'bulwark_destinations{state_name="'$STATE'"} 1'* ]]
	# Every sample line is name{labels} value or name value.
	run grep -Ev '^(# (HELP|TYPE) bulwark_[a-z_]+ .+|bulwark_[a-z_]+(\{[^}]*\})? [0-9.e+-]+)$' <<<"$output"
	[ "$status" -eq 1 ]
}

@test "status shows a breaker the shim opened, with time left; reset closes it" {
	require_shim
	require_cmd bash python3
	# Port 1 on loopback must refuse.
	! bash -c 'exec 3<>/dev/tcp/127.0.0.1/1' 2>/dev/null || skip "127.0.0.1:1 accepts"
	local _
	for _ in 1 2 3 4; do
		"$BW_CLI" run --state "$STATE" --policy \
			'127.0.0.1:1 breaker.failures=3 breaker.open=60s retry.attempts=1' \
			-- bash -c 'exec 3<>/dev/tcp/127.0.0.1/1' 2>/dev/null || true
	done
	run "$BW_CLI" status --state "$STATE"
	[ "$status" -eq 0 ]
	[[ ${lines[1]} =~ ^127\.0\.0\.1:1\ +127\.0\.0\.1:1\ +open\ +3\  ]]
	[[ ${lines[1]} =~ \ [0-9]+\.[0-9]s$ ]]
	run "$BW_CLI" status --state "$STATE" --json
	run python3 -c 'import json, sys; r = json.load(sys.stdin)[0]; print(r["state"], r["failure_count"], r["total_calls"], 0 < r["open_remaining_ms"] <= 60000)' <<<"$output"
	[ "$output" = "open 3 3 True" ]
	run "$BW_CLI" reset --state "$STATE" 127.0.0.1:1
	[ "$status" -eq 0 ]
	run "$BW_CLI" status --state "$STATE"
	[[ ${lines[1]} =~ ^127\.0\.0\.1:1\ +127\.0\.0\.1:1\ +closed\ +0\  ]]
}

@test "status: --json with --prometheus, or --watch with --json, is 2" {
	run "$BW_CLI" status --state "$STATE" --json --prometheus
	[ "$status" -eq 2 ]
	run "$BW_CLI" status --state "$STATE" --watch --json
	[ "$status" -eq 2 ]
	run "$BW_CLI" status --state "$STATE" --watch --interval 0
	[ "$status" -eq 2 ]
	run "$BW_CLI" status --state private
	[ "$status" -eq 2 ]
}

@test "status --watch redraws until SIGTERM, then exits 0" {
	"$BW_CLI" force --state "$STATE" 127.0.0.1:1 open >/dev/null
	"$BW_CLI" status --state "$STATE" --watch --interval 0.2 \
		>"$BW_TMP/watch" 2>&1 3>&- &
	local pid=$!
	bw_track_pid "$pid"
	sleep 1
	kill -TERM "$pid"
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	[ "$(grep -c $'\033\\[H' "$BW_TMP/watch")" -ge 2 ]
	grep -q forced_open "$BW_TMP/watch"
}

@test "reset: one destination, --all, an unknown one is 1" {
	"$BW_CLI" force --state "$STATE" 127.0.0.1:1 open >/dev/null
	"$BW_CLI" force --state "$STATE" 127.0.0.1:2 open >/dev/null
	run "$BW_CLI" reset --state "$STATE" 127.0.0.1:1
	[ "$status" -eq 0 ]
	[ "$output" = "reset 127.0.0.1:1" ]
	run "$BW_CLI" reset --state "$STATE" 127.0.0.1:3
	[ "$status" -eq 1 ]
	[[ $output == *"no destination '127.0.0.1:3'"* ]]
	run "$BW_CLI" reset --state "$STATE" --all
	[ "$status" -eq 0 ]
	[ "$output" = "reset 2 destinations in state '$STATE': 0 slots freed, 2 kept (forced, or a bulkhead slot held)" ]
	# A reset keeps the operator's override.
	run "$BW_CLI" status --state "$STATE"
	[[ ${lines[1]} == *forced_open* ]]
	run "$BW_CLI" reset --state "$STATE"
	[ "$status" -eq 2 ]
	run "$BW_CLI" reset --state "$STATE" --all 127.0.0.1:1
	[ "$status" -eq 2 ]
}

@test "reset: a missing state is 0 with --all, 1 for a DEST" {
	run "$BW_CLI" reset --state "$STATE" --all
	[ "$status" -eq 0 ]
	run "$BW_CLI" reset --state "$STATE" 127.0.0.1:1
	[ "$status" -eq 1 ]
	[ ! -e "$(bw_state_file)" ]
}

@test "status, force, reset: an unusable segment is exit 1, left alone" {
	head -c 100 /dev/zero >"$(bw_state_file)"
	chmod 0600 "$(bw_state_file)"
	run "$BW_CLI" status --state "$STATE"
	[ "$status" -eq 1 ]
	[[ $output == "bulwark status: state '$STATE' is not usable: "* ]]
	run "$BW_CLI" force --state "$STATE" 127.0.0.1:1 open
	[ "$status" -eq 1 ]
	run "$BW_CLI" reset --state "$STATE" --all
	[ "$status" -eq 1 ]
	[ "$(stat -c %s "$(bw_state_file)")" -eq 100 ]
}

@test "reset and force accept a host name (every address)" {
	"$BW_CLI" force --state "$STATE" localhost:9 open >/dev/null
	run "$BW_CLI" status --state "$STATE"
	[[ $output == *forced_open* ]]
	run "$BW_CLI" reset --state "$STATE" localhost:9
	[ "$status" -eq 0 ]
	[[ $output == "reset "* ]]
}

@test "status, reset and force follow BULWARK_STATE without --state" {
	run "$BW_CLI" force 127.0.0.1:4 open
	[ "$status" -eq 0 ]
	[ -f "$(bw_state_file)" ]
	run "$BW_CLI" status
	[[ $output == *127.0.0.1:4* ]]
}

@test "the command itself ignores BULWARK_STRICT and never creates state" {
	BULWARK_STRICT=1 BULWARK_POLICY='* bogus=1' run "$BW_CLI" --version
	[ "$status" -eq 0 ]
	[[ $output == "bulwark "* ]]
	[ ! -e "$(bw_state_file)" ]
}

# ---- trace -----------------------------------------------------------------

@test "trace without the reporter says how to build it, exit 1" {
	[[ ! -x $BW_BUILD/bulwark-trace ]] || skip "the reporter is built"
	run "$BW_CLI" trace -p 1
	[ "$status" -eq 1 ]
	[ "$output" = "bulwark trace: the eBPF reporter is not built in this installation (it needs clang, bpftool and libbpf at build time: run make deps && make)" ]
}

# ---- the shim's linkage ----------------------------------------------------

# A call by name from inside libbulwark.so to a function it exports binds
# to our own hook (an R_X86_64_GLOB_DAT or JUMP_SLOT against it): the core
# would re-enter the hook layer, inside init's pthread_once while the
# state is attached.  The core calls the kernel through bw_sys
# (core/sys.h) instead; this keeps it so.
@test "libbulwark.so has no relocation against a symbol it exports" {
	require_shim
	command -v readelf >/dev/null || skip "readelf not installed"
	local exported relocated both
	exported=$(nm -D --defined-only "$BW_LIB" | awk '{print $3}' |
		sed 's/@.*//' | sort -u)
	[[ $(wc -l <<<"$exported") -gt 50 ]] # the hooks are there
	relocated=$(readelf -rW "$BW_LIB" | awk 'NF >= 5 {print $5}' |
		sed 's/@.*//' | sort -u)
	both=$(comm -12 <(echo "$exported") <(echo "$relocated"))
	if [[ -n $both ]]; then
		echo "the shim calls its own hooks; use bw_sys or bw_real:"
		echo "$both"
		readelf -rW "$BW_LIB" | grep -wF "$both"
		return 1
	fi
}

# The core never reads or writes errno (doc/design.md "Error convention"):
# every system call it makes goes through bw_sys (core/sys.h), whose
# entries return -errno and leave errno as it was, so no function of the
# core can change the program's errno and none saves it by hand.  Only
# core/sys.c, the conversion itself, names errno in code or calls
# syscall(2), which sets errno.
@test "the core names errno only in core/sys.c" {
	local hits
	cd "$BW_ROOT"
	hits=$(grep -nE '(^|[^_[:alnum:]"])(errno([^_[:alnum:]"]|$)|syscall[[:space:]]*\()' core/*.c |
		grep -v '^core/sys\.c:' |
		grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/?\*|//|#include)' || true)
	if [[ -n $hits ]]; then
		echo "call the kernel through bw_sys (core/sys.h), which returns -errno:"
		echo "$hits"
		return 1
	fi
}

# Start-up is a boundary like a hook's: the constructor reads the policy
# file, examines fd 2 and attaches the state, and the program's main finds
# errno as the process had it (0), even when the file cannot be read
# (open's ENOENT; before the constructor kept errno, main saw errno=2).
@test "the shim's start-up leaves the program's errno as it was" {
	require_shim
	local e=$BW_BUILD/fixtures/errnostart
	run "$e"
	[ "$status" -eq 0 ]
	[ "$output" = "errno=0" ]
	BULWARK_POLICY='127.0.0.1 retry.attempts=1' run run_shim "$e"
	[ "$status" -eq 0 ]
	[ "$output" = "errno=0" ]
	BULWARK_POLICY='127.0.0.1 retry.attempts=1' \
		BULWARK_POLICY_FILE="$BW_TMP/missing" run run_shim "$e"
	[ "$status" -eq 0 ]
	[[ $output == *"cannot read policy file"* ]]
	[[ $output == *"errno=0" ]]
	[[ $output != *"errno=2"* ]]
}
