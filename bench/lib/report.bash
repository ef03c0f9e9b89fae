# SPDX-License-Identifier: MIT
# bench/lib/report.bash: bench/run's report: the machine and method at its
# head, each section's table in turn (report_SECTION, bench/lib/), the SVG
# chart of ratios to no shim, and where it is written: bench/results/
# (<date>-<host>.md and .svg, latest.md and latest.svg) for a full or
# QUICK run, $BW_BUILD/bench/driver/smoke/ for BENCH_SMOKE, .../only/ for
# BENCH_ONLY.

# Whether the shim under test was built with its profile (Makefile).
pgo_state() {
	case $(cat "$(dirname "$LIB")/pgo/profile" 2>/dev/null) in
	trained) echo "this one was" ;;
	untrained) echo "this one was not (its training could not run)" ;;
	*) echo "this one was not (built without: PGO=0, or not with GCC)" ;;
	esac
}

report_head() {
	echo "# bulwark benchmarks, $DAY on $HOST"
	echo
	echo "| machine | |"
	echo "|---|---|"
	echo "| CPU | ${CPU:-unknown} |"
	echo "| cores | $(nproc) |"
	echo "| kernel | $(uname -sr) |"
	echo "| glibc | ${GLIBC#glibc } |"
	echo "| compiler | $("$CC" --version | head -n1) |"
	echo "| bulwark | $LIB built $(date -r "$LIB" '+%Y-%m-%d %H:%M' 2>/dev/null); tree at commit $COMMIT |"
	if [ "$BENCH_CPU" = none ]; then
		echo "| placement | unpinned (BENCH_CPU=none): client, servers and sidecars wherever the scheduler puts them |"
	else
		echo "| placement | every latency bench on CPU $BENCH_CPU (taskset): client, echo server, sidecar, tracer; BENCH_CPU=none for unpinned |"
	fi
	echo "| mode | $([ "$QUICK" = 1 ] && echo "QUICK=1" || echo full), $ROUNDS interleaved rounds per comparison ($CONN_ROUNDS for the connect loops, $FF_ROUNDS for fast-fail)${ONLY:+; only the sections $ONLY (BENCH_ONLY)}; run took $((T_END - T_START)) s |"
	echo
	echo "Variants run interleaved in one invocation.  In sections 1 and 2 each"
	echo "variant runs in lockstep with a no-shim run of its own"
	echo "(bench/bench_lockstep.c): the two take turns iteration by iteration"
	echo "(for write, a block of 1000 writes), so that both are timed on the"
	echo "same machine at the same moment.  A loop times every iteration and"
	echo "reports its median; the ns shown are the median of those over rounds."
	echo "×R is the"
	echo "median over rounds of the ratio to the no-shim run of the same round,"
	echo "±S its standard error (robust: from the interquartile range), so a"
	echo "ratio within a few S of a target is not resolved by this run.  Targets"
	echo "are checked, never enforced."
	echo
}

# report: the whole Markdown report on stdout.
report() {
	local s
	report_head
	for s in "${SECTIONS[@]}"; do
		"report_$s"
	done
	echo "Chart: ratios to no shim (sections 1-2) in the SVG next to this file."
}

chart() { # SVG FILE: clustered bars of ratios to no shim
	command -v gnuplot >/dev/null || return 1
	local dat=$TMP/chart.dat v b r
	{
		for v in shim breaker bulkhead retries all haproxy nginx; do
			printf '%s' "$v"
			for b in write pingpong connect; do
				case $v in
				haproxy | nginx)
					[ "$b" = write ] && r= || r=$(st div "${MED[side-$b.$v]:-}" "${MED[side-$b.none]:-}") ;;
				*) r=$(st div "${MED[$b.$v]:-}" "${MED[$b.none]:-}") ;;
				esac
				printf ' %s' "${r:-?}"
			done
			echo
		done
	} >"$dat"
	gnuplot <<EOC 2>>"$LOG"
set terminal svg size 900,480 dynamic font "sans,11"
set output "$1"
set title "bulwark: median time per operation relative to no shim ($DAY, $HOST)"
set datafile missing "?"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set ylabel "× no shim (lower is better)"
set yrange [0:*]
set grid ytics
set key top left
set xtics nomirror
plot "$dat" using 2:xtic(1) title "1-byte write (/dev/null)", \
     "" using 3 title "ping-pong (loopback TCP)", \
     "" using 4 title "connect + exchange + close", \
     1 with lines lw 2 lc rgb "black" title "no shim = 1"
EOC
}

# write_report: the report and chart to OUTDIR (see the top of this file);
# prints the report unless in TAP mode.
write_report() {
	T_END=$(date +%s)
	HOST=$(hostname -s 2>/dev/null || uname -n)
	DAY=$(date +%Y-%m-%d)
	CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
	GLIBC=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version | head -n1)
	COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	[ -n "$(git status --porcelain -- shim core policy 2>/dev/null)" ] && COMMIT+="+dirty"

	if [ "$SMOKE" = 1 ]; then
		OUTDIR=$BIN/smoke
	elif [ -n "$ONLY" ]; then
		OUTDIR=$BIN/only
	else
		OUTDIR=$ROOT/bench/results
	fi
	mkdir -p "$OUTDIR"
	MD=$OUTDIR/$DAY-$HOST.md
	SVG=$OUTDIR/$DAY-$HOST.svg
	report >"$MD"
	if chart "$SVG"; then
		echo >>"$MD"
		echo "![ratios to no shim]($(basename "$SVG"))" >>"$MD"
		cp "$SVG" "$OUTDIR/latest.svg"
		sed "s|($(basename "$SVG"))|(latest.svg)|" "$MD" >"$OUTDIR/latest.md"
		tap_ok "report: $MD and $(basename "$SVG")"
	else
		cp "$MD" "$OUTDIR/latest.md"
		tap_fail "report: gnuplot could not draw $SVG"
	fi
	[ "$TAP" = 1 ] || cat "$MD"
}
