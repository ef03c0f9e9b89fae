/* SPDX-License-Identifier: MIT */
/*
 * core/sys.c: the default entries of bw_sys (core/sys.h): each one system
 * call, its result or -errno, errno as it was.
 * Owns: bw_sys, bw_sys_default.  Never: calls a libc function the shim
 * exports (it would be our own hook), allocates or locks.  Context: any
 * thread, signal handlers, before the constructor (AS-safe: yes).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/sys.h"

/* glibc's own entry point (what sigaction wraps): it fills in the
 * restorer the kernel needs; not exported by the shim. */
extern int __sigaction(int, const struct sigaction *, struct sigaction *);

/* A system call's raw result as result or -errno; errno put back. */
static int done(long rc, int saved)
{
	if (rc < 0)
		rc = -errno;
	errno = saved;
	return (int)rc;
}

static int sys_openat(int dfd, const char *path, int flags, mode_t mode)
{
	int saved = errno;
	return done(syscall(SYS_openat, dfd, path, flags, mode), saved);
}

static int sys_close(int fd)
{
	int saved = errno;
	return done(syscall(SYS_close, fd), saved);
}

static int sys_fcntl(int fd, int cmd, long arg)
{
	int saved = errno;
	return done(syscall(SYS_fcntl, fd, cmd, arg), saved);
}

static int sys_kill(pid_t pid, int sig)
{
	int saved = errno;
	return done(syscall(SYS_kill, pid, sig), saved);
}

static int sys_sigaction(int sig, const struct sigaction *act,
			 struct sigaction *old)
{
	int saved = errno;
	return done(__sigaction(sig, act, old), saved);
}

const struct bw_sys bw_sys_default = {
	.openat = sys_openat,
	.close = sys_close,
	.fcntl = sys_fcntl,
	.kill = sys_kill,
	.sigaction = sys_sigaction,
};

struct bw_sys bw_sys = {
	.openat = sys_openat,
	.close = sys_close,
	.fcntl = sys_fcntl,
	.kill = sys_kill,
	.sigaction = sys_sigaction,
};
