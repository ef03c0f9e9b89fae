# SPDX-License-Identifier: MIT
# bench/lib/sidecar.bash: the sidecar proxies bulwark is compared with,
# HAProxy (tcp mode) and nginx (stream), configured like bulwark's policy
# and run in the foreground as our children on 127.0.0.1; and section 2 of
# the report, the ping-pong and connect loops direct, with bulwark and
# through each sidecar (BENCH_ONLY=sidecar; section 3 uses the same
# proxies in front of a dead destination).

# start_haproxy NAME FRONT_PORT BACKEND_ADDR:PORT ERROR_LIMIT: tcp mode,
# configured like the bulwark policy: retries 3 (retry.attempts=3),
# maxconn 64 per server (bulkhead.max=64), observe layer4 with error-limit
# N and on-error mark-down (breaker.failures=N), downinter 60s
# (breaker.open=60s).  Runs in the foreground (-db) as our child.
start_haproxy() {
	local name=$1 port=$2 be=$3 lim=$4 cfg=$TMP/haproxy-$1.cfg
	cat >"$cfg" <<EOC
global
	nbthread 1
	maxconn 8192
defaults
	mode tcp
	timeout connect ${CT_MS}ms
	timeout client 30s
	timeout server 30s
	retries 3
listen bench
	bind 127.0.0.1:$port
	server s1 $be maxconn 64 check inter 60s downinter 60s observe layer4 error-limit $lim on-error mark-down
EOC
	"${PIN[@]}" haproxy -db -q -f "$cfg" >>"$LOG" 2>&1 &
	bw_track_pid $!
	wait_listen "$port" $!
}

# start_nginx NAME FRONT_PORT BACKEND_ADDR:PORT MAX_FAILS: stream proxy,
# max_fails=N fail_timeout=60s (breaker), max_conns=64 (bulkhead),
# proxy_next_upstream on with 3 tries (retries).  One worker.  Note: nginx
# ignores max_fails for an upstream of one server, so it never stops
# trying a dead sole server (documented nginx behaviour).
NGINX_MOD=
start_nginx() {
	local name=$1 port=$2 be=$3 fails=$4 dir=$TMP/nginx-$1
	mkdir -p "$dir/logs"
	cat >"$dir/nginx.conf" <<EOC
${NGINX_MOD:+load_module $NGINX_MOD;}
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
stream {
	upstream be {
		server $be max_fails=$fails fail_timeout=60s max_conns=64;
	}
	server {
		listen 127.0.0.1:$port;
		proxy_pass be;
		proxy_connect_timeout ${CT_MS}ms;
		proxy_next_upstream on;
		proxy_next_upstream_tries 3;
	}
}
EOC
	"${PIN[@]}" nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
		>>"$LOG" 2>&1 &
	bw_track_pid $!
	wait_listen "$port" $!
}

find_nginx_stream() {
	command -v nginx >/dev/null || return 1
	nginx -V 2>&1 | grep -q -- '--with-stream\( \|$\)' && return 0
	local m
	for m in /usr/lib/nginx/modules/ngx_stream_module.so \
		/usr/lib64/nginx/modules/ngx_stream_module.so; do
		[ -f "$m" ] && { NGINX_MOD=$m; return 0; }
	done
	return 1
}

# start_sidecars: the live proxies in front of the echo server, when
# section 2 or 3 runs; sets HAVE_HAP, HAVE_NGX (1 when up) and why not.
start_sidecars() {
	HAVE_HAP=0 HAVE_NGX=0 SIDE_WHY_HAP= SIDE_WHY_NGX=
	if ! want sidecar && ! want fastfail; then
		SIDE_WHY_HAP="not selected (BENCH_ONLY)" SIDE_WHY_NGX=$SIDE_WHY_HAP
	elif command -v haproxy >/dev/null; then
		HAP_PORT=$(free_port) && start_haproxy live "$HAP_PORT" "127.0.0.1:$ECHO_PORT" 5 &&
			HAVE_HAP=1 || SIDE_WHY_HAP="haproxy did not start"
	else
		SIDE_WHY_HAP="haproxy not installed"
	fi
	if ! want sidecar && ! want fastfail; then
		:
	elif find_nginx_stream; then
		NGX_PORT=$(free_port) && start_nginx live "$NGX_PORT" "127.0.0.1:$ECHO_PORT" 5 &&
			HAVE_NGX=1 || SIDE_WHY_NGX="nginx did not start"
	else
		SIDE_WHY_NGX="nginx with the stream module not installed (libnginx-mod-stream)"
	fi
}

run_sidecar() {
	local b
	start_sidecars
	SIDE=(none all)
	[ "$HAVE_HAP" = 1 ] && SIDE+=(haproxy)
	[ "$HAVE_NGX" = 1 ] && SIDE+=(nginx)
	want sidecar || return 0
	for b in pingpong connect; do
		say "sidecar: $b (${SIDE[*]})"
		measure_lockstep "side-$b" "$(rounds_of "$b")" "${SIDE[@]}"
	done
	[ "$HAVE_HAP" = 1 ] || tap_skip "sidecar haproxy" "$SIDE_WHY_HAP"
	[ "$HAVE_NGX" = 1 ] || tap_skip "sidecar nginx" "$SIDE_WHY_NGX"
	for b in pingpong connect; do
		check_numbers "sidecar $b" "side-$b" "${SIDE[@]}"
	done
}

# added_x BENCH SIDECAR: "X BOUND": how many times smaller bulwark's added
# latency is than the sidecar's (medians of paired differences), and the
# bound the verdict uses: the sidecar's added latency over bulwark's plus
# one standard error, so that a difference lost in noise cannot pass.
# X is "inf" when bulwark's added latency measured <= 0.
added_x() {
	st added-x "$(paired "$1" all none)" "$(paired "$1" "$2" none)"
}

report_sidecar() {
	local b xh xn xs sc
	echo "## 2. Against a sidecar proxy"
	echo
	echo "The same ping-pong and connect loops, direct (no shim), with bulwark"
	echo "(\`$POL_ALL\`) and through a sidecar configured alike: HAProxy tcp mode,"
	echo "\`retries 3\`, server \`maxconn 64\`, \`observe layer4 error-limit 5 on-error"
	echo "mark-down\`; nginx stream, \`max_fails=5 fail_timeout=60s max_conns=64\`,"
	echo "\`proxy_next_upstream on\`, 3 tries.  One worker each."
	echo "Target: bulwark's added latency ≥ ${T_SIDECAR}× smaller than a sidecar's."
	echo
	echo "No-shim spread (½ IQR / median): ping-pong $(st spread "$TMP/side-pingpong.none"), connect $(st spread "$TMP/side-connect.none")."
	echo
	echo "| loop | no shim | bulwark | bulwark's added latency | HAProxy | nginx | bulwark's added latency is X× smaller than HAProxy's / nginx's |"
	echo "|---|---|---|---|---|---|---|"
	for b in pingpong connect; do
		xh=$(added_x "side-$b" haproxy)
		xn=$(added_x "side-$b" nginx)
		xs=
		for sc in "$xh" "$xn"; do
			[ -n "$xs" ] && xs+=" / "
			if [ -n "$sc" ]; then xs+="${sc% *}× (≥ ${sc#* }×)"; else xs+="n/a"; fi
		done
		# The verdict takes the worse sidecar's conservative bound.
		echo "| $b | $(st ns "${MED[side-$b.none]:-}") ns | $(cell "side-$b" all none) | $(st added "$(paired "side-$b" all none)") | $(cell "side-$b" haproxy none) | $(cell "side-$b" nginx none) | $xs $(st worst-verdict "$T_SIDECAR" "$xh" "$xn") |"
	done
	echo
	echo "X: the sidecar's added latency (median of per-round differences to"
	echo "no shim) over bulwark's; (≥ B×): the same with one standard error"
	echo "added to bulwark's, the bound the verdict uses.  \"inf\": bulwark's"
	echo "added latency measured ≤ 0, i.e. within noise."
	echo
}
