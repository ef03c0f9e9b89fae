# SPDX-License-Identifier: MIT
# tests/clients/loop_client.py MODE HOST PORT [LIMIT_S]: a one-thread event
# loop written the classic way, for tests/bats/eventloop_clients.bats.
#
# MODE is the wait function the loop is built on: "selectors" (Python's
# DefaultSelector: epoll on Linux), "select" (select.select) or "poll"
# (select.poll).  The loop connects a non-blocking socket to HOST:PORT
# (connect -> EINPROGRESS, wait for writability, read SO_ERROR), sends one
# HTTP request and reads the answer to the end, all in the same loop, whose
# every wait is at most 5 ms: a "tick".  It prints one JSON line:
#   result       "ok" or the connect's errno name (ECONNREFUSED...)
#   connect_ms   from the connect call to its outcome
#   status       the answer's status line ("" if none)
#   ticks        loop iterations
#   worst_gap_ms the longest time between two ticks: with nothing stalling
#                the loop it is the 5 ms wait plus scheduling noise
#   worst_at_ms  when that gap ended (from the connect call)
# The loop gives up after LIMIT_S (default 10) seconds: result "limit".
import errno
import json
import select
import selectors
import socket
import sys
import time

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
limit = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
TICK = 0.005

s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setblocking(False)
fd = s.fileno()

if mode == "selectors":
    sel = selectors.DefaultSelector()

    def wait(want_write):
        ev = selectors.EVENT_WRITE if want_write else selectors.EVENT_READ
        try:
            sel.modify(s, ev)
        except KeyError:
            sel.register(s, ev)
        return [k.fd for k, _ in sel.select(TICK)]
elif mode == "select":
    def wait(want_write):
        r, w, x = select.select([] if want_write else [fd],
                                [fd] if want_write else [], [fd], TICK)
        return r + w + x
elif mode == "poll":
    p = select.poll()
    p.register(fd, select.POLLOUT)

    def wait(want_write):
        p.modify(fd, select.POLLOUT if want_write else select.POLLIN)
        return [f for f, _ in p.poll(TICK * 1000)]
else:
    sys.exit("unknown mode " + mode)

out = {"result": None, "connect_ms": None, "status": "", "ticks": 0}
worst = 0.0
t0 = time.monotonic()
err = s.connect_ex((host, port))
state = "connecting"
if err == 0:
    state = "send"
    out["result"] = "ok"
    out["connect_ms"] = int((time.monotonic() - t0) * 1000)
elif err not in (errno.EINPROGRESS, errno.EAGAIN):
    out["result"] = errno.errorcode.get(err, str(err))
    out["connect_ms"] = int((time.monotonic() - t0) * 1000)
    state = "done"
data = b""
# The connect call is part of the loop: a connect that sleeps stalls it.
last = t0
worst = worst_at = time.monotonic() - t0
while state != "done":
    ready = wait(state in ("connecting", "send"))
    now = time.monotonic()
    if now - last > worst:
        worst, worst_at = now - last, now - t0
    last = now
    out["ticks"] += 1
    if now - t0 > limit:
        out["result"] = out["result"] or "limit"
        break
    if fd not in ready:
        continue
    if state == "connecting":
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        out["connect_ms"] = int((time.monotonic() - t0) * 1000)
        if err:
            out["result"] = errno.errorcode.get(err, str(err))
            state = "done"
        else:
            out["result"] = "ok"
            state = "send"
    elif state == "send":
        s.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        state = "recv"
    else:
        try:
            b = s.recv(4096)
        except BlockingIOError:
            continue
        if not b:
            state = "done"
        data += b
# Up to the end: a final getsockopt or recv that sleeps stalls it too.
if time.monotonic() - last > worst:
    worst, worst_at = time.monotonic() - last, time.monotonic() - t0
out["status"] = data.split(b"\r\n")[0].decode(errors="replace")
out["worst_gap_ms"] = round(worst * 1000, 1)
out["worst_at_ms"] = int(worst_at * 1000)
s.close()
print(json.dumps(out))
