/* SPDX-License-Identifier: MIT */
/*
 * shim/exchange.h: what the I/O hooks tell the accounting: the outcome of a
 * pending non-blocking connect, learnt where the program learns it, and
 * request/response exchanges on established connections
 * (bulwark-policy(7) CALLS).
 */
#ifndef BW_SHIM_EXCHANGE_H
#define BW_SHIM_EXCHANGE_H

#include <stddef.h>
#include <sys/types.h>

#include "shim/fd_table.h"

/* Before a send-like call: the exchange start time when this send starts an
 * exchange, else 0.  AS-safe. */
static inline uint64_t bw_io_before_send(const struct bw_conn *c)
{
	return (atomic_load_explicit(&c->state, memory_order_relaxed) ==
			BW_CONN_ESTABLISHED &&
		c->phase == BW_PHASE_IDLE)
		       ? bw_clock_ns()
		       : 0;
}

/* A connect error bulwark read for the program (a poll retry that gave
 * up): the program's next send, receive or connect reports it, once, as
 * the kernel would have.  Returns -errno, or 0 when none is owed. */
static inline int bw_io_take_pending(struct bw_conn *c)
{
	int e = c->pending_err;
	c->pending_err = 0;
	return -e;
}

/* After a send-like call that returned rc with errno err.  AS-safe. */
void bw_io_sent(struct bw_conn *c, int fd, ssize_t rc, int err, uint64_t t0);
/* After a receive-like call that asked for want bytes with flags and
 * returned rc with errno err.  AS-safe. */
void bw_io_received(struct bw_conn *c, int fd, ssize_t rc, int err, size_t want,
		    int flags);
/* The program read SO_ERROR (value soerr) on c's fd.  AS-safe. */
void bw_io_sockerr(struct bw_conn *c, int fd, int soerr);
/* The last fd of c is about to be closed (fd still open).  AS-safe. */
void bw_io_settle(struct bw_conn *c, int fd);

/*
 * Before a blocking receive on c's fd: with io.timeout set, waits at most
 * that long for something to read.  Returns 0 to go on with the receive,
 * -ETIMEDOUT (the exchange is recorded as failed), or -EINTR when a
 * signal without SA_RESTART arrived (as the receive would fail).  Only a
 * blocking socket without MSG_DONTWAIT waits; the mode is read, never
 * changed.  AS-safe: yes.
 */
int bw_io_wait(struct bw_conn *c, int fd, int flags);

/* Internal to connect.c and exchange.c: a pending connect of c ended. */
void bw__connect_done(struct bw_conn *c, int err, uint64_t now_ns);

#endif
