# SPDX-License-Identifier: MIT
# tests/lib/netns.bash: a private test host in a network namespace (load
# after common.bash; bench/run's black hole is one too).  A namespace of
# our own, a veth pair addressed in one /30 of 10.213.0.0/16 made only for
# it, a listener inside, and an nftables drop rule inside the namespace
# to turn a port into a black hole (connect timeout, doc/design.md L20).
# Nothing is routed anywhere else: the /30 is on-link on the veth, so
# traffic to it never leaves the machine.
#
#   netns_up || skip "network namespaces unavailable: $NETNS_REASON"
#       exports NETNS_NAME, NETNS_HOST_IP (our end), NETNS_NS_IP (the test
#       host), NETNS_HOST_IF, NETNS_NS_IF.  Returns 1 and sets NETNS_REASON
#       when namespaces cannot be made (not root, no ip/nft, EPERM...).
#   netns_exec CMD...             run CMD inside the namespace
#   netns_start_faultsrv ARGS...  start_faultsrv inside, listening on
#                                 $NETNS_NS_IP (port 0 unless --listen given)
#   netns_blackhole PORT          drop TCP to PORT inside the namespace
#   netns_unblackhole             remove every drop rule
#   netns_down                    stop what runs inside, delete it all
#                                 (bw_teardown calls it)

NETNS_NAME=
NETNS_REASON=
export NETNS_REASON

# _netns_fail MESSAGE: record why, undo a partial setup, return 1.
_netns_fail() {
	NETNS_REASON=$1
	netns_down
	return 1
}

# Remove namespaces left by earlier runs whose bats process is gone (names
# are bwt-<pid>-<n>).  Only our own naming is ever touched.
_netns_prune() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		[[ $ns =~ ^bwt-([0-9]+)-[0-9]+$ ]] || continue
		pid=${BASH_REMATCH[1]}
		kill -0 "$pid" 2>/dev/null && continue
		ip netns del "$ns" 2>/dev/null || true
	done
}

netns_up() {
	NETNS_REASON=
	if [[ $(id -u) != 0 ]]; then
		NETNS_REASON="not root"
		return 1
	fi
	command -v ip >/dev/null || { NETNS_REASON="ip (iproute2) not installed"; return 1; }
	command -v nft >/dev/null || { NETNS_REASON="nft not installed"; return 1; }
	_netns_prune
	local tag=$((RANDOM % 100000)) out x y tries
	NETNS_NAME="bwt-$$-$tag"
	NETNS_HOST_IF="bw${tag}h"
	NETNS_NS_IF="bw${tag}n"
	# A /30 in a 10.213.x.0/24 nobody on this machine uses yet.
	for ((tries = 0; tries < 50; tries++)); do
		x=$((RANDOM % 256))
		y=$(((RANDOM % 64) * 4))
		ip -o -4 addr show | grep -q "inet 10\.213\.$x\." || break
	done
	NETNS_HOST_IP="10.213.$x.$((y + 1))"
	NETNS_NS_IP="10.213.$x.$((y + 2))"
	export NETNS_NAME NETNS_HOST_IP NETNS_NS_IP NETNS_HOST_IF NETNS_NS_IF

	out=$(ip netns add "$NETNS_NAME" 2>&1) ||
		{ NETNS_NAME=; _netns_fail "ip netns add: $out"; return 1; }
	out=$(ip link add "$NETNS_HOST_IF" type veth peer name "$NETNS_NS_IF" \
		netns "$NETNS_NAME" 2>&1) ||
		{ _netns_fail "veth: $out"; return 1; }
	out=$( {
		ip addr add "$NETNS_HOST_IP/30" dev "$NETNS_HOST_IF" &&
			ip link set "$NETNS_HOST_IF" up &&
			ip -n "$NETNS_NAME" addr add "$NETNS_NS_IP/30" dev "$NETNS_NS_IF" &&
			ip -n "$NETNS_NAME" link set "$NETNS_NS_IF" up &&
			ip -n "$NETNS_NAME" link set lo up
	} 2>&1) || { _netns_fail "addresses: $out"; return 1; }
	out=$(ip netns exec "$NETNS_NAME" nft add table inet bwtest 2>&1) ||
		{ _netns_fail "nft: $out"; return 1; }
	# Wait for the link to carry traffic (veth is up at once; allow for
	# slow machines).
	local i
	for ((i = 0; i < 100; i++)); do
		ip -n "$NETNS_NAME" link show "$NETNS_NS_IF" 2>/dev/null |
			grep -q 'state UP' && return 0
		sleep 0.02
	done
	_netns_fail "veth never came up"
}

netns_exec() {
	ip netns exec "$NETNS_NAME" "$@"
}

# netns_start_faultsrv ARGS...: as start_faultsrv, inside the namespace.
netns_start_faultsrv() {
	local a listen=
	for a in "$@"; do
		[[ $a == --listen ]] && listen=1
	done
	if [[ -n $listen ]]; then
		FS_EXEC="ip netns exec $NETNS_NAME" start_faultsrv "$@"
	else
		FS_EXEC="ip netns exec $NETNS_NAME" start_faultsrv \
			--listen "$NETNS_NS_IP:0" "$@"
	fi
}

# netns_blackhole PORT: inbound TCP to PORT is dropped inside the namespace,
# so connects from the host hang in SYN-SENT until they time out.
netns_blackhole() {
	ip netns exec "$NETNS_NAME" nft -f - <<EOF
table inet bwtest {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport $1 drop
	}
}
EOF
}

netns_unblackhole() {
	ip netns exec "$NETNS_NAME" nft flush table inet bwtest 2>/dev/null
}

netns_down() {
	[[ -n ${NETNS_NAME:-} ]] || return 0
	local pid
	# Whatever still runs inside was started by this test.
	for pid in $(ip netns pids "$NETNS_NAME" 2>/dev/null); do
		stop_pid "$pid"
	done
	ip netns del "$NETNS_NAME" 2>/dev/null || true
	# Deleting the namespace deletes the veth pair; make sure.
	ip link del "$NETNS_HOST_IF" 2>/dev/null || true
	NETNS_NAME=
}
