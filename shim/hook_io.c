/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_io.c: the interposed data calls: send, sendto, sendmsg,
 * sendmmsg, write, writev, sendfile, sendfile64; recv, recvfrom, recvmsg,
 * recvmmsg, read, readv and the fortified __read_chk, __recv_chk,
 * __recvfrom_chk.
 * Owns: those exported symbols.  Never: more than one load and one branch
 * before the real call for an untracked fd (doc/design.md L5), or anything but
 * libc's return value and errno for an allowed call.  AS-safe: yes.
 */
#include <sys/sendfile.h>
#include <unistd.h>

#include "shim/async.h"
#include "shim/connect.h"
#include "shim/exchange.h"
#include "shim/fd_table.h"
#include "shim/internal.h"
#include "shim/real.h"

/* A connect the shim works on (shim/async.c): its due work first; while
 * in backoff or queued, EAGAIN, as for a connect still in progress.  The
 * work may change errno: the program's is put back (hook boundary).
 * Returns 0 or -errno.  Out of line, as async_after: every tracked call
 * tests for them, only a connect in progress runs them, and each keeps
 * the program's errno with two reads of its address: inlined into some
 * twenty hooks they would lengthen each hot path by a cache line, which
 * a traced program pays on every call (bench/results: trace attached). */
static BW_NOINLINE __attribute__((cold)) int async_first(struct bw_conn *c,
							 int fd)
{
	int e = errno;
	int a = bw_async_io(c, fd);
	if (a < 0)
		return a;
	errno = e;
	return 0;
}

/* The call itself met the attempt's failure (it came between the check
 * above and the call): retried, the program sees EAGAIN; final, the
 * error, accounted once by shim/async.c.  Otherwise the call's own errno
 * is put back (hook boundary).  Returns 0 or -errno. */
static BW_NOINLINE __attribute__((cold)) int async_after(struct bw_conn *c)
{
	int e = errno;
	int a = bw_async_io_failed(c, e);
	if (a < 0)
		return a;
	errno = e;
	return 0;
}

#define ASYNC_FIRST(c, fd)                                                     \
	do {                                                                   \
		if (BW_UNLIKELY(atomic_load_explicit(&(c)->aphase,             \
						     memory_order_relaxed))) { \
			int a_ = async_first(c, fd);                           \
			if (a_ < 0)                                            \
				return bw_hook_fail(a_);                       \
		}                                                              \
	} while (0)

#define ASYNC_AFTER(c, rc)                                                     \
	do {                                                                   \
		if (BW_UNLIKELY((rc) < 0 &&                                    \
				atomic_load_explicit(&(c)->aphase,             \
						     memory_order_relaxed))) { \
			int a_ = async_after(c);                               \
			if (a_ < 0)                                            \
				return bw_hook_fail(a_);                       \
		}                                                              \
	} while (0)

/* The tracked paths, shared by every send-like and receive-like hook. */
#define SEND_TRACKED(c, fd, call)                                   \
	do {                                                        \
		ASYNC_FIRST(c, fd);                                 \
		if (BW_UNLIKELY((c)->pending_err))                  \
			return bw_hook_fail(bw_io_take_pending(c)); \
		uint64_t t0_ = bw_io_before_send(c);                \
		ssize_t rc_ = (call);                               \
		ASYNC_AFTER(c, rc_);                                \
		BW_KEEP_ERRNO(bw_io_sent(c, fd, rc_, errno, t0_));  \
		return rc_;                                         \
	} while (0)

#define RECV_TRACKED(c, fd, want, fl, call)                                 \
	do {                                                                \
		ASYNC_FIRST(c, fd);                                         \
		if (BW_UNLIKELY((c)->pending_err))                          \
			return bw_hook_fail(bw_io_take_pending(c));         \
		if (BW_UNLIKELY((c)->io_timeout)) {                         \
			int w_ = bw_io_wait(c, fd, fl);                     \
			if (w_ < 0)                                         \
				return bw_hook_fail(w_);                    \
		}                                                           \
		ssize_t rc_ = (call);                                       \
		ASYNC_AFTER(c, rc_);                                        \
		BW_KEEP_ERRNO(bw_io_received(c, fd, rc_, errno, want, fl)); \
		return rc_;                                                 \
	} while (0)

/* glibc's fortified entry points, which no public header declares. */
ssize_t __read_chk(int fd, void *b, size_t n, size_t cap);
ssize_t __recv_chk(int fd, void *b, size_t n, size_t cap, int fl);
ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t cap, int fl,
		       struct sockaddr *sa, socklen_t *len);

static size_t iov_len(const struct iovec *v, int n)
{
	size_t t = 0;
	for (int i = 0; v && i < n; i++)
		t += v[i].iov_len;
	return t;
}

BW_EXPORT ssize_t send(int fd, const void *b, size_t n, int fl)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.send(fd, b, n, fl);
	SEND_TRACKED(c, fd, bw_real.send(fd, b, n, fl));
}

BW_EXPORT ssize_t sendto(int fd, const void *b, size_t n, int fl,
			 const struct sockaddr *sa, socklen_t len)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.sendto(fd, b, n, fl, sa, len);
	if (BW_UNLIKELY(fl & MSG_FASTOPEN)) {
		int e = errno; /* hook boundary */
		int refused = bw_connect_fastopen(c, fd, sa, len);
		if (refused < 0)
			return bw_hook_fail(refused);
		errno = e;
	}
	SEND_TRACKED(c, fd, bw_real.sendto(fd, b, n, fl, sa, len));
}

BW_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int fl)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.sendmsg(fd, m, fl);
	if (BW_UNLIKELY(fl & MSG_FASTOPEN) && m) {
		int e = errno; /* hook boundary */
		int refused =
			bw_connect_fastopen(c, fd, m->msg_name, m->msg_namelen);
		if (refused < 0)
			return bw_hook_fail(refused);
		errno = e;
	}
	SEND_TRACKED(c, fd, bw_real.sendmsg(fd, m, fl));
}

BW_EXPORT int sendmmsg(int fd, struct mmsghdr *m, unsigned int n, int fl)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.sendmmsg(fd, m, n, fl);
	SEND_TRACKED(c, fd, bw_real.sendmmsg(fd, m, n, fl));
}

BW_EXPORT ssize_t write(int fd, const void *b, size_t n)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.write(fd, b, n);
	SEND_TRACKED(c, fd, bw_real.write(fd, b, n));
}

BW_EXPORT ssize_t writev(int fd, const struct iovec *v, int n)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.writev(fd, v, n);
	SEND_TRACKED(c, fd, bw_real.writev(fd, v, n));
}

BW_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	struct bw_conn *c = bw_fd_conn(out);
	if (BW_LIKELY(!c))
		return bw_real.sendfile(out, in, off, n);
	SEND_TRACKED(c, out, bw_real.sendfile(out, in, off, n));
}

BW_EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t n)
{
	struct bw_conn *c = bw_fd_conn(out);
	if (BW_LIKELY(!c))
		return bw_real.sendfile64(out, in, off, n);
	SEND_TRACKED(c, out, bw_real.sendfile64(out, in, off, n));
}

BW_EXPORT ssize_t recv(int fd, void *b, size_t n, int fl)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.recv(fd, b, n, fl);
	RECV_TRACKED(c, fd, n, fl, bw_real.recv(fd, b, n, fl));
}

BW_EXPORT ssize_t recvfrom(int fd, void *b, size_t n, int fl,
			   struct sockaddr *sa, socklen_t *len)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.recvfrom(fd, b, n, fl, sa, len);
	RECV_TRACKED(c, fd, n, fl, bw_real.recvfrom(fd, b, n, fl, sa, len));
}

BW_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int fl)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.recvmsg(fd, m, fl);
	size_t want = m ? iov_len(m->msg_iov, (int)m->msg_iovlen) : 0;
	RECV_TRACKED(c, fd, want, fl, bw_real.recvmsg(fd, m, fl));
}

BW_EXPORT int recvmmsg(int fd, struct mmsghdr *m, unsigned int n, int fl,
		       struct timespec *t)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.recvmmsg(fd, m, n, fl, t);
	RECV_TRACKED(c, fd, n, fl, bw_real.recvmmsg(fd, m, n, fl, t));
}

BW_EXPORT ssize_t read(int fd, void *b, size_t n)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.read(fd, b, n);
	RECV_TRACKED(c, fd, n, 0, bw_real.read(fd, b, n));
}

BW_EXPORT ssize_t readv(int fd, const struct iovec *v, int n)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.readv(fd, v, n);
	RECV_TRACKED(c, fd, iov_len(v, n), 0, bw_real.readv(fd, v, n));
}

BW_EXPORT ssize_t __read_chk(int fd, void *b, size_t n, size_t cap)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.read_chk(fd, b, n, cap);
	RECV_TRACKED(c, fd, n, 0, bw_real.read_chk(fd, b, n, cap));
}

BW_EXPORT ssize_t __recv_chk(int fd, void *b, size_t n, size_t cap, int fl)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.recv_chk(fd, b, n, cap, fl);
	RECV_TRACKED(c, fd, n, fl, bw_real.recv_chk(fd, b, n, cap, fl));
}

BW_EXPORT ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t cap, int fl,
				 struct sockaddr *sa, socklen_t *len)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c))
		return bw_real.recvfrom_chk(fd, b, n, cap, fl, sa, len);
	RECV_TRACKED(c, fd, n, fl,
		     bw_real.recvfrom_chk(fd, b, n, cap, fl, sa, len));
}
