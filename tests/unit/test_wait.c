/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_wait.c: the shim's waits (shim/wait.c) and the signal
 * rule: a handler without SA_RESTART ends a wait with -EINTR (having run),
 * one with SA_RESTART, an ignored signal or a default that ignores never
 * does, and the deadline stays the same; a blocked signal is left pending;
 * errno is kept and no fd is left open; without a signalfd (no fd left)
 * the heuristic decides, bw_sigrule_restarts (core/sigrule.c).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sigrule.h"
#include "shim/wait.h"
#include "tests/unit/bw_test.h"

#define MS 1000000ull

static volatile sig_atomic_t hits;
static void on_sig(int sig)
{
	(void)sig;
	hits++;
}

static void handle(int sig, void (*h)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

/* A thread that sends sig to the waiting thread every period_ms, count
 * times, starting after period_ms. */
struct pinger {
	pthread_t target, self;
	int sig, count;
	long period_ms;
};

static void *ping(void *arg)
{
	struct pinger *p = arg;
	for (int i = 0; i < p->count; i++) {
		struct timespec ts = { 0, p->period_ms * 1000000L };
		nanosleep(&ts, NULL);
		pthread_kill(p->target, p->sig);
	}
	return NULL;
}

static void ping_start(struct pinger *p, int sig, int count, long period_ms)
{
	p->target = pthread_self();
	p->sig = sig;
	p->count = count;
	p->period_ms = period_ms;
	pthread_create(&p->self, NULL, ping, p);
}

/* The lowest free fd number: a wait must leave it unchanged. */
static int lowest_free_fd(void)
{
	int fd = dup(0);
	close(fd);
	return fd;
}

static void test_wait_ready_at_once(void)
{
	int p[2];
	BW_ASSERT(pipe(p) == 0);
	BW_ASSERT(write(p[1], "x", 1) == 1);
	errno = 77;
	BW_ASSERT_EQ(bw_wait_fd(p[0], POLLIN, bw_clock_ns() + 1000 * MS), 1);
	BW_ASSERT_EQ(errno, 77);
	close(p[0]);
	close(p[1]);
}

static void test_wait_deadline(void)
{
	int p[2];
	BW_ASSERT(pipe(p) == 0);
	int low = lowest_free_fd();
	uint64_t t0 = bw_clock_ns();
	errno = 77;
	BW_ASSERT_EQ(bw_wait_fd(p[0], POLLIN, t0 + 100 * MS), 0);
	uint64_t took = bw_clock_ns() - t0;
	BW_ASSERT(took >= 99 * MS && took < 1000 * MS);
	BW_ASSERT_EQ(errno, 77);
	BW_ASSERT_EQ(lowest_free_fd(), low);
	close(p[0]);
	close(p[1]);
}

static void test_wait_sa_restart_resumes_same_deadline(void)
{
	int p[2];
	struct pinger pg;
	BW_ASSERT(pipe(p) == 0);
	handle(SIGUSR1, on_sig, SA_RESTART);
	hits = 0;
	int low = lowest_free_fd();
	uint64_t t0 = bw_clock_ns();
	ping_start(&pg, SIGUSR1, 8, 20);
	errno = 77;
	int r = bw_wait_fd(p[0], POLLIN, t0 + 200 * MS);
	uint64_t took = bw_clock_ns() - t0;
	pthread_join(pg.self, NULL);
	BW_ASSERT_EQ(r, 0);
	BW_ASSERT(hits >= 5); /* the handler ran, in this thread */
	BW_ASSERT(took >= 199 * MS && took < 1000 * MS);
	BW_ASSERT_EQ(errno, 77);
	BW_ASSERT_EQ(lowest_free_fd(), low);
	handle(SIGUSR1, SIG_DFL, 0);
	close(p[0]);
	close(p[1]);
}

static void test_wait_no_restart_is_eintr(void)
{
	int p[2];
	struct pinger pg;
	BW_ASSERT(pipe(p) == 0);
	handle(SIGUSR1, on_sig, 0);
	hits = 0;
	int low = lowest_free_fd();
	uint64_t t0 = bw_clock_ns();
	ping_start(&pg, SIGUSR1, 1, 50);
	errno = 77;
	int r = bw_wait_fd(p[0], POLLIN, t0 + 2000 * MS);
	uint64_t took = bw_clock_ns() - t0;
	pthread_join(pg.self, NULL);
	BW_ASSERT_EQ(r, -EINTR);
	BW_ASSERT_EQ(hits, 1);
	BW_ASSERT(took < 1000 * MS);
	BW_ASSERT_EQ(errno, 77);
	BW_ASSERT_EQ(lowest_free_fd(), low);
	handle(SIGUSR1, SIG_DFL, 0);
	close(p[0]);
	close(p[1]);
}

static void test_wait_ignored_and_default_ignored_resume(void)
{
	struct pinger a, b;
	handle(SIGUSR2, SIG_IGN, 0);
	uint64_t t0 = bw_clock_ns();
	ping_start(&a, SIGUSR2, 3, 20);
	ping_start(&b, SIGCHLD, 3, 25); /* default: ignored */
	int r = bw_wait_sleep(t0 + 150 * MS);
	uint64_t took = bw_clock_ns() - t0;
	pthread_join(a.self, NULL);
	pthread_join(b.self, NULL);
	BW_ASSERT_EQ(r, 0);
	BW_ASSERT(took >= 149 * MS);
	handle(SIGUSR2, SIG_DFL, 0);
}

static void test_wait_blocked_signal_stays_pending(void)
{
	sigset_t m, old, pend;
	struct pinger pg;
	handle(SIGUSR1, on_sig, 0);
	hits = 0;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &m, &old);
	uint64_t t0 = bw_clock_ns();
	ping_start(&pg, SIGUSR1, 1, 20);
	int r = bw_wait_sleep(t0 + 100 * MS);
	pthread_join(pg.self, NULL);
	BW_ASSERT_EQ(r, 0);
	BW_ASSERT_EQ(hits, 0);
	sigpending(&pend);
	BW_ASSERT_EQ(sigismember(&pend, SIGUSR1), 1);
	pthread_sigmask(SIG_SETMASK, &old, NULL); /* delivered now */
	BW_ASSERT_EQ(hits, 1);
	handle(SIGUSR1, SIG_DFL, 0);
}

static void test_wait_signal_restarts_heuristic(void)
{
	sigset_t m, old;
	handle(SIGUSR1, on_sig, SA_RESTART);
	BW_ASSERT(bw_sigrule_restarts());
	handle(SIGUSR2, on_sig, 0);
	BW_ASSERT(!bw_sigrule_restarts());
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &m, &old); /* cannot have run here */
	BW_ASSERT(bw_sigrule_restarts());
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	handle(SIGUSR1, SIG_DFL, 0);
	handle(SIGUSR2, SIG_DFL, 0);
	BW_ASSERT(bw_sigrule_restarts());
}

/* Handlers that disagree: the wait learns which signal came (signalfd),
 * after at most one EINTR for a handler set less than a second ago. */
static void test_wait_mixed_handlers_precise(void)
{
	int p[2];
	struct pinger pg;
	BW_ASSERT(pipe(p) == 0);
	handle(SIGUSR1, on_sig, SA_RESTART);
	handle(SIGUSR2, on_sig, 0);
	int low = lowest_free_fd();
	int r = 0;
	uint64_t took = 0;
	for (int round = 0; round < 2; round++) {
		hits = 0;
		uint64_t t0 = bw_clock_ns();
		ping_start(&pg, SIGUSR1, 8, 20);
		errno = 77;
		r = bw_wait_fd(p[0], POLLIN, t0 + 200 * MS);
		took = bw_clock_ns() - t0;
		pthread_join(pg.self, NULL);
		BW_ASSERT_EQ(errno, 77);
		if (r == 0)
			break;
		BW_ASSERT_EQ(r, -EINTR); /* the one ambiguous signal */
	}
	BW_ASSERT_EQ(r, 0);
	BW_ASSERT(hits >= 5);
	BW_ASSERT(took >= 199 * MS && took < 1000 * MS);
	/* The one without SA_RESTART interrupts, its handler has run. */
	hits = 0;
	ping_start(&pg, SIGUSR2, 1, 30);
	r = bw_wait_fd(p[0], POLLIN, bw_clock_ns() + 2000 * MS);
	pthread_join(pg.self, NULL);
	BW_ASSERT_EQ(r, -EINTR);
	BW_ASSERT_EQ(hits, 1);
	/* Ready fds win over nothing; data and a signal: the data. */
	BW_ASSERT(write(p[1], "x", 1) == 1);
	BW_ASSERT_EQ(bw_wait_fd(p[0], POLLIN, bw_clock_ns() + 100 * MS), 1);
	BW_ASSERT_EQ(lowest_free_fd(), low);
	handle(SIGUSR1, SIG_DFL, 0);
	handle(SIGUSR2, SIG_DFL, 0);
	close(p[0]);
	close(p[1]);
}

/* No fd left for a signalfd: the plain wait and the heuristic. */
static void test_wait_without_signalfd(void)
{
	int p[2];
	struct pinger pg;
	struct rlimit rl, tight;
	BW_ASSERT(pipe(p) == 0);
	getrlimit(RLIMIT_NOFILE, &rl);
	tight = rl;
	tight.rlim_cur = (rlim_t)lowest_free_fd();
	/* The pinger thread needs no fd. */
	handle(SIGUSR1, on_sig, SA_RESTART);
	hits = 0;
	BW_ASSERT(setrlimit(RLIMIT_NOFILE, &tight) == 0);
	uint64_t t0 = bw_clock_ns();
	ping_start(&pg, SIGUSR1, 5, 20);
	int r = bw_wait_fd(p[0], POLLIN, t0 + 200 * MS);
	uint64_t took = bw_clock_ns() - t0;
	pthread_join(pg.self, NULL);
	BW_ASSERT_EQ(r, 0);
	BW_ASSERT(hits >= 3);
	BW_ASSERT(took >= 199 * MS);
	handle(SIGUSR1, on_sig, 0);
	hits = 0;
	ping_start(&pg, SIGUSR1, 1, 30);
	r = bw_wait_fd(p[0], POLLIN, bw_clock_ns() + 2000 * MS);
	pthread_join(pg.self, NULL);
	BW_ASSERT_EQ(r, -EINTR);
	BW_ASSERT_EQ(hits, 1);
	setrlimit(RLIMIT_NOFILE, &rl);
	handle(SIGUSR1, SIG_DFL, 0);
	close(p[0]);
	close(p[1]);
}

static const struct bw_test tests[] = {
	BW_TEST(test_wait_ready_at_once),
	BW_TEST(test_wait_deadline),
	BW_TEST(test_wait_sa_restart_resumes_same_deadline),
	BW_TEST(test_wait_no_restart_is_eintr),
	BW_TEST(test_wait_ignored_and_default_ignored_resume),
	BW_TEST(test_wait_blocked_signal_stays_pending),
	BW_TEST(test_wait_signal_restarts_heuristic),
	BW_TEST(test_wait_mixed_handlers_precise),
	BW_TEST(test_wait_without_signalfd),
};

BW_TEST_MAIN(tests)
