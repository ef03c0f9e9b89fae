/* SPDX-License-Identifier: MIT */
/*
 * core/sigrule.h: the signal rule, read from the process's dispositions.
 * A wait the shim makes for the program (shim/wait.c) or for a bulkhead
 * slot (core/bulkhead.c) that a signal interrupts must end with EINTR
 * exactly when the program's own call would have: when the handler that
 * ran was installed without SA_RESTART (signal(7)).  The dispositions
 * are read through bw_sys.sigaction (core/sys.h), which in the shim is
 * the program's own view of them.  Never: touches errno, allocates,
 * blocks.  AS-safe: yes (sigaction(2) and pthread_sigmask only).
 */
#ifndef BW_CORE_SIGRULE_H
#define BW_CORE_SIGRULE_H

#include <stdbool.h>

/* Whether the disposition of sig would end the program's call with
 * EINTR: a handler installed without SA_RESTART. */
bool bw_sigrule_interrupts(int sig);

/* What the handlers installed for the signals open in this thread (all
 * signals with all_signals) would do to an interrupted call: every one
 * restarts it (or there is none), every one interrupts it, or they
 * disagree.  A signal a faulting instruction raises (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGTRAP, SIGSYS) is left out: its handler cannot have
 * interrupted a wait.  Costs one sigaction(2) per signal. */
enum bw_sigrule_verdict {
	BW_SIGRULE_RESTART = 0,
	BW_SIGRULE_INTR = 1,
	BW_SIGRULE_MIXED = 3,
};
enum bw_sigrule_verdict bw_sigrule_handlers(bool all_signals);

/* A wait was just interrupted by EINTR and the signal is unknown: true
 * when the program's call would have been restarted (every handler
 * installed for a signal this thread does not block has SA_RESTART; a
 * signal with no handler, or a synchronous one as above, cannot have
 * caused the EINTR).  Call it only after an EINTR. */
bool bw_sigrule_restarts(void);

#endif
