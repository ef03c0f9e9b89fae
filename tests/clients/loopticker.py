#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/clients/loopticker.py: an event loop that must never stall.

Runs a 5 ms ticker next to one or more non-blocking connects and prints
one line:  result=<ok|ConnectionRefusedError|...> elapsed_ms=N max_gap_ms=M
(max_gap_ms: the worst delay between two ticks, the loop's stall).

  loopticker.py asyncio HOST PORT [N]     asyncio (epoll), N connects
  loopticker.py selectors HOST PORT       selectors.DefaultSelector
  loopticker.py select HOST PORT          select.select
  loopticker.py poll HOST PORT            select.poll
"""
import asyncio
import errno
import os
import select
import selectors
import socket
import sys
import time


async def aio(host, port, n):
    gaps = [0.0]
    stop = False

    async def ticker():
        last = time.monotonic()
        while not stop:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps[0] = max(gaps[0], now - last)
            last = now

    t = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0.02)
    t0 = time.monotonic()

    async def one():
        try:
            r, w = await asyncio.open_connection(host, port)
            w.close()
            return "ok"
        except OSError as e:
            return type(e).__name__

    res = await asyncio.gather(*[one() for _ in range(n)])
    el = time.monotonic() - t0
    stop = True
    await t
    return ",".join(sorted(set(res))), el, gaps[0]


def raw(kind, host, port):
    """A non-blocking connect driven by kind's wait, 5 ms timeouts as the
    ticker: the worst gap between two returns is the stall."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    t0 = time.monotonic()
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    except OSError as e:
        return type(e).__name__, time.monotonic() - t0, 0.0
    gap, last = 0.0, time.monotonic()
    sel = None
    if kind == "selectors":
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_WRITE)
    elif kind == "poll":
        sel = select.poll()
        sel.register(s, select.POLLOUT)
    while True:
        if kind == "selectors":
            ready = bool(sel.select(0.005))
        elif kind == "poll":
            ready = bool(sel.poll(5))
        else:
            ready = bool(select.select([], [s], [], 0.005)[1])
        now = time.monotonic()
        gap, last = max(gap, now - last), now
        if ready:
            break
        if now - t0 > 30:
            return "stuck", now - t0, gap
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    # a shim that waited in getsockopt would stall the loop there
    gap = max(gap, time.monotonic() - last)
    el = time.monotonic() - t0
    s.close()
    if err == 0:
        return "ok", el, gap
    return {errno.ECONNREFUSED: "ConnectionRefusedError",
            errno.ETIMEDOUT: "TimeoutError"}.get(err, os.strerror(err)), el, gap


def main():
    kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "asyncio":
        n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
        res, el, gap = asyncio.run(aio(host, port, n))
    else:
        res, el, gap = raw(kind, host, port)
    print("result=%s elapsed_ms=%d max_gap_ms=%d" % (res, el * 1000, gap * 1000))


if __name__ == "__main__":
    main()
