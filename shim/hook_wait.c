/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_wait.c: the program's waits, where the shim does the work of
 * its non-blocking connects (shim/async.c): poll, ppoll, __poll_chk,
 * __ppoll_chk, select, pselect, epoll_wait, epoll_pwait, epoll_pwait2;
 * and epoll_create, epoll_create1, epoll_ctl, which tell it the program's
 * epoll registrations.
 * Each wait: runs the due work (a due retry starts, a queued connect
 * looks at its bulkhead, an attempt past connect.timeout is aborted),
 * keeps sockets in backoff or queued out of the call, waits at most until
 * the next due work or the caller's own timeout (measured from the call's
 * start), and hides the results of attempts that failed and are retried.
 * It returns when something is left to report, a signal interrupts it
 * (EINTR, as the real call), or the caller's timeout is over: never
 * later than asked.
 * Owns: those exported symbols.  Never: more than one load and one
 * branch before the real call when no connect is in an async phase
 * (bw_async_pending), and one more after it when it reported something.
 * AS-safe: yes (poll and friends are).
 */
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

#include "shim/async.h"
#include "shim/fd_table.h"
#include "shim/hedge.h"
#include "shim/internal.h"
#include "shim/real.h"

#define NO_DEADLINE UINT64_MAX

/* ---- timeouts ---------------------------------------------------------- */

static uint64_t deadline_ms(int timeout, uint64_t now)
{
	return timeout < 0 ? NO_DEADLINE : now + (uint64_t)timeout * 1000000ull;
}

static uint64_t deadline_ts(const struct timespec *ts, uint64_t now)
{
	if (!ts)
		return NO_DEADLINE;
	if (ts->tv_sec < 0 || ts->tv_nsec < 0)
		return now; /* the real call reports EINVAL */
	if ((uint64_t)ts->tv_sec > 100000000ull)
		return NO_DEADLINE;
	return now + (uint64_t)ts->tv_sec * 1000000000ull +
	       (uint64_t)ts->tv_nsec;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Milliseconds from now to until, rounded up; -1 for none. */
static int ms_until(uint64_t until, uint64_t now)
{
	if (until == NO_DEADLINE)
		return -1;
	if (until <= now)
		return 0;
	uint64_t ms = (until - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* A timespec from now to until; NULL for none. */
static const struct timespec *ts_until(uint64_t until, uint64_t now,
				       struct timespec *ts)
{
	if (until == NO_DEADLINE)
		return NULL;
	uint64_t left = until > now ? until - now : 0;
	ts->tv_sec = (time_t)(left / 1000000000ull);
	ts->tv_nsec = (long)(left % 1000000000ull);
	return ts;
}

/* ---- poll, ppoll --------------------------------------------------------- */

/* At most this many pollfd entries are kept out of one call. */
#define HIDE_MAX 256

/* Results of async connections: a retried failure is hidden, a final one
 * reported with POLLERR.  Returns the count left. */
static int poll_filter(struct pollfd *fds, nfds_t n, int rc)
{
	for (nfds_t i = 0; i < n; i++) {
		if (!fds[i].revents || fds[i].fd < 0)
			continue;
		struct bw_conn *c = bw_fd_conn(fds[i].fd);
		if (BW_LIKELY(!c) ||
		    (!atomic_load_explicit(&c->aphase, memory_order_relaxed) &&
		     !c->pending_err))
			continue;
		short r = fds[i].revents;
		int v = bw_async_result(c, r & (POLLERR | POLLHUP),
					r & POLLOUT);
		if (v == BW_ASYNC_HIDE) {
			fds[i].revents = 0;
			rc--;
		} else if (v == BW_ASYNC_SHOW_ERR) {
			fds[i].revents |= POLLERR;
		}
	}
	return rc;
}

/* poll or ppoll (ts/mask) while async work is pending, until deadline. */
static int poll_loop(struct pollfd *fds, nfds_t n, uint64_t deadline, bool pp,
		     const sigset_t *mask)
{
	nfds_t hid[HIDE_MAX];
	/* Hook boundary: the pump, the filter and the hedge races may
	 * change errno; a result leaves the program's as it was. */
	int saved = errno;
	for (;;) {
		uint64_t now = bw_clock_ns();
		uint64_t until = min64(deadline, bw_async_pump(now));
		unsigned nh = 0;
		for (nfds_t i = 0; i < n && nh < HIDE_MAX; i++) {
			struct bw_conn *c = bw_fd_conn(fds[i].fd);
			if (BW_UNLIKELY(c != NULL) && bw_async_hidden(c)) {
				fds[i].fd = -1 - fds[i].fd;
				hid[nh++] = i;
			}
		}
		int rc;
		if (BW_UNLIKELY(atomic_load_explicit(&bw_hedge_nb_live,
						     memory_order_relaxed))) {
			/* hedge.c: the spares watched with fds until then */
			rc = bw_hedge_nb_poll(fds, n, until, pp ? mask : NULL);
		} else if (pp) {
			struct timespec ts;
			rc = bw_real.ppoll(fds, n, ts_until(until, now, &ts),
					   mask);
		} else {
			rc = bw_real.poll(fds, n, ms_until(until, now));
		}
		int e = errno;
		for (unsigned k = 0; k < nh; k++) {
			fds[hid[k]].fd = -1 - fds[hid[k]].fd;
			fds[hid[k]].revents = 0;
		}
		if (rc < 0) {
			errno = e; /* the call's own */
			return rc;
		}
		if (rc > 0)
			rc = poll_filter(fds, n, rc);
		errno = saved;
		if (rc > 0 ||
		    (deadline != NO_DEADLINE && bw_clock_ns() >= deadline))
			return rc;
	}
}

/* The bodies of poll and ppoll, shared with the fortified entry points
 * below: calling the exported names from here would go through our own
 * relocations (see core/sys.h). */
static inline __attribute__((always_inline)) int
poll_hook(struct pollfd *fds, nfds_t n, int timeout)
{
	if (BW_LIKELY(bw_async_idle())) {
		int rc = bw_real.poll(fds, n, timeout);
		if (BW_LIKELY(rc <= 0 || bw_async_idle()))
			return rc;
		/* A connect went async during the call (another thread). */
		int saved = errno; /* hook boundary: the filter may change it */
		rc = poll_filter(fds, n, rc);
		errno = saved;
		if (rc > 0 || timeout == 0)
			return rc;
	}
	return poll_loop(fds, n, deadline_ms(timeout, bw_clock_ns()), false,
			 NULL);
}

static inline __attribute__((always_inline)) int
ppoll_hook(struct pollfd *fds, nfds_t n, const struct timespec *ts,
	   const sigset_t *mask)
{
	if (BW_LIKELY(bw_async_idle())) {
		int rc = bw_real.ppoll(fds, n, ts, mask);
		if (BW_LIKELY(rc <= 0 || bw_async_idle()))
			return rc;
		int saved = errno; /* hook boundary: the filter may change it */
		rc = poll_filter(fds, n, rc);
		errno = saved;
		if (rc > 0 || (ts && !ts->tv_sec && !ts->tv_nsec))
			return rc;
	}
	return poll_loop(fds, n, deadline_ts(ts, bw_clock_ns()), true, mask);
}

BW_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return poll_hook(fds, n, timeout);
}

BW_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		    const sigset_t *mask)
{
	return ppoll_hook(fds, n, ts, mask);
}

/* The fortified entry points (HAProxy imports __poll_chk). */
extern void __chk_fail(void) __attribute__((noreturn));
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		const sigset_t *mask, size_t fdslen);

BW_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout,
			 size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return poll_hook(fds, n, timeout);
}

BW_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n,
			  const struct timespec *ts, const sigset_t *mask,
			  size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return ppoll_hook(fds, n, ts, mask);
}

/* ---- select, pselect ----------------------------------------------------- */

static void fds_copy(fd_set *to, const fd_set *from)
{
	if (to && from)
		memcpy(to, from, sizeof(*to));
}

/* Results of async connections in the output sets; returns the count
 * left.  select has no error bit: a final failure shows as the socket's
 * own readiness, and the program reads SO_ERROR. */
static int select_filter(int nfds, fd_set *r, fd_set *w, fd_set *e, int rc)
{
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
		bool in_r = r && FD_ISSET(fd, r), in_w = w && FD_ISSET(fd, w),
		     in_e = e && FD_ISSET(fd, e);
		if (!in_r && !in_w && !in_e)
			continue;
		struct bw_conn *c = bw_fd_conn(fd);
		if (BW_LIKELY(!c) ||
		    !atomic_load_explicit(&c->aphase, memory_order_relaxed))
			continue;
		if (bw_async_result(c, in_e, in_w || in_r) != BW_ASYNC_HIDE)
			continue;
		if (in_r)
			FD_CLR(fd, r), rc--;
		if (in_w)
			FD_CLR(fd, w), rc--;
		if (in_e)
			FD_CLR(fd, e), rc--;
	}
	return rc;
}

static int select_loop(int nfds, fd_set *r, fd_set *w, fd_set *e,
		       uint64_t deadline, bool ps, const sigset_t *mask)
{
	fd_set r0, w0, e0;
	/* Hook boundary: the pumps and the filter may change errno; a
	 * result leaves the program's as it was. */
	int saved = errno;
	fds_copy(&r0, r);
	fds_copy(&w0, w);
	fds_copy(&e0, e);
	for (;;) {
		uint64_t now = bw_clock_ns();
		uint64_t until = min64(deadline, bw_async_pump(now));
		if (BW_UNLIKELY(atomic_load_explicit(&bw_hedge_nb_live,
						     memory_order_relaxed)))
			until = min64(until, bw_hedge_nb_pump(now));
		fds_copy(r, &r0);
		fds_copy(w, &w0);
		fds_copy(e, &e0);
		for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
			struct bw_conn *c = bw_fd_conn(fd);
			if (BW_LIKELY(!c) || !bw_async_hidden(c))
				continue;
			if (r)
				FD_CLR(fd, r);
			if (w)
				FD_CLR(fd, w);
			if (e)
				FD_CLR(fd, e);
		}
		int rc;
		struct timespec ts;
		const struct timespec *tp = ts_until(until, now, &ts);
		if (ps) {
			rc = bw_real.pselect(nfds, r, w, e, tp, mask);
		} else {
			struct timeval tv;
			if (tp) {
				tv.tv_sec = tp->tv_sec;
				tv.tv_usec = (tp->tv_nsec + 999) / 1000;
			}
			rc = bw_real.select(nfds, r, w, e, tp ? &tv : NULL);
		}
		if (rc < 0)
			return rc;
		if (rc > 0)
			rc = select_filter(nfds, r, w, e, rc);
		errno = saved;
		if (rc > 0 ||
		    (deadline != NO_DEADLINE && bw_clock_ns() >= deadline))
			return rc;
	}
}

BW_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e,
		     struct timeval *tv)
{
	if (BW_LIKELY(bw_async_idle()))
		return bw_real.select(nfds, r, w, e, tv);
	uint64_t now = bw_clock_ns(), deadline = NO_DEADLINE;
	if (tv) {
		struct timespec ts = { tv->tv_sec, tv->tv_usec * 1000L };
		if (tv->tv_usec < 0 || tv->tv_usec >= 1000000)
			return bw_real.select(nfds, r, w, e, tv); /* EINVAL */
		deadline = deadline_ts(&ts, now);
	}
	int rc = select_loop(nfds, r, w, e, deadline, false, NULL);
	if (tv && deadline != NO_DEADLINE) {
		/* Linux leaves the time not slept in *tv. */
		uint64_t t = bw_clock_ns();
		uint64_t left = deadline > t ? deadline - t : 0;
		tv->tv_sec = (time_t)(left / 1000000000ull);
		tv->tv_usec = (suseconds_t)((left % 1000000000ull) / 1000);
	}
	return rc;
}

BW_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
		      const struct timespec *ts, const sigset_t *mask)
{
	if (BW_LIKELY(bw_async_idle()))
		return bw_real.pselect(nfds, r, w, e, ts, mask);
	return select_loop(nfds, r, w, e, deadline_ts(ts, bw_clock_ns()), true,
			   mask);
}

/* ---- epoll ----------------------------------------------------------------- */

/* Results of async connections in ev (matched by the program's data):
 * retried failures taken out, final ones reported with EPOLLERR.
 * Returns the count left. */
static int ep_filter(int epfd, struct epoll_event *ev, int rc)
{
	int k = 0;
	for (int i = 0; i < rc; i++) {
		struct bw_conn *c = bw_async_by_data(epfd, ev[i].data.u64);
		if (c) {
			uint32_t r = ev[i].events;
			int v = bw_async_result(c, r & (EPOLLERR | EPOLLHUP),
						r & EPOLLOUT);
			if (v == BW_ASYNC_HIDE)
				continue;
			if (v == BW_ASYNC_SHOW_ERR)
				ev[i].events |= EPOLLERR;
		}
		if (k != i)
			ev[k] = ev[i];
		k++;
	}
	return k;
}

enum { EP_WAIT, EP_PWAIT, EP_PWAIT2 };

static int ep_call(int kind, int epfd, struct epoll_event *ev, int max,
		   uint64_t until, uint64_t now, const sigset_t *mask)
{
	struct timespec ts;
	switch (kind) {
	case EP_WAIT:
		return bw_real.epoll_wait(epfd, ev, max, ms_until(until, now));
	case EP_PWAIT:
		return bw_real.epoll_pwait(epfd, ev, max, ms_until(until, now),
					   mask);
	default:
		return bw_real.epoll_pwait2(epfd, ev, max,
					    ts_until(until, now, &ts), mask);
	}
}

static int ep_loop(int kind, int epfd, struct epoll_event *ev, int max,
		   uint64_t deadline, const sigset_t *mask)
{
	/* Hook boundary: the pumps and the filter may change errno; a
	 * result leaves the program's as it was. */
	int saved = errno;
	for (;;) {
		uint64_t now = bw_clock_ns();
		uint64_t until = min64(deadline, bw_async_pump(now));
		if (BW_UNLIKELY(atomic_load_explicit(&bw_hedge_nb_live,
						     memory_order_relaxed)))
			until = min64(until, bw_hedge_nb_pump(now));
		int rc = ep_call(kind, epfd, ev, max, until, now, mask);
		if (rc < 0)
			return rc;
		if (rc > 0)
			rc = ep_filter(epfd, ev, rc);
		errno = saved;
		if (rc > 0 ||
		    (deadline != NO_DEADLINE && bw_clock_ns() >= deadline))
			return rc;
	}
}

/* After a real epoll call made with nothing pending: a connect went async
 * meanwhile (another thread) and may have results here.  Returns the
 * count left, or -2 to go on waiting. */
static int ep_late(int epfd, struct epoll_event *ev, int rc, bool no_wait)
{
	int saved = errno; /* hook boundary: the filter may change it */
	rc = ep_filter(epfd, ev, rc);
	errno = saved;
	return rc > 0 || no_wait ? rc : -2;
}

BW_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	if (BW_LIKELY(bw_async_idle())) {
		int rc = bw_real.epoll_wait(epfd, ev, max, timeout);
		if (BW_LIKELY(rc <= 0 || bw_async_idle()))
			return rc;
		if ((rc = ep_late(epfd, ev, rc, timeout == 0)) != -2)
			return rc;
	}
	return ep_loop(EP_WAIT, epfd, ev, max,
		       deadline_ms(timeout, bw_clock_ns()), NULL);
}

BW_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max,
			  int timeout, const sigset_t *mask)
{
	if (BW_LIKELY(bw_async_idle())) {
		int rc = bw_real.epoll_pwait(epfd, ev, max, timeout, mask);
		if (BW_LIKELY(rc <= 0 || bw_async_idle()))
			return rc;
		if ((rc = ep_late(epfd, ev, rc, timeout == 0)) != -2)
			return rc;
	}
	return ep_loop(EP_PWAIT, epfd, ev, max,
		       deadline_ms(timeout, bw_clock_ns()), mask);
}

BW_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max,
			   const struct timespec *ts, const sigset_t *mask)
{
	if (BW_LIKELY(bw_async_idle())) {
		int rc = bw_real.epoll_pwait2(epfd, ev, max, ts, mask);
		if (BW_LIKELY(rc <= 0 || bw_async_idle()))
			return rc;
		bool no_wait = ts && !ts->tv_sec && !ts->tv_nsec;
		if ((rc = ep_late(epfd, ev, rc, no_wait)) != -2)
			return rc;
	}
	return ep_loop(EP_PWAIT2, epfd, ev, max, deadline_ts(ts, bw_clock_ns()),
		       mask);
}

/* An epoll fd handed out: a fresh number (whatever the table held for it
 * is stale), tracked so registrations can name their epoll set. */
static int new_epfd(int epfd)
{
	if (epfd < 0)
		return epfd;
	int saved = errno; /* hook boundary: the cancel may change it */
	struct bw_conn *c = bw_fd_drop(epfd);
	if (c) {
		if (atomic_load(&c->aphase))
			bw_async_cancel(c);
		bw_conn_free(c);
	}
	if (atomic_load_explicit(&bw_g.ready, memory_order_acquire) &&
	    bw_g.active)
		bw_async_epoll_new(epfd);
	errno = saved;
	return epfd;
}

BW_EXPORT int epoll_create(int size)
{
	return new_epfd(bw_real.epoll_create(size));
}

BW_EXPORT int epoll_create1(int flags)
{
	return new_epfd(bw_real.epoll_create1(flags));
}

/* epoll_ctl(2): registrations of the sockets bulwark tracks are recorded
 * (one branch for any other fd). */
BW_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (BW_LIKELY(!c) ||
	    atomic_load_explicit(&c->state, memory_order_relaxed) ==
		    BW_CONN_EPOLL)
		return bw_real.epoll_ctl(epfd, op, fd, ev);
	int saved = errno; /* hook boundary */
	return bw_hook_ret(bw_async_epoll_ctl(c, epfd, op, fd, ev), saved);
}
