/* SPDX-License-Identifier: MIT */
/*
 * shim/hedge.h: hedged connects (bulwark-policy(7) hedge.delay).  A blocking
 * connect to an address of a name that resolved to several (names.h) that is
 * still pending after hedge.delay races a connect to the name's next address;
 * the first to complete becomes the program's connection on its own fd.
 * Design and limits: shim/hedge.c.
 */
#ifndef BW_SHIM_HEDGE_H
#define BW_SHIM_HEDGE_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shim/fd_table.h"

/* What bw_hedge_connect did, when it did not fail (-errno). */
enum bw_hedge_result {
	BW_HEDGE_CONNECTED = 0, /* the program's attempt or the hedge won */
	BW_HEDGE_PASSED = 1,	/* not hedgeable: the usual attempt instead */
};

/*
 * One connect attempt of c (admitted by the caller for c's destination)
 * on the blocking socket fd to sa, hedged after delay_ns, the whole
 * attempt bounded by timeout_ns (0: the kernel's own).  Returns
 * BW_HEDGE_PASSED, touching nothing, when the attempt is not hedgeable (fd
 * non-blocking, bound, shared by another fd, sa of no recorded name with
 * a next address); BW_HEDGE_CONNECTED (c rebound to the winner's rule and
 * destination, c->t0_ns its start); or -errno: the program's own
 * attempt's error, -ETIMEDOUT past timeout_ns, -EINTR (the program's
 * attempt goes on in the kernel).  May change errno.  The caller accounts the
 * result for c as for any attempt.  AS-safe: yes.
 */
int bw_hedge_connect(struct bw_conn *c, int fd, const struct sockaddr *sa,
		     socklen_t len, uint64_t delay_ns, uint64_t timeout_ns);

/*
 * Non-blocking connects (shim/hedge.c, "the race inside the program's
 * waits").  bw_hedge_nb_live counts the races armed or running: while it
 * is 0 the poll hooks make their plain call.  AS-safe: all three.
 */
extern _Atomic uint32_t bw_hedge_nb_live;

/* Before a connect of c on fd to sa: whether it may be hedged in the
 * program's waits (fd non-blocking, not bound, not shared; sa of a
 * recorded name with a next address).  May change errno. */
bool bw_hedge_nb_check(struct bw_conn *c, int fd, const struct sockaddr *sa,
		       socklen_t len);

/* That connect (checked) returned EINPROGRESS: races a connect to the
 * name's next address from due_ns on, if a race slot is free; else
 * nothing.  May change errno. */
void bw_hedge_nb_arm(struct bw_conn *c, int fd, const struct sockaddr *sa,
		     socklen_t len, uint64_t due_ns);

/* A real ppoll(fds, n) until deadline_ns (UINT64_MAX: none, 0: no wait)
 * that runs the races meanwhile: launches due spares, watches running
 * ones with the program's fds, swaps a winner under the program's fd.
 * Returns as ppoll (results only for fds; -1 and errno). */
int bw_hedge_nb_poll(struct pollfd *fds, nfds_t n, uint64_t deadline_ns,
		     const sigset_t *mask);

/* For a wait that cannot watch the spares (epoll, select): runs the
 * races' due work now; returns when to run it again (a due hedge, or
 * every 10 ms while a spare's connect runs), UINT64_MAX for never. */
uint64_t bw_hedge_nb_pump(uint64_t now_ns);

/* c's last fd is going away: its race, if any, ends unswapped. */
void bw_hedge_nb_forget(struct bw_conn *c);

/* In a fork child: every race is the parent's; the child's copies of the
 * spares are closed.  Not AS-safe against the parent's threads (there
 * are none in the child). */
void bw_hedge_nb_fork_child(void);

#endif
