/* SPDX-License-Identifier: MIT */
/*
 * shim/connect.c: connect(2) on TCP sockets: binds the connection to its
 * destination and rule (shim/bind.c), makes the attempts and accounts for
 * them (bulwark-policy(7) CALLS).  It calls hedge.c for a hedged attempt
 * and async.c for the non-blocking work done in the program's waits; the
 * reset, peer address and retry decision both paths need are attempt.c's.
 * None of them calls back here (doc/design.md, Layers).
 * Owns: bw_connect.  Never: changes the socket's blocking mode, retries
 * after EINTR (the connect goes on in the kernel, doc/design.md L7), allocates.
 * Context: the connect hook (AS-safe: nothing locks).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/breaker.h"
#include "core/retry.h"
#include "shim/async.h"
#include "shim/attempt.h"
#include "shim/bind.h"
#include "shim/calls.h"
#include "shim/connect.h"
#include "shim/exchange.h"
#include "shim/fd_table.h"
#include "shim/hedge.h"
#include "shim/internal.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/usdt.h"
#include "shim/wait.h"

/* Whether fd is a TCP socket that was not created through our socket hook
 * (inherited across exec, made before we were loaded). */
static int is_stream(int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);
	return bw_real.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
	       type == SOCK_STREAM;
}

/* Waits until deadline_ns for fd's pending connect: 0 connected, -its
 * error (read from SO_ERROR: the program never sees this pending state, it
 * asked for a blocking connect or is asking us for the answer; the kernel
 * still holds the failed attempt), -ETIMEDOUT after aborting it (dissolve),
 * or, with stop_on_signal, -EINTR when a signal that would interrupt the
 * program's connect arrived (wait.c): the attempt goes on in the kernel,
 * as after an interrupted kernel connect.  Without stop_on_signal (the
 * program's own call cannot fail with EINTR) the wait goes on to the same
 * deadline. */
static int wait_connected(int fd, uint64_t deadline_ns, bool stop_on_signal)
{
	for (;;) {
		int n = bw_wait_fd(fd, POLLOUT, deadline_ns);
		if (n > 0) {
			int e = 0;
			socklen_t l = sizeof(e);
			if (bw_real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &e,
					       &l) < 0)
				return -errno;
			return -e;
		}
		if (n == 0)
			break;
		if (n != -EINTR || stop_on_signal)
			return n;
	}
	bw_attempt_dissolve(fd);
	return -ETIMEDOUT;
}

/*
 * A blocking connect bounded by timeout_ns (connect.timeout): the attempt
 * runs non-blocking under poll, and the socket's mode is put back before
 * returning, so the program never sees it change (doc/design.md L6).  Returns
 * 0 or -errno (-ETIMEDOUT past the deadline; -EINTR when a signal without
 * SA_RESTART arrives, as it ends a kernel connect; a signal with SA_RESTART
 * does not end it).  A failed
 * attempt is dissolved, so the socket is left as a failed blocking connect
 * leaves it: reconnectable, with no stale error for the next attempt.
 */
static int timed_connect(int fd, const struct sockaddr *sa, socklen_t len,
			 uint64_t timeout_ns)
{
	int fl = bw_real.fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK) ||
	    bw_real.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return bw_sysret(bw_real.connect(fd, sa, len));
	int rc = bw_sysret(bw_real.connect(fd, sa, len));
	if (rc == -EINPROGRESS) {
		rc = wait_connected(fd, bw_clock_ns() + timeout_ns, true);
		if (rc < 0 && rc != -ETIMEDOUT && rc != -EINTR)
			bw_attempt_dissolve(fd); /* SO_ERROR still held it */
	}
	bw_real.fcntl(fd, F_SETFL, fl);
	return rc;
}

/*
 * Sleeps (until until_ns) the backoff before the next attempt of c on fd
 * (a blocking connect: the program asked to wait).  Returns 0 to go
 * on, -EINTR when a signal that would interrupt the program's connect
 * arrived (one with SA_RESTART, or ignored, does not end the sleep: wait.c),
 * or -EBADF when fd was closed meanwhile by another thread: the attempt
 * is then never made, as a connect on a closed fd fails.  c stays ours
 * while it sleeps (an extra reference: fd_table.c I3), so neither a close
 * nor a new socket that reuses the number takes it over, and the thread
 * that drops the last reference settles it: here, if the close came
 * first.
 */
static int backoff(struct bw_conn *c, int fd, uint64_t until_ns)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_acq_rel);
	int r = bw_wait_sleep(until_ns);
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
		/* Every fd of it closed while we slept. */
		bw_call_release(c);
		bw_conn_free(c);
		return -EBADF;
	}
	if (bw_fd_conn(fd) != c)
		return -EBADF; /* closed, the number reused or not */
	return r;
}

/* Whether fd is non-blocking (asked only on the failure path). */
static bool nonblocking(int fd)
{
	int fl = bw_real.fcntl(fd, F_GETFL);
	return fl >= 0 && (fl & O_NONBLOCK);
}

/*
 * The attempts of one program connect on a FRESH socket: each admitted by
 * the breaker, bounded by connect.timeout (growing with
 * connect.timeout_growth), and accounted as a call; a blocking connect
 * that fails in a retry.on class is tried again on the same fd after the
 * backoff (a failed blocking connect leaves the socket reconnectable, and
 * a timed-out one was aborted: doc/design.md L7).  A non-blocking connect never
 * waits here: one the bulkhead queues, one in progress (EINPROGRESS) and
 * one that failed at once and is retried are handed to shim/async.c,
 * whose work happens in the program's own waits; the program sees
 * EINPROGRESS.  Returns 0 connected, or -errno.
 */
static int attempts(struct bw_conn *c, int fd, const struct sockaddr *sa,
		    socklen_t len)
{
	const struct bw_settings *s = bw_settings_for(c->rule);
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	int rc;

	uint64_t now = bw_clock_ns();
	if (d)
		bw_retry_note_connect(d, now);
	for (unsigned n = 1;; n++) {
		c->attempt = n;
		c->t0_ns = n == 1 ? now : bw_clock_ns();
		int refused = bw_call_admit(c, fd, true, c->t0_ns);
		if (refused == BW_CALL_QUEUED) {
			/* A non-blocking connect queued by the bulkhead: it
			 * starts when a slot frees (shim/async.c). */
			bw_attempt_remember_peer(c, sa);
			bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_FRESH),
					  BW_CONN_CONNECTING);
			if (bw_async_enter(c, fd, BW_ASYNC_QUEUED, c->t0_ns) ==
			    0)
				return -EINPROGRESS;
			bw_call_leave_queue(c);
			bw_call_release(c);
			bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_CONNECTING),
					  BW_CONN_FRESH);
			return -s->bulkhead_errno;
		}
		if (refused == -EINTR) {
			/* A signal ended the bulkhead wait: the program sees
			 * EINTR, and learns the outcome the way it learns an
			 * interrupted connect's (SO_ERROR, the next connect,
			 * send or receive): refused. */
			BW_INVARIANT(s->bulkhead_errno > 0 &&
					     s->bulkhead_errno < 256,
				     "pending_err");
			c->pending_err = (uint8_t)s->bulkhead_errno;
			return refused;
		}
		if (refused < 0)
			return refused; /* never on the network */
		uint64_t tmo = bw_retry_attempt_timeout_ns(s, n);
		rc = BW_UNLIKELY(s->hedge_delay_ns) /* hedge.c; 0: off */
			     ? bw_hedge_connect(c, fd, sa, len,
						s->hedge_delay_ns, tmo)
			     : BW_HEDGE_PASSED;
		bool nb_hedge = false;
		if (rc == BW_HEDGE_PASSED) {
			/* hedge.c: non-blocking, the race runs in the
			 * program's waits (the bind is checked before the
			 * connect binds the socket) */
			nb_hedge = BW_UNLIKELY(s->hedge_delay_ns) &&
				   bw_hedge_nb_check(c, fd, sa, len);
			rc = tmo ? timed_connect(fd, sa, len, tmo)
				 : bw_sysret(bw_real.connect(fd, sa, len));
		}
		if (rc == 0) { /* BW_HEDGE_CONNECTED, or connected unhedged */
			bw__connect_done(c, 0, bw_clock_ns());
			if (n > 1 && d)
				bw_retry_note_success(d);
			return 0;
		}
		int err = -rc;
		if (err == EINPROGRESS || err == EINTR) {
			/* Its outcome comes later; so may its retries and its
			 * connect.timeout (shim/async.c), which need the
			 * address. */
			bw_attempt_remember_peer(c, sa);
			bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_FRESH),
					  BW_CONN_CONNECTING);
			if (nb_hedge && err == EINPROGRESS)
				bw_hedge_nb_arm(c, fd, sa, len,
						c->t0_ns + s->hedge_delay_ns);
			if (err == EINPROGRESS && c->rule >= 0 &&
			    (s->retry_attempts > 1 || tmo))
				bw_async_enter(c, fd, BW_ASYNC_ATTEMPT,
					       tmo ? c->t0_ns + tmo : 0);
			break;
		}
		if (c->stale && bw_call_connect_failed(err)) {
			/* The previous async attempt's failure, counted. */
			c->stale = 0;
			bw_call_release(c);
			break;
		}
		if (!bw_call_connect_failed(err)) {
			bw_call_release(c); /* EACCES, EADDRNOTAVAIL: no call */
			break;
		}
		bw__connect_done(c, err, bw_clock_ns());
		uint64_t delay = 0;
		if (!bw_attempt_retry_after(c, n, err, &delay))
			break;
		if (nonblocking(fd)) {
			/* Retried in the program's waits, after the backoff:
			 * still in progress to the program. */
			bw_attempt_remember_peer(c, sa);
			bw_attempt_dissolve(fd);
			bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_FRESH),
					  BW_CONN_CONNECTING);
			if (bw_async_enter(c, fd, BW_ASYNC_BACKOFF,
					   bw_clock_ns() + delay) == 0) {
				rc = -EINPROGRESS;
				break;
			}
			bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_CONNECTING),
					  BW_CONN_FRESH);
			break; /* no room: the failure, as without retries */
		}
		int b = backoff(c, fd, bw_clock_ns() + delay);
		if (b < 0) {
			/* EINTR: as an interrupted connect, whose outcome the
			 * program reads later (SO_ERROR would say 0 on this
			 * unconnected socket): the last attempt's error. */
			if (b == -EINTR) {
				BW_INVARIANT(err > 0 && err < 256,
					     "pending_err");
				c->pending_err = (uint8_t)err;
			}
			rc = b; /* -EINTR, or -EBADF: closed meanwhile */
			break;
		}
	}
	return rc;
}

int bw_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct bw_conn *c = bw_fd_conn(fd);

	if (!atomic_load_explicit(&bw_g.ready, memory_order_acquire) ||
	    !bw_g.active || !sa || len < sizeof(sa_family_t))
		return bw_sysret(bw_real.connect(fd, sa, len));
	if (!c) {
		if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
		    !is_stream(fd) || !(c = bw_fd_track(fd)))
			return bw_sysret(bw_real.connect(fd, sa, len));
	}

	int st = atomic_load(&c->state);
	if (st == BW_CONN_IGNORED || st == BW_CONN_DEAD ||
	    st == BW_CONN_ESTABLISHED || st == BW_CONN_EPOLL)
		return bw_sysret(bw_real.connect(fd, sa, len));
	if (sa->sa_family == AF_UNSPEC) {
		/* Dissolves the association; the socket may connect again.
		 * A connect the shim was still working on ends here as if
		 * closed: neither a success nor a failure. */
		if (BW_UNLIKELY(atomic_load(&c->aphase))) {
			bw_async_cancel(c);
			bw_call_release(c);
		}
		int rc = bw_sysret(bw_real.connect(fd, sa, len));
		if (rc == 0)
			bw_conn_set_state(
				c,
				BW_CONN_BIT(BW_CONN_FRESH) |
					BW_CONN_BIT(BW_CONN_CONNECTING),
				BW_CONN_FRESH);
		return rc;
	}
	if (BW_UNLIKELY(atomic_load(&c->aphase))) {
		/* In progress to the program (HAProxy asks connect itself):
		 * EALREADY, then 0/EISCONN or the final error; once settled,
		 * the connect is made the usual way, from the top. */
		int rc = bw_async_connect(c, fd, sa, len);
		return rc == BW_ASYNC_SETTLED ? bw_connect(fd, sa, len) : rc;
	}
	if (st == BW_CONN_CONNECTING) {
		/* The program polls a pending connect with connect itself:
		 * EALREADY while pending, then 0/EISCONN or the error. */
		int rc = bw_sysret(bw_real.connect(fd, sa, len));
		int err = -rc;
		if (err != EALREADY && err != EINPROGRESS && err != EINTR)
			bw__connect_done(c, err == EISCONN ? 0 : err,
					 bw_clock_ns());
		return rc;
	}

	if (c->pending_err) {
		/* The failure bulwark read for the program in poll: report it
		 * as the kernel would have, and leave the socket
		 * reconnectable (the kernel's pending connect answers
		 * ECONNABORTED once, doc/design.md L7). */
		int e = c->pending_err;
		c->pending_err = 0;
		if (c->stale) /* the kernel's ECONNABORTED, swallowed */
			bw_real.connect(fd, sa, len);
		c->stale = 0;
		return -e;
	}
	/* FRESH: a new connect, perhaps to another address than the last. */
	if (bw_bind(c, sa, len) != 0) {
		bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_FRESH),
				  BW_CONN_IGNORED);
		return bw_sysret(bw_real.connect(fd, sa, len));
	}
	return attempts(c, fd, sa, len);
}

int bw_connect_fastopen(struct bw_conn *c, int fd, const struct sockaddr *sa,
			socklen_t len)
{
	if (!atomic_load_explicit(&bw_g.ready, memory_order_acquire) ||
	    !bw_g.active || !sa || len < sizeof(sa_family_t) ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    atomic_load(&c->state) != BW_CONN_FRESH)
		return 0;
	if (bw_bind(c, sa, len) != 0) {
		bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_FRESH),
				  BW_CONN_IGNORED);
		return 0;
	}
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	bw_attempt_remember_peer(c, sa);
	c->attempt = 1;
	c->t0_ns = bw_clock_ns();
	if (d)
		bw_retry_note_connect(d, c->t0_ns);
	int refused = bw_call_admit(c, fd, false, c->t0_ns);
	if (refused < 0)
		return refused; /* never reaches the network */
	/* The send settles it, or the program learns it later, as for any
	 * non-blocking connect (exchange.c). */
	bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_FRESH), BW_CONN_CONNECTING);
	return 0;
}
