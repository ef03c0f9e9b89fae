/* SPDX-License-Identifier: MIT */
/*
 * shim/async.c: non-blocking connects managed inside the program's own
 * waits.  No thread waits where it would not wait without the shim
 * (README "Retries of non-blocking connects: design and limits"): a
 * non-blocking connect's retries, its bulkhead wait and its
 * connect.timeout happen in the program's poll, ppoll, select, pselect
 * and epoll_wait family (shim/hook_wait.c), never longer than each call
 * asked to wait, and in the calls a busy loop makes instead (connect,
 * getsockopt(SO_ERROR), send, receive), which never wait.
 * Owns: bw_async_*, the async fields of bw_conn (aphase, alock, ahidden,
 * afd, aslot, adue_ns, ticket, epreg, nepreg), the async set.
 * Never: sleeps, allocates, changes a socket's mode, or reports an
 * attempt's retryable failure to the program.
 * Context: any hook (AS-safe: atomics, system calls; a per-connection
 * lock taken by try-lock in the pump, by a short spin elsewhere).
 *
 * Phases of a connection (c->aphase), all with c->state CONNECTING:
 *
 *   connect(): EINPROGRESS -------------------------> ATTEMPT
 *              failed at once, retried ---------------> BACKOFF
 *              bulkhead full, bulkhead.wait > 0 ------> QUEUED
 *   ATTEMPT --failed (wait result, connect, SO_ERROR, send/recv), or past
 *             connect.timeout (aborted) --retried--> BACKOFF
 *   BACKOFF --due--> admitted: ATTEMPT; bulkhead full: QUEUED
 *   QUEUED  --slot taken--> ATTEMPT;  bulkhead.wait over: final
 *   final failure: NONE, the error owed in c->pending_err (the program
 *             reads it from SO_ERROR, connect, send or receive; its waits
 *             report POLLERR / EPOLLERR); success: NONE (the exchange
 *             code settles the connect where the program learns it).
 *
 * A1: the phase changes only along these edges (set_phase checks them
 *     with BW_INVARIANT, shim/assert.h, in debug builds).
 * A2: a phase other than NONE exists only while c->state is CONNECTING.
 *
 * Why this shape (and not the first sketch):
 * - A separate FAILED phase is not needed: the existing pending_err already
 *   carries an owed connect error through every call that reports one,
 *   and a dissolved socket reports POLLHUP|POLLOUT by itself.  So only
 *   the three phases that need work or hiding count in bw_async_pending,
 *   and a failed connect costs the waits nothing once it is final.
 * - Every failure dissolves the socket (connect AF_UNSPEC): no stale
 *   ECONNABORTED is left in the kernel for the next connect.
 * - During BACKOFF and QUEUED the socket (in CLOSE, reporting
 *   POLLOUT|POLLHUP level-triggered) is taken out of the program's epoll
 *   sets (EPOLL_CTL_DEL) and out of the pollfd/fd_set arrays of each poll
 *   and select call, so a loop never spins on it; its registrations are
 *   put back (EPOLL_CTL_ADD, which re-arms EPOLLONESHOT and EPOLLET) when
 *   the next attempt starts or the failure is final.  A final failure of a
 *   socket still registered re-arms with EPOLL_CTL_MOD, so an
 *   edge-triggered or one-shot registration whose event another thread's
 *   wait hid reports it again.
 * - Epoll results carry only the program's data: they are matched to
 *   async connections by (epoll fd, data).  An epoll fd is tracked as a
 *   connection in state EPOLL with a generation, so a registration is
 *   never put back into a later epoll set that reuses the number.
 * - Each connection has a lock (alock).  Pumps take it by try-lock (a
 *   connection being worked on by another thread is skipped: that thread
 *   finishes the step); the program's calls on the connection spin for it
 *   (held for a few system calls at most).  A signal handler that calls
 *   into the same connection while its thread holds the lock does not
 *   spin: it goes on without the async step (held_by_me).
 * - A queued connect looks at the bulkhead every BW_ASYNC_QUEUE_LOOK_NS
 *   (20 ms) from the waits: a slot freed in another process, or in this
 *   one, is taken within 20 ms plus the program's own latency to call a
 *   wait.  The FIFO stays the blocking waiters' (same tickets).
 *
 * Limits (honest; README): a wait that started before a connect entered
 * an async phase (another thread's epoll_wait with a long timeout) learns
 * of the new due time only when it wakes; the thread that made the
 * connect normally waits next and does the work.  A connection registered
 * in more than BW_EPREG_MAX epoll sets keeps the extra registrations in
 * the kernel (its results are still hidden, at the price of spurious
 * wake-ups during a backoff).  Async connections beyond BW_ASYNC_MAX pass
 * through without retries or queueing.  exec(2) is not hooked: a queued
 * ticket of a program that execs stays until bulkhead.wait's sweeps.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/retry.h"
#include "shim/async.h"
#include "shim/attempt.h"
#include "shim/calls.h"
#include "shim/exchange.h"
#include "shim/internal.h"
#include "shim/real.h"

#define BW_ASYNC_MAX 4096

_Atomic uint32_t bw_async_pending;
static _Atomic uint32_t aset[BW_ASYNC_MAX]; /* conn index + 1, 0 free */
static _Atomic uint32_t aset_hi;	    /* entries in use lie below */
static _Atomic uint32_t ep_gen_next = 1;

static __thread struct bw_conn *held_by_me
	__attribute__((tls_model("initial-exec")));

/* ---- the per-connection lock ------------------------------------------- */

static bool trylock(struct bw_conn *c)
{
	uint8_t z = 0;
	if (!atomic_compare_exchange_strong_explicit(&c->alock, &z, 1,
						     memory_order_acquire,
						     memory_order_relaxed))
		return false;
	held_by_me = c;
	return true;
}

/* False when this thread already holds it (a signal handler nested in
 * our own step): the caller goes on without the async step. */
static bool lock(struct bw_conn *c)
{
	if (held_by_me == c)
		return false;
	for (unsigned i = 0; !trylock(c); i++)
		if (i > 64)
			sched_yield();
	return true;
}

static void unlock(struct bw_conn *c)
{
	held_by_me = NULL;
	atomic_store_explicit(&c->alock, 0, memory_order_release);
}

/* ---- the async set ----------------------------------------------------- */

static bool set_add(struct bw_conn *c)
{
	uint32_t v = (uint32_t)(c - bw_conns) + 1;
	for (uint32_t i = 0; i < BW_ASYNC_MAX; i++) {
		uint32_t z = 0;
		if (atomic_load_explicit(&aset[i], memory_order_relaxed) ||
		    !atomic_compare_exchange_strong(&aset[i], &z, v))
			continue;
		c->aslot = i + 1;
		uint32_t hi = atomic_load(&aset_hi);
		while (hi < i + 1 &&
		       !atomic_compare_exchange_weak(&aset_hi, &hi, i + 1))
			;
		atomic_fetch_add(&bw_async_pending, 1);
		return true;
	}
	return false;
}

/* c leaves its async phase (lock held). */
static void finish(struct bw_conn *c)
{
	atomic_store_explicit(&c->aphase, BW_ASYNC_NONE, memory_order_release);
	if (c->aslot) {
		atomic_store(&aset[c->aslot - 1], 0);
		c->aslot = 0;
		atomic_fetch_sub(&bw_async_pending, 1);
	}
}

/* ---- epoll registrations ----------------------------------------------- */

/* Whether r's epoll fd is still the epoll set it was made in. */
static bool ep_live(const struct bw_epreg *r)
{
	if (!r->ep_gen)
		return true; /* an epoll fd made before we were loaded */
	struct bw_conn *e = bw_fd_conn(r->epfd);
	return e && atomic_load(&e->state) == BW_CONN_EPOLL &&
	       e->ten == r->ep_gen;
}

static void ep_hide(struct bw_conn *c)
{
	if (c->ahidden)
		return;
	for (unsigned i = 0; i < c->nepreg; i++) {
		struct bw_epreg *r = &c->epreg[i];
		if (ep_live(r))
			bw_real.epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->fd, NULL);
	}
	c->ahidden = 1;
}

static void ep_show(struct bw_conn *c)
{
	if (!c->ahidden)
		return;
	for (unsigned i = 0; i < c->nepreg; i++) {
		struct bw_epreg *r = &c->epreg[i];
		struct epoll_event ev = { .events = r->events };
		ev.data.u64 = r->data;
		if (ep_live(r) &&
		    bw_real.epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->fd, &ev) < 0 &&
		    errno == EEXIST)
			bw_real.epoll_ctl(r->epfd, EPOLL_CTL_MOD, r->fd, &ev);
	}
	c->ahidden = 0;
}

/* The registrations are in the kernel: makes each report again what it
 * reports now (a one-shot or edge-triggered event another thread's wait
 * hid).  EPOLL_CTL_MOD re-checks readiness. */
static void ep_rearm(struct bw_conn *c)
{
	for (unsigned i = 0; i < c->nepreg; i++) {
		struct bw_epreg *r = &c->epreg[i];
		struct epoll_event ev = { .events = r->events };
		ev.data.u64 = r->data;
		if (ep_live(r))
			bw_real.epoll_ctl(r->epfd, EPOLL_CTL_MOD, r->fd, &ev);
	}
}

void bw_async_ep_hide(struct bw_conn *c)
{
	bool l = lock(c);
	ep_hide(c);
	if (l)
		unlock(c);
}

void bw_async_ep_show(struct bw_conn *c)
{
	bool l = lock(c);
	ep_show(c);
	if (l)
		unlock(c);
}

void bw_async_epoll_new(int epfd)
{
	struct bw_conn *e = bw_fd_track(epfd);
	if (!e)
		return;
	e->ten = atomic_fetch_add(&ep_gen_next, 1) | 1u;
	bw_conn_set_state(e, BW_CONN_BIT(BW_CONN_FRESH), BW_CONN_EPOLL);
}

static int find_reg(const struct bw_conn *c, int epfd, int fd)
{
	for (unsigned i = 0; i < c->nepreg; i++)
		if (c->epreg[i].epfd == epfd && c->epreg[i].fd == fd)
			return (int)i;
	return -1;
}

static void note_reg(struct bw_conn *c, int epfd, int op, int fd,
		     const struct epoll_event *ev)
{
	int i = find_reg(c, epfd, fd);
	if (op == EPOLL_CTL_DEL) {
		if (i >= 0)
			c->epreg[i] = c->epreg[--c->nepreg];
		return;
	}
	if (i < 0) {
		if (op != EPOLL_CTL_ADD || c->nepreg >= BW_EPREG_MAX)
			return;
		i = c->nepreg++;
		struct bw_conn *e = bw_fd_conn(epfd);
		c->epreg[i].epfd = epfd;
		c->epreg[i].fd = fd;
		c->epreg[i].ep_gen =
			e && atomic_load(&e->state) == BW_CONN_EPOLL ? e->ten
								     : 0;
	}
	c->epreg[i].events = ev ? ev->events : 0;
	c->epreg[i].data = ev ? ev->data.u64 : 0;
}

int bw_async_epoll_ctl(struct bw_conn *c, int epfd, int op, int fd,
		       struct epoll_event *ev)
{
	if (!lock(c))
		return bw_sysret(bw_real.epoll_ctl(epfd, op, fd, ev));
	int rc;
	if (c->ahidden) {
		/* Out of the kernel's sets for now: the program's change is
		 * recorded, and applied when the registrations go back. */
		int i = find_reg(c, epfd, fd);
		if ((op == EPOLL_CTL_ADD && i >= 0) ||
		    (op != EPOLL_CTL_ADD && i < 0)) {
			unlock(c);
			return op == EPOLL_CTL_ADD ? -EEXIST : -ENOENT;
		}
		if (op != EPOLL_CTL_DEL && !ev) {
			unlock(c);
			return -EFAULT;
		}
		if (op == EPOLL_CTL_ADD && c->nepreg >= BW_EPREG_MAX) {
			rc = bw_sysret(
				bw_real.epoll_ctl(epfd, op, fd, ev)); /* kept */
		} else {
			note_reg(c, epfd, op, fd, ev);
			rc = 0;
		}
	} else {
		rc = bw_sysret(bw_real.epoll_ctl(epfd, op, fd, ev));
		if (rc == 0)
			note_reg(c, epfd, op, fd, ev);
	}
	unlock(c);
	return rc;
}

struct bw_conn *bw_async_by_data(int epfd, uint64_t data)
{
	uint32_t hi = atomic_load_explicit(&aset_hi, memory_order_acquire);
	for (uint32_t i = 0; i < hi; i++) {
		uint32_t v =
			atomic_load_explicit(&aset[i], memory_order_acquire);
		if (!v)
			continue;
		struct bw_conn *c = &bw_conns[v - 1];
		unsigned n = c->nepreg;
		for (unsigned j = 0; j < n && j < BW_EPREG_MAX; j++)
			if (c->epreg[j].epfd == epfd &&
			    c->epreg[j].data == data)
				return c;
	}
	return NULL;
}

/* ---- the steps (lock held) --------------------------------------------- */

static int phase(const struct bw_conn *c)
{
	return atomic_load_explicit(&c->aphase, memory_order_acquire);
}

static void set_phase(struct bw_conn *c, int p)
{
	/* A1: only the edges drawn at the top of this file (NONE: any
	 * phase may end); A2: a phase other than NONE is CONNECTING's. */
	static const uint8_t from[] = {
		[BW_ASYNC_NONE] = 0xf,
		[BW_ASYNC_ATTEMPT] = 1u << BW_ASYNC_NONE |
				     1u << BW_ASYNC_BACKOFF |
				     1u << BW_ASYNC_QUEUED,
		[BW_ASYNC_BACKOFF] = 0xf,
		[BW_ASYNC_QUEUED] = 1u << BW_ASYNC_NONE |
				    1u << BW_ASYNC_BACKOFF |
				    1u << BW_ASYNC_QUEUED,
	};
	BW_INVARIANT(p >= BW_ASYNC_NONE && p <= BW_ASYNC_QUEUED, "A1");
	BW_INVARIANT(from[p] >> atomic_load(&c->aphase) & 1, "A1");
	BW_INVARIANT(p == BW_ASYNC_NONE ||
			     atomic_load(&c->state) == BW_CONN_CONNECTING,
		     "A2");
	(void)from;
	atomic_store_explicit(&c->aphase, (uint8_t)p, memory_order_release);
}

/* The final outcome of a failed connect: owed to the program, which
 * learns it from its next wait (the dissolved socket reports
 * POLLOUT|POLLHUP; the hooks add POLLERR / EPOLLERR) and reads it from
 * SO_ERROR, connect, send or receive. */
static void final_failure(struct bw_conn *c, int err)
{
	BW_INVARIANT(err > 0 && err < 256, "pending_err");
	c->pending_err = (uint8_t)err;
	c->stale = 0;
	bw_conn_set_state(
		c, BW_CONN_BIT(BW_CONN_CONNECTING) | BW_CONN_BIT(BW_CONN_FRESH),
		BW_CONN_FRESH);
	finish(c);
	if (c->ahidden)
		ep_show(c);
	else
		ep_rearm(c);
}

static void attempt(struct bw_conn *c, uint64_t now);

/* The attempt of c failed with err (the kernel's attempt is still there
 * unless aborted): retried after its backoff, or final. */
static void failed(struct bw_conn *c, int err, uint64_t now)
{
	bw_attempt_dissolve(c->afd);
	if (!bw_call_connect_failed(err)) {
		/* EACCES, EADDRNOTAVAIL...: no call, never retried. */
		bw_call_release(c);
		final_failure(c, err);
		return;
	}
	bw__connect_done(c, err, now); /* counted; the slot goes back */
	bw_conn_set_state(c, BW_CONN_BIT(BW_CONN_FRESH), BW_CONN_CONNECTING);
	uint64_t delay = 0;
	if (!bw_attempt_retry_after(c, c->attempt, err, &delay)) {
		final_failure(c, err);
		return;
	}
	set_phase(c, BW_ASYNC_BACKOFF);
	c->adue_ns = now + delay;
	ep_hide(c);
}

/* The real connect of c's next attempt (admitted, slot held). */
static void connect_now(struct bw_conn *c, uint64_t now)
{
	struct sockaddr_storage ss;
	socklen_t len = bw_attempt_peer(c, &ss);
	int err = -bw_sysret(
		bw_real.connect(c->afd, (struct sockaddr *)&ss, len));
	c->t0_ns = now;
	if (err == 0) {
		struct bw_dest *d = bw_state_live(c->d, c->ten);
		bw__connect_done(c, 0, bw_clock_ns());
		if (c->attempt > 1 && d)
			bw_retry_note_success(d);
		finish(c);
		ep_show(c);
		return;
	}
	if (err == EINPROGRESS || err == EALREADY) {
		uint64_t tmo = bw_retry_attempt_timeout_ns(
			bw_settings_for(c->rule), c->attempt);
		set_phase(c, BW_ASYNC_ATTEMPT);
		c->adue_ns = tmo ? now + tmo : 0;
		ep_show(c);
		return;
	}
	failed(c, err, now);
}

static void queued(struct bw_conn *c, uint64_t now)
{
	uint64_t next = now + BW_ASYNC_QUEUE_LOOK_NS;
	set_phase(c, BW_ASYNC_QUEUED);
	c->adue_ns = next < c->ticket.deadline_ns ? next
						  : c->ticket.deadline_ns;
	ep_hide(c);
}

/* BACKOFF is over: the next attempt, admitted by the breaker and the
 * bulkhead (which may queue it). */
static void attempt(struct bw_conn *c, uint64_t now)
{
	c->attempt++;
	c->t0_ns = now;
	int rc = bw_call_admit(c, c->afd, true, now);
	if (rc < 0) {
		final_failure(c, -rc);
		return;
	}
	if (rc == BW_CALL_QUEUED) {
		queued(c, now);
		return;
	}
	connect_now(c, now);
}

/* The attempt of c in ATTEMPT may have ended: 1 failed (and handled),
 * 0 still in progress, 2 connected (c left its async phase). */
static int check_attempt(struct bw_conn *c, uint64_t now)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	if (bw_real.getsockopt(c->afd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
		return 0;
	if (ti.tcpi_state == TCP_SYN_SENT || ti.tcpi_state == TCP_SYN_RECV)
		return 0;
	if (ti.tcpi_state != TCP_CLOSE) {
		/* connected: accounted where the program learns it */
		finish(c);
		return 2;
	}
	int err = 0;
	l = sizeof(err);
	if (bw_real.getsockopt(c->afd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 ||
	    err == 0)
		err = ECONNREFUSED; /* closed with no error left: refused */
	failed(c, err, now);
	return 1;
}

/* Runs c's due work at now (lock held). */
static void due(struct bw_conn *c, uint64_t now)
{
	switch (phase(c)) {
	case BW_ASYNC_ATTEMPT:
		if (c->adue_ns && now >= c->adue_ns &&
		    check_attempt(c, now) == 0) {
			/* Past connect.timeout: aborted, retried or final. */
			failed(c, ETIMEDOUT, now);
		}
		break;
	case BW_ASYNC_BACKOFF:
		if (now >= c->adue_ns)
			attempt(c, now);
		break;
	case BW_ASYNC_QUEUED:
		if (now >= c->adue_ns) {
			int rc = bw_call_try_queued(c, now);
			if (rc == BW_CALL_ADMITTED)
				connect_now(c, now);
			else if (rc == BW_CALL_QUEUED)
				queued(c, now);
			else
				final_failure(c, -rc);
		}
		break;
	default:
		break;
	}
}

/* Whether c, reached through the async set, is still what it was: in an
 * async phase, and its fd still its own.  Lock held. */
static bool still_ours(struct bw_conn *c)
{
	if (phase(c) == BW_ASYNC_NONE) {
		/* Freed and claimed again without a cancel: out of the set. */
		if (c->aslot)
			finish(c);
		return false;
	}
	if (bw_fd_conn(c->afd) != c) {
		/* Closed behind our back (glibc closes fds without close):
		 * nothing to connect on any more. */
		bw_call_leave_queue(c);
		finish(c);
		return false;
	}
	return true;
}

/* ---- entry points ------------------------------------------------------ */

int bw_async_enter(struct bw_conn *c, int fd, int p, uint64_t due_ns)
{
	if (!lock(c))
		return -ENOSPC;
	c->afd = fd;
	c->adue_ns = due_ns;
	set_phase(c, p);
	if (!c->aslot && !set_add(c)) {
		set_phase(c, BW_ASYNC_NONE);
		unlock(c);
		return -ENOSPC;
	}
	if (p == BW_ASYNC_BACKOFF || p == BW_ASYNC_QUEUED)
		ep_hide(c);
	unlock(c);
	return 0;
}

uint64_t bw_async_pump(uint64_t now)
{
	uint64_t next = UINT64_MAX;
	uint32_t hi = atomic_load_explicit(&aset_hi, memory_order_acquire);
	for (uint32_t i = 0; i < hi; i++) {
		uint32_t v =
			atomic_load_explicit(&aset[i], memory_order_acquire);
		if (!v)
			continue;
		struct bw_conn *c = &bw_conns[v - 1];
		if (!trylock(c)) {
			/* Another thread is on it: look again soon. */
			if (now + 1000000 < next)
				next = now + 1000000;
			continue;
		}
		if (still_ours(c)) {
			due(c, now);
			if (phase(c) != BW_ASYNC_NONE && c->adue_ns &&
			    c->adue_ns < next)
				next = c->adue_ns;
		}
		unlock(c);
	}
	return next;
}

int bw_async_result(struct bw_conn *c, bool err, bool out)
{
	/* Waits for another thread's step on c (a few system calls at
	 * most): hiding this result meanwhile could lose an edge-triggered
	 * event that step does not produce again (a success). */
	if (!lock(c))
		return BW_ASYNC_SHOW; /* a handler inside our own step */
	int r = BW_ASYNC_SHOW;
	if (!still_ours(c)) {
		r = c->pending_err ? BW_ASYNC_SHOW_ERR : BW_ASYNC_SHOW;
	} else if (phase(c) != BW_ASYNC_ATTEMPT) {
		r = BW_ASYNC_HIDE;
	} else if (err || out) {
		int k = check_attempt(c, bw_clock_ns());
		if (k == 1)
			r = phase(c) != BW_ASYNC_NONE ? BW_ASYNC_HIDE
						      : BW_ASYNC_SHOW_ERR;
		else if (k == 0)
			r = BW_ASYNC_HIDE;
	}
	unlock(c);
	return r;
}

int bw_async_connect(struct bw_conn *c, int fd, const struct sockaddr *sa,
		     socklen_t len)
{
	if (!lock(c))
		return bw_sysret(bw_real.connect(fd, sa, len));
	uint64_t now = bw_clock_ns();
	if (still_ours(c))
		due(c, now);
	int p = phase(c);
	if (p == BW_ASYNC_BACKOFF || p == BW_ASYNC_QUEUED) {
		unlock(c);
		return -EALREADY;
	}
	if (p == BW_ASYNC_NONE) {
		/* Settled meanwhile: the owed error once, or the kernel's
		 * answer (EISCONN once connected). */
		unlock(c);
		if (c->pending_err) {
			int e = c->pending_err;
			c->pending_err = 0;
			return -e;
		}
		return BW_ASYNC_SETTLED;
	}
	int rc = bw_sysret(bw_real.connect(fd, sa, len));
	int err = -rc;
	if (err == 0 || err == EISCONN) {
		bw__connect_done(c, 0, bw_clock_ns());
		finish(c);
	} else if (err != EALREADY && err != EINPROGRESS && err != EINTR) {
		failed(c, err, now);
		if (phase(c) != BW_ASYNC_NONE) {
			rc = -EALREADY; /* retried: still in progress */
		} else {
			rc = -(c->pending_err ? c->pending_err : err);
			c->pending_err = 0;
		}
	}
	unlock(c);
	return rc;
}

void bw_async_sockerr(struct bw_conn *c, int fd, int *v)
{
	(void)fd;
	if (!lock(c))
		return;
	uint64_t now = bw_clock_ns();
	if (still_ours(c))
		due(c, now);
	int p = phase(c);
	if (p == BW_ASYNC_BACKOFF || p == BW_ASYNC_QUEUED) {
		*v = 0; /* as the kernel says while a connect is in progress */
	} else if (p == BW_ASYNC_ATTEMPT && *v) {
		failed(c, *v, now);
		if (phase(c) != BW_ASYNC_NONE) {
			*v = 0;
		} else {
			*v = c->pending_err ? c->pending_err : *v;
			c->pending_err = 0;
		}
	} else if (p == BW_ASYNC_ATTEMPT) {
		check_attempt(c, now);
		if (phase(c) == BW_ASYNC_NONE && c->pending_err) {
			*v = c->pending_err;
			c->pending_err = 0;
		} else if (phase(c) == BW_ASYNC_NONE) {
			/* connected: the exchange code accounts for it */
			unlock(c);
			bw_io_sockerr(c, fd, *v);
			return;
		}
	}
	unlock(c);
}

int bw_async_io(struct bw_conn *c, int fd)
{
	(void)fd;
	if (!lock(c))
		return 0;
	uint64_t now = bw_clock_ns();
	int r = 0;
	if (still_ours(c)) {
		due(c, now);
		if (phase(c) == BW_ASYNC_ATTEMPT)
			check_attempt(c, now);
		int p = phase(c);
		if (p != BW_ASYNC_NONE && p != BW_ASYNC_ATTEMPT)
			r = -EAGAIN;
	}
	unlock(c);
	return r; /* a final failure: pending_err, reported by the caller */
}

int bw_async_io_failed(struct bw_conn *c, int err)
{
	if (!bw_call_connect_failed(err) || !lock(c))
		return 0;
	int r = 0;
	if (still_ours(c) && phase(c) == BW_ASYNC_ATTEMPT) {
		failed(c, err, bw_clock_ns());
		if (phase(c) != BW_ASYNC_NONE) {
			r = -EAGAIN; /* retried: still in progress */
		} else {
			r = -(c->pending_err ? c->pending_err : err);
			c->pending_err = 0;
		}
	}
	unlock(c);
	return r;
}

void bw_async_fd_gone(struct bw_conn *c, int fd)
{
	if (c->afd != fd || !lock(c))
		return;
	/* Another fd of the same connection takes over, if any. */
	int high = bw_fd_high();
	for (int o = 0; o < high; o++)
		if (o != fd && bw_fd_conn(o) == c) {
			c->afd = o;
			break;
		}
	unlock(c);
}

void bw_async_cancel(struct bw_conn *c)
{
	bool l = lock(c);
	if (phase(c) != BW_ASYNC_NONE || c->aslot) {
		bw_call_leave_queue(c);
		finish(c);
	}
	if (l)
		unlock(c);
}

void bw_async_fork_child(void)
{
	held_by_me = NULL;
	uint32_t hi = atomic_load(&aset_hi);
	for (uint32_t i = 0; i < hi; i++) {
		uint32_t v = atomic_load(&aset[i]);
		if (!v)
			continue;
		struct bw_conn *c = &bw_conns[v - 1];
		/* The parent's ticket and attempts: not ours to touch. */
		memset(&c->ticket, 0, sizeof(c->ticket));
		atomic_store(&c->alock, 0);
		atomic_store(&c->aphase, BW_ASYNC_NONE);
		bw_conn_set_state(c, BW_CONN_LIVE, BW_CONN_IGNORED);
		c->aslot = 0;
		atomic_store(&aset[i], 0);
	}
	atomic_store(&aset_hi, 0);
	atomic_store(&bw_async_pending, 0);
}
