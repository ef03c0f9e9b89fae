#!/usr/bin/env bash
# tests/demo/demo.sh: `make demo`.  A real client (curl) against the
# project's fault server, run twice side by side: once plain, once under
# bulwark.  Everything stays on 127.0.0.1 and stops when the demo ends.
#
#   1. Circuit breaker: the server goes down (each request hangs 500 ms and
#      then gets an empty reply), then comes back.  Plain curl pays the full
#      500 ms every time; under bulwark the breaker opens after 3 failures,
#      the next requests fail in well under a millisecond without touching
#      the server, and after breaker.open one probe finds it healthy again.
#   2. Bulkhead: a worker pool (8 threads, blocking sockets) serves jobs for
#      a slow destination and a healthy one.  Plain, the slow one takes all
#      the workers and healthy jobs queue behind it; with bulkhead.max=2 on
#      the slow destination, the healthy jobs keep their speed.
#   3. Retries: the server restarts (refuses for 600 ms).  Plain curl fails
#      with "Connection refused"; under bulwark it retries with backoff and
#      gets its answer.
#   4. No policy: observe only.  The same restarting server, curl under the
#      shim with no policy at all: it fails exactly as plain curl does (one
#      attempt, no delay, nothing printed), and `bulwark status` shows the
#      destination, its rule '(observed)', and the call it counted.
set -u
cd "$(dirname "$0")/../.."
B=${BW_BUILD:-build}
LIB=$PWD/$B/libbulwark.so
CLI=$PWD/$B/bulwark
FAULTSRV=$PWD/$B/fixtures/faultsrv
TMP=$(mktemp -d)
STATE=demo-$$
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMP" "/dev/shm/bulwark-$(id -u)-$STATE"
}
trap cleanup EXIT INT TERM

for f in "$LIB" "$CLI" "$FAULTSRV"; do
	[ -e "$f" ] || { echo "demo: $f is missing: run make first" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "demo: curl is needed (make deps)" >&2; exit 1; }

bold=$(tput bold 2>/dev/null || true) off=$(tput sgr0 2>/dev/null || true)

# server MODE ARGS...: (re)start the fault server on $PORT.
server() {
	[ -n "${SRV:-}" ] && { kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null; }
	"$FAULTSRV" --listen "127.0.0.1:${PORT:-0}" --port-file "$TMP/port" \
		--stats "$TMP/stats" "$@" >/dev/null 2>&1 &
	SRV=$!
	PIDS+=("$SRV")
	for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.02; done
	PORT=$(cat "$TMP/port")
	rm -f "$TMP/port"
}

# request N [shim]: one curl run; prints a line with its outcome and time.
request() {
	local n=$1 pre=() t0 t1 out rc
	[ "${2:-}" = shim ] && pre=(env LD_PRELOAD="$LIB" BULWARK_STATE="$STATE"
		BULWARK_LOG=off
		BULWARK_POLICY="127.0.0.1:$PORT breaker.failures=3 breaker.open=2s")
	t0=$(date +%s%N)
	out=$("${pre[@]}" curl -sS --max-time 5 "http://127.0.0.1:$PORT/" 2>&1)
	rc=$?
	t1=$(date +%s%N)
	local ms=$(((t1 - t0) / 1000000))
	TOTAL_MS=$((TOTAL_MS + ms))
	if [ $rc -eq 0 ]; then
		printf '   request %2d  %-4s %5d ms  %s\n' "$n" ok "$ms" "$out"
	elif [ $rc -eq 7 ] && [ "${2:-}" = shim ]; then
		printf '   request %2d  %-4s %5d ms  %s\n' "$n" FAIL "$ms" \
			"refused at once by the open breaker (curl: \"after 0 ms\")"
	else
		printf '   request %2d  %-4s %5d ms  %s\n' "$n" FAIL "$ms" \
			"$(echo "$out" | sed 's/^curl: //' | head -c 60)"
	fi
}

accepted() { sed -n 's/.*accepted=\([0-9]*\).*/\1/p' "$TMP/stats"; }

run_story() {
	local mode=$1
	TOTAL_MS=0
	PORT=0 SRV=
	server --mode close --stall 500
	echo "   -- the server is down: it hangs 500 ms, then closes without answering"
	for i in 1 2 3 4 5 6 7 8; do request "$i" "$mode"; done
	local down_seen
	down_seen=$(accepted)
	echo "   -- the server is back"
	server --mode http --body "hello from the server"
	sleep 2.1
	for i in 9 10 11; do request "$i" "$mode"; done
	echo "   ${bold}total: $TOTAL_MS ms; connections the failing server had to handle: $down_seen${off}"
}

echo
echo "${bold}bulwark demo 1: circuit breaker${off} (curl, 127.0.0.1, fault server)"
echo "(times include starting curl, about 10-30 ms a run)"
echo
echo "${bold}A. plain curl${off}"
run_story plain
echo
echo "${bold}B. the same curl under bulwark${off}:"
echo "   BULWARK_POLICY='127.0.0.1:PORT breaker.failures=3 breaker.open=2s'"
run_story shim
echo
echo "   what bulwark learnt (bulwark status --state $STATE):"
"$CLI" status --state "$STATE" | sed 's/^/   /'
echo
echo "Under bulwark the failing server saw 3 connections instead of 8, the"
echo "client failed fast while it was down, and recovered by itself."

# ---- 2. bulkhead -----------------------------------------------------------
PY=$(command -v python3)
POOL='
import socket, sys, threading, time, queue
slow, fast = int(sys.argv[1]), int(sys.argv[2])
jobs = queue.Queue()
lat = {slow: [], fast: []}
fails = {slow: 0, fast: 0}
def producer():   # a job every 20 ms, alternating destinations
    for i in range(60):
        jobs.put((slow if i % 2 == 0 else fast, time.monotonic()))
        time.sleep(0.02)
    for _ in range(8):
        jobs.put(None)
def worker():
    while True:
        job = jobs.get()
        if job is None: return
        port, arrived = job
        try:
            s = socket.socket(); s.connect(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            while s.recv(4096): pass
            s.close()
            lat[port].append(time.monotonic() - arrived)
        except OSError:
            fails[port] += 1
t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(8)]
ts.append(threading.Thread(target=producer))
[t.start() for t in ts]; [t.join() for t in ts]
f = sorted(lat[fast])
print("   healthy jobs: %d done, median %5.0f ms, slowest %5.0f ms (from arrival)" %
      (len(f), 1000 * f[len(f) // 2], 1000 * f[-1]))
print("   slow jobs:    %d done, %d refused at once by the bulkhead" %
      (len(lat[slow]), fails[slow]))
print("   all 60 jobs finished in %.1f s" % (time.monotonic() - t0))
'
pool() {
	local pre=()
	[ "$1" = shim ] && pre=(env LD_PRELOAD="$LIB" BULWARK_STATE="$STATE"
		BULWARK_LOG=off
		BULWARK_POLICY="127.0.0.1:$SLOW bulkhead.max=2 bulkhead.wait=0")
	"${pre[@]}" "$PY" -c "$POOL" "$SLOW" "$FAST"
}
PORT=0 SRV=
server --mode stall --stall 1000 --http
SLOW=$PORT SLOW_SRV=$SRV
PORT=0 SRV=
server --mode http --body "fast"
FAST=$PORT
echo
echo "${bold}bulwark demo 2: bulkhead${off} (a pool of 8 workers gets a job every"
echo "20 ms; half go to a destination that takes 1 s, half to a healthy one)"
echo
echo "${bold}A. plain${off}: the slow destination ties up every worker"
pool plain
echo
echo "${bold}B. under bulwark${off}: BULWARK_POLICY='127.0.0.1:SLOW bulkhead.max=2 bulkhead.wait=0'"
pool shim
echo
echo "The bulkhead keeps the slow dependency to 2 workers; the healthy"
echo "destination keeps its speed (the refused slow jobs fail at once, as a"
echo "Resilience4j bulkhead would)."
kill "$SLOW_SRV" 2>/dev/null

# ---- 3. retries ------------------------------------------------------------
echo
echo "${bold}bulwark demo 3: reconnect retries${off} (the server restarts: it refuses"
echo "connections for 600 ms, then answers)"
restart_and_get() {
	local pre=() t0 t1 out rc
	[ "$1" = shim ] && pre=(env LD_PRELOAD="$LIB" BULWARK_STATE="$STATE-r"
		BULWARK_LOG=info BULWARK_POLICY="* retry.attempts=5 retry.backoff=100ms")
	PORT=0 SRV=
	server --mode http --refuse-for 600 --body "hello after the restart"
	t0=$(date +%s%N)
	out=$("${pre[@]}" curl -sS --max-time 5 "http://127.0.0.1:$PORT/" 2>&1)
	rc=$?
	t1=$(date +%s%N)
	printf '   curl exit %d after %d ms: %s\n' "$rc" $(((t1 - t0) / 1000000)) \
		"$(echo "$out" | tr '\n' ' ' | sed 's/bulwark\[[0-9]*\]: //g' | head -c 150)"
	kill "$SRV" 2>/dev/null
}
echo
echo "${bold}A. plain curl${off}"
restart_and_get plain
echo
echo "${bold}B. curl under bulwark${off}: BULWARK_POLICY='* retry.attempts=5 retry.backoff=100ms'"
restart_and_get shim
rm -f "/dev/shm/bulwark-$(id -u)-$STATE-r"
echo

# ---- 4. no policy: observe only ------------------------------------------------
echo
echo "${bold}bulwark demo 4: no policy, observe only${off} (the same restart, curl under"
echo "bulwark with no BULWARK_POLICY: nothing is refused, retried, delayed or logged)"
observe_get() {
	local pre=() t0 t1 out rc
	[ "$1" = shim ] && pre=(env LD_PRELOAD="$LIB" BULWARK_STATE="$STATE-o")
	PORT=0 SRV=
	server --mode http --refuse-for 600 --body "hello after the restart"
	t0=$(date +%s%N)
	out=$("${pre[@]}" curl -sS --max-time 5 "http://127.0.0.1:$PORT/" 2>&1)
	rc=$?
	t1=$(date +%s%N)
	printf '   curl exit %d after %d ms: %s\n' "$rc" $(((t1 - t0) / 1000000)) \
		"$(echo "$out" | tr '\n' ' ' | head -c 150)"
	kill "$SRV" 2>/dev/null
}
echo
echo "${bold}A. plain curl${off}"
observe_get plain
echo
echo "${bold}B. curl under bulwark, no policy${off}: the same failure, and it was counted:"
observe_get shim
"$CLI" status --state "$STATE-o" | cut -c1-80 | sed 's/^/   /'
rm -f "/dev/shm/bulwark-$(id -u)-$STATE-o"
echo
echo "(Add BULWARK_POLICY='*' for every default, as in demo 3.)"
