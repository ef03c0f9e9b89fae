/* SPDX-License-Identifier: MIT */
/*
 * shim/wait.c: the one place the shim waits on the program's behalf
 * (see wait.h), and the one place the signal rule lives:
 *
 *   a signal that arrives while the shim waits interrupts the wait with
 *   EINTR exactly when its handler was installed without SA_RESTART;
 *   otherwise (SA_RESTART, ignored, a default that ignores, stops or
 *   continues) the wait resumes with the SAME deadline.
 *
 * That is what the kernel does for the calls the shim waits for (connect,
 * recv: restarted after an SA_RESTART handler, EINTR otherwise; signal(7)),
 * and the deadline is kept so a stream of signals cannot stretch a
 * connect.timeout or an io.timeout.
 *
 * How the signal is known.  poll(2) fails with EINTR only when a handler
 * ran in this thread (a signal that is ignored, or whose default ignores,
 * stops or continues, makes the kernel restart the poll by itself).  So
 * when every handler the program installed has SA_RESTART, an EINTR means
 * "resume"; when none has, it means EINTR: the plain wait (one ppoll with
 * the program's own mask, nothing more) is exact, and costs nothing extra.
 * Only a program whose handlers disagree (some SA_RESTART, some not) needs
 * to know which signal came: for it the wait blocks every signal and polls
 * its fds together with a signalfd(2) of the signals the program's mask
 * leaves open.  A pending signal wakes the poll without being consumed;
 * sigpending(2) names it, its sigaction says whether it would interrupt,
 * then the program's mask is put back and the handler runs right there, in
 * this thread, before the hook returns.
 *
 * Why not that precise wait always (it was the first design): it costs
 * four more system calls and a signalfd per blocking wait (a Python
 * client's blocking receive under io.timeout took about twice as long per
 * round trip on a loaded 2-CPU machine, loopback echo: 15 -> 29-34 us),
 * and while a thread blocks its signals, a signal sent to
 * the whole process goes to another thread that leaves it open (Python's
 * ^C would wait for the deadline instead of interrupting the main
 * thread's receive).  Whether the handlers disagree is read from the 64
 * dispositions (about 9 us) at most once a second per process, and again
 * after any EINTR; a process whose handlers were made to disagree less
 * than a second before a signal arrives gets EINTR for that one signal
 * (it installed a handler without SA_RESTART: it must expect EINTR).
 *
 * A wait that finds its fds ready at once (a connect that completed, data
 * already queued) polls once with a zero timeout and nothing else.  When
 * no signalfd can be made (fd limit, a seccomp filter), the plain wait
 * decides with the rule of core/sigrule.c.
 *
 * Limits: during a precise wait (handlers that disagree only), a signal
 * sent to the whole process (kill, alarm, a terminal's ^C) goes to another
 * of its threads if one leaves it unblocked, as for any thread that blocks
 * it; a thread-directed signal (pthread_kill, tgkill, a SIGEV_THREAD_ID
 * timer) and single-threaded programs see no difference.  Sockets with
 * SO_RCVTIMEO/SO_SNDTIMEO (whose calls the kernel does not restart) are
 * treated as the others.  The signalfd is an ordinary low-numbered fd while
 * a precise wait lasts: a thread that closes it (closefrom) ends the
 * precise wait (POLLNVAL: the plain one goes on); one that also reuses the
 * number at once loses that fd to our close, as with hedge.c's spare
 * socket.  glibc's own signals (thread cancellation, setxid), which no
 * program installs, count as SA_RESTART.
 *
 * Owns: bw_wait*; which dispositions interrupt is the rule of
 * core/sigrule.c, which the bulkhead's own wait applies too.  Never:
 * touches errno, allocates, keeps an fd past its return (the signalfd is
 * O_CLOEXEC and closed before returning), consumes a signal.  Context:
 * connect and receive hooks (AS-safe: system calls and atomics).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>

#include "core/sigrule.h"
#include "shim/internal.h"
#include "shim/real.h"
#include "shim/wait.h"

/* Whether the process's handlers disagree, read at most once per
 * BW_WAIT_RECHECK_NS (a race between threads only reads twice). */
#define BW_WAIT_RECHECK_NS 1000000000ull
static _Atomic uint64_t mixed_read_ns; /* 0: never read */
static _Atomic bool mixed;

static void set_mixed(bool m, uint64_t now)
{
	atomic_store_explicit(&mixed, m, memory_order_relaxed);
	atomic_store_explicit(&mixed_read_ns, now ? now : 1,
			      memory_order_release);
}

static bool handlers_mixed(uint64_t now)
{
	uint64_t t = atomic_load_explicit(&mixed_read_ns, memory_order_acquire);
	if (t && now >= t && now - t < BW_WAIT_RECHECK_NS)
		return atomic_load_explicit(&mixed, memory_order_relaxed);
	bool m = bw_sigrule_handlers(true) == BW_SIGRULE_MIXED;
	set_mixed(m, now);
	return m;
}

static struct timespec ts_of(uint64_t ns)
{
	return (struct timespec){ (time_t)(ns / 1000000000ull),
				  (long)(ns % 1000000000ull) };
}

/* The plain wait: polls with the program's mask; on EINTR (a handler
 * ran in this thread) the handlers' verdict. */
static int wait_plain(struct pollfd *p, unsigned n, uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = bw_clock_ns();
		if (now >= deadline_ns)
			return 0;
		struct timespec ts = ts_of(deadline_ns - now);
		int k = bw_real.ppoll(p, n, &ts, NULL);
		if (k > 0)
			return k;
		if (k == 0)
			continue;
		if (errno != EINTR)
			return -errno;
		enum bw_sigrule_verdict v = bw_sigrule_handlers(false);
		if (v == BW_SIGRULE_MIXED)
			set_mixed(true, bw_clock_ns()); /* precise next time */
		if (v != BW_SIGRULE_RESTART)
			return -EINTR;
	}
}

/* A signal is pending: whether any of them (among watch) would interrupt
 * the program's call; *any says whether one is pending at all (another
 * thread may have taken a process-wide one since the wake-up). */
static bool pending_interrupts(const sigset_t *watch, bool *any)
{
	sigset_t pend;
	bool intr = false;
	*any = false;
	if (sigpending(&pend) != 0)
		return false;
	for (int s = 1; s < _NSIG; s++) {
		if (sigismember(&pend, s) != 1 || sigismember(watch, s) != 1)
			continue;
		*any = true;
		if (bw_sigrule_interrupts(s))
			intr = true;
	}
	return intr;
}

/* The precise wait (top comment).  Returns as bw_wait, or 1 << 30 when
 * no signalfd could be made (nothing changed: the caller falls back). */
#define NO_SIGNALFD (1 << 30)
static int wait_signals(struct pollfd *fds, unsigned n, uint64_t deadline_ns)
{
	sigset_t all, old, watch;
	sigfillset(&all);
	if (pthread_sigmask(SIG_BLOCK, &all, &old) != 0)
		return NO_SIGNALFD;
	/* The signals that could interrupt the program's own call. */
	sigfillset(&watch);
	for (int s = 1; s < _NSIG; s++)
		if (sigismember(&old, s) == 1)
			sigdelset(&watch, s);
	int sfd = signalfd(-1, &watch, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return NO_SIGNALFD;
	}
	struct pollfd p[BW_WAIT_MAX_FDS + 1];
	if (n)
		memcpy(p, fds, n * sizeof(*p));
	p[n] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	bool blocked = true;
	int r;
	for (;;) {
		uint64_t now = bw_clock_ns();
		if (now >= deadline_ns) {
			r = 0;
			break;
		}
		struct timespec ts = ts_of(deadline_ns - now);
		int k = bw_real.ppoll(p, n + 1, &ts, NULL);
		if (k < 0) {
			if (errno == EINTR)
				continue; /* glibc's own signals, never
					     blocked: installed SA_RESTART */
			r = -errno;
			break;
		}
		if (k == 0)
			continue; /* the clock decides */
		int ready = k - (p[n].revents != 0);
		if (ready > 0) {
			for (unsigned i = 0; i < n; i++)
				fds[i].revents = p[i].revents;
			r = ready;
			break;
		}
		if (p[n].revents & POLLNVAL) {
			/* Another thread closed our signalfd (closefrom):
			 * the number is no longer ours to close. */
			sfd = -1;
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			blocked = false;
			r = wait_plain(fds, n, deadline_ns);
			break;
		}
		bool any;
		bool intr = pending_interrupts(&watch, &any);
		if (!any)
			continue;
		/* The handlers run here, as they would have in the call. */
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (intr) {
			blocked = false;
			r = -EINTR;
			break;
		}
		pthread_sigmask(SIG_BLOCK, &all, NULL);
	}
	if (blocked)
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (sfd >= 0)
		bw_real.close(sfd);
	return r;
}

int bw_wait(struct pollfd *fds, unsigned n, uint64_t deadline_ns)
{
	/* Kept by hand: the receive hooks (hook_io.c RECV_TRACKED) make
	 * their real call right after this wait, and a receive that
	 * succeeds must leave the program's errno as it was. */
	int saved = errno;
	int r = 0;
	if (n > BW_WAIT_MAX_FDS)
		return -EINVAL;
	if (n) {
		/* Ready already: no signal machinery at all. */
		r = bw_real.poll(fds, n, 0);
		if (r < 0)
			r = errno == EINTR ? 0 : -errno;
	}
	uint64_t now = r == 0 ? bw_clock_ns() : 0;
	if (r == 0 && now < deadline_ns) {
		r = handlers_mixed(now) ? wait_signals(fds, n, deadline_ns)
					: NO_SIGNALFD;
		if (r == NO_SIGNALFD)
			r = wait_plain(fds, n, deadline_ns);
	}
	errno = saved;
	return r;
}

int bw_wait_fd(int fd, short events, uint64_t deadline_ns)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r = bw_wait(&p, 1, deadline_ns);
	return r > 0 ? 1 : r;
}

int bw_wait_sleep(uint64_t deadline_ns)
{
	return bw_wait(NULL, 0, deadline_ns);
}
