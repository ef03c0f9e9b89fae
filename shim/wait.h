/* SPDX-License-Identifier: MIT */
/*
 * shim/wait.h: every wait the shim makes on the program's behalf (a
 * connect under connect.timeout or hedge.delay, a receive under
 * io.timeout, the backoff between retries) goes through here, so that a
 * signal of the program's interrupts it exactly as it would interrupt the
 * program's own call: EINTR when the handler that runs lacks SA_RESTART,
 * otherwise the wait resumes with the same deadline (see wait.c).
 */
#ifndef BW_SHIM_WAIT_H
#define BW_SHIM_WAIT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/* At most this many fds per bw_wait. */
#define BW_WAIT_MAX_FDS 3

/* Polls fds[0..n) (n <= BW_WAIT_MAX_FDS; fd < 0 entries are ignored, as by
 * poll) until one is ready or the CLOCK_MONOTONIC deadline_ns passes.
 * Returns the number of ready entries (revents set as poll sets them), 0
 * once the deadline passed, -EINTR when a signal whose handler lacks
 * SA_RESTART arrived (its handler has run), or another -errno.  A signal
 * that the program's call would have survived (SA_RESTART, ignored, a
 * default that ignores or stops) never ends the wait.  Never sets errno.
 * AS-safe: yes (system calls only). */
int bw_wait(struct pollfd *fds, unsigned n, uint64_t deadline_ns);

/* bw_wait for one fd and events: 1 ready (or an error or hang-up to
 * report), 0 deadline, -EINTR, -errno. */
int bw_wait_fd(int fd, short events, uint64_t deadline_ns);

/* Sleeps until deadline_ns: 0, or -EINTR as bw_wait. */
int bw_wait_sleep(uint64_t deadline_ns);

#endif
