/* SPDX-License-Identifier: MIT */
/*
 * shim/hedge.c: hedged connects (bulwark-policy(7) hedge.delay).
 * Owns: bw_hedge_connect.  Never: changes the program's fd's blocking mode
 * as the program sees it (doc/design.md L6), leaks its extra socket, allocates,
 * logs, or calls a hooked libc name (only bw_real; getsockname and
 * setsockopt are not interposed).  Context: the connect hook, for a
 * blocking connect, from connect.c's attempts() (AS-safe: atomics, the
 * static tables and plain system calls).
 *
 * One attempt, as a timeline (connect.timeout, when set, bounds it all):
 *
 *   t0 ......... t0 + hedge.delay ............................ deadline
 *   program's connect on fd (made non-blocking under poll, as timed_connect)
 *                 | still pending: spare socket, options copied, connect
 *                 | to the name's next address (names.h), same port
 *                 +-- poll both: the first to connect wins
 *
 *   program's wins   -> spare closed; the hedge counts as neither success
 *                       nor failure (its probe and slot given back).
 *   hedge wins       -> dup3(spare, fd) keeping fd's FD_CLOEXEC, the
 *                       program's own O_NONBLOCK state (off); spare fd
 *                       closed; the program's attempt, closed by dup3,
 *                       counts as neither; c is rebound to the winner's
 *                       rule and destination, and the caller records the
 *                       connect success there.  The fd table needs no
 *                       change: fd keeps its bw_conn, which now describes
 *                       the winner (the spare number was never tracked).
 *   one fails        -> the race goes on with the other.
 *   both fail        -> the program's attempt's error.
 *   deadline         -> both aborted, ETIMEDOUT (or the program's error if
 *                       it had failed first).
 *   signal           -> without SA_RESTART: spare dropped, EINTR, the
 *                       program's attempt goes on in the kernel, as an
 *                       interrupted connect does; with SA_RESTART (or
 *                       ignored): the race goes on (wait.c).
 *
 * The hedge is admitted like an attempt: the next address's own breaker
 * must be closed (no probe is spent on a hedge, nothing is counted as
 * rejected), the program's destination's retry budget must grant it (a
 * hedge adds load like a retry: retry.h), and its bulkhead slot is taken
 * without waiting.
 *
 * Not hedged (BW_HEDGE_PASSED, the usual attempt instead): a non-blocking
 * socket (its program runs its own race, e.g. Happy Eyeballs), a socket
 * bound by the program (the bind could not be repeated without a clash),
 * a socket with another fd of this process on it (dup before connect: the
 * other fd would keep the losing socket), an address of no recorded name
 * with two or more addresses.
 *
 * Limits: options are copied from a fixed list (copy_opts; the common
 * SOL_SOCKET, TCP and IP/IPv6 ones, IP-level ones only within one
 * family); anything else a program set before connecting (a BPF filter,
 * an epoll registration of the unconnected socket, SO_ATTACH_*, rare TCP
 * options) is not carried over to a winning hedge, and an option that
 * differs but cannot be set stops the hedge.  Another process sharing the
 * socket (forked before connecting) keeps the program's original socket.
 * While the race runs, the spare fd is an ordinary low-numbered CLOEXEC
 * fd: a closefrom() racing the connect in another thread would close it
 * (the race then ends as "hedge failed").  Only the next address is tried,
 * never a third.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "core/breaker.h"
#include "core/retry.h"
#include "shim/async.h"
#include "shim/bind.h"
#include "shim/calls.h"
#include "shim/hedge.h"
#include "shim/internal.h"
#include "shim/names.h"
#include "shim/real.h"
#include "shim/wait.h"

/* The race in flight: the hedge's socket, its accounting, its target. */
struct race {
	int spare;	  /* -1: no hedge running */
	struct bw_conn h; /* the hedge's rule, dest, probe, slot */
	uint64_t t0_ns;	  /* when the hedge's connect started */
	struct sockaddr_storage to;
	socklen_t tolen;
};

/* ---- the hedge's destination ------------------------------------------ */

/* Binds h to the rule and destination of sa, as connect binds the
 * program's own attempt.  0, or -1 when no policy applies there (a rule
 * says off, no room in the state): then no hedge. */
static int hedge_bind(struct bw_conn *h, const struct sockaddr *sa,
		      socklen_t len)
{
	memset(h, 0, sizeof(*h));
	h->rule = -1;
	return bw_bind(h, sa, len) == 0 ? 0 : -1;
}

/* ---- the spare socket ------------------------------------------------ */

/* Options carried from the program's socket to the spare.  ip: 4 or 6 for
 * options of that IP level, copied only between sockets of that family;
 * half: the kernel doubles the value on set (SO_RCVBUF, SO_SNDBUF). */
static const struct {
	int level, name;
	uint8_t ip, half;
} opts[] = {
	{ SOL_SOCKET, SO_KEEPALIVE, 0, 0 },
	{ SOL_SOCKET, SO_REUSEADDR, 0, 0 },
	{ SOL_SOCKET, SO_REUSEPORT, 0, 0 },
	{ SOL_SOCKET, SO_LINGER, 0, 0 },
	{ SOL_SOCKET, SO_RCVBUF, 0, 1 },
	{ SOL_SOCKET, SO_SNDBUF, 0, 1 },
	{ SOL_SOCKET, SO_RCVLOWAT, 0, 0 },
	{ SOL_SOCKET, SO_RCVTIMEO, 0, 0 },
	{ SOL_SOCKET, SO_SNDTIMEO, 0, 0 },
	{ SOL_SOCKET, SO_OOBINLINE, 0, 0 },
	{ SOL_SOCKET, SO_PRIORITY, 0, 0 },
	{ SOL_SOCKET, SO_MARK, 0, 0 },
	{ SOL_SOCKET, SO_BINDTODEVICE, 0, 0 },
	{ IPPROTO_TCP, TCP_NODELAY, 0, 0 },
	{ IPPROTO_TCP, TCP_KEEPIDLE, 0, 0 },
	{ IPPROTO_TCP, TCP_KEEPINTVL, 0, 0 },
	{ IPPROTO_TCP, TCP_KEEPCNT, 0, 0 },
	{ IPPROTO_TCP, TCP_USER_TIMEOUT, 0, 0 },
	{ IPPROTO_TCP, TCP_SYNCNT, 0, 0 },
	{ IPPROTO_TCP, TCP_MAXSEG, 0, 0 },
	{ IPPROTO_TCP, TCP_WINDOW_CLAMP, 0, 0 },
	{ IPPROTO_TCP, TCP_NOTSENT_LOWAT, 0, 0 },
	{ IPPROTO_TCP, TCP_CONGESTION, 0, 0 },
	{ IPPROTO_IP, IP_TOS, 4, 0 },
	{ IPPROTO_IP, IP_TTL, 4, 0 },
	{ IPPROTO_IPV6, IPV6_TCLASS, 6, 0 },
	{ IPPROTO_IPV6, IPV6_UNICAST_HOPS, 6, 0 },
};

/* Sets on to every listed option whose value on from differs from to's
 * (so defaults stay defaults: a copied SO_RCVBUF would turn off
 * autotuning).  0, or -1 when a differing option cannot be set. */
static int copy_opts(int from, int to, int from_family, int to_family)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		unsigned char a[64], b[64];
		socklen_t la = sizeof(a), lb = sizeof(b);
		int want = opts[i].ip == 4 ? AF_INET : AF_INET6;
		if (opts[i].ip && (from_family != want || to_family != want))
			continue;
		if (bw_real.getsockopt(from, opts[i].level, opts[i].name, a,
				       &la) < 0)
			continue; /* unknown here: nothing to carry */
		if (bw_real.getsockopt(to, opts[i].level, opts[i].name, b,
				       &lb) == 0 &&
		    la == lb && memcmp(a, b, la) == 0)
			continue;
		if (opts[i].half && la == sizeof(int)) {
			int v;
			memcpy(&v, a, sizeof(v));
			v /= 2;
			memcpy(a, &v, sizeof(v));
		}
		if (setsockopt(to, opts[i].level, opts[i].name, a, la) < 0)
			return -1;
	}
	return 0;
}

/* Whether the program bound fd (an address or a port). */
static bool bound(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
		return true; /* cannot tell: do not hedge */
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		return in->sin_port || in->sin_addr.s_addr;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)&ss;
		return in6->sin6_port ||
		       !IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
	}
	return true;
}

/* Ends the hedge, if one runs: as neither success nor failure. */
static void drop_spare(struct race *r)
{
	if (r->spare < 0)
		return;
	bw_call_release(&r->h);
	bw_real.close(r->spare);
	r->spare = -1;
}

/* Starts the hedge to r->to: bound to its destination, its breaker closed,
 * a spare socket with fd's options, the budget's grant, the admission,
 * the connect.  On any refusal r->spare stays -1 and nothing is held. */
static void launch(struct bw_conn *c, int fd, int family, struct race *r,
		   uint64_t now_ns)
{
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	const struct bw_settings *s = bw_settings_for(c->rule);

	r->spare = -1;
	if (hedge_bind(&r->h, (struct sockaddr *)&r->to, r->tolen) < 0)
		return;
	struct bw_dest *hd = r->h.d;
	if (hd && (atomic_load_explicit(&hd->forced, memory_order_relaxed) ==
			   BW_FORCE_OPEN ||
		   bw_breaker_view(hd, now_ns, NULL) != BW_BREAKER_CLOSED))
		return;
	int sp = bw_real.socket(r->to.ss_family,
				SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				IPPROTO_TCP);
	if (sp < 0)
		return;
	/* A fresh number: whatever the table still holds for it is stale
	 * (doc/design.md L4); the spare itself is never tracked. */
	struct bw_conn *old = bw_fd_drop(sp);
	if (old)
		bw_conn_free(old);
	if (copy_opts(fd, sp, family, r->to.ss_family) < 0 ||
	    (d && !bw_retry_budget_take(d, s, now_ns)))
		goto fail;
	if (bw_call_admit(&r->h, sp, false, now_ns) < 0)
		goto fail;
	r->t0_ns = bw_clock_ns();
	if (bw_real.connect(sp, (struct sockaddr *)&r->to, r->tolen) < 0 &&
	    errno != EINPROGRESS) {
		bw_call_release(&r->h);
		goto fail;
	}
	r->spare = sp;
	return;
fail:
	bw_real.close(sp);
}

/* The hedge won: its socket becomes the program's fd, and c its
 * connection.  0, or -1 when the swap could not be made (nothing
 * changed; the caller drops the hedge). */
static int adopt(struct bw_conn *c, int fd, int fl, struct race *r)
{
	int fdfl = bw_real.fcntl(fd, F_GETFD);
	if (fdfl < 0 || bw_real.fcntl(r->spare, F_SETFL, fl) < 0)
		return -1;
	/* The program's epoll registrations name the open file the dup3
	 * closes: out of the kernel's sets before, back in after, on the
	 * winner (shim/async.c keeps them; none for a blocking connect). */
	bw_async_ep_hide(c);
	int rc =
		bw_real.dup3(r->spare, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0);
	bw_async_ep_show(c);
	if (rc < 0)
		return -1;
	bw_real.close(r->spare);
	r->spare = -1;
	bw_call_release(c); /* the program's attempt lost: neither */
	bw_conn_set_rule(c, r->h.rule);
	c->d = r->h.d;
	c->ten = r->h.ten;
	c->io_timeout = r->h.io_timeout;
	c->probe = r->h.probe;
	c->slot = r->h.slot;
	c->t0_ns = r->t0_ns;
	memset(&c->peer, 0, sizeof(c->peer));
	c->peer.family = r->to.ss_family;
	if (r->to.ss_family == AF_INET) {
		const struct sockaddr_in *in =
			(const struct sockaddr_in *)&r->to;
		c->peer.port = in->sin_port;
		memcpy(c->peer.addr, &in->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)&r->to;
		c->peer.port = in6->sin6_port;
		memcpy(c->peer.addr, &in6->sin6_addr, 16);
	}
	return 0;
}

/* The outcome of a connect poll reported done on: ours to read, since
 * the program asked for a blocking connect and never sees the pending
 * state (as timed_connect).  0 connected, else the socket's error as
 * SO_ERROR holds it (a positive errno), or getsockopt's own. */
static int so_error(int fd)
{
	int e = 0;
	socklen_t l = sizeof(e);
	if (bw_real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
		return errno;
	return e;
}

/* Leaves a socket whose attempt ended (failed, or past the deadline)
 * reconnectable, as a failed blocking connect is (doc/design.md L7). */
static void dissolve(int fd)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	bw_real.connect(fd, &unspec, sizeof(unspec));
}

int bw_hedge_connect(struct bw_conn *c, int fd, const struct sockaddr *sa,
		     socklen_t len, uint64_t delay_ns, uint64_t timeout_ns)
{
	int family = 0, fl;
	socklen_t flen = sizeof(family);
	struct race r = { .spare = -1 };

	if (atomic_load_explicit(&c->refs, memory_order_relaxed) != 1 ||
	    !bw_names_next(sa, len, &r.to, &r.tolen))
		goto pass;
	fl = bw_real.fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK) || bound(fd) ||
	    bw_real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &flen) < 0 ||
	    bw_real.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		goto pass;

	uint64_t start = bw_clock_ns();
	uint64_t deadline = timeout_ns ? start + timeout_ns : UINT64_MAX;
	uint64_t hedge_at = start + delay_ns;
	bool launched = false, orig_live = true;
	int rc = bw_sysret(bw_real.connect(fd, sa, len));
	int err = -rc, orig_err = 0;

	while (rc < 0 && err == EINPROGRESS) {
		uint64_t now = bw_clock_ns();
		if (now >= deadline) {
			if (orig_live)
				dissolve(fd);
			err = orig_live ? ETIMEDOUT : orig_err;
			break;
		}
		if (!launched && now >= hedge_at) {
			launched = true;
			launch(c, fd, family, &r, now);
		}
		uint64_t until = launched || hedge_at > deadline ? deadline
								 : hedge_at;
		struct pollfd p[2] = {
			{ .fd = orig_live ? fd : -1, .events = POLLOUT },
			{ .fd = r.spare, .events = POLLOUT },
		};
		int n = bw_wait(p, 2, until);
		if (n < 0) {
			/* EINTR, a signal without SA_RESTART (one with it
			 * does not end the wait: wait.c): the program's
			 * attempt goes on in the kernel, unless it already
			 * failed. */
			err = orig_live ? -n : orig_err;
			break;
		}
		if (n == 0)
			continue;
		if (orig_live && p[0].revents) {
			int e = so_error(fd);
			if (e == 0) {
				rc = 0; /* the program's attempt won */
				err = 0;
				break;
			}
			orig_live = false;
			orig_err = e;
			dissolve(fd);
			if (r.spare < 0) {
				err = e; /* not hedged, or the hedge failed */
				break;
			}
		}
		if (r.spare >= 0 && p[1].revents) {
			if (so_error(r.spare) == 0 &&
			    adopt(c, fd, fl, &r) == 0) {
				rc = 0; /* the hedge won */
				err = 0;
				break;
			}
			drop_spare(&r);
			if (!orig_live) {
				err = orig_err;
				break;
			}
		}
	}
	drop_spare(&r);
	bw_real.fcntl(fd, F_SETFL, fl);
	return rc == 0 ? BW_HEDGE_CONNECTED : -err;
pass:
	return BW_HEDGE_PASSED;
}

/* ---- non-blocking connects: the race inside the program's waits ------- */

/*
 * A non-blocking connect returns EINPROGRESS at once; its hedge cannot run
 * in the connect call.  bw_hedge_nb_check (before the connect: the bind
 * check needs the unbound socket) and bw_hedge_nb_arm (after EINPROGRESS)
 * record the race instead (a slot of races[], due at t0 + hedge.delay),
 * and the program's waits run it (shim/hook_wait.c): the race counts in
 * bw_async_pending, so every wait takes its working path; when the slot
 * is due the spare is launched as for a blocking connect (launch: options
 * copied, admitted, connect to the name's next address).  From then on a
 * poll or ppoll watches the spares with the program's fds
 * (bw_hedge_nb_poll: the spare's connect wakes it); select, pselect and
 * the epoll waits look at them every NB_RECHECK_NS (bw_hedge_nb_pump).
 *
 *   program's attempt completes first (connected or failed: the program
 *     sees it as without the shim) -> the spare is dropped, neither
 *     success nor failure;
 *   spare connects first -> adopt(): the program's epoll registrations
 *     taken out of the kernel's sets, dup3 onto the program's fd with the
 *     program's file status flags (O_NONBLOCK) and FD_CLOEXEC, the
 *     registrations put back (they now watch the winner: its EPOLLOUT is
 *     reported), c rebound to the winner's destination; the program's
 *     attempt is closed by the dup3 and counts as neither; the program's
 *     next wait sees the fd writable and its SO_ERROR read 0, which
 *     records the one connect (exchange.c, async.c);
 *   spare fails -> dropped; the program's attempt goes on;
 *   the program closes the fd, connects it elsewhere (AF_UNSPEC), dups it
 *     (two fds would keep different sockets), or its connect leaves the
 *     ATTEMPT phase (connect.timeout, a failure retried) -> the race ends
 *     unswapped.
 *
 * Each slot is owned by whichever thread holds its BUSY state (CAS, never
 * waited for); a close that finds it busy leaves NB_CANCEL for the owner.
 * Limits: a program's attempt that fails ends the race (its failure goes
 * to the program and its retries, not to the spare); a program polling
 * more than NB_POLL_MAX - NB_MAX fds, and select/epoll waits, see a
 * spare's win up to NB_RECHECK_NS late; a program that never waits (busy
 * loops on connect/SO_ERROR) gets no hedge; options the program sets
 * between the spare's launch and the swap are not carried (they are
 * copied at the launch); more than BW_EPREG_MAX epoll registrations of
 * one fd are not all carried (async.c); a closefrom() in another thread
 * may close a spare (its race then ends as "hedge failed").
 */

#define NB_MAX 32	/* races at once; more connects go unhedged */
#define NB_POLL_MAX 256 /* a program poll of more fds: no spare added */
#define NB_RECHECK_NS 10000000ull

enum { NB_FREE, NB_IDLE, NB_BUSY };

struct nb_race {
	_Atomic uint32_t st; /* NB_FREE, NB_IDLE (owned, at rest), NB_BUSY */
	_Atomic uint32_t cancel; /* the program's fd went away */
	_Atomic int pub; /* the running spare, for other threads' polls */
	struct bw_conn *_Atomic c;
	int fd, family;
	uint64_t due_ns; /* the hedge's time; 0 once launched */
	struct race r;	 /* r.spare >= 0: the spare's connect runs */
};

static struct nb_race races[NB_MAX];
_Atomic uint32_t bw_hedge_nb_live;

bool bw_hedge_nb_check(struct bw_conn *c, int fd, const struct sockaddr *sa,
		       socklen_t len)
{
	struct sockaddr_storage to;
	socklen_t tolen;
	bool ok = atomic_load_explicit(&c->refs, memory_order_relaxed) == 1 &&
		  bw_names_next(sa, len, &to, &tolen);
	if (ok) {
		int fl = bw_real.fcntl(fd, F_GETFL);
		ok = fl >= 0 && (fl & O_NONBLOCK) && !bound(fd);
	}
	return ok;
}

void bw_hedge_nb_arm(struct bw_conn *c, int fd, const struct sockaddr *sa,
		     socklen_t len, uint64_t due_ns)
{
	int family = 0;
	socklen_t flen = sizeof(family);
	struct sockaddr_storage to;
	socklen_t tolen;

	if (!bw_names_next(sa, len, &to, &tolen) ||
	    bw_real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &flen) < 0)
		return;
	for (int i = 0; i < NB_MAX; i++) {
		uint32_t want = NB_FREE;
		struct nb_race *x = &races[i];
		if (!atomic_compare_exchange_strong(&x->st, &want, NB_BUSY))
			continue;
		atomic_store(&x->cancel, 0);
		x->c = c;
		x->fd = fd;
		x->family = family;
		x->due_ns = due_ns ? due_ns : 1;
		x->r.spare = -1;
		atomic_store(&x->pub, -1);
		x->r.to = to;
		x->r.tolen = tolen;
		atomic_fetch_add(&bw_hedge_nb_live, 1);
		/* The program's waits take their working path (hook_wait.c)
		 * while a race is on, as for an async connect. */
		atomic_fetch_add(&bw_async_pending, 1);
		atomic_store(&x->st, NB_IDLE);
		break;
	}
}

/* Ends x's race (its owner: NB_BUSY held): the spare, if any, dropped as
 * neither success nor failure; a spare that a program's closefrom() took
 * (POLLNVAL) is not closed again: the number may be the program's now. */
static void nb_end(struct nb_race *x, bool spare_gone)
{
	if (x->r.spare >= 0 && spare_gone) {
		bw_call_release(&x->r.h);
		x->r.spare = -1;
	}
	drop_spare(&x->r);
	atomic_store(&x->pub, -1);
	atomic_store(&x->c, NULL);
	atomic_fetch_sub(&bw_async_pending, 1);
	atomic_fetch_sub(&bw_hedge_nb_live, 1);
	atomic_store(&x->st, NB_FREE);
}

/* Whether x's program fd is still the one connect it raced for. */
static bool nb_valid(const struct nb_race *x)
{
	struct bw_conn *c = x->c;
	uint8_t ap;
	return !atomic_load(&x->cancel) && bw_fd_conn(x->fd) == c &&
	       atomic_load_explicit(&c->refs, memory_order_relaxed) == 1 &&
	       atomic_load(&c->state) == BW_CONN_CONNECTING &&
	       ((ap = atomic_load(&c->aphase)) == BW_ASYNC_NONE ||
		ap == BW_ASYNC_ATTEMPT);
}

/* Runs x's due work (x owned).  Returns whether the race goes on. */
static bool nb_step(struct nb_race *x, uint64_t now)
{
	if (!nb_valid(x)) {
		nb_end(x, false);
		return false;
	}
	if (x->due_ns) {
		if (now < x->due_ns)
			return true;
		x->due_ns = 0;
		launch(x->c, x->fd, x->family, &x->r, now);
		if (x->r.spare < 0) { /* not admitted: no hedge */
			nb_end(x, false);
			return false;
		}
		atomic_store(&x->pub, x->r.spare);
	}
	struct pollfd p[2] = {
		{ .fd = x->fd, .events = POLLOUT },
		{ .fd = x->r.spare, .events = POLLOUT },
	};
	if (bw_real.poll(p, 2, 0) <= 0)
		return true;
	if (p[0].revents) { /* the program's attempt ended first */
		nb_end(x, false);
		return false;
	}
	if (p[1].revents & POLLNVAL) {
		nb_end(x, true);
		return false;
	}
	int fl = bw_real.fcntl(x->fd, F_GETFL);
	if (so_error(x->r.spare) == 0 && fl >= 0 && !atomic_load(&x->cancel))
		adopt(x->c, x->fd, fl, &x->r);
	nb_end(x, false); /* adopted (the spare is -1 then) or failed */
	return false;
}

/* Releases x after work, or cleans up for a cancel that came meanwhile. */
static void nb_put(struct nb_race *x)
{
	atomic_store(&x->st, NB_IDLE);
	uint32_t want = NB_IDLE;
	if (atomic_load(&x->cancel) &&
	    atomic_compare_exchange_strong(&x->st, &want, NB_BUSY))
		nb_end(x, false);
}

/* Runs every race's due work; the next due time (UINT64_MAX: none), and
 * in *running the number of spares whose connect runs. */
static uint64_t nb_pump(uint64_t now, int *running)
{
	uint64_t next = UINT64_MAX;
	*running = 0;
	for (int i = 0; i < NB_MAX; i++) {
		struct nb_race *x = &races[i];
		uint32_t want = NB_IDLE;
		if (!atomic_compare_exchange_strong(&x->st, &want, NB_BUSY)) {
			/* Another thread is on it: look again soon. */
			if (want == NB_BUSY && now + 1000000 < next)
				next = now + 1000000;
			continue;
		}
		if (!nb_step(x, now))
			continue; /* ended: the slot is free */
		if (x->due_ns && x->due_ns < next)
			next = x->due_ns;
		if (x->r.spare >= 0)
			++*running;
		nb_put(x);
	}
	return next;
}

uint64_t bw_hedge_nb_pump(uint64_t now_ns)
{
	int running;
	uint64_t next = nb_pump(now_ns, &running);
	if (running && now_ns + NB_RECHECK_NS < next)
		next = now_ns + NB_RECHECK_NS;
	return next;
}

/* Appends a pollfd for every running spare to p (room for cap). */
static nfds_t nb_spares(struct pollfd *p, nfds_t cap)
{
	nfds_t k = 0;
	for (int i = 0; i < NB_MAX && k < cap; i++) {
		struct nb_race *x = &races[i];
		int sp = atomic_load(&x->pub); /* stale: wakes us early */
		if (sp >= 0)
			p[k++] = (struct pollfd){ .fd = sp, .events = POLLOUT };
	}
	return k;
}

void bw_hedge_nb_forget(struct bw_conn *c)
{
	for (int i = 0; i < NB_MAX; i++) {
		struct nb_race *x = &races[i];
		if (atomic_load(&x->st) == NB_FREE || atomic_load(&x->c) != c)
			continue;
		atomic_store(&x->cancel, 1);
		uint32_t want = NB_IDLE;
		if (atomic_compare_exchange_strong(&x->st, &want, NB_BUSY))
			nb_end(x, false);
	}
}

void bw_hedge_nb_fork_child(void)
{
	/* The parent runs its races on; the child's copies of the spares
	 * are closed, and a slot a parent thread held at the fork is freed
	 * (that thread does not exist here). */
	for (int i = 0; i < NB_MAX; i++) {
		struct nb_race *x = &races[i];
		if (atomic_load(&x->st) == NB_FREE)
			continue;
		if (x->r.spare >= 0)
			bw_real.close(x->r.spare);
		x->r.spare = -1;
		atomic_store(&x->pub, -1);
		atomic_store(&x->c, NULL);
		atomic_store(&x->st, NB_FREE);
	}
	atomic_store(&bw_hedge_nb_live, 0);
}

int bw_hedge_nb_poll(struct pollfd *fds, nfds_t n, uint64_t deadline_ns,
		     const sigset_t *mask)
{
	struct pollfd ext[NB_POLL_MAX];
	for (;;) {
		int running;
		uint64_t now = bw_clock_ns();
		uint64_t until = nb_pump(now, &running);
		bool fit = n + NB_MAX <= NB_POLL_MAX;
		nfds_t k = 0;
		if (deadline_ns < until)
			until = deadline_ns;
		if (fit && running) {
			memcpy(ext, fds, n * sizeof(*fds));
			k = nb_spares(ext + n, NB_MAX);
		} else if (running && now + NB_RECHECK_NS < until) {
			until = now + NB_RECHECK_NS;
		}
		struct timespec ts = { 0, 0 }, *tsp = NULL;
		if (until != UINT64_MAX) {
			uint64_t left = until > now ? until - now : 0;
			ts.tv_sec = (time_t)(left / 1000000000ull);
			ts.tv_nsec = (long)(left % 1000000000ull);
			tsp = &ts;
		}
		int rc = k ? bw_real.ppoll(ext, n + k, tsp, mask)
			   : bw_real.ppoll(fds, n, tsp, mask);
		if (rc < 0)
			return rc;
		if (k) {
			int seen = 0;
			for (nfds_t i = 0; i < n; i++) {
				fds[i].revents = ext[i].revents;
				seen += fds[i].revents != 0;
			}
			if (seen < rc) /* a spare answered: settle it now */
				nb_pump(bw_clock_ns(), &running);
			rc = seen;
		}
		if (rc > 0 || bw_clock_ns() >= deadline_ns)
			return rc;
	}
}
