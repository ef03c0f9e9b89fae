/* SPDX-License-Identifier: MIT */
/*
 * core/sys.c: the default entries of bw_sys (core/sys.h): each one system
 * call, its result or -errno, errno as it was.  The calls the core made
 * through syscall(2) stay raw; the others are libc's thin wrappers, none
 * of them a name the shim exports (shim/libbulwark.map).
 * Owns: bw_sys, bw_sys_default.  Never: calls a libc function the shim
 * exports (it would be our own hook), allocates or locks.  Context: any
 * thread, signal handlers, before the constructor (AS-safe: yes).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
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

/* The same for a result that may not fit an int (a byte count). */
static long done_long(long rc, int saved)
{
	if (rc < 0)
		rc = -errno;
	errno = saved;
	return rc;
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

static ssize_t sys_read(int fd, void *buf, size_t n)
{
	int saved = errno;
	return done_long(syscall(SYS_read, fd, buf, n), saved);
}

static ssize_t sys_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	int saved = errno;
	return done_long(pwrite(fd, buf, n, off), saved);
}

static int sys_fstat(int fd, struct stat *sb)
{
	int saved = errno;
	return done(fstat(fd, sb), saved);
}

static int sys_fchmod(int fd, mode_t mode)
{
	int saved = errno;
	return done(fchmod(fd, mode), saved);
}

static int sys_ftruncate(int fd, off_t len)
{
	int saved = errno;
	return done(ftruncate(fd, len), saved);
}

/* glibc's posix_fallocate returns the error, but its fallback (a file
 * system without fallocate) may set errno on the way. */
static int sys_fallocate(int fd, off_t off, off_t len)
{
	int saved = errno;
	int rc = posix_fallocate(fd, off, len);
	errno = saved;
	return -rc;
}

static int sys_linkat(int odfd, const char *old, int ndfd, const char *new_,
		      int flags)
{
	int saved = errno;
	return done(linkat(odfd, old, ndfd, new_, flags), saved);
}

static int sys_unlinkat(int dfd, const char *path, int flags)
{
	int saved = errno;
	return done(unlinkat(dfd, path, flags), saved);
}

static ssize_t sys_readlinkat(int dfd, const char *path, char *buf, size_t cap)
{
	int saved = errno;
	return done_long(syscall(SYS_readlinkat, dfd, path, buf, cap), saved);
}

static ssize_t sys_getdents64(int fd, void *buf, size_t cap)
{
	int saved = errno;
	return done_long(syscall(SYS_getdents64, fd, buf, cap), saved);
}

static int sys_mmap(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off, void **out)
{
	int saved = errno;
	void *m = mmap(addr, len, prot, flags, fd, off);
	int rc = m == MAP_FAILED ? -errno : 0;

	errno = saved;
	if (rc == 0)
		*out = m;
	return rc;
}

static int sys_munmap(void *addr, size_t len)
{
	int saved = errno;
	return done(munmap(addr, len), saved);
}

static int sys_futex(uint32_t *word, int op, uint32_t val,
		     const struct timespec *ts, uint32_t mask)
{
	int saved = errno;
	return done(syscall(SYS_futex, word, op, val, ts, NULL, mask), saved);
}

static int sys_nanosleep(const struct timespec *req)
{
	int saved = errno;
	return done(nanosleep(req, NULL), saved);
}

static int sys_sched_yield(void)
{
	int saved = errno;
	return done(sched_yield(), saved);
}

#define BW_SYS_DEFAULTS                                                 \
	.openat = sys_openat, .close = sys_close, .fcntl = sys_fcntl,   \
	.kill = sys_kill, .sigaction = sys_sigaction, .read = sys_read, \
	.pwrite = sys_pwrite, .fstat = sys_fstat, .fchmod = sys_fchmod, \
	.ftruncate = sys_ftruncate, .fallocate = sys_fallocate,         \
	.linkat = sys_linkat, .unlinkat = sys_unlinkat,                 \
	.readlinkat = sys_readlinkat, .getdents64 = sys_getdents64,     \
	.mmap = sys_mmap, .munmap = sys_munmap, .futex = sys_futex,     \
	.nanosleep = sys_nanosleep, .sched_yield = sys_sched_yield

const struct bw_sys bw_sys_default = { BW_SYS_DEFAULTS };

struct bw_sys bw_sys = { BW_SYS_DEFAULTS };
