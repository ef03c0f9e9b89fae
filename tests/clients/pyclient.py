#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/clients/pyclient.py: a small real client for the integration tests.
# Each mode exercises one way programs use TCP, so the tests can check what
# bulwark records for it.  Prints "ok" / an error name, exit 0 / 1.
#
#   pyclient.py threads PORT THREADS EXCHANGES   echo ping-pong per thread
#   pyclient.py exchange PORT [N]                N request/response exchanges
#   pyclient.py connect PORT                     blocking connect, then close
#   pyclient.py nbconnect PORT                   non-blocking connect, select,
#                                                getsockopt(SO_ERROR), close
#   pyclient.py nbabandon PORT                   non-blocking connect closed
#                                                before it completes
#   pyclient.py dupsplit PORT                    write on one fd, read the
#                                                answer on a dup of it
#   pyclient.py forkchild PORT                   the child of a fork does the
#                                                exchange on the parent's socket
#   pyclient.py name HOST PORT                   connect by name (getaddrinfo)
#   pyclient.py alternate PORT PORT2 N           N rounds: one exchange on a
#                                                new connection to each port
import errno
import os
import select
import socket
import sys
import threading


def die(e):
    print(errno.errorcode.get(e.errno, str(e)) if getattr(e, "errno", None) else str(e))
    sys.exit(1)


def connect(port, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=10)
    return s


def exchange(s, n=1):
    for _ in range(n):
        s.sendall(b"ping\n")
        data = s.recv(64)
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, "peer closed")


def main():
    mode, port = sys.argv[1], int(sys.argv[2]) if sys.argv[1] != "name" else 0
    try:
        if mode == "threads":
            nthreads, n = int(sys.argv[3]), int(sys.argv[4])
            errors = []

            def worker():
                try:
                    s = connect(port)
                    exchange(s, n)
                    s.close()
                except OSError as e:
                    errors.append(e)

            ts = [threading.Thread(target=worker) for _ in range(nthreads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if errors:
                die(errors[0])
        elif mode == "exchange":
            s = connect(port)
            exchange(s, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
            s.close()
        elif mode == "alternate":
            for _ in range(int(sys.argv[4])):
                for p in (port, int(sys.argv[3])):
                    s = connect(p)
                    exchange(s)
                    s.close()
        elif mode == "connect":
            s = socket.socket()
            s.connect(("127.0.0.1", port))
            s.close()
        elif mode in ("nbconnect", "nbabandon"):
            s = socket.socket()
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", port))
            if rc != errno.EINPROGRESS:
                die(OSError(rc, "connect"))
            if mode == "nbabandon":
                s.close()
            else:
                select.select([], [s], [], 10)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                s.close()
                if err:
                    die(OSError(err, "connect"))
        elif mode == "dupsplit":
            s = connect(port)
            w = os.dup(s.fileno())
            os.write(w, b"ping\n")
            os.close(w)
            if not s.recv(64):
                die(OSError(errno.ECONNRESET, "eof"))
            s.close()
        elif mode == "forkchild":
            s = connect(port)
            pid = os.fork()
            if pid == 0:
                try:
                    exchange(s)
                    os._exit(0)
                except OSError:
                    os._exit(1)
            s.close()
            _, status = os.waitpid(pid, 0)
            if status != 0:
                die(OSError(errno.EIO, "child failed"))
        elif mode == "name":
            s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10)
            exchange(s)
            s.close()
        else:
            print("unknown mode", mode)
            sys.exit(2)
    except OSError as e:
        die(e)
    print("ok")


main()
