# SPDX-License-Identifier: MIT
# bench/lib/instructions.bash: section 6 of the report, what the shim adds
# to each call counted in user-space instructions by callgrind, the same
# on every run: wall-clock ratios on a shared 2-core VM swing by tens of
# percent; this does not.  Per call = (count for N2 iterations - count for
# N1) / (N2 - N1): start-up cancels (BENCH_ONLY=instructions; needs
# valgrind).

declare -A IR # LOOP.VARIANT -> instructions per iteration

# ir_count LOOP N VARIANT: callgrind's instruction count for N iterations.
ir_count() {
	local prog=bench_$1 args=(127.0.0.1 "$ECHO_PORT" "$2")
	variant_env "$3"
	case $1 in
	connect) args=(ok 127.0.0.1 "$ECHO_PORT" "$2") ;;
	epoll-*) prog=bench_epoll args=("${1#epoll-}" "${args[@]}") ;;
	esac
	env "${ENVV[@]}" valgrind --tool=callgrind \
		--callgrind-out-file=/dev/null "$BIN/$prog" "${args[@]}" 2>&1 |
		sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

run_instructions() {
	local b v n1 n2 a c
	want instructions && command -v valgrind >/dev/null 2>&1 && [ -n "${ECHO_PORT:-}" ] ||
		return 0
	say "instructions: callgrind, ping-pong and connect loops (blocking and epoll), none vs all"
	for b in pingpong connect epoll-pingpong epoll-connect; do
		n1=$IR_N1 n2=$IR_N2
		case $b in *connect) n1=$((IR_N1 / 5)) n2=$((IR_N2 / 5)) ;; esac
		for v in none all; do
			a=$(ir_count "$b" "$n1" "$v") c=$(ir_count "$b" "$n2" "$v")
			is_num "$a" && is_num "$c" &&
				IR[$b.$v]=$(st div "$((c - a))" "$((n2 - n1))" 0)
		done
	done
	if is_num "${IR[pingpong.all]:-}"; then
		tap_ok "instructions per call (user space): ping-pong ${IR[pingpong.none]} -> ${IR[pingpong.all]}, connect loop ${IR[connect.none]:-?} -> ${IR[connect.all]:-?}, epoll ping-pong ${IR[epoll-pingpong.none]:-?} -> ${IR[epoll-pingpong.all]:-?}, epoll connect loop ${IR[epoll-connect.none]:-?} -> ${IR[epoll-connect.all]:-?}"
	else
		tap_fail "instructions: callgrind gave no numbers"
	fi
}

report_instructions() {
	local b n a d
	echo "## 6. Instructions per call (deterministic)"
	echo
	echo "User-space instructions per iteration counted by callgrind: (count"
	echo "for $IR_N2 iterations - count for $IR_N1) / $((IR_N2 - IR_N1)), so start-up cancels"
	echo "out (connect loop: a fifth of those).  The kernel's share of a"
	echo "loopback round trip (tens of µs of syscalls and softirq) is not in"
	echo "these counts: the added instructions are what the shim costs."
	echo
	echo "| loop | no shim | all three patterns | added by the shim |"
	echo "|---|---|---|---|"
	for b in pingpong connect epoll-pingpong epoll-connect; do
		n=${IR[$b.none]:-} a=${IR[$b.all]:-} d=n/a
		is_num "$n" && is_num "$a" && d=$((a - n))
		echo "| $b | ${n:-n/a} | ${a:-n/a} | $d instructions |"
	done
	echo
}
