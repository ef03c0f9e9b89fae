/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_bulkhead_threads.c: core/bulkhead.c under contention:
 * 2 processes x 8 threads take and give back slots of one destination.
 * A checker in shared memory counts the holders at every instant: never
 * more than bulkhead.max, and no slot lost or extra at the end.  Also
 * compares the throughput of a bulkhead that never fills under the same
 * contention with one thread alone.  Built under TSan too (Makefile).
 */
#include "core/bulkhead.h"
#include "core/state.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/bw_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define PROCS 2
#define THREADS 8
#define RUN_NS (SANITIZED ? 400000000ull : 800000000ull)

struct checker {
	_Atomic int holders, max_seen, violations;
	_Atomic uint64_t ops, refused;
	_Atomic int go;
};

struct ctx {
	struct bw_state *st;
	struct bw_dest *d;
	struct bw_settings s;
	struct checker *ck;
	bool check;
};

/* fork(2) with stdio flushed, so a child never repeats TAP output. */
static pid_t fork_(void)
{
	fflush(stdout);
	fflush(stderr);
	return fork();
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker(void *arg)
{
	struct ctx *c = arg;
	uint64_t end = mono_ns() + RUN_NS, ops = 0, refused = 0;

	for (unsigned n = 0;; n++) {
		struct bw_slot sl;

		if ((n & 63) == 0 && mono_ns() >= end)
			break;
		if (bw_bulkhead_acquire(c->st, c->d, &c->s,
					n % 4 ? BW_BH_ALWAYS : BW_BH_NEVER, 0,
					mono_ns(), &sl) != 0) {
			refused++;
			continue;
		}
		if (c->check) {
			int h = atomic_fetch_add(&c->ck->holders, 1) + 1;
			int m = atomic_load(&c->ck->max_seen);

			while (h > m && !atomic_compare_exchange_weak(
						&c->ck->max_seen, &m, h))
				;
			if (h > (int)c->s.bulkhead_max)
				atomic_fetch_add(&c->ck->violations, 1);
			if (n % 8 == 0)
				sched_yield(); /* hold it a while */
			atomic_fetch_sub(&c->ck->holders, 1);
		}
		bw_bulkhead_release(c->st, &sl);
		ops++;
	}
	atomic_fetch_add(&c->ck->ops, ops);
	atomic_fetch_add(&c->ck->refused, refused);
	return NULL;
}

static void run_threads(struct ctx *c, int n)
{
	pthread_t th[THREADS];

	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, worker, c);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

static int open_dest(struct bw_state *st, char *name, size_t cap,
		     struct bw_dest **d)
{
	struct bw_dest_key k = { .family = 2,
				 .port = 443,
				 .addr = { 127, 0, 0, 1 } };
	char why[256];

	snprintf(name, cap, "ut-bht-%d", (int)getpid());
	if (bw_state_attach(st, name, true, why, sizeof(why)) < 0) {
		fprintf(stderr, "# attach: %s\n", why);
		return -1;
	}
	*d = bw_state_get(st, &k, "127.0.0.1:443", "t");
	return *d ? 0 : -1;
}

static void close_dest(struct bw_state *st, const char *name)
{
	char path[128];

	bw_state_detach(st);
	if (bw_state_path(name, (unsigned)geteuid(), path, sizeof(path)) == 0)
		unlink(path);
}

/* Runs PROCS processes x nthreads; returns ops per second in all. */
static double contend(struct bw_state *st, struct bw_dest *d,
		      struct bw_settings s, struct checker *ck, bool check,
		      int nthreads)
{
	struct ctx c = { st, d, s, ck, check };
	pid_t kids[PROCS];
	uint64_t t0 = mono_ns();

	atomic_store(&ck->ops, 0);
	for (int p = 0; p < PROCS; p++) {
		kids[p] = fork_();
		if (kids[p] == 0) {
			bw_bulkhead_forked(true);
			run_threads(&c, nthreads);
			_exit(0);
		}
	}
	for (int p = 0; p < PROCS; p++)
		waitpid(kids[p], NULL, 0);
	return (double)atomic_load(&ck->ops) * 1e9 / (double)(mono_ns() - t0);
}

static void test_bulkhead_threads_never_over_max(void)
{
	struct bw_state st;
	struct bw_dest *d;
	char name[64];
	struct checker *ck;
	struct bw_settings s;
	struct bw_bulkhead_view v;

	ck = mmap(NULL, sizeof(*ck), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	BW_ASSERT(ck != MAP_FAILED);
	memset(ck, 0, sizeof(*ck));
	BW_ASSERT_EQ(open_dest(&st, name, sizeof(name), &d), 0);
	memset(&s, 0, sizeof(s));
	s.bulkhead_max = 4;
	s.bulkhead_wait_ns = 1000000000ull;
	s.bulkhead_errno = ECONNREFUSED;
	double rate = contend(&st, d, s, ck, true, THREADS);
	bw_bulkhead_view(d, &v);
	fprintf(stderr,
		"# max=4: %.0f ops/s, max seen %d, %llu refused, "
		"%llu saturated\n",
		rate, atomic_load(&ck->max_seen),
		(unsigned long long)atomic_load(&ck->refused),
		(unsigned long long)v.saturated);
	BW_ASSERT_EQ(atomic_load(&ck->violations), 0);
	BW_ASSERT(atomic_load(&ck->max_seen) <= 4);
	BW_ASSERT(atomic_load(&ck->ops) > 0);
	BW_ASSERT_EQ(v.active, 0);
	BW_ASSERT_EQ(v.waiting, 0);
	BW_ASSERT_EQ(v.acquired, atomic_load(&ck->ops));
	for (unsigned i = 0; i < BW_STATE_HOLDS; i++)
		if ((atomic_load(&st.holds[i].word) >> 36) & 0xf)
			BW_FAIL_("hold %u still in use", i);
	close_dest(&st, name);
	munmap(ck, sizeof(*ck));
}

static void test_bulkhead_threads_throughput(void)
{
	struct bw_state st;
	struct bw_dest *d;
	char name[64];
	struct checker *ck;
	struct bw_settings s;
	double one, many;

	ck = mmap(NULL, sizeof(*ck), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	BW_ASSERT(ck != MAP_FAILED);
	memset(ck, 0, sizeof(*ck));
	BW_ASSERT_EQ(open_dest(&st, name, sizeof(name), &d), 0);
	memset(&s, 0, sizeof(s));
	s.bulkhead_max = 1000; /* never fills */
	s.bulkhead_wait_ns = 1000000000ull;
	s.bulkhead_errno = ECONNREFUSED;
	/* Best of three: other jobs on a 2-CPU machine skew one sample. */
	for (int tries = 0; tries < 3; tries++) {
		struct ctx c = { &st, d, s, ck, false };
		uint64_t t0 = mono_ns();

		atomic_store(&ck->ops, 0);
		run_threads(&c, 1);
		one = (double)atomic_load(&ck->ops) * 1e9 /
		      (double)(mono_ns() - t0);
		many = contend(&st, d, s, ck, false, THREADS);
		if (many >= 0.5 * one)
			break;
	}
	fprintf(stderr,
		"# uncontended %.0f ns/op (acquire+release); "
		"2x8 threads %.0f ops/s = %.0f%% of one thread\n",
		1e9 / one, many, 100.0 * many / one);
	struct bw_bulkhead_view after;
	bw_bulkhead_view(d, &after);
	BW_ASSERT_EQ(after.active, 0);
	BW_ASSERT_EQ(atomic_load(&ck->refused), 0);
	/* Speed is printed, not asserted: timing claims belong in bench/
	 * (a loaded 2-core machine dips to a third of one thread). */
	close_dest(&st, name);
	munmap(ck, sizeof(*ck));
}

/* The load in one process: 1,000 threads, bulkhead.max=100,
 * bulkhead.wait=5s, each holding its slot HOLD_MS.  Every thread must be
 * admitted, never more than 100 at once, and the waiting must not cost
 * more than a few futex wake-ups per slot handed over: the old waiters
 * polled every 2 ms and every release woke them all (about 900 wake-ups
 * per release, half of them timed out). */
#define STORM 1000
#define STORM_MAX 100
#define HOLD_MS 20

struct storm {
	struct bw_state *st;
	struct bw_dest *d;
	struct bw_settings s;
	pthread_barrier_t go;
	_Atomic int holders, max_seen, ok, refused;
};

static void *storm_thread(void *arg)
{
	struct storm *g = arg;
	struct bw_slot sl;
	struct timespec hold = { 0, HOLD_MS * 1000000L };

	pthread_barrier_wait(&g->go);
	if (bw_bulkhead_acquire(g->st, g->d, &g->s, BW_BH_ALWAYS, 0, mono_ns(),
				&sl) != 0) {
		atomic_fetch_add(&g->refused, 1);
		return NULL;
	}
	int h = atomic_fetch_add(&g->holders, 1) + 1;
	int m = atomic_load(&g->max_seen);
	while (h > m && !atomic_compare_exchange_weak(&g->max_seen, &m, h))
		;
	nanosleep(&hold, NULL);
	atomic_fetch_sub(&g->holders, 1);
	atomic_fetch_add(&g->ok, 1);
	bw_bulkhead_release(g->st, &sl);
	return NULL;
}

static void storm_run(enum bw_scope scope)
{
	struct bw_state st;
	struct bw_dest *d;
	char name[64];
	struct storm *g = calloc(1, sizeof(*g));
	pthread_t *th = calloc(STORM, sizeof(*th));
	pthread_attr_t attr;
	uint64_t t0, wakes0, rechecks0, wall;
	struct bw_bulkhead_view v;
	int n = 0;

	BW_ASSERT(g && th);
	BW_ASSERT_EQ(open_dest(&st, name, sizeof(name), &d), 0);
	g->st = &st;
	g->d = d;
	g->s.bulkhead_max = STORM_MAX;
	/* Sanitizers slow 1,000 threads' start down (not the wait). */
	g->s.bulkhead_wait_ns = SANITIZED ? 30000000000ull : 5000000000ull;
	g->s.bulkhead_errno = ECONNREFUSED;
	g->s.bulkhead_scope = scope;
	pthread_barrier_init(&g->go, NULL, STORM + 1);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (; n < STORM; n++)
		if (pthread_create(&th[n], &attr, storm_thread, g) != 0)
			break;
	BW_ASSERT_EQ(n, STORM);
	wakes0 = atomic_load(&bw__bulkhead_wakes);
	rechecks0 = atomic_load(&bw__bulkhead_rechecks);
	t0 = mono_ns();
	pthread_barrier_wait(&g->go);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	wall = mono_ns() - t0;
	uint64_t wakes = atomic_load(&bw__bulkhead_wakes) - wakes0;
	uint64_t rechecks = atomic_load(&bw__bulkhead_rechecks) - rechecks0;
	bw_bulkhead_view(d, &v);
	fprintf(stderr,
		"# %s: %d admitted, %d refused, max seen %d, %llu ms "
		"(ideal %d), %llu futex wake calls, %llu re-checks\n",
		scope == BW_SCOPE_PROCESS ? "scope=process" : "scope=shared",
		atomic_load(&g->ok), atomic_load(&g->refused),
		atomic_load(&g->max_seen), (unsigned long long)(wall / 1000000),
		STORM / STORM_MAX * HOLD_MS, (unsigned long long)wakes,
		(unsigned long long)rechecks);
	BW_ASSERT_EQ(atomic_load(&g->ok), STORM);
	BW_ASSERT_EQ(atomic_load(&g->refused), 0);
	BW_ASSERT(atomic_load(&g->max_seen) <= STORM_MAX);
	/* About one wake-up call per slot handed over (a release's, or a
	 * taker's passing on room left over); the old code made one per
	 * release plus a 2 ms poll per waiter. */
	BW_ASSERT(wakes <= 3 * STORM);
	BW_ASSERT_EQ(v.corrupt, 0);
	if (scope == BW_SCOPE_SHARED) {
		BW_ASSERT_EQ(v.active, 0);
		BW_ASSERT_EQ(v.waiting, 0);
	}
	close_dest(&st, name);
	free(th);
	free(g);
}

static void test_bulkhead_threads_storm_shared(void)
{
	storm_run(BW_SCOPE_SHARED);
}

static void test_bulkhead_threads_storm_process(void)
{
	storm_run(BW_SCOPE_PROCESS);
}

static const struct bw_test tests[] = {
	BW_TEST(test_bulkhead_threads_never_over_max),
	BW_TEST(test_bulkhead_threads_throughput),
	BW_TEST(test_bulkhead_threads_storm_shared),
	BW_TEST(test_bulkhead_threads_storm_process),
};

BW_TEST_MAIN(tests)
