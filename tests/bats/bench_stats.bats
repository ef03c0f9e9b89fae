#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/bench_stats.bats: bench/stats.c, the one place bench/run's
# statistics are computed and printed, on known samples: medians, the
# round-to-round spread, per-round paired ratios with their standard error,
# the table cells (including the ratio's rounding to 3 places from its
# 4-place value), sidecar comparisons and verdicts.  Every expected line
# below is what the report printed for the same samples before the
# statistics moved out of bench/run's awk.  No shim, no network.

load ../lib/common

setup_file() {
	export STATS=$BATS_FILE_TMPDIR/stats
	"${CC:-cc}" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 \
		-o "$STATS" "$BW_ROOT/bench/stats.c" -lm
}

# sample NAME LINES...: a file of one line each.
sample() {
	local f=$BW_TMP/$1
	shift
	printf '%s\n' "$@" >"$f"
	echo "$f"
}

@test "stats median: middle value, mean of the middle two, places, nothing without samples" {
	run "$STATS" median "$(sample odd 3 1 2)"
	[[ $output == 2.0 ]]
	run "$STATS" median "$(sample even 4 1 3 2.5)"
	[[ $output == 2.8 ]] # (2.5 + 3) / 2 = 2.75, printed to one place
	run "$STATS" median "$BW_TMP/even" 3
	[[ $output == 2.750 ]]
	: >"$BW_TMP/empty"
	run "$STATS" median "$BW_TMP/empty"
	[[ $status == 0 && -z $output ]]
	run "$STATS" median "$BW_TMP/missing"
	[[ $status == 0 && -z $output ]]
}

@test "stats spread: half the interquartile range over the median" {
	run "$STATS" spread "$(sample s 13 10 12 11)"
	[[ $output == "±13.0%" ]] # (13 - 10) / 2 / 11.5
	run "$STATS" spread "$(sample one 50)"
	[[ $output == "±0.0%" ]]
	run "$STATS" spread "$BW_TMP/missing"
	[[ $output == n/a ]]
	run "$STATS" spread "$(sample zero 0 0)"
	[[ $output == n/a ]]
}

@test "stats paired: rounds joined by number, ratio and difference medians with standard errors" {
	local b v
	b=$(sample base.r "0 100" "1 200" "2 100" "4 0")
	# round 3 has no base, round 4's base is 0: both drop out
	v=$(sample var.r "0 110" "1 210" "2 104" "3 999" "4 50")
	run "$STATS" paired "$b" "$v"
	[[ $output == "1.0500 0.0322 10.0 3.2 3" ]]
	# fewer than two pairs: nothing
	run "$STATS" paired "$b" "$(sample one.r "0 110")"
	[[ $status == 0 && -z $output ]]
	run "$STATS" paired "$BW_TMP/missing" "$v"
	[[ $status == 0 && -z $output ]]
}

@test "stats cell: ratio, standard error, median and verdict; the 4-place ratio rounds as it always has" {
	run "$STATS" cell 12345.6 "1.0125 0.0040 10.0 3.2 15" 1.012
	# 1.0125 shows as 1.013 (the shell's long double), which fails 1.012
	[[ $output == "×1.013 ±0.4% (12345.6 ns) FAIL" ]]
	run "$STATS" cell 12345.6 "1.0135 0.0035 10.0 3.2 15" 1.02
	[[ $output == "×1.013 ±0.4% (12345.6 ns) PASS" ]]
	run "$STATS" cell 12345.6 "0.9870 0.0012 -3.0 1.0 15"
	[[ $output == "×0.987 ±0.1% (12345.6 ns)" ]]
	run "$STATS" cell 12345.6 ""
	[[ $output == "12345.6 ns" ]]
	run "$STATS" cell "" "1.0125 0.0040 10.0 3.2 15"
	[[ $output == n/a ]]
}

@test "stats scale-cell: ratio and error in percent, target and verdict on the 4-place ratio" {
	run "$STATS" scale-cell "1.0305 0.0035 1.0 0.5 15" 1.03
	[[ $output == "×1.030 ±0.3% (target ≤ ×1.03: FAIL)" ]]
	run "$STATS" scale-cell "1.4210 0.0100 1.0 0.5 15"
	[[ $output == "×1.421 ±1.0%" ]]
	run "$STATS" scale-cell ""
	[[ $output == n/a ]]
}

@test "stats added, added-x and worst-verdict: bulwark's added latency against a sidecar's" {
	run "$STATS" added "1.0100 0.0010 123.5 10.4 15"
	[[ $output == "+124 ns ±10" ]]
	run "$STATS" added-x "1 0 100.0 20.0 9" "1 0 3000.0 0.0 9"
	[[ $output == "30.0 25.0" ]]
	# bulwark's added latency within noise: X is inf, the bound is not
	run "$STATS" added-x "1 0 -5.0 20.0 9" "1 0 3000.0 0.0 9"
	[[ $output == "inf 200.0" ]]
	run "$STATS" added-x "" "1 0 3000.0 0.0 9"
	[[ -z $output ]]
	run "$STATS" worst-verdict 20 "30.0 25.0" "40.0 19.5"
	[[ $output == FAIL ]]
	run "$STATS" worst-verdict 20 "30.0 25.0" ""
	[[ $output == PASS ]]
	run "$STATS" worst-verdict 20 "inf 200.0" "30.0 25.0"
	[[ $output == PASS ]]
	# only "inf" bounds read n/a, as the report always printed them
	run "$STATS" worst-verdict 20 "inf inf"
	[[ $output == n/a ]]
}

@test "stats verdict, div, diff, ns, us, mode" {
	run "$STATS" verdict 1.030 1.03
	[[ $output == PASS ]]
	run "$STATS" verdict 1.031 1.03
	[[ $output == FAIL ]]
	run "$STATS" verdict 25.0 20 ge
	[[ $output == PASS ]]
	run "$STATS" verdict "" 1.03
	[[ $output == n/a ]]
	run "$STATS" div 1 3
	[[ $output == 0.333 ]]
	run "$STATS" div 2000000 3 0
	[[ $output == 666667 ]]
	run "$STATS" div 1 0
	[[ $status == 0 && -z $output ]]
	run "$STATS" div x 3
	[[ $status == 0 && -z $output ]]
	run "$STATS" diff 2060.0 1376.0
	[[ $output == +684 ]]
	run "$STATS" ns 128.75
	[[ $output == 128.8 ]]
	run "$STATS" ns ""
	[[ $output == n/a ]]
	run "$STATS" us 1500
	[[ $output == "1.50 µs" ]]
	run "$STATS" us 2500000
	[[ $output == "2.5 ms" ]]
	run "$STATS" us 3000000000
	[[ $output == "3.00 s" ]]
	run "$STATS" mode "$(sample ff.out "1 x refused" "2 x timeout" "3 x refused")" 3
	[[ $output == refused ]]
	run "$STATS" bogus
	[[ $status == 2 ]]
	run "$STATS" paired onlyone
	[[ $status == 2 ]]
}
