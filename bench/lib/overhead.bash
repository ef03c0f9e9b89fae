# SPDX-License-Identifier: MIT
# bench/lib/overhead.bash: section 1 of the report, the shim's overhead
# against the same program without it: (a) write to /dev/null, (b)
# ping-pong and (c) connect loop on loopback TCP, under no shim, the shim
# disabled, each pattern alone, all three, and all three with bulwark
# trace attached (BENCH_ONLY=overhead, =trace); and its event-loop rows,
# the same two loops on non-blocking sockets waiting in epoll_wait
# (bench/bench_epoll.c; BENCH_ONLY=epoll).

run_overhead() {
	local b
	# 1. Overhead matrix.
	OVH=(none disabled shim breaker bulkhead retries all)
	[ "$HAVE_TRACE" = 1 ] && OVH+=(trace)
	want overhead || want trace || OVH=()
	# BENCH_ONLY=trace alone: the trace rows and what they are compared to.
	[ -n "$ONLY" ] && want trace && ! want overhead && OVH=(none all trace)
	for b in ${OVH:+write pingpong connect}; do
		say "overhead: $b (${OVH[*]})"
		measure_lockstep "$b" "$(rounds_of "$b")" "${OVH[@]}" # OVH[0] is none
		if [ "${#OVH[@]}" -gt 3 ]; then
			check_numbers "overhead $b" "$b" none shim breaker bulkhead retries all
		else
			check_numbers "overhead $b" "$b" none all
		fi
		if [ "$HAVE_TRACE" = 1 ]; then
			if is_num "${MED[$b.trace]:-}"; then
				tap_ok "overhead $b with bulwark trace: ${MED[$b.trace]} ns"
			else
				tap_skip "overhead $b with bulwark trace" \
					"no numbers from $TRACE (see $TMP/trace.log)"
			fi
		fi
	done

	# 1b. Event loops: the ping-pong and connect loops on non-blocking
	# sockets waiting in epoll_wait (bench/bench_epoll.c), no shim, the
	# hooks only forwarding, and all three patterns on.
	EPV=(none disabled all)
	want epoll || EPV=()
	for b in ${EPV:+epoll-pingpong epoll-connect}; do
		say "event loop: $b (${EPV[*]})"
		measure_lockstep "$b" "$(rounds_of "$b")" "${EPV[@]}"
		check_numbers "event loop ${b#epoll-} (epoll)" "$b" "${EPV[@]}"
	done
}

report_overhead() {
	local v
	echo "## 1. Overhead against the same program without the shim"
	echo
	echo "Iterations per round: write $WRITE_N, ping-pong $PP_N, connect loop $CONN_N."
	echo "Targets: write ≤ ×$T_WRITE, ping-pong ≤ ×$T_PP, connect loop ≤ ×$T_CONN."
	echo
	echo "| variant | (a) 1-byte write() to /dev/null | (b) 1-byte ping-pong, loopback TCP | (c) connect + exchange + close |"
	echo "|---|---|---|---|"
	echo "| no shim | $(st ns "${MED[write.none]:-}") ns | $(st ns "${MED[pingpong.none]:-}") ns | $(st ns "${MED[connect.none]:-}") ns |"
	echo "| *noise: no-shim round-to-round spread (½ IQR / median)* | $(st spread "$TMP/write.none") | $(st spread "$TMP/pingpong.none") | $(st spread "$TMP/connect.none") |"
	echo "| $(label_of disabled) | $(cell write disabled none) | $(cell pingpong disabled none) | $(cell connect disabled none) |"
	for v in shim breaker bulkhead retries all; do
		echo "| $(label_of $v) | $(cell write $v none $T_WRITE) | $(cell pingpong $v none $T_PP) | $(cell connect $v none $T_CONN) |"
	done
	if [ "$HAVE_TRACE" = 1 ]; then
		echo "| $(label_of trace) (\`bulwark trace -- CMD\`, run in lockstep with a no-shim twin, the ratio to the no-shim twin of \"all three\" in the same round: the twin here is slowed too; targets write ≤ ×$T_TR_WRITE, ping-pong and connect loop ≤ ×$T_TR_PP) | $(cell write trace none $T_TR_WRITE) | $(cell pingpong trace none $T_TR_PP) | $(cell connect trace none $T_TR_CONN) |"
		echo "| no shim, not followed by the attached bulwark trace (the twin above, against the twin of \"all three\": what the tracer costs every other process) | $(cell write none@trace none@all) | $(cell pingpong none@trace none@all) | $(cell connect none@trace none@all) |"
	else
		echo "| $(label_of trace) (eBPF issue's slot) | n/a (eBPF reporter not built) | n/a (eBPF reporter not built) | n/a (eBPF reporter not built) |"
	fi
	echo
	echo "Reading the connect loop: a connection's whole life costs the shim"
	echo "the user-space instructions of section 6, four clock reads (the CPU's"
	echo "time-stamp counter where the kernel keeps time with it) and no system"
	echo "call of its own.  In lockstep each iteration starts after the"
	echo "twin's iteration and the kernel's loopback work, so that code and its"
	echo "data come back from beyond the CPU's first-level caches and TLB: the"
	echo "BULWARK_DISABLE=1 row is what five hooks that only forward already"
	echo "cost this way, the rows below it what tracking adds.  The shim is"
	echo "built with a profile of a training run (Makefile, shim/pgo/train.c),"
	echo "so that the code a connection runs lies on one straight path: $(pgo_state)."
	echo
	echo "### Event loops (epoll)"
	echo
	echo "The same two loops done the way an event loop does them"
	echo "(bench/bench_epoll.c): non-blocking sockets, every wait in"
	echo "epoll_wait.  Ping-pong: send, epoll_wait for EPOLLIN, recv on one"
	echo "connection.  Connect loop: socket, epoll_ctl ADD EPOLLOUT, connect"
	echo "(EINPROGRESS), epoll_wait, SO_ERROR, epoll_ctl MOD EPOLLIN, send,"
	echo "epoll_wait, recv, close, on one epoll fd.  Same lockstep method and"
	echo "iterations as above.  Targets: ping-pong ≤ ×$T_EPP, connect loop ≤ ×$T_ECONN"
	echo "(issue \"Event loops are never stalled\" 5)."
	echo
	echo "| variant | (d) 1-byte ping-pong, epoll | (e) non-blocking connect + exchange + close, epoll |"
	echo "|---|---|---|"
	echo "| no shim | $(st ns "${MED[epoll-pingpong.none]:-}") ns | $(st ns "${MED[epoll-connect.none]:-}") ns |"
	echo "| *noise: no-shim round-to-round spread (½ IQR / median)* | $(st spread "$TMP/epoll-pingpong.none") | $(st spread "$TMP/epoll-connect.none") |"
	echo "| $(label_of disabled) | $(cell epoll-pingpong disabled none) | $(cell epoll-connect disabled none) |"
	echo "| $(label_of all) | $(cell epoll-pingpong all none $T_EPP) | $(cell epoll-connect all none $T_ECONN) |"
	echo
}
