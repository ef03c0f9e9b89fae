#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/clients/syncount.py: counts the TCP SYNs sent to a port on the
# loopback interface, as the server's side of the wire sees them (refused
# connects never reach a listener, so the listener cannot count them).
# Needs CAP_NET_RAW.  Writes one line per SYN, CLOCK_REALTIME in ns, to
# OUT; prints "ready" once capturing; stops after SECONDS or on SIGTERM.
#
#   syncount.py PORT OUT SECONDS
import signal
import socket
import struct
import sys
import time

port, out, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.bind(("lo", 0))
s.settimeout(0.1)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
deadline = time.monotonic() + seconds
print("ready", flush=True)
with open(out, "a", buffering=1) as f:
    while time.monotonic() < deadline:
        try:
            frame, addr = s.recvfrom(256)
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 20:
            continue
        if struct.unpack("!H", frame[12:14])[0] != 0x0800:
            continue
        ip = frame[14:]
        if ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 0x0F) * 4:]
        dport = struct.unpack("!H", tcp[2:4])[0]
        flags = tcp[13]
        if dport == port and (flags & 0x12) == 0x02:
            f.write("%d\n" % time.time_ns())
