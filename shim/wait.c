/* SPDX-License-Identifier: MIT */
/*
 * shim/wait.c: poll one fd until a deadline (see wait.h).
 * Owns: bw_wait_fd.  Never: touches errno, allocates.  Context: connect and
 * receive hooks (AS-safe: poll through bw_real).
 */
#include <errno.h>
#include <poll.h>

#include "shim/internal.h"
#include "shim/real.h"
#include "shim/wait.h"

/* poll takes an int of milliseconds: a day per call at most. */
#define BW_WAIT_SLICE_MS 86400000ull

int bw_wait_fd(int fd, short events, uint64_t deadline_ns)
{
	int saved = errno;
	for (;;) {
		uint64_t now = bw_clock_ns();
		if (now >= deadline_ns)
			break;
		uint64_t ms = (deadline_ns - now + 999999) / 1000000;
		struct pollfd p = { .fd = fd, .events = events };
		int n = bw_real.poll(&p, 1,
				     (int)(ms > BW_WAIT_SLICE_MS ? BW_WAIT_SLICE_MS
								 : ms));
		if (n > 0) {
			errno = saved;
			return 1;
		}
		if (n < 0) {
			int e = errno;
			errno = saved;
			return -e;
		}
	}
	errno = saved;
	return 0;
}

/* BEGIN-TEMP-BULKHEAD */
/* A temporary copy for the bulkhead's wait until the signals branch (which
 * owns this function) is merged: true when an interrupted call would have
 * been restarted, i.e. every signal with a handler installed has
 * SA_RESTART.  SIG_DFL and SIG_IGN do not count (such a signal either
 * does not interrupt or ends the process).  sigaction is AS-safe and not
 * hooked by the shim. */
#include <signal.h>
#include <stdbool.h>

bool bw_wait_signal_restarts(void)
{
	int saved = errno;
	bool all = true;

	for (int sig = 1; sig < NSIG && all; sig++) {
		struct sigaction old;

		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (sigaction(sig, NULL, &old) != 0)
			continue; /* reserved by libc, or not a signal */
		if (!(old.sa_flags & SA_SIGINFO) &&
		    (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN))
			continue;
		if (!(old.sa_flags & SA_RESTART))
			all = false;
	}
	errno = saved;
	return all;
}
/* END-TEMP-BULKHEAD */
