/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_fd.c: the interposed calls that close or duplicate fds: close,
 * close_range, closefrom, fclose, dup, dup2, dup3, fcntl, fcntl64.
 * Owns: those exported symbols.  Never: more than one load and one branch
 * for an untracked fd; holds no lock across the real call (doc/design.md H14).
 * The table is updated before the real close so a concurrent socket() that
 * reuses the number cannot be clobbered; so a call that will fail (dup2
 * from a bad fd, dup3 onto itself, close_range with lo > hi or unknown
 * flags) must be recognised before it is made, and then forgets nothing.
 * In a vfork child every fd reads as untracked (fd_table.h): each hook
 * is then plain libc.  AS-safe: yes (close, dup*, fcntl are called from
 * signal handlers); fclose is not AS-safe in libc either.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "shim/closing.h"
#include "shim/fd_table.h"
#include "shim/internal.h"
#include "shim/real.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* close(2).  AS-safe: yes. */
BW_EXPORT int close(int fd)
{
	if (BW_UNLIKELY(bw_fd_conn(fd) != NULL))
		bw_conn_forget(fd);
	return bw_real.close(fd);
}

/* Forgets tracked fds in [lo, hi]; the scan stops at the highest fd ever
 * tracked, so closing "everything" costs nothing when nothing is ours. */
static void forget_range(unsigned lo, unsigned hi)
{
	unsigned top = (unsigned)bw_fd_high();
	/* A vfork child closes everything before its exec (Python's
	 * subprocess) in our memory: nothing reads as tracked there
	 * (fd_table.h), so the parent's table is left alone. */
	for (unsigned fd = lo; fd <= hi && fd < top; fd++)
		if (bw_fd_conn((int)fd))
			bw_conn_forget((int)fd);
}

/* Whether the kernel has close_range (Linux 5.9): asked once, with a
 * range that holds no fd, the first time a range holds a tracked fd.
 * 0: not known yet, 1: yes, -1: no (ENOSYS: the call closes nothing). */
static _Atomic int have_close_range;

static bool close_range_works(void)
{
	int h = atomic_load_explicit(&have_close_range, memory_order_relaxed);
	if (BW_UNLIKELY(h == 0)) {
		int e = errno;
		h = bw_real.close_range(~0u, ~0u, 0) == 0 || errno != ENOSYS
			    ? 1
			    : -1;
		errno = e;
		atomic_store_explicit(&have_close_range, h,
				      memory_order_relaxed);
	}
	return h > 0;
}

/* close_range(2): forgets only what the call will close: the range is
 * valid (lo <= hi), the flags are known and not CLOSE_RANGE_CLOEXEC (which
 * closes nothing now; exec does, and then we are gone).  AS-safe: yes. */
BW_EXPORT int close_range(unsigned int lo, unsigned int hi, int fl)
{
	if (lo <= hi && (unsigned)bw_fd_high() > lo &&
	    !((unsigned)fl & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) &&
	    !(fl & CLOSE_RANGE_CLOEXEC) && !bw_fd_borrowed() &&
	    close_range_works())
		forget_range(lo, hi);
	return bw_real.close_range(lo, hi, fl);
}

/* closefrom(3) closes from max(lo, 0) (glibc), and cannot fail (it
 * aborts the program instead).  AS-safe: yes. */
BW_EXPORT void closefrom(int lo)
{
	forget_range(lo > 0 ? (unsigned)lo : 0, ~0u);
	bw_real.closefrom(lo);
}

BW_EXPORT int fclose(FILE *f)
{
	int fd = f ? fileno(f) : -1;
	if (BW_UNLIKELY(bw_fd_conn(fd) != NULL))
		bw_conn_forget(fd);
	return bw_real.fclose(f);
}

/* dup(2), dup2(2), dup3(2): the new fd shares the connection (one open
 * file description); a tracked fd that dup2 closes is forgotten, before
 * the call (its settling may look at the socket behind it), and only if
 * the call will succeed: old is an open fd (else EBADF and nfd is left
 * open).  A thread that closes old meanwhile races its own dup2. */
static bool fd_open(int fd)
{
	int e = errno;
	bool ok = bw_real.fcntl(fd, F_GETFD) >= 0;
	errno = e;
	return ok;
}

BW_EXPORT int dup(int fd)
{
	int nfd = bw_real.dup(fd);
	if (nfd >= 0)
		bw_fd_dup(fd, nfd);
	return nfd;
}

BW_EXPORT int dup2(int old, int nfd)
{
	if (old != nfd && BW_UNLIKELY(bw_fd_conn(nfd) != NULL) && fd_open(old))
		bw_conn_forget(nfd);
	int rc = bw_real.dup2(old, nfd);
	if (rc >= 0 && old != nfd)
		bw_fd_dup(old, rc);
	return rc;
}

/* dup3 also refuses old == nfd and flags other than O_CLOEXEC (EINVAL). */
BW_EXPORT int dup3(int old, int nfd, int fl)
{
	if (old != nfd && BW_UNLIKELY(bw_fd_conn(nfd) != NULL) &&
	    !(fl & ~O_CLOEXEC) && fd_open(old))
		bw_conn_forget(nfd);
	int rc = bw_real.dup3(old, nfd, fl);
	if (rc >= 0)
		bw_fd_dup(old, rc);
	return rc;
}

/* fcntl(2): F_DUPFD and F_DUPFD_CLOEXEC duplicate.  Every command's third
 * argument is an int, a long or a pointer: passed through as a pointer, as
 * glibc does.  Defined twice: 21 binaries in Debian's /usr/bin import
 * fcntl64 (doc/design.md L2). */
static int after_fcntl(int fd, int cmd, int rc)
{
	if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		bw_fd_dup(fd, rc);
	return rc;
}

BW_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return after_fcntl(fd, cmd, bw_real.fcntl(fd, cmd, arg));
}

BW_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return after_fcntl(fd, cmd, bw_real.fcntl64(fd, cmd, arg));
}
