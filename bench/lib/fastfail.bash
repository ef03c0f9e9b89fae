# SPDX-License-Identifier: MIT
# bench/lib/fastfail.bash: section 3 of the report, how long a program
# takes to learn a destination is dead: a refused loopback port and a
# black hole (a port dropped by nftables in a network namespace of our own,
# tests/lib/netns.bash), with no shim, bulwark's breaker open, and through
# HAProxy and nginx (BENCH_ONLY=fastfail).

run_fastfail() {
	FORCED=no FFB=() NETNS_WHY="not selected (BENCH_ONLY)"
	want fastfail || return 0
	DEAD_PORT=$(free_port)
	FF=(none bulwark)
	if [ "$HAVE_HAP" = 1 ]; then
		HAP_DEAD=$(free_port) && start_haproxy dead "$HAP_DEAD" "127.0.0.1:$DEAD_PORT" 1 &&
			FF+=(haproxy)
	fi
	if [ "$HAVE_NGX" = 1 ]; then
		NGX_DEAD=$(free_port) && start_nginx dead "$NGX_DEAD" "127.0.0.1:$DEAD_PORT" 1 &&
			FF+=(nginx)
	fi
	FORCED=no
	if [ -x "$CLI" ] && "$CLI" force --state "$ST-ff" "127.0.0.1:$DEAD_PORT" open \
		>>"$LOG" 2>&1; then
		FORCED=yes
	fi
	say "fast-fail: refused loopback port (${FF[*]})"
	measure ff-refused "$FF_ROUNDS" "${FF[@]}"
	check_numbers "fast-fail refused port" ff-refused "${FF[@]}"

	BH_PORT=$(free_port)
	FFB=()
	# The black-hole test host: BH_IP:BH_PORT inside the namespace.
	if netns_up && netns_blackhole "$BH_PORT" >>"$LOG" 2>&1; then
		BH_IP=$NETNS_NS_IP
		FFB=(none bulwark)
		if [ "$HAVE_HAP" = 1 ]; then
			HAP_BH=$(free_port) && start_haproxy bh "$HAP_BH" "$BH_IP:$BH_PORT" 1 &&
				FFB+=(haproxy)
		fi
		if [ "$HAVE_NGX" = 1 ]; then
			NGX_BH=$(free_port) && start_nginx bh "$NGX_BH" "$BH_IP:$BH_PORT" 1 &&
				FFB+=(nginx)
		fi
		[ -x "$CLI" ] && "$CLI" force --state "$ST-ff" "$BH_IP:$BH_PORT" open \
			>>"$LOG" 2>&1
		say "fast-fail: black hole in namespace $NETNS_NAME (${FFB[*]})"
		measure ff-blackhole "$FF_ROUNDS" "${FFB[@]}"
		check_numbers "fast-fail black hole" ff-blackhole "${FFB[@]}"
	else
		NETNS_WHY=${NETNS_REASON:-nftables drop rule not set}
		tap_skip "fast-fail black hole" "network namespace unavailable: $NETNS_WHY"
	fi
}

# ff_cell BENCH VARIANT: the median and how the program learnt (its most
# frequent outcome: refused, reset, eof...; "≥" when it gave up on its own
# timeout).
ff_cell() {
	local m=${MED[$1.$2]:-} o
	is_num "$m" || { echo "n/a"; return; }
	o=$(st mode "$TMP/$1.$2.out" 3)
	if [ "$o" = timeout ]; then
		echo "≥ $(st us "$m") (gave up: own timeout)"
	else
		echo "$(st us "$m") ($o)"
	fi
}

report_fastfail() {
	local b name
	echo "## 3. Fast-fail: giving up on a dead destination"
	echo
	echo "Median time from connect() until the program knows the destination is"
	echo "dead (through a sidecar: connect, send, then EOF/reset/timeout).  One"
	echo "untimed attempt first (it opens bulwark's breaker with"
	echo "\`$POL_FF\`"
	echo "and marks the sidecar's server down).  Breaker forced open with"
	echo "\`bulwark force\`: $FORCED.  The program's own timeout is ${CLIENT_TIMEOUT_MS} ms;"
	echo "sidecars' connect timeout ${CT_MS} ms.  Target: bulwark with the breaker"
	echo "open ≤ $((T_OPEN_NS / 1000)) µs."
	echo
	echo "| destination | no shim | bulwark, breaker open | HAProxy | nginx | target ≤ $((T_OPEN_NS / 1000)) µs |"
	echo "|---|---|---|---|---|---|"
	for b in ff-refused ff-blackhole; do
		name="refused loopback port"
		[ "$b" = ff-blackhole ] && name="black hole (netns, nftables drop)"
		if [ "$b" = ff-blackhole ] && [ "${#FFB[@]}" = 0 ]; then
			echo "| $name | skipped: network namespace unavailable ($NETNS_WHY) | | | | n/a |"
			continue
		fi
		echo "| $name | $(ff_cell $b none) | $(ff_cell $b bulwark) | $(ff_cell $b haproxy) | $(ff_cell $b nginx) | $(st verdict "${MED[$b.bulwark]:-}" "$T_OPEN_NS") |"
	done
	echo
}
