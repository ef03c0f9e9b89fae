/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_poll.c: poll(2) and ppoll(2), watched for one thing: a
 * non-blocking connect that failed (POLLERR/POLLHUP on a connecting
 * socket).  When retry.* allows, the failure is hidden from the program,
 * the connect is retried on the same fd after its backoff, and the poll
 * goes on (SPEC §3 retry.*, issue "non-blocking connects get retries").
 * The call never outlasts the program's timeout: a backoff longer than
 * what is left of it carries over to the next poll.
 * Owns: those exported symbols.  Never: touches a pollfd it does not
 * retry, or costs more than one pass over the results when none has an
 * error bit.  AS-safe: yes (poll is).
 */
#include <poll.h>
#include <signal.h>
#include <time.h>

#include "shim/connect.h"
#include "shim/fd_table.h"
#include "shim/hedge.h"
#include "shim/internal.h"
#include "shim/real.h"

/* Whether fds[i] reports a failed connect that may be retried. */
static struct bw_conn *failed_connect(const struct pollfd *p)
{
	if (!(p->revents & (POLLERR | POLLHUP)))
		return NULL;
	struct bw_conn *c = bw_fd_conn(p->fd);
	if (!c || atomic_load(&c->state) != BW_CONN_CONNECTING)
		return NULL;
	return c;
}

/* Retries the failed connects among fds' rc results; returns how many
 * results it hid.  A backoff sleeps until deadline_ns at most (the end of
 * the program's poll), and not at all when other results are ready: a
 * retry due later is made by a later poll (connect.c, retry_async). */
static int hide_retried(struct pollfd *fds, nfds_t n, int rc,
			uint64_t deadline_ns)
{
	int hidden = 0, failed = 0;
	for (nfds_t i = 0; i < n; i++)
		failed += failed_connect(&fds[i]) != NULL;
	if (failed == 0)
		return 0;
	if (rc > failed)
		deadline_ns = 0;
	for (nfds_t i = 0; i < n; i++) {
		struct bw_conn *c = failed_connect(&fds[i]);
		if (!c)
			continue;
		if (bw_connect_poll_failed(c, fds[i].fd, deadline_ns)) {
			fds[i].revents = 0;
			hidden++;
		}
	}
	return hidden;
}

/* Milliseconds left of a poll timeout that started at t0; -1 stays -1. */
static int left_ms(int timeout, uint64_t t0)
{
	if (timeout < 0)
		return -1;
	uint64_t spent = (bw_clock_ns() - t0) / 1000000;
	return spent >= (uint64_t)timeout ? 0 : timeout - (int)spent;
}

/* The real poll; while a non-blocking connect's hedge is armed or runs,
 * hedge.c's, which runs the race inside the same wait. */
static int real_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (BW_UNLIKELY(atomic_load_explicit(&bw_hedge_nb_live,
					     memory_order_relaxed))) {
		uint64_t dl = timeout < 0    ? UINT64_MAX
			      : timeout == 0 ? 0
					     : bw_clock_ns() +
						       (uint64_t)timeout * 1000000ull;
		return bw_hedge_nb_poll(fds, n, dl, NULL);
	}
	return bw_real.poll(fds, n, timeout);
}

static int real_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		      const sigset_t *mask)
{
	if (BW_UNLIKELY(atomic_load_explicit(&bw_hedge_nb_live,
					     memory_order_relaxed))) {
		uint64_t dl = UINT64_MAX;
		if (ts && ts->tv_sec >= 0 &&
		    (uint64_t)ts->tv_sec < 1000000000ull)
			dl = bw_clock_ns() +
			     (uint64_t)ts->tv_sec * 1000000000ull +
			     (uint64_t)ts->tv_nsec;
		if (ts && !ts->tv_sec && !ts->tv_nsec)
			dl = 0;
		return bw_hedge_nb_poll(fds, n, dl, mask);
	}
	return bw_real.ppoll(fds, n, ts, mask);
}

/* The program's timeout counts from its call, and covers the real polls
 * and the retries' backoff made inside: the start is read before the
 * first poll (only when a retry could need it: a positive timeout). */
BW_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	uint64_t t0 = timeout > 0 ? bw_clock_ns() : 0;
	uint64_t deadline = timeout < 0 ? UINT64_MAX
					: t0 + (uint64_t)timeout * 1000000ull;
	for (;;) {
		int rc = real_poll(fds, n, timeout);
		if (rc <= 0 || !atomic_load_explicit(&bw_g.ready,
						     memory_order_relaxed))
			return rc;
		int hidden = hide_retried(fds, n, rc, deadline);
		if (hidden == 0 || rc > hidden)
			return rc - hidden;
		timeout = left_ms(timeout, t0);
		if (timeout == 0)
			return 0;
	}
}

BW_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		    const sigset_t *mask)
{
	uint64_t deadline = UINT64_MAX;
	if (ts && (ts->tv_sec || ts->tv_nsec)) {
		uint64_t now = bw_clock_ns();
		if (ts->tv_sec >= 0 && (uint64_t)ts->tv_sec < 1000000000ull)
			deadline = now + (uint64_t)ts->tv_sec * 1000000000ull +
				   (uint64_t)ts->tv_nsec;
	} else if (ts) {
		deadline = 0;
	}
	struct timespec left;
	const struct timespec *cur = ts;
	for (;;) {
		int rc = real_ppoll(fds, n, cur, mask);
		if (rc <= 0 || !atomic_load_explicit(&bw_g.ready,
						     memory_order_relaxed))
			return rc;
		int hidden = hide_retried(fds, n, rc, deadline);
		if (hidden == 0 || rc > hidden)
			return rc - hidden;
		if (deadline != UINT64_MAX) {
			uint64_t now = bw_clock_ns();
			if (now >= deadline)
				return 0;
			left.tv_sec = (time_t)((deadline - now) / 1000000000ull);
			left.tv_nsec = (long)((deadline - now) % 1000000000ull);
			cur = &left;
		}
	}
}
