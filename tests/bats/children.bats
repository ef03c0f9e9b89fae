#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/children.bats: children started without fork's handlers, and
# fd calls that fail.  A vfork child (Python's subprocess) runs on its
# parent's memory and must change nothing of the parent's tracking; a
# posix_spawn, system or popen child that inherits a connection keeps its
# bulkhead slot counted after the parent closes it, until the child is
# gone; a dup2, dup3 or close_range that fails leaves its target tracked.

load ../lib/common

PY=$(python3 -c 'import sys; print(sys.executable)')

setup() {
	bw_setup
	require_shim
	require_faultsrv
	unset BULWARK_POLICY BULWARK_POLICY_FILE BULWARK_DISABLE BULWARK_STRICT
	export BULWARK_LOG_FILE=$BW_TMP/bulwark.log
	# Holds every connection until the client closes it.
	start_faultsrv --mode stall
}

# The client: MODE PORT DIR.  Prints one line per step; a connect prints
# "connected" or its errno name.
CLIENT='
import ctypes, errno, os, signal, socket, subprocess, sys, time
mode, port, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)

def conn():
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        return s
    except OSError as e:
        s.close()
        return errno.errorcode[e.errno]

def state(r):
    if isinstance(r, str):
        return r
    r.close()
    return "connected"

def until_connects(limit_s):
    deadline = time.monotonic() + limit_s
    while True:
        r = state(conn())
        if r == "connected" or time.monotonic() > deadline:
            return r
        time.sleep(0.05)

def wait_file(path, limit_s=5):
    deadline = time.monotonic() + limit_s
    while not (os.path.exists(path) and open(path).read().strip()):
        if time.monotonic() > deadline:
            sys.exit("no " + path)
        time.sleep(0.02)
    return int(open(path).read())

def fails(rc):
    return "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]

if mode == "subprocess":
    a, b = conn(), conn()
    print("held", state(a) if isinstance(a, str) else "a", state(b) if isinstance(b, str) else "b")
    subprocess.run(["true"], check=True)
    print("third", state(conn()))
    a.close()
    print("after close", state(conn()))
    b.close()
elif mode in ("spawn", "spawn-dup2", "system", "popen"):
    s = conn()
    print("held", "s" if not isinstance(s, str) else s)
    if mode != "spawn-dup2":
        os.set_inheritable(s.fileno(), True)
    pidfile = os.path.join(tmp, "child.pid")
    # The child lives until killed: it reads a FIFO no one writes to, and
    # this process holds it open for writing, so the read ends (at the
    # latest) when this process does.
    fifo = os.path.join(tmp, "hold")
    os.mkfifo(fifo)
    hold = os.open(fifo, os.O_RDWR)
    child = "read x <" + fifo
    f = None
    if mode == "spawn":
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", child], os.environ)
    elif mode == "spawn-dup2":
        # The socket stays close-on-exec; a file action makes it
        # stdin in the child.
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", child], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, s.fileno(), 0)])
    elif mode == "system":
        os.system(child + " >/dev/null 2>&1 & echo $! >" + pidfile)
        pid = wait_file(pidfile)
    else:
        libc.popen.restype = ctypes.c_void_p
        libc.popen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.pclose.argtypes = [ctypes.c_void_p]
        f = libc.popen(("echo $$ >" + pidfile + "; " + child + " >/dev/null").encode(), b"r")
        pid = wait_file(pidfile)
    s.close()
    print("parent closed", state(conn()))
    os.kill(pid, signal.SIGKILL)
    if mode.startswith("spawn"):
        os.waitpid(pid, 0)
    if f:
        libc.pclose(f)
    os.close(hold)
    print("child gone", until_connects(5))
elif mode.startswith("badfd:"):
    s = conn()
    fd = s.fileno()
    op = mode[6:]
    rc = {"dup2": lambda: libc.dup2(999, fd),
          "dup3-self": lambda: libc.dup3(fd, fd, 0),
          "dup3-flags": lambda: libc.dup3(0, fd, 0x4000),
          "close_range-flags": lambda: libc.close_range(fd, fd, 0x4000),
          "close_range-lo>hi": lambda: libc.close_range(fd + 1, fd, 0)}[op]()
    print(op, fails(rc))
    print("still held", state(conn()))
    s.close()
    print("after close", state(conn()))
'

client() {
	run_shim "$PY" -c "$CLIENT" "$1" "$FS_PORT" "$BW_TMP"
}

# Python 3.11's subprocess starts its child with vfork (subprocess._USE_VFORK;
# strace -f shows vfork, then close_range(3, ...) in the child).
require_vfork_python() {
	"$PY" -c 'import subprocess, sys; sys.exit(not getattr(subprocess, "_USE_VFORK", False))' ||
		skip "$PY's subprocess does not use vfork"
}

@test "a vfork child (Python subprocess) does not free the parent's bulkhead slots" {
	require_vfork_python
	export BULWARK_POLICY='127.0.0.1 bulkhead.max=2 bulkhead.wait=0 retry.attempts=1'
	run client subprocess
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "held a b" ]
	[ "${lines[1]}" = "third ECONNREFUSED" ]
	[ "${lines[2]}" = "after close connected" ]
}

@test "io.timeout: a vfork child's dup2 of a connection onto stdin leaves the parent's stdin alone" {
	require_vfork_python
	export BULWARK_POLICY='127.0.0.1 io.timeout=50ms retry.attempts=1'
	local script='
import os, socket, subprocess, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
subprocess.run(["true"], stdin=s, check=True)
open(sys.argv[2], "w").close()
try:
    print("read", os.read(0, 100).decode().strip())
except OSError as e:
    print("read failed", e.errno)'
	# The data is written once the client sits in the read(2) system call
	# on fd 0 (/proc/PID/syscall: number 0, first argument 0x0).  A read(0)
	# the shim took for the connection would wait in ppoll instead and fail
	# with ETIMEDOUT after io.timeout, before any data.
	mkfifo "$BW_TMP/stdin"
	LD_PRELOAD="$BW_LIB" "$PY" -c "$script" "$FS_PORT" "$BW_TMP/ran" \
		<"$BW_TMP/stdin" >"$BW_TMP/out" 2>&1 &
	local pid=$!
	exec {w}>"$BW_TMP/stdin"
	in_read0() { [[ $(cat "/proc/$pid/syscall" 2>/dev/null) == "0 0x0 "* ]]; }
	wait_until 10 in_read0 || true
	echo hello >&$w
	exec {w}>&-
	wait "$pid"
	cat "$BW_TMP/out"
	[ "$(cat "$BW_TMP/out")" = "read hello" ]
}

# keeps_slot MODE: the children fixture holds a connection (bulkhead.max=1),
# starts a child by MODE that inherits it, closes its own fd: a connect is
# still refused while the child lives, and succeeds once it is gone.
keeps_slot() {
	export BULWARK_POLICY='127.0.0.1 bulkhead.max=1 bulkhead.wait=0 retry.attempts=1'
	run client "$1"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "held s" ]
	[ "${lines[1]}" = "parent closed ECONNREFUSED" ]
	[ "${lines[2]}" = "child gone connected" ]
}

@test "posix_spawn child inheriting a connection keeps its bulkhead slot until it exits" {
	keeps_slot spawn
}

@test "posix_spawn child given a close-on-exec connection by a dup2 file action keeps its slot until it exits" {
	keeps_slot spawn-dup2
}

@test "system() child inheriting a connection keeps its bulkhead slot until it exits" {
	keeps_slot system
}

@test "popen() child inheriting a connection keeps its bulkhead slot until it exits" {
	keeps_slot popen
}

# badfd OP ERRNO: OP fails with ERRNO and the connection still holds the
# only slot; its close gives the slot back.
badfd() {
	export BULWARK_POLICY='127.0.0.1 bulkhead.max=1 bulkhead.wait=0 retry.attempts=1'
	run client "badfd:$1"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$1 $2" ]
	[ "${lines[1]}" = "still held ECONNREFUSED" ]
	[ "${lines[2]}" = "after close connected" ]
}

@test "dup2 from a closed fd (EBADF) leaves its target tracked" {
	badfd dup2 EBADF
}

@test "dup3 onto itself (EINVAL) leaves the fd tracked" {
	badfd dup3-self EINVAL
}

@test "dup3 with unknown flags (EINVAL) leaves its target tracked" {
	badfd dup3-flags EINVAL
}

@test "close_range with unknown flags (EINVAL) leaves the range tracked" {
	badfd close_range-flags EINVAL
}

@test "close_range with lo > hi (EINVAL) leaves every fd tracked" {
	badfd 'close_range-lo>hi' EINVAL
}

@test "a C vfork child that closes and duplicates tracked fds, then _exits, changes nothing in the parent" {
	export BULWARK_POLICY='127.0.0.1 bulkhead.max=2 bulkhead.wait=0 retry.attempts=1'
	run run_shim "$BW_BUILD/fixtures/children" vfork "$FS_PORT"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "child 7 canary ok" ]
	[ "${lines[1]}" = "third ECONNREFUSED" ]
	[ "${lines[2]}" = "after close connected" ]
}

@test "a raw clone() child (no atfork handler) is still policed" {
	export BULWARK_POLICY='127.0.0.1 bulkhead.max=1 bulkhead.wait=0 retry.attempts=1'
	run run_shim "$BW_BUILD/fixtures/children" clone "$FS_PORT"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "clone child ECONNREFUSED" ]
	[ "${lines[1]}" = "after close connected" ]
}

@test "threads connecting and closing while others run subprocesses: no slot leaked or lost" {
	require_cli
	export BULWARK_POLICY='127.0.0.1 bulkhead.max=4 bulkhead.wait=5s retry.attempts=1'
	local script='
import socket, subprocess, sys, threading
port = int(sys.argv[1])
bad = []
def connects():
    for _ in range(200):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError as e:
            bad.append(e.errno)
        s.close()
def spawns():
    for _ in range(40):
        subprocess.run(["true"], check=True)
ts = [threading.Thread(target=f) for f in (connects, connects, spawns, spawns)]
for t in ts: t.start()
for t in ts: t.join()
print("failed", len(bad))'
	run run_shim "$PY" -c "$script" "$FS_PORT"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "failed 0" ]
	[ "$(bw_field 127.0.0.1:$FS_PORT bulkhead.active)" -eq 0 ]
	[ "$(bw_field 127.0.0.1:$FS_PORT bulkhead.acquired)" -eq 400 ]
}
