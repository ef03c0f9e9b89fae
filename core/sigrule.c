/* SPDX-License-Identifier: MIT */
/*
 * core/sigrule.c: the signal rule (sigrule.h): whether a signal that
 * interrupted a wait would have interrupted the program's own call.
 * Shared by the shim's waits (shim/wait.c) and the bulkhead's own wait
 * (core/bulkhead.c), which the command links without the shim's waits.
 * Owns: bw_sigrule_*.  Never: touches errno, allocates, blocks.
 * Context: any thread or signal handler.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>

#include "core/sigrule.h"
#include "core/sys.h"

bool bw_sigrule_interrupts(int sig)
{
	struct sigaction sa;
	if (bw_sys.sigaction(sig, NULL, &sa) != 0)
		return false; /* glibc's own signals: restarted */
	if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
		return false;
	return !(sa.sa_flags & SA_RESTART);
}

/* The signals a faulting instruction raises in its own thread: their
 * handlers (crash reporters, runtimes, sanitizers: rarely SA_RESTART)
 * cannot have interrupted a wait. */
static bool synchronous(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE ||
	       sig == SIGILL || sig == SIGTRAP || sig == SIGSYS;
}

enum bw_sigrule_verdict bw_sigrule_handlers(bool all_signals)
{
	sigset_t cur;
	int v = BW_SIGRULE_RESTART;
	sigemptyset(&cur);
	if (!all_signals && pthread_sigmask(SIG_BLOCK, NULL, &cur) != 0)
		sigemptyset(&cur);
	for (int s = 1; s < _NSIG && v != BW_SIGRULE_MIXED; s++) {
		struct sigaction sa;
		if (synchronous(s) || sigismember(&cur, s) == 1 ||
		    bw_sys.sigaction(s, NULL, &sa) != 0 ||
		    sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		v |= (sa.sa_flags & SA_RESTART) ? 2 : BW_SIGRULE_INTR;
	}
	return v == 2 ? BW_SIGRULE_RESTART : (enum bw_sigrule_verdict)v;
}

bool bw_sigrule_restarts(void)
{
	return bw_sigrule_handlers(false) == BW_SIGRULE_RESTART;
}
