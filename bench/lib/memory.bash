# SPDX-License-Identifier: MIT
# bench/lib/memory.bash: section 4 of the report, what the shim costs in
# memory: VmRSS of a client after 20,000 calls with and without it, the
# shared segment's size, and heap bytes allocated per million intercepted
# calls (jemalloc's per-thread counter, bench/bench_alloc.c;
# BENCH_ONLY=memory).

# kv KEY FILE: every value of "KEY=value" in FILE.
kv() { sed -n "s/.*\<$1=\([0-9n/a]*\).*/\1/p" "$2"; }

# per_million LINE: bench_alloc's alloc bytes per 1M calls.
per_million() {
	local a c
	a=$(sed -n 's/.*alloc_bytes=\([0-9]*\).*/\1/p' <<<"$1")
	c=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$1")
	is_num "$a" && is_num "$c" && st div "$((a * 1000000))" "$c" 0
}

run_memory() {
	local r v
	want memory || return 0
	say "memory: RSS with and without the shim, heap bytes per call"
	for ((r = 0; r < MEM_ROUNDS; r++)); do
		for v in none all; do
			variant_env "$v"
			"${PIN[@]}" env "${ENVV[@]}" "$BIN/bench_alloc" 127.0.0.1 "$ECHO_PORT" 20000 \
				>>"$TMP/mem.$v.out" 2>>"$LOG"
		done
	done
	for v in none all; do
		kv vmrss_kb "$TMP/mem.$v.out" | grep -E '^[0-9]+$' >"$TMP/rss.$v"
		kv rss_shmem_kb "$TMP/mem.$v.out" | grep -E '^[0-9]+$' >"$TMP/shm.$v"
		MED[rss.$v]=$(st median "$TMP/rss.$v")
		MED[shmrss.$v]=$(st median "$TMP/shm.$v")
	done
	SEG=/dev/shm/bulwark-$UIDN-$ST-all
	SEG_BYTES=$(stat -c %s "$SEG" 2>/dev/null || echo "")
	ALLOC_SHIM= ALLOC_NONE=
	if [ "$JEMALLOC" = 1 ]; then
		ALLOC_NONE=$("${PIN[@]}" "$BIN/bench_alloc_je" 127.0.0.1 "$ECHO_PORT" "$ALLOC_CALLS" 2>>"$LOG")
		variant_env all
		ALLOC_SHIM=$("${PIN[@]}" env "${ENVV[@]}" "$BIN/bench_alloc_je" 127.0.0.1 "$ECHO_PORT" \
			"$ALLOC_CALLS" 2>>"$LOG")
	fi
	ALLOC_PM=$(per_million "$ALLOC_SHIM")
	ALLOC_PM_NONE=$(per_million "$ALLOC_NONE")
	if is_num "${MED[rss.none]}" && is_num "${MED[rss.all]}"; then
		tap_ok "memory: VmRSS ${MED[rss.none]} kB without, ${MED[rss.all]} kB with the shim; segment ${SEG_BYTES:-?} bytes; heap ${ALLOC_PM:-n/a} B per 1M calls"
	else
		tap_fail "memory: no VmRSS numbers"
	fi
}

report_memory() {
	local d= pm_v=n/a
	echo "## 4. Memory"
	echo
	echo "| measure | without shim | with shim (\`$POL_ALL\`) | target |"
	echo "|---|---|---|---|"
	is_num "${MED[rss.none]:-}" && is_num "${MED[rss.all]:-}" &&
		d=$(st diff "${MED[rss.all]}" "${MED[rss.none]}")
	echo "| VmRSS after 20,000 calls (median of $MEM_ROUNDS) | ${MED[rss.none]:-n/a} kB | ${MED[rss.all]:-n/a} kB (${d:-?} kB; of it shared segment pages ${MED[shmrss.all]:-?} kB) | |"
	echo "| shared segment /dev/shm/bulwark-<uid>-<state> | | ${SEG_BYTES:-n/a} bytes ($(st div "${SEG_BYTES:-}" 1048576 1) MiB, one per state, shared by all processes; pages touched on use) | |"
	is_num "${ALLOC_PM:-}" && pm_v=$(st verdict "$ALLOC_PM" 0)
	echo "| heap bytes allocated per 1M intercepted calls (jemalloc thread.allocated; send+recv on a tracked socket) | ${ALLOC_PM_NONE:-n/a} | ${ALLOC_PM:-n/a} | 0: $pm_v |"
	echo
}
