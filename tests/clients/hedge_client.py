# SPDX-License-Identifier: MIT
# tests/clients/hedge_client.py NAME PORT: a legacy blocking client for
# tests/bats/hedge.bats.  Connects to NAME the way most programs do (as
# socket.create_connection: getaddrinfo, then each address in turn,
# blocking), setting a few options before each connect; sends one HTTP
# request and prints one JSON line: how long the connect took, the peer,
# the answer's status line, and what the program sees of its socket
# afterwards (options, blocking mode, FD_CLOEXEC), so that a hedge that
# won is seen to be invisible.
import errno
import fcntl
import json
import socket
import sys
import time

name, port = sys.argv[1], int(sys.argv[2])
out = {}
t0 = time.monotonic()
s = None
err = None
for fam, typ, proto, _, addr in socket.getaddrinfo(
        name, port, socket.AF_INET, socket.SOCK_STREAM):
    s = socket.socket(fam, typ, proto)  # CLOEXEC, blocking
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    out["tries"] = out.get("tries", 0) + 1
    try:
        s.connect(addr)
        break
    except OSError as e:
        err = e
        s.close()
        s = None
if s is None:
    out["error"] = errno.errorcode.get(err.errno, str(err.errno))
    out["connect_ms"] = int((time.monotonic() - t0) * 1000)
    print(json.dumps(out))
    sys.exit(0)
out["connect_ms"] = int((time.monotonic() - t0) * 1000)
out["peer"] = s.getpeername()[0]
out["blocking"] = s.getblocking()
out["cloexec"] = bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
out["nodelay"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
out["keepalive"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
out["keepidle"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
out["rcvbuf"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
out["status"] = s.recv(200).split(b"\r\n")[0].decode()
s.close()
print(json.dumps(out))
