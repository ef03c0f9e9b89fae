# SPDX-License-Identifier: MIT
# bench/lib/scale.bash: section 5 of the report, the shared state with
# 10,000 destinations and 64 threads on 1,000 of them against one
# destination and one thread: per-call work and the lookup a connect pays
# (bench/bench_state.c, the shim's modules linked directly;
# BENCH_ONLY=scale).

STATE_KEYS=(call_one call_many lookup_one lookup_many)

run_scale() {
	local k n key v
	want scale || return 0
	say "scale: state with 10000 destinations, 64 threads x 1000 hot vs 1 x 1"
	if BULWARK_DISABLE=1 BULWARK_STATE=private "$BIN/bench_state" "$STATE_ROUNDS" "$STATE_CALLS" 64 1000 10000 32 \
		>"$TMP/state.out" 2>>"$LOG"; then
		# bench_state prints "KEY ns" for each key in turn, a round
		# every four lines.
		for k in "${STATE_KEYS[@]}"; do
			: >"$TMP/state.$k"
			: >"$TMP/state.$k.r"
		done
		n=0
		while read -r key v _; do
			case " ${STATE_KEYS[*]} " in *" $key "*)
				echo "$v" >>"$TMP/state.$key"
				echo "$((n / 4)) $v" >>"$TMP/state.$key.r" ;;
			esac
			n=$((n + 1))
		done <"$TMP/state.out"
	fi
	for k in "${STATE_KEYS[@]}"; do
		MED[state.$k]=$(st median "$TMP/state.$k")
	done
	check_numbers "scale (ns per call)" state "${STATE_KEYS[@]}"
}

report_scale() {
	local sr lr
	echo "## 5. Scale"
	echo
	echo "bench/bench_state.c links the shim's modules directly (no system"
	echo "calls, private state) and charges each thread its own CPU time"
	echo "(CLOCK_THREAD_CPUTIME_ID), contention and cache misses included;"
	echo "$STATE_ROUNDS interleaved rounds of $STATE_CALLS calls.  *Per call*: what the"
	echo "send and recv hooks do around the real call on a tracked connection"
	echo "(fd -> connection, exchange timing, counters, breaker window) under"
	echo "\`$POL_ALL\`; in the many case each of the 64 threads works"
	echo "through 32 connections of its own to destinations drawn from the"
	echo "1,000.  *Lookup*: bw_state_get and one counter increment, what a"
	echo "connect pays once to find its destination (never paid per call)."
	echo
	sr=$(paired state call_many call_one) lr=$(paired state lookup_many lookup_one)
	echo "| case | per call (ns) | lookup at connect (ns) |"
	echo "|---|---|---|"
	echo "| 1 destination, 1 thread, 1 connection | $(st ns "${MED[state.call_one]:-}") | $(st ns "${MED[state.lookup_one]:-}") |"
	echo "| 10,000 destinations, 64 threads on 1,000 of them | $(st ns "${MED[state.call_many]:-}") | $(st ns "${MED[state.lookup_many]:-}") |"
	echo "| ratio (median of per-round ratios ± standard error) | $(st scale-cell "$sr" "$T_SCALE") | $(st scale-cell "$lr") |"
	echo
	echo "The lookup grows with the table because 1,000 hot destinations"
	echo "spread over 9.4 MiB of slots miss the CPU's caches, where one stays"
	echo "in them; a connect pays it once, next to a system call that costs"
	echo "tens of microseconds on loopback."
	echo
}
