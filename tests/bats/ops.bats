#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/ops.bats: operating running programs (bulwark(1): serve,
# status --output, systemd).  `bulwark serve` answers /metrics, /status and
# /healthz with the right status codes, keeps serving while a client idles
# and drops that client after --timeout, serves several states, says when
# it cannot listen and stops on SIGTERM; a real Prometheus scrapes it and
# sees a breaker a curl run opened; the alerting rules pass promtool; the
# systemd drop-in names the shim and the policy, and systemd-analyze
# accepts it.  Everything listens on and talks to 127.0.0.1 only.

load ../lib/common

setup() {
	bw_setup
	require_shim
	require_cli
	require_cmd curl python3
	SERVE_PORT=$(free_port)
	URL=http://127.0.0.1:$SERVE_PORT
}

teardown() {
	[[ -z ${OTHER_STATE:-} ]] || rm -f "$(bw_state_file "$OTHER_STATE")"
	bw_teardown
}

# start_serve ARGS...: bulwark serve in the background on $SERVE_PORT,
# waits until /healthz answers.  SERVE_PID, SERVE_ERR.
start_serve() {
	start_bg "$BW_CLI" serve --listen "127.0.0.1:$SERVE_PORT" "$@"
	SERVE_PID=$BG_PID
	SERVE_ERR=$BW_TMP/bg.$BW_SERVER_N.err
	wait_until 10 curl -sf -o /dev/null "$URL/healthz" || {
		cat "$SERVE_ERR" >&2
		return 1
	}
}

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# trip_breaker: two refused connects under failures=2 open the breaker of
# 127.0.0.1:$1 in $BULWARK_STATE.
trip_breaker() {
	local i
	for i in 1 2; do
		BULWARK_POLICY='* breaker.failures=2 retry.attempts=1' BULWARK_LOG=off \
			run_shim curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$1/" || true
	done
	"$BW_CLI" status --json | grep -q '"state": "open"'
}

# A port nothing listens on, bound so nobody else takes it meanwhile.
refused_port() {
	require_faultsrv
	start_faultsrv --mode refuse
	REFUSED=$FS_PORT
}

@test "serve: /healthz 200 ok, / 200, unknown path 404, POST 405 with Allow, HEAD has no body" {
	start_serve
	run curl -s -i "$URL/healthz"
	[[ $output == "HTTP/1.1 200 OK"* ]]
	[[ $output == *$'\r\nConnection: close\r\n'* ]]
	[[ $output == *$'\r\n\r\nok' ]]
	[ "$(code "$URL/")" = 200 ]
	[ "$(code "$URL/nope")" = 404 ]
	[ "$(code "$URL/metrics/x")" = 404 ]
	[ "$(code -X POST --data x=1 "$URL/metrics")" = 405 ]
	run curl -s -i -X DELETE "$URL/status"
	[[ $output == *$'\r\nAllow: GET, HEAD\r\n'* ]]
	run curl -s -I "$URL/metrics"
	[[ $output == "HTTP/1.1 200 OK"* ]]
	[[ $output == *"Content-Type: text/plain; version=0.0.4"* ]]
	# HEAD: the length of the GET's body, and no body
	len=$(curl -s -I "$URL/healthz" | tr -d '\r' | sed -n 's/^Content-Length: //p')
	[ "$len" = 3 ]
	[ -z "$(curl -s --head "$URL/healthz" -o /dev/null -w '%{size_download}' | tr -d 0)" ]
	# HTTP/1.0 works as well
	[ "$(code --http1.0 "$URL/healthz")" = 200 ]
}

@test "serve: garbage, a bad version, a bad target and an oversized request get 400 / 431" {
	start_serve
	send() {
		python3 - "$SERVE_PORT" "$1" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(data.split(b"\r\n")[0].decode())
EOF
	}
	run send 'garbage\r\n\r\n'
	[ "$output" = "HTTP/1.1 400 Bad Request" ]
	run send 'GET /metrics HTTP/2.0\r\n\r\n'
	[ "$output" = "HTTP/1.1 400 Bad Request" ]
	run send 'GET metrics HTTP/1.1\r\n\r\n'
	[ "$output" = "HTTP/1.1 400 Bad Request" ]
	run send 'GET  /metrics HTTP/1.1\r\n\r\n'
	[ "$output" = "HTTP/1.1 400 Bad Request" ]
	run send 'G\x01T /healthz HTTP/1.1\r\n\r\n'
	[ "$output" = "HTTP/1.1 400 Bad Request" ]
	run send "GET /healthz HTTP/1.1\\r\\nX: $(head -c 9000 /dev/zero | tr '\0' a)\\r\\n\\r\\n"
	[ "$output" = "HTTP/1.1 431 Request Header Fields Too Large" ]
	# bare LF line ends are accepted
	run send 'GET /healthz HTTP/1.0\n\n'
	[ "$output" = "HTTP/1.1 200 OK" ]
	# and the server still answers afterwards
	[ "$(code "$URL/healthz")" = 200 ]
}

@test "serve: /metrics passes promtool and shows a breaker curl opened; /status is status --json" {
	refused_port
	trip_breaker "$REFUSED"
	start_serve --state "$BULWARK_STATE"
	curl -sf "$URL/metrics" >"$BW_TMP/metrics"
	grep -qx "bulwark_breaker_state{destination=\"127.0.0.1:$REFUSED\",rule=\"\\*\",state_name=\"$BULWARK_STATE\",state=\"open\"} 1" "$BW_TMP/metrics"
	if command -v promtool >/dev/null; then
		run promtool check metrics <"$BW_TMP/metrics"
		[ "$status" -eq 0 ]
		[ -z "$output" ]
	fi
	curl -sf "$URL/status" >"$BW_TMP/status.json"
	"$BW_CLI" status --json >"$BW_TMP/cli.json"
	python3 - "$BW_TMP/status.json" "$BW_TMP/cli.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
strip = lambda rows: [{k: v for k, v in r.items() if k != "open_remaining_ms"} for r in rows]
assert strip(a) == strip(b), (a, b)
assert a[0]["state"] == "open", a
EOF
	[ "$(curl -s -o /dev/null -w '%{content_type}' "$URL/status")" = application/json ]
}

@test "serve: several --state: one family each, samples told apart by state_name; /status?state=" {
	refused_port
	trip_breaker "$REFUSED"
	other=$BULWARK_STATE-b
	OTHER_STATE=$other
	BULWARK_STATE=$other "$BW_CLI" force 127.0.0.1:9 open >/dev/null
	start_serve --state "$BULWARK_STATE" --state "$other" --state never-used-$$
	curl -sf "$URL/metrics" >"$BW_TMP/metrics"
	[ "$(grep -c '^# TYPE bulwark_breaker_state gauge$' "$BW_TMP/metrics")" = 1 ]
	grep -q "^bulwark_breaker_state{destination=\"127.0.0.1:$REFUSED\",rule=\"\\*\",state_name=\"$BULWARK_STATE\",state=\"open\"} 1$" "$BW_TMP/metrics"
	grep -q "^bulwark_breaker_state{destination=\"127.0.0.1:9\",rule=\"(forced)\",state_name=\"$other\",state=\"forced_open\"} 1$" "$BW_TMP/metrics"
	grep -q "^bulwark_destinations{state_name=\"never-used-$$\"} 0$" "$BW_TMP/metrics"
	if command -v promtool >/dev/null; then
		promtool check metrics <"$BW_TMP/metrics"
	fi
	run curl -sf "$URL/status"
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert sorted(d) == sorted(sys.argv[2:]), d' \
		"$output" "$BULWARK_STATE" "$other" "never-used-$$"
	run curl -sf "$URL/status?state=never-used-$$"
	[ "$output" = "[]" ]
	[ "$(code "$URL/status?state=not-served")" = 404 ]
}

@test "serve: a client that sends nothing does not stop others being served, and is dropped after --timeout" {
	start_serve --timeout 1
	python3 - "$SERVE_PORT" >"$BW_TMP/idle" <<'EOF' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(30)
print("connected", flush=True)
t = time.monotonic()
try:
    data = s.recv(100)
except OSError as e:
    data = repr(e).encode()
print("closed after %.1f s: %r" % (time.monotonic() - t, data), flush=True)
EOF
	idle=$!
	bw_track_pid "$idle"
	wait_until 5 grep -q connected "$BW_TMP/idle"
	# while it idles, others are answered at once
	for i in 1 2 3 4 5; do
		[ "$(code --max-time 0.5 "$URL/healthz")" = 200 ]
	done
	# and it is dropped after about a second, not left open
	wait_until 10 grep -q closed "$BW_TMP/idle"
	cat "$BW_TMP/idle"
	grep -Eq "closed after (0\.[5-9]|[1-4]\.[0-9]) s: b''" "$BW_TMP/idle"
}

@test "serve: stops cleanly on SIGTERM (status 0); cannot listen is status 1 with the reason" {
	start_serve
	kill -TERM "$SERVE_PID"
	wait "$SERVE_PID"
	[ "$?" -eq 0 ]
	grep -q "listening on http://127.0.0.1:$SERVE_PORT/" "$SERVE_ERR"
	# the port is in use by a listener of ours
	start_serve
	run "$BW_CLI" serve --listen "127.0.0.1:$SERVE_PORT"
	[ "$status" -eq 1 ]
	[[ $output == *"cannot listen on 127.0.0.1:$SERVE_PORT: Address already in use"* ]]
}

@test "serve: loopback by default; bad --listen, --timeout or --state are usage errors" {
	run timeout 2 "$BW_CLI" serve --listen ":0"
	[[ $output == *"listening on http://127.0.0.1:"* ]]
	run timeout 2 "$BW_CLI" serve --listen "0"
	[[ $output == *"listening on http://127.0.0.1:"* ]]
	run "$BW_CLI" serve --listen "127.0.0.1:99999"
	[ "$status" -eq 2 ]
	run "$BW_CLI" serve --listen "::1:80"
	[ "$status" -eq 2 ]
	run "$BW_CLI" serve --timeout 0
	[ "$status" -eq 2 ]
	run "$BW_CLI" serve --state 'bad/name'
	[ "$status" -eq 2 ]
	run "$BW_CLI" serve --state a --state a
	[ "$status" -eq 2 ]
	run "$BW_CLI" serve extra
	[ "$status" -eq 2 ]
	run "$BW_CLI" help serve
	[ "$status" -eq 0 ]
	[[ $output == *"GET /metrics"* ]]
}

@test "status --prometheus --output FILE: written whole and renamed into place" {
	refused_port
	trip_breaker "$REFUSED"
	mkdir "$BW_TMP/textfile"
	echo old >"$BW_TMP/textfile/bulwark.prom"
	exec 8<"$BW_TMP/textfile/bulwark.prom" # a reader holding the old file
	ino=$(stat -c %i "$BW_TMP/textfile/bulwark.prom")
	"$BW_CLI" status --prometheus --output "$BW_TMP/textfile/bulwark.prom"
	# replaced by a rename (a new inode), not rewritten in place: the
	# reader that had it open still reads the old text whole
	[ "$(stat -c %i "$BW_TMP/textfile/bulwark.prom")" != "$ino" ]
	[ "$(cat <&8)" = old ]
	exec 8<&-
	grep -q "state_name=\"$BULWARK_STATE\",state=\"open\"} 1" "$BW_TMP/textfile/bulwark.prom"
	# nothing else left in the directory (the temporary file was renamed)
	[ "$(ls -A "$BW_TMP/textfile")" = bulwark.prom ]
	# readable by node_exporter's user
	[ "$(stat -c %a "$BW_TMP/textfile/bulwark.prom")" = 644 ] || [ "$(umask)" != 0022 ]
	# a directory that cannot be written: status 1, the old file kept
	if [ "$(id -u)" != 0 ]; then
		chmod a-w "$BW_TMP/textfile"
		run "$BW_CLI" status --prometheus --output "$BW_TMP/textfile/bulwark.prom"
		chmod u+w "$BW_TMP/textfile"
		[ "$status" -eq 1 ]
	fi
	run "$BW_CLI" status --prometheus --output "$BW_TMP/no-such-dir/x.prom"
	[ "$status" -eq 1 ]
	[[ $output == *"cannot create"* ]]
	run "$BW_CLI" status --watch --output "$BW_TMP/x"
	[ "$status" -eq 2 ]
}

@test "prometheus: a real Prometheus scrapes bulwark serve and sees the breaker curl opened" {
	require_cmd prometheus
	refused_port
	start_serve --state "$BULWARK_STATE"
	prom_port=$(free_port)
	mkdir -p "$BW_TMP/prom"
	cat >"$BW_TMP/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bulwark
    static_configs:
      - targets: ['127.0.0.1:$SERVE_PORT']
EOF
	start_bg prometheus --config.file="$BW_TMP/prom/prometheus.yml" \
		--storage.tsdb.path="$BW_TMP/prom/data" \
		--web.listen-address="127.0.0.1:$prom_port" \
		--log.level=warn
	prom_url=http://127.0.0.1:$prom_port
	wait_until 30 curl -sf -o /dev/null "$prom_url/-/ready"
	trip_breaker "$REFUSED"
	query() {
		curl -sf --get "$prom_url/api/v1/query" \
			--data-urlencode 'query=bulwark_breaker_state{state="open"}'
	}
	answers_1() {
		query | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
sys.exit(0 if any(s["value"][1] == "1" for s in r) else 1)'
	}
	wait_until 60 answers_1 || {
		query >&2
		return 1
	}
	# the series is the destination curl tried, in this test's state
	query | python3 -c '
import json, sys
r = [s for s in json.load(sys.stdin)["data"]["result"] if s["value"][1] == "1"]
m = r[0]["metric"]
assert m["destination"] == "127.0.0.1:" + sys.argv[1], m
assert m["state_name"] == sys.argv[2] and m["job"] == "bulwark", m' "$REFUSED" "$BULWARK_STATE"
}

@test "prometheus: contrib/prometheus/bulwark-rules.yml passes promtool check rules and its unit tests" {
	require_cmd promtool
	cd "$BW_ROOT/contrib/prometheus"
	run promtool check rules bulwark-rules.yml
	[ "$status" -eq 0 ]
	[[ $output == *"SUCCESS: 5 rules found"* ]]
	run promtool test rules bulwark-rules.test.yml
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *SUCCESS* ]]
}

@test "systemd: the drop-in preloads the shim bulwark run would, with the policy file, state and log file" {
	echo '127.0.0.1 breaker.failures=3' >"$BW_TMP/api.policy"
	run "$BW_CLI" systemd nginx --policy-file "$BW_TMP/api.policy" --state web
	[ "$status" -eq 0 ]
	[[ $output == *"# /etc/systemd/system/nginx.service.d/bulwark.conf"* ]]
	[[ $output == *$'\n[Service]\n'* ]]
	[[ $output == *"Environment=\"LD_PRELOAD=$(realpath "$BW_LIB")\""* ]]
	[[ $output == *"Environment=\"BULWARK_POLICY_FILE=$BW_TMP/api.policy\""* ]]
	[[ $output == *'Environment="BULWARK_STATE=web"'* ]]
	[[ $output == *"journalctl -u nginx"* ]]
	[[ $output != *BULWARK_LOG_FILE* ]]
	run "$BW_CLI" systemd nginx.service --log-file /var/log/bulwark/nginx.log --log info
	[ "$status" -eq 0 ]
	[[ $output == *'Environment="BULWARK_LOG_FILE=/var/log/bulwark/nginx.log"'* ]]
	[[ $output == *'Environment="BULWARK_LOG=info"'* ]]
	[[ $output == *"nginx.service.d/bulwark.conf"* ]]
	# an invalid policy file is refused as bulwark check would
	echo '127.0.0.1 breaker.failurs=3' >"$BW_TMP/bad.policy"
	run "$BW_CLI" systemd nginx --policy-file "$BW_TMP/bad.policy"
	[ "$status" -eq 2 ]
	[[ $output == *"breaker.failurs"* ]]
	run "$BW_CLI" systemd nginx --policy-file relative.policy
	[ "$status" -eq 2 ]
	run "$BW_CLI" systemd 'bad name'
	[ "$status" -eq 2 ]
	run "$BW_CLI" systemd
	[ "$status" -eq 2 ]
	run "$BW_CLI" systemd nginx --log loud
	[ "$status" -eq 2 ]
}

@test "systemd: systemd-analyze verify accepts a unit with the drop-in" {
	require_cmd systemd-analyze
	echo '127.0.0.1 breaker.failures=3' >"$BW_TMP/demo.policy"
	unit=bwdemo-$$
	mkdir -p "$BW_TMP/units/$unit.service.d"
	cat >"$BW_TMP/units/$unit.service" <<EOF
[Unit]
Description=bulwark drop-in test

[Service]
ExecStart=$(command -v curl) -s http://127.0.0.1:9/
EOF
	"$BW_CLI" systemd "$unit" --policy-file "$BW_TMP/demo.policy" --state demo \
		>"$BW_TMP/units/$unit.service.d/bulwark.conf"
	# a probe: does systemd-analyze run at all in this container?
	if ! SYSTEMD_LOG_LEVEL=err systemd-analyze --help >/dev/null 2>&1; then
		skip "systemd-analyze does not run here"
	fi
	cd "$BW_TMP/units"
	run env SYSTEMD_UNIT_PATH="$BW_TMP/units:" systemd-analyze verify --man=no "$BW_TMP/units/$unit.service"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output != *bulwark.conf* ]]
	# and it does read the drop-in: a misspelt key there is reported
	echo 'Environmnt=X=1' >>"$BW_TMP/units/$unit.service.d/bulwark.conf"
	run env SYSTEMD_UNIT_PATH="$BW_TMP/units:" systemd-analyze verify --man=no "$BW_TMP/units/$unit.service"
	echo "$output"
	[[ $output == *"bulwark.conf"*"Environmnt"* ]]
}

@test "serve: a state whose segment is unusable is 503 with the reason; /healthz stays 200" {
	OTHER_STATE=$BULWARK_STATE-bad
	# a segment of the wrong size: never trusted
	echo garbage >"$(bw_state_file "$OTHER_STATE")"
	chmod 600 "$(bw_state_file "$OTHER_STATE")"
	start_serve --state "$BULWARK_STATE" --state "$OTHER_STATE"
	run curl -s -i "$URL/metrics"
	[[ $output == "HTTP/1.1 503 Service Unavailable"* ]]
	[[ $output == *"$OTHER_STATE"*unusable* ]]
	[ "$(code "$URL/status")" = 503 ]
	[ "$(code "$URL/status?state=$BULWARK_STATE")" = 200 ]
	[ "$(code "$URL/healthz")" = 200 ]
	# said once on standard error, not at every request
	[ "$(grep -c unusable "$SERVE_ERR")" = 1 ]
}
