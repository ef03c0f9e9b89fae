/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_socket.c: the interposed calls that create fds or connect them:
 * socket, connect, accept, accept4, getsockopt, shutdown, socketpair, pipe,
 * pipe2, open, open64, openat, openat64.
 * Owns: those exported symbols.  Never: more than one load and one branch
 * for an fd bulwark does not track.  Every fd number handed out is fresh:
 * a stale entry for it is dropped (glibc closes fds without close(),
 * doc/design.md L4).  AS-safe: yes for all but open* (which are not AS-safe in
 * libc either).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>

#include "shim/async.h"
#include "shim/calls.h"
#include "shim/connect.h"
#include "shim/exchange.h"
#include "shim/fd_table.h"
#include "shim/internal.h"
#include "shim/real.h"

/* fd was handed out by the kernel: whatever we knew of that number is
 * stale.  Errno is kept. */
static inline void fresh(int fd)
{
	if (BW_UNLIKELY(bw_fd_conn(fd) != NULL)) {
		struct bw_conn *c = bw_fd_drop(fd);
		if (c) {
			if (atomic_load(&c->aphase))
				bw_async_cancel(c);
			bw_call_end(c); /* closed behind our back */
			bw_conn_free(c);
		}
	}
}

/* socket(2).  AS-safe: yes. */
BW_EXPORT int socket(int domain, int type, int proto)
{
	int fd = bw_real.socket(domain, type, proto);
	if (fd < 0)
		return fd;
	fresh(fd);
	if (bw_connect_tracks(domain, type, proto) &&
	    atomic_load_explicit(&bw_g.ready, memory_order_acquire) &&
	    bw_g.active)
		bw_fd_track(fd);
	return fd;
}

/* connect(2).  AS-safe: yes.  Allowed calls keep libc's rc and errno:
 * bw_connect's 0 or -errno is converted here, once, and a success leaves
 * the program's errno as it was (hook boundary: the one save). */
BW_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	if (BW_LIKELY(!bw_fd_conn(fd)) && sa && sa->sa_family != AF_INET &&
	    sa->sa_family != AF_INET6)
		return bw_real.connect(fd, sa, len); /* Unix, netlink... */
	int saved = errno;
	return bw_hook_ret(bw_connect(fd, sa, len), saved);
}

/* accept(2), accept4(2): inbound connections are not ours.  AS-safe. */
BW_EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	int nfd = bw_real.accept(fd, sa, len);
	if (nfd >= 0)
		fresh(nfd);
	return nfd;
}

BW_EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int fl)
{
	int nfd = bw_real.accept4(fd, sa, len, fl);
	if (nfd >= 0)
		fresh(nfd);
	return nfd;
}

/* getsockopt(2): the program's own SO_ERROR read tells a pending
 * connect's outcome (doc/design.md L6).  AS-safe: yes. */
BW_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int rc = bw_real.getsockopt(fd, level, name, val, len);
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return rc;
	if (rc == 0 && level == SOL_SOCKET && name == SO_ERROR && val && len &&
	    *len >= sizeof(int)) {
		int *v = val;
		if (c->pending_err) {
			*v = c->pending_err; /* owed: read or decided by us */
			c->pending_err = 0;
		} else if (BW_UNLIKELY(atomic_load(&c->aphase))) {
			/* a connect the shim works on: retried, not failed */
			BW_KEEP_ERRNO(bw_async_sockerr(c, fd, v));
		} else {
			BW_KEEP_ERRNO(bw_io_sockerr(c, fd, *v));
		}
	}
	return rc;
}

/* shutdown(2): once the program has shut down its sending side, the
 * peer's close is how a one-way protocol (nc -N, graphite plaintext,
 * syslog over TCP) ends its exchange, not a failure (exchange.c).  Marked
 * before the call, so a receive racing it in another thread already sees
 * the mark; taken back if the call fails.  AS-safe: yes. */
BW_EXPORT int shutdown(int fd, int how)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c) || (how != SHUT_WR && how != SHUT_RDWR))
		return bw_real.shutdown(fd, how);
	uint8_t was = c->wr_shut;
	c->wr_shut = 1;
	int rc = bw_real.shutdown(fd, how);
	if (rc < 0)
		c->wr_shut = was;
	return rc;
}

BW_EXPORT int socketpair(int d, int t, int p, int sv[2])
{
	int rc = bw_real.socketpair(d, t, p, sv);
	if (rc == 0) {
		fresh(sv[0]);
		fresh(sv[1]);
	}
	return rc;
}

BW_EXPORT int pipe(int fds[2])
{
	int rc = bw_real.pipe(fds);
	if (rc == 0) {
		fresh(fds[0]);
		fresh(fds[1]);
	}
	return rc;
}

BW_EXPORT int pipe2(int fds[2], int fl)
{
	int rc = bw_real.pipe2(fds, fl);
	if (rc == 0) {
		fresh(fds[0]);
		fresh(fds[1]);
	}
	return rc;
}

/* open(2) and friends take a mode only with O_CREAT or O_TMPFILE. */
BW_EXPORT int open(const char *path, int fl, ...)
{
	va_list ap;
	va_start(ap, fl);
	mode_t mode = bw_open_mode(fl, ap);
	va_end(ap);
	int fd = bw_real.open(path, fl, mode);
	if (fd >= 0)
		fresh(fd);
	return fd;
}

BW_EXPORT int open64(const char *path, int fl, ...)
{
	va_list ap;
	va_start(ap, fl);
	mode_t mode = bw_open_mode(fl, ap);
	va_end(ap);
	int fd = bw_real.open64(path, fl, mode);
	if (fd >= 0)
		fresh(fd);
	return fd;
}

BW_EXPORT int openat(int dfd, const char *path, int fl, ...)
{
	va_list ap;
	va_start(ap, fl);
	mode_t mode = bw_open_mode(fl, ap);
	va_end(ap);
	int fd = bw_real.openat(dfd, path, fl, mode);
	if (fd >= 0)
		fresh(fd);
	return fd;
}

BW_EXPORT int openat64(int dfd, const char *path, int fl, ...)
{
	va_list ap;
	va_start(ap, fl);
	mode_t mode = bw_open_mode(fl, ap);
	va_end(ap);
	int fd = bw_real.openat64(dfd, path, fl, mode);
	if (fd >= 0)
		fresh(fd);
	return fd;
}
