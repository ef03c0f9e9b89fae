/* SPDX-License-Identifier: MIT */
/*
 * shim/exchange.c: calls on connections the program already has
 * (bulwark-policy(7) CALLS): the outcome of a non-blocking connect, taken where
 * the program learns it (its own getsockopt(SO_ERROR), the first send or
 * receive, close before completion: doc/design.md L6), and exchanges: from the
 * first send after a receive (or after the connect) to the next receive that
 * returns data, or that returns the peer's close after the program's own
 * shutdown of its sending side (one-way protocols: no failure).
 * Owns: bw_io_*.  Never: reads SO_ERROR itself (that would clear the
 * program's error), changes a socket's mode, allocates.  Context: any I/O
 * hook (AS-safe).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "shim/calls.h"
#include "shim/exchange.h"
#include "shim/real.h"
#include "shim/wait.h"

/* The kernel's view of a connecting socket without touching SO_ERROR:
 * 1 established (or past it), 0 still connecting, -1 failed/closed. */
static int tcp_progress(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (bw_real.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -1;
	switch (ti.tcpi_state) {
	case TCP_SYN_SENT:
	case TCP_SYN_RECV:
		return 0;
	case TCP_CLOSE:
		return -1;
	default:
		return 1;
	}
}

void bw__connect_done(struct bw_conn *c, int err, uint64_t now_ns)
{
	uint64_t lat = now_ns > c->t0_ns ? now_ns - c->t0_ns : 0;
	if (err == 0) {
		c->phase = BW_PHASE_IDLE;
		BW_INVARIANT(
			BW_CONN_IN(c, BW_CONN_BIT(BW_CONN_FRESH) |
					      BW_CONN_BIT(BW_CONN_CONNECTING)),
			"bw_conn transition");
		atomic_store_explicit(&c->state, BW_CONN_ESTABLISHED,
				      memory_order_release);
		bw_call_record(c, BW_CALL_CONNECT, false, lat, now_ns);
	} else if (bw_call_connect_failed(err)) {
		/* Reconnectable on the same fd (doc/design.md L7); whether the
		 * kernel still holds the failed attempt (c->stale) is for the
		 * caller to say: it knows how the failure was learnt. */
		bw_conn_set_state(c,
				  BW_CONN_BIT(BW_CONN_FRESH) |
					  BW_CONN_BIT(BW_CONN_CONNECTING),
				  BW_CONN_FRESH);
		bw_call_record(c, BW_CALL_CONNECT, true, lat, now_ns);
	}
}

/* A pending connect failed and the program learnt it from SO_ERROR, a send
 * or a receive: the socket still holds the attempt, so its next connect
 * reports ECONNABORTED first (doc/design.md L7). */
static void async_failed(struct bw_conn *c, int err)
{
	bw__connect_done(c, err, bw_clock_ns());
	c->stale = 1;
}

static void exchange_failed(struct bw_conn *c, uint64_t now_ns)
{
	uint64_t lat = c->phase == BW_PHASE_SENT && now_ns > c->t0_ns
			       ? now_ns - c->t0_ns
			       : 0;
	bw_conn_set_state(c,
			  BW_CONN_BIT(BW_CONN_ESTABLISHED) |
				  BW_CONN_BIT(BW_CONN_CONNECTING),
			  BW_CONN_DEAD);
	bw_call_record(c, BW_CALL_EXCHANGE, true, lat, now_ns);
}

/* A send or receive on a connecting socket: the connect is settled if the
 * call tells (it went through, or failed with a connect error). */
static void settle_connecting(struct bw_conn *c, int fd, ssize_t rc, int err)
{
	if (rc >= 0) {
		bw__connect_done(c, 0, bw_clock_ns());
	} else if (bw_call_connect_failed(err)) {
		async_failed(c, err);
	} else if (err == EAGAIN || err == EWOULDBLOCK) {
		if (tcp_progress(fd) > 0)
			bw__connect_done(c, 0, bw_clock_ns());
	}
}

void bw_io_sent(struct bw_conn *c, int fd, ssize_t rc, int err, uint64_t t0)
{
	int st = atomic_load_explicit(&c->state, memory_order_relaxed);
	if (st == BW_CONN_CONNECTING) {
		settle_connecting(c, fd, rc, err);
		if (rc <= 0 || atomic_load(&c->state) != BW_CONN_ESTABLISHED)
			return;
		t0 = bw_clock_ns(); /* this send starts the first exchange */
	} else if (st != BW_CONN_ESTABLISHED) {
		return;
	}
	if (rc > 0) {
		if (c->phase == BW_PHASE_IDLE && t0) {
			/* A new exchange: under the policy in force (a push
			 * since the connect: shim/live.c). */
			bw_live_exchange(c, c->live_gen, fd);
			c->t0_ns = t0;
			c->phase = BW_PHASE_SENT;
		}
	} else if (rc < 0 && bw_call_exchange_failed(err)) {
		if (c->phase == BW_PHASE_IDLE)
			c->t0_ns = t0 ? t0 : bw_clock_ns();
		c->phase = BW_PHASE_SENT;
		exchange_failed(c, bw_clock_ns());
	}
}

void bw_io_received(struct bw_conn *c, int fd, ssize_t rc, int err, size_t want,
		    int flags)
{
	int st = atomic_load_explicit(&c->state, memory_order_relaxed);
	if (st == BW_CONN_CONNECTING) {
		settle_connecting(c, fd, rc, err);
		return;
	}
	if (st != BW_CONN_ESTABLISHED || c->phase != BW_PHASE_SENT ||
	    want == 0 || (flags & MSG_PEEK))
		return;
	/* Data answers; so does the peer's close after the program shut
	 * down its own sending side (a one-way protocol's end). */
	if (rc > 0 || (rc == 0 && c->wr_shut)) {
		uint64_t now = bw_clock_ns();
		c->phase = BW_PHASE_IDLE;
		bw_call_record(c, BW_CALL_EXCHANGE, false,
			       now > c->t0_ns ? now - c->t0_ns : 0, now);
	} else if (rc == 0 || bw_call_exchange_failed(err)) {
		/* The peer closed or reset before answering. */
		exchange_failed(c, bw_clock_ns());
	}
}

void bw_io_sockerr(struct bw_conn *c, int fd, int soerr)
{
	if (atomic_load(&c->state) != BW_CONN_CONNECTING)
		return;
	if (soerr)
		async_failed(c, soerr);
	else if (tcp_progress(fd) > 0)
		bw__connect_done(c, 0, bw_clock_ns());
}

void bw_io_settle(struct bw_conn *c, int fd)
{
	/* A connect closed before it completed is neither a success nor a
	 * failure (a Happy Eyeballs loser, doc/design.md L6); one that did
	 * complete unseen is a success. */
	int st = atomic_load(&c->state);
	if (st == BW_CONN_ESTABLISHED && c->phase == BW_PHASE_IDLE)
		bw_call_healthy(c);
	if (st == BW_CONN_CONNECTING) {
		if (tcp_progress(fd) > 0)
			bw__connect_done(c, 0, bw_clock_ns());
		else
			bw_call_release(c);
	}
	bw_call_end(c); /* the connection's slot goes with its last fd */
}

int bw_io_wait(struct bw_conn *c, int fd, int flags)
{
	const struct bw_settings *s = bw_settings_for(c->rule);
	if (atomic_load_explicit(&c->state, memory_order_relaxed) !=
		    BW_CONN_ESTABLISHED ||
	    (flags & MSG_DONTWAIT) || s->io_timeout_ns == 0)
		return 0;
	int fl = bw_real.fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK))
		return 0;
	/* Data, EOF or an error: the receive itself reports it.  A signal
	 * without SA_RESTART ends the receive with EINTR, as it would end
	 * the kernel's; any other signal leaves the wait going to the same
	 * deadline (wait.c): never a receive without one. */
	int w = bw_wait_fd(fd, POLLIN, bw_clock_ns() + s->io_timeout_ns);
	if (w == -EINTR)
		return -EINTR;
	if (w != 0)
		return 0;
	exchange_failed(c, bw_clock_ns());
	return -ETIMEDOUT;
}
