/* SPDX-License-Identifier: MIT */
/*
 * shim/hedge.c: hedged connects (SPEC §3 hedge.delay).
 * Owns: bw_hedge_connect.  Never: changes the program's fd's blocking mode
 * as the program sees it (LESSONS 6), leaks its extra socket, allocates,
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
 * Not hedged (BW_HEDGE_PASS, the usual attempt instead): a non-blocking
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

#include "shim/breaker.h"
#include "shim/calls.h"
#include "shim/connect.h"
#include "shim/hedge.h"
#include "shim/internal.h"
#include "shim/names.h"
#include "shim/real.h"
#include "shim/retry.h"
#include "shim/wait.h"

/* The race in flight: the hedge's socket, its accounting, its target. */
struct race {
	int spare;                 /* -1: no hedge running */
	struct bw_conn h;          /* the hedge's rule, dest, probe, slot */
	uint64_t t0_ns;            /* when the hedge's connect started */
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
	return bw__connect_bind(h, sa, len) == 0 ? 0 : -1;
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
	 * (LESSONS 4); the spare itself is never tracked. */
	struct bw_conn *old = bw_fd_drop(sp);
	if (old)
		bw_conn_free(old);
	if (copy_opts(fd, sp, family, r->to.ss_family) < 0 ||
	    (d && !bw_retry_budget_take(d, s, now_ns)))
		goto fail;
	if (bw_call_admit(&r->h, sp, now_ns) < 0)
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
	if (fdfl < 0 || bw_real.fcntl(r->spare, F_SETFL, fl) < 0 ||
	    bw_real.dup3(r->spare, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
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
		const struct sockaddr_in *in = (const struct sockaddr_in *)&r->to;
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
 * state (as timed_connect). */
static int so_error(int fd)
{
	int e = 0;
	socklen_t l = sizeof(e);
	if (bw_real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
		e = errno;
	return e;
}

/* Leaves a socket whose attempt ended (failed, or past the deadline)
 * reconnectable, as a failed blocking connect is (LESSONS 7). */
static void dissolve(int fd)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	bw_real.connect(fd, &unspec, sizeof(unspec));
}

int bw_hedge_connect(struct bw_conn *c, int fd, const struct sockaddr *sa,
		     socklen_t len, uint64_t delay_ns, uint64_t timeout_ns)
{
	int saved = errno, family = 0, fl;
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
	int rc = bw_real.connect(fd, sa, len);
	int err = rc == 0 ? 0 : errno, orig_err = 0;

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
			if (so_error(r.spare) == 0 && adopt(c, fd, fl, &r) == 0) {
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
	errno = rc == 0 ? saved : err; /* libc leaves errno on success */
	return rc;
pass:
	errno = saved;
	return BW_HEDGE_PASS;
}
