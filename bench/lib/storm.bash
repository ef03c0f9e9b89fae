# SPDX-License-Identifier: MIT
# bench/lib/storm.bash: section 7 of the report, the bulkhead under a
# storm (issue "Do no harm" 11): 1,000 threads each make one request to a
# server that holds every connection STORM_HOLD_MS, through
# bulkhead.max=100 bulkhead.wait=5s, against the same 1,000 requests made
# by 100 threads (10 each) without the shim: the least time 100 at once
# can take.  Interleaved rounds; the ratio is the median of per-round
# ratios.  Unpinned: 1,000 threads on one CPU would measure the pinning
# (tests/fixtures/connstorm.c and faultsrv.c; BENCH_ONLY=storm).

run_storm() {
	local r o n w c k
	want storm || return 0
	STORM=$B/fixtures/connstorm FSRV=$B/fixtures/faultsrv
	STORM_ALL=1
	if ! [ -x "$STORM" ] || ! [ -x "$FSRV" ]; then
		tap_skip "bulkhead storm" "no $STORM or $FSRV (make all)"
		return 0
	fi
	say "bulkhead storm: 1000 threads, bulkhead.max=100 vs 100 threads, no shim ($STORM_ROUNDS rounds)"
	"$FSRV" --mode stall --stall "$STORM_HOLD_MS" --http --port 0 \
		--stats "$TMP/storm.stats" >"$TMP/storm.port" 2>>"$LOG" &
	bw_track_pid $!
	STORM_PORT=$(wait_port_file "$TMP/storm.port")
	: >"$TMP/storm.ratio"
	for ((r = 0; r < STORM_ROUNDS && ${STORM_PORT:-0} > 0; r++)); do
		o=$("$STORM" "$STORM_PORT" 100 10 2>>"$LOG")
		n=$(sed -n 's/.*wall_ms=\([0-9]*\).*/\1/p' <<<"$o")
		echo "$n" >>"$TMP/storm.none"
		sed -n 's/.*cpu_ms=\([0-9]*\).*/\1/p' <<<"$o" >>"$TMP/storm.nonecpu"
		o=$(env BULWARK_STATE="$ST-storm" \
			BULWARK_POLICY="* bulkhead.max=100 bulkhead.wait=5s" \
			LD_PRELOAD="$LIB" "$STORM" "$STORM_PORT" 1000 1 2>>"$LOG")
		w=$(sed -n 's/.*wall_ms=\([0-9]*\).*/\1/p' <<<"$o")
		c=$(sed -n 's/.*cpu_ms=\([0-9]*\).*/\1/p' <<<"$o")
		k=$(sed -n 's/^ok=\([0-9]*\).*/\1/p' <<<"$o")
		echo "$w" >>"$TMP/storm.shim"
		echo "$c" >>"$TMP/storm.cpu"
		[ "${k:-0}" = 1000 ] || STORM_ALL=0
		echo "# storm round $r: none 100x10 ${n:-?} ms; shim 1000x1 ${w:-?} ms, ${c:-?} CPU ms, $o" >>"$LOG"
		st div "$w" "$n" >>"$TMP/storm.ratio"
	done
	MED[storm.none]=$(st median "$TMP/storm.none")
	MED[storm.shim]=$(st median "$TMP/storm.shim")
	MED[storm.cpu]=$(st median "$TMP/storm.cpu")
	MED[storm.nonecpu]=$(st median "$TMP/storm.nonecpu")
	MED[storm.ratio]=$(st median "$TMP/storm.ratio" 3)
	STORM_PEAK=$(sed -n 's/.*peak=\([0-9]*\).*/\1/p' "$TMP/storm.stats" 2>/dev/null)
	if is_num "${MED[storm.ratio]}"; then
		tap_ok "bulkhead storm: 1000 threads x${MED[storm.ratio]} of 100 threads without the shim (${MED[storm.shim]} vs ${MED[storm.none]} ms, ${MED[storm.cpu]} CPU ms), all admitted: $([ "$STORM_ALL" = 1 ] && echo yes || echo NO)"
	else
		tap_fail "bulkhead storm: no numbers"
	fi
}

report_storm() {
	echo "## 7. Bulkhead under a storm"
	echo
	echo "1,000 threads released at once, each making one blocking HTTP"
	echo "request to a fault server that holds every connection"
	echo "${STORM_HOLD_MS} ms, through \`* bulkhead.max=100 bulkhead.wait=5s\`,"
	echo "against the same 1,000 requests made by 100 threads (10 each)"
	echo "without the shim: the least time 100 connections at once can take"
	echo "(tests/fixtures/connstorm.c; $STORM_ROUNDS interleaved rounds, unpinned)."
	echo
	echo "| case | wall time (median) | CPU time of the client (median) | all 1,000 admitted |"
	echo "|---|---|---|---|"
	echo "| 100 threads x 10, no shim | ${MED[storm.none]:-n/a} ms | ${MED[storm.nonecpu]:-n/a} ms | |"
	echo "| 1,000 threads x 1, bulkhead.max=100 | ${MED[storm.shim]:-n/a} ms | ${MED[storm.cpu]:-n/a} ms | $([ "${STORM_ALL:-0}" = 1 ] && echo yes || echo NO) |"
	echo "| ratio (median of per-round ratios) | ×${MED[storm.ratio]:-n/a} (target ≤ ×$T_STORM: $(st verdict "${MED[storm.ratio]:-}" "$T_STORM")) | | |"
	echo
	echo "The server's peak of open connections over every round: ${STORM_PEAK:-n/a} (at most 100 through the bulkhead)."
	echo "The ideal time is 1,000 / 100 x ${STORM_HOLD_MS} ms = $((1000 / 100 * STORM_HOLD_MS)) ms; the"
	echo "difference is the fault server's and the machine's (one thread per"
	echo "connection), the same for both cases."
	echo
}
