/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_signal.c: surviving a truncated state file.  A process that
 * touches a shared mapping past the end of its file gets SIGBUS; anyone
 * able to write /dev/shm/bulwark-<uid>-<name> (the user, a cleanup job, a
 * `truncate -s 0`) could otherwise kill every program sharing the state.
 * While a shared segment is mapped, bulwark's own SIGBUS handler is
 * installed: a fault inside the segment turns the whole mapping into
 * private anonymous memory in place (bw_state_lose), logs "fell back to
 * private state" once (state_error) and returns, so the faulting access is
 * made again, on private memory.  Every other SIGBUS is handed to what the
 * program asked for, exactly as without bulwark.
 *
 * Owns: the exported sigaction and signal (SIGBUS only; every other signal
 * goes straight to libc), bw_sigbus_guard.  The program's SIGBUS
 * disposition is kept here while ours is installed: sigaction(SIGBUS, ...)
 * stores and returns it, and the kernel's action is re-installed with the
 * program's SA_RESTART and sa_mask, so interrupted calls restart as the
 * program chose.
 *
 * Handing a SIGBUS on: to the program's handler, with its sa_mask (and
 * SIGBUS unblocked under SA_NODEFER; SA_RESETHAND honoured); under SIG_DFL
 * (or SIG_IGN for a fault, which the kernel never lets a process ignore)
 * the default action is put back and the fault happens again on return,
 * or, for a SIGBUS sent by kill, is raised again: the process ends with
 * SIGBUS as it would have.  SIG_IGN for a sent SIGBUS: ignored.
 * Limits: sysv_signal, bsd_signal and sigset are not interposed (they
 * reach libc directly, replacing our handler: the process then merely
 * loses the truncation guard); a handler installed with them is still
 * called by the kernel as usual.
 * Context: the handler is AS-safe (mmap, sigaction, sigprocmask, write).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "core/state.h"
#include "shim/internal.h"
#include "shim/log.h"

/* libc's own entry point: not exported by us, so never our hook. */
extern int __sigaction(int, const struct sigaction *, struct sigaction *);

/* The program's SIGBUS disposition, in two copies: a writer fills the one
 * not current, then publishes its index; the handler reads the current
 * one.  Writers (sigaction calls for SIGBUS, rare) take turns. */
static struct sigaction prog[2];
static _Atomic int prog_cur;
static atomic_flag prog_writer = ATOMIC_FLAG_INIT;
/* Our handler is installed for bw_g.state. */
static _Atomic int guarded;
/* The segment was lost (once); its remap failed. */
static _Atomic int lost, lose_failed;

static void on_bus(int sig, siginfo_t *si, void *ctx);

/* Installs our handler with the program's restart flag and mask. */
static int install(const struct sigaction *p)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | (p->sa_flags & SA_RESTART);
	sa.sa_mask = p->sa_mask;
	return __sigaction(SIGBUS, &sa, NULL);
}

/* Makes p the program's disposition (bounded wait for another writer). */
static void prog_set(const struct sigaction *p)
{
	for (int i = 0; i < 1000 && atomic_flag_test_and_set(&prog_writer); i++)
		;
	int next = !atomic_load(&prog_cur);
	prog[next] = *p;
	atomic_store(&prog_cur, next);
	atomic_flag_clear(&prog_writer);
}

/* The default action, as the program would have had it. */
static void die_default(siginfo_t *si)
{
	struct sigaction d;

	memset(&d, 0, sizeof(d));
	d.sa_handler = SIG_DFL;
	sigemptyset(&d.sa_mask);
	atomic_store(&guarded, 0);
	__sigaction(SIGBUS, &d, NULL);
	/* A fault happens again when we return; a sent signal does not: it
	 * is raised (blocked in here, delivered on return). */
	if (si && si->si_code > 0 && si->si_code != BUS_MCEERR_AO)
		return;
	raise(SIGBUS);
}

static void hand_on(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction p = prog[atomic_load(&prog_cur)];
	sigset_t old;

	if (p.sa_handler == SIG_IGN) {
		if (!si || si->si_code <= 0)
			return;
		die_default(si); /* a fault cannot be ignored */
		return;
	}
	if (p.sa_handler == SIG_DFL) {
		die_default(si);
		return;
	}
	if (p.sa_flags & SA_RESETHAND) {
		struct sigaction d;
		memset(&d, 0, sizeof(d));
		d.sa_handler = SIG_DFL;
		sigemptyset(&d.sa_mask);
		prog_set(&d);
	}
	sigset_t mask = p.sa_mask;
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	if (p.sa_flags & SA_NODEFER) {
		sigset_t bus;
		sigemptyset(&bus);
		sigaddset(&bus, SIGBUS);
		pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	}
	if (p.sa_flags & SA_SIGINFO)
		p.sa_sigaction(sig, si, ctx);
	else
		p.sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void on_bus(int sig, siginfo_t *si, void *ctx)
{
	int saved = errno;

	if (si && si->si_code > 0 && !atomic_load(&lose_failed) &&
	    bw_state_contains(&bw_g.state, si->si_addr)) {
		/* Another thread faulting meanwhile returns at once and
		 * faults again until the first one has remapped. */
		if (!atomic_exchange(&lost, 1)) {
			int rc = bw_state_lose(&bw_g.state);
			if (rc < 0) {
				atomic_store(&lose_failed, 1);
				hand_on(sig, si, ctx);
			} else {
				bw_log(BW_LOG_WARN, "state_error", NULL,
				       "msg=%q state=%s action=private",
				       "the state file was truncated under "
				       "us: fell back to private state",
				       bw_g.state_name);
			}
		}
		errno = saved;
		return;
	}
	hand_on(sig, si, ctx);
	errno = saved;
}

int bw_sigbus_guard(void)
{
	struct sigaction old;

	if (!bw_g.state.shared || atomic_load(&guarded))
		return 0;
	if (__sigaction(SIGBUS, NULL, &old) < 0)
		return -errno;
	prog[0] = old;
	atomic_store(&prog_cur, 0);
	if (install(&old) < 0)
		return -errno;
	atomic_store(&guarded, 1);
	return 0;
}

/* The program's view of sigaction: SIGBUS while guarded is kept here (see
 * the top).  Returns 0 or -errno, errno untouched: the shim's bw_sys entry
 * (init.c), so wait.c reads the program's disposition, and the body of the
 * exported hook.  AS-safe: yes. */
int bw__sigaction(int sig, const struct sigaction *act,
		  struct sigaction *oldact)
{
	int saved = errno, rc = 0;

	if (BW_LIKELY(sig != SIGBUS || !atomic_load(&guarded))) {
		if (__sigaction(sig, act, oldact) < 0)
			rc = -errno;
		errno = saved;
		return rc;
	}
	struct sigaction prev = prog[atomic_load(&prog_cur)];
	if (act) {
		if (install(act) < 0) {
			rc = -errno; /* from the kernel: nothing changed */
			errno = saved;
			return rc;
		}
		errno = saved;
		prog_set(act);
	}
	if (oldact)
		*oldact = prev;
	return 0;
}

/* sigaction(2).  AS-safe: yes. */
BW_EXPORT int sigaction(int sig, const struct sigaction *act,
			struct sigaction *oldact)
{
	if (BW_LIKELY(sig != SIGBUS || !atomic_load(&guarded)))
		return __sigaction(sig, act, oldact);
	int rc = bw__sigaction(sig, act, oldact);
	return rc < 0 ? bw_hook_fail(rc) : 0;
}

/* signal(3): glibc's BSD semantics (SA_RESTART, the signal blocked in
 * its handler), through sigaction for SIGBUS; libc's own otherwise. */
BW_EXPORT __sighandler_t signal(int sig, __sighandler_t h)
{
	if (BW_LIKELY(sig != SIGBUS || !atomic_load(&guarded)))
		return ssignal(sig, h);
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	memset(&old, 0, sizeof(old));
	sa.sa_handler = h;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, sig);
	int rc = bw__sigaction(sig, &sa, &old);
	if (rc < 0) {
		bw_hook_fail(rc);
		return SIG_ERR;
	}
	return old.sa_handler;
}
