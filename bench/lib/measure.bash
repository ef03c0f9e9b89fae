# SPDX-License-Identifier: MIT
# bench/lib/measure.bash: how bench/run runs a variant and files its
# numbers.  A variant is an environment (no shim, the shim disabled, one
# policy or all three, a sidecar...) and a bench a command line; rounds
# run interleaved (measure) or each variant in lockstep with a no-shim
# twin (measure_lockstep, bench/bench_lockstep.c).  Every round's number
# goes to $TMP/BENCH.VARIANT and "ROUND number" to BENCH.VARIANT.r, which
# paired() hands to bench/stats; cell() and label_of() give a table its
# cells and row names.

declare -A MED # BENCH.VARIANT -> median over rounds (ns)
declare -A LS  # VARIANT -> output line of the last lockstep round

# variant_env VARIANT: ENVV=(...) for `env`; the process under test only.
variant_env() {
	local s=LD_PRELOAD=$LIB
	case $1 in
	none | haproxy* | nginx*) ENVV=() ;;
	disabled) ENVV=("$s" "BULWARK_DISABLE=1") ;;
	# The bare rule: every built-in default (with no policy at all every
	# destination would only be observed).
	shim) ENVV=("$s" "BULWARK_STATE=$ST-shim" "BULWARK_POLICY=*") ;;
	breaker) ENVV=("$s" "BULWARK_STATE=$ST-brk" "BULWARK_POLICY=$POL_BREAKER") ;;
	bulkhead) ENVV=("$s" "BULWARK_STATE=$ST-bh" "BULWARK_POLICY=$POL_BULKHEAD") ;;
	retries) ENVV=("$s" "BULWARK_STATE=$ST-rt" "BULWARK_POLICY=$POL_RETRY") ;;
	all | trace) ENVV=("$s" "BULWARK_STATE=$ST-all" "BULWARK_POLICY=$POL_ALL") ;;
	bulwark) ENVV=("$s" "BULWARK_STATE=$ST-ff" "BULWARK_POLICY=$POL_FF") ;;
	esac
}

# bench_cmd BENCH VARIANT: CMD=(...) for one round of BENCH.
bench_cmd() {
	local port=${ECHO_PORT:-0} wu=$CT_MS
	case $2 in
	haproxy) port=$HAP_PORT ;;
	nginx) port=$NGX_PORT ;;
	esac
	case ${1#side-} in
	write) CMD=("$BIN/bench_write" "$WRITE_N") ;;
	pingpong) CMD=("$BIN/bench_pingpong" 127.0.0.1 "$port" "$PP_N") ;;
	connect) CMD=("$BIN/bench_connect" ok 127.0.0.1 "$port" "$CONN_N") ;;
	epoll-pingpong) CMD=("$BIN/bench_epoll" pingpong 127.0.0.1 "$port" "$PP_N") ;;
	epoll-connect) CMD=("$BIN/bench_epoll" connect 127.0.0.1 "$port" "$CONN_N") ;;
	ff-refused | ff-blackhole)
		local host=127.0.0.1
		if [ "$1" = ff-refused ]; then
			port=$DEAD_PORT
			case $2 in haproxy) port=$HAP_DEAD ;; nginx) port=$NGX_DEAD ;; esac
		else
			host=$BH_IP port=$BH_PORT
			case $2 in
			haproxy) host=127.0.0.1 port=$HAP_BH ;;
			nginx) host=127.0.0.1 port=$NGX_BH ;;
			esac
		fi
		case $2 in
		none) wu=0 ;;
		haproxy) wu=$((4 * CT_MS)) ;;
		esac
		CMD=("$BIN/bench_connect" fail "$host" "$port" "$FF_MAX" \
			"$FF_BUDGET_MS" "$CLIENT_TIMEOUT_MS" "$wu") ;;
	esac
}

# run_once BENCH VARIANT ROUND: runs one round, appends its number to
# $TMP/BENCH.VARIANT, "ROUND number" to BENCH.VARIANT.r (what the paired
# statistics join on), and the whole output line to .out.
run_once() {
	local out rc
	bench_cmd "$1" "$2"
	variant_env "$2"
	if [ "$2" = trace ]; then
		# The same "all three" run with bulwark-trace attached; the
		# bench's own output goes to a file.
		out=$("${PIN[@]}" "$TRACE" -- env "${ENVV[@]}" sh -c 'exec "$@" >"$0"' \
			"$TMP/trace.out" "${CMD[@]}" >>"$TMP/trace.log" 2>&1; cat "$TMP/trace.out")
	else
		out=$("${PIN[@]}" env "${ENVV[@]}" "${CMD[@]}" 2>>"$LOG")
	fi
	rc=$?
	[ "$rc" = 0 ] || echo "$1/$2: exit status $rc: $out" >>"$LOG"
	out=${out%%$'\n'*}
	echo "$out" >>"$TMP/$1.$2.out"
	if is_num "${out%% *}"; then
		echo "${out%% *}" >>"$TMP/$1.$2"
		echo "${3:-0} ${out%% *}" >>"$TMP/$1.$2.r"
	fi
}

# measure BENCH ROUNDS VARIANT...: interleaved rounds, rotating the start.
measure() {
	local bench=$1 rounds=$2 r i n
	shift 2
	local v=("$@")
	n=${#v[@]}
	for ((r = 0; r < rounds; r++)); do
		for ((i = 0; i < n; i++)); do
			run_once "$bench" "${v[$(((r + i) % n))]}" "$r"
		done
	done
	for ((i = 0; i < n; i++)); do
		MED[$bench.${v[$i]}]=$(st median "$TMP/$bench.${v[$i]}")
	done
}

# lockstep_round BENCH ROUND VARIANT...: one run of bench_lockstep with
# these variants; each one's output line goes to LS[variant].
lockstep_round() {
	local bench=$1 r=$2 v spec=()
	shift 2
	for v in "$@"; do
		bench_cmd "$bench" "$v"
		variant_env "$v"
		rm -f "$TMP/ls.$v"
		if [ "$v" = trace ]; then
			# bulwark-trace's own report goes to a log; the bench's
			# number to ls.trace.
			spec+=("$v" "$TMP/trace.log.$r" "$TRACE" -- env "${ENVV[@]}"
				sh -c 'exec "$@" >"$0"' "$TMP/ls.$v" "${CMD[@]}" ";")
		else
			spec+=("$v" "$TMP/ls.$v" env "${ENVV[@]}" "${CMD[@]}" ";")
		fi
	done
	local settle=0
	# A connect loop's close leaves the server (or sidecar) work to do.
	case $bench in *connect) settle=$SETTLE_US ;; esac
	BENCH_LOCKSTEP_SETTLE_US=$settle \
		"${PIN[@]}" "$BIN/bench_lockstep" -- "${spec[@]}" 2>>"$LOG" ||
		echo "$bench: lockstep round $r ($*) failed" >>"$LOG"
	for v in "$@"; do
		LS[$v]=$(head -n1 "$TMP/ls.$v" 2>/dev/null)
	done
}

# keep BENCH VARIANT ROUND LINE [TWIN_OF]: files a result as run_once
# does; a no-shim twin's ("none" run in lockstep with TWIN_OF) goes to
# none@TWIN_OF.r as well, the baseline paired() gives TWIN_OF.
keep() {
	echo "$4" >>"$TMP/$1.$2.out"
	is_num "${4%% *}" || return 0
	echo "${4%% *}" >>"$TMP/$1.$2"
	echo "$3 ${4%% *}" >>"$TMP/$1.$2.r"
	[ -n "${5:-}" ] && echo "$3 ${4%% *}" >>"$TMP/$1.$2@$5.r"
	return 0
}

# measure_lockstep BENCH ROUNDS none VARIANT...: for the loops of sections 1
# and 2, whose speed on a VM drifts within seconds.  Each
# round runs every VARIANT in lockstep with a no-shim run of its own
# (bench_lockstep: the two take turns iteration by iteration, the first
# alternating by round), so that a variant and its baseline are timed on
# the same machine at the same moment, and nothing else runs between
# their iterations but each other.  paired() pairs VARIANT with its own
# twin (file none@VARIANT).
measure_lockstep() {
	local bench=$1 rounds=$2 r i n v
	shift 3
	local vs=("$@")
	n=${#vs[@]}
	for ((r = 0; r < rounds; r++)); do
		for ((i = 0; i < n; i++)); do
			v=${vs[$(((r + i) % n))]}
			# bulwark trace follows only the variant's process (--
			# CMD); its twin pays what the attached tracer costs
			# every other process on the machine (its socket
			# tracepoints fire for every socket).
			if ((r % 2)); then
				lockstep_round "$bench" "$r" "$v" none
			else
				lockstep_round "$bench" "$r" none "$v"
			fi
			keep "$bench" none "$r" "${LS[none]}" "$v"
			keep "$bench" "$v" "$r" "${LS[$v]}"
		done
	done
	for v in none "${vs[@]}"; do
		MED[$bench.$v]=$(st median "$TMP/$bench.$v")
	done
	[ -s "$TMP/$bench.none@trace.r" ] &&
		MED[$bench.none@trace]=$(cut -d' ' -f2 "$TMP/$bench.none@trace.r" >"$TMP/$bench.none@trace" &&
			st median "$TMP/$bench.none@trace")
	return 0
}

# check_numbers LABEL BENCH VARIANT...: TAP line: every variant has a median.
check_numbers() {
	local label=$1 bench=$2 v missing= nums=
	shift 2
	for v in "$@"; do
		if is_num "${MED[$bench.$v]:-}"; then
			nums+=" $v=${MED[$bench.$v]}"
		else
			missing+=" $v"
		fi
	done
	if [ -z "$missing" ]; then
		tap_ok "$label: medians (ns):$nums"
	else
		tap_fail "$label: no numbers for:$missing (see stderr log)"
	fi
}

# paired BENCH VARIANT BASE: bench/stats paired on the right files: "RATIO
# SE DIFF DIFF_SE N", each run of a round paired with the base's run of the
# same round.  Pairing cancels what drifts from round to round (a
# neighbour on the host, the CPU's clock); rounds where either run gave no
# number drop out.  A variant measured in lockstep pairs with its own twin
# (none@VARIANT); one without a twin with the round's no-shim runs
# (none.r).  Prints nothing when fewer than 2 rounds pair up.
paired() {
	local v=$TMP/$1.$2.r b=$TMP/$1.$3.r
	[ -s "$TMP/$1.$3@$2.r" ] && b=$TMP/$1.$3@$2.r # its own lockstep baseline
	# bulwark trace slows its twin too (what it costs every process while
	# attached): it pairs with the twin of "all", the same run without
	# the tracer, measured in the round's lockstep run just before or
	# after.
	[ "$2" = trace ] && [ "$3" = none ] && [ -s "$TMP/$1.none@all.r" ] &&
		b=$TMP/$1.none@all.r
	st paired "$b" "$v"
}

# cell BENCH VARIANT BASE [TARGET]: "×ratio ±se (median ns) VERDICT"; the
# ratio is the median of per-round paired ratios (see paired).
cell() {
	local m=${MED[$1.$2]:-}
	is_num "$m" || { echo "n/a"; return; }
	st cell "$m" "$(paired "$1" "$2" "$3")" "${4:-}"
}

# label_of VARIANT: its row name in the tables.
label_of() {
	case $1 in
	none) echo "no shim" ;;
	disabled) echo "preloaded with BULWARK_DISABLE=1: hooks only forward (the floor of any LD_PRELOAD shim)" ;;
	shim) echo "shim, the bare rule \`*\` (every built-in default)" ;;
	breaker) echo "breaker \`$POL_BREAKER\`" ;;
	bulkhead) echo "bulkhead \`$POL_BULKHEAD\`" ;;
	retries) echo "retries \`$POL_RETRY\`" ;;
	all) echo "all three \`$POL_ALL\`" ;;
	trace) echo "all three + bulwark trace attached" ;;
	bulwark) echo "bulwark, breaker open" ;;
	haproxy) echo "HAProxy $(haproxy -v 2>/dev/null | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p')" ;;
	nginx) echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')" ;;
	esac
}
