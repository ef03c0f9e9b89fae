/* SPDX-License-Identifier: MIT */
/*
 * shim/wait.h: waiting on one fd until a CLOCK_MONOTONIC deadline, the
 * one poll loop behind connect.timeout, the retries' attempts and
 * io.timeout.
 */
#ifndef BW_SHIM_WAIT_H
#define BW_SHIM_WAIT_H

#include <stdint.h>

/* Polls fd for events until deadline_ns.  Returns 1 when fd is ready (or
 * has an error or hang-up to report), 0 once the deadline passed, or
 * -errno (-EINTR when a signal arrived: the caller decides whether to go
 * on).  Never sets errno.  AS-safe: yes. */
int bw_wait_fd(int fd, short events, uint64_t deadline_ns);

/* BEGIN-TEMP-BULKHEAD */
#include <stdbool.h>
/* True when a call interrupted by a signal would have been restarted by
 * the kernel: every installed handler has SA_RESTART (SIG_DFL and SIG_IGN
 * do not count).  The rule for the shim's own waits: EINTR without
 * SA_RESTART, otherwise resume with the same deadline.  Keeps errno.
 * AS-safe: yes (sigaction). */
bool bw_wait_signal_restarts(void);
/* END-TEMP-BULKHEAD */

#endif
