/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_breaker_threads.c: 8 threads hammer bw_breaker_admit /
 * record / release on one struct bw_dest with a shared fake clock that
 * alternates healthy and failing phases, some probes "dying" unreported.
 * Checks core/breaker.c's I1 (each transition's event goes to exactly one
 * caller: event counts match the state reached), I3 (probes in flight
 * in one half-open round never exceed breaker.probes) and I10 (an
 * impossible word or forced value met by every thread at once is counted
 * once).  Also built with -fsanitize=thread:
 *   cc -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=thread \
 *      tests/unit/test_breaker_threads.c core/breaker.c -lpthread
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/breaker.h"
#include "tests/unit/bw_test.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define THREADS 8
#define ITERS 200000
#define GENS (1u << 22) /* the word's generation range */

static struct bw_dest dest;
static struct bw_settings set;
static _Atomic uint64_t clock_ns;
static _Atomic int in_flight[GENS]; /* probes admitted, not yet settled */
static _Atomic int over_probes;	    /* I3 violations seen */
static _Atomic uint64_t events[BW_BREAKER_EV_BOUNDED + 1];
static _Atomic uint64_t probes_admitted, rejected;
static unsigned die_pct; /* probes whose process "dies" unreported */
static uint64_t step_ns; /* fake time per operation */

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void count_event(int ev)
{
	if (ev > 0 && ev <= BW_BREAKER_EV_BOUNDED)
		atomic_fetch_add(&events[ev], 1);
}

/* Failure probability in percent: 4 s failing, 4 s healthy. */
static unsigned failure_pct(uint64_t now)
{
	return (now / (4 * SEC)) % 2 ? 90 : 2;
}

static void *hammer(void *arg)
{
	uint64_t x = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	for (int i = 0; i < ITERS; i++) {
		uint64_t now = atomic_fetch_add(&clock_ns, step_ns) + step_ns;
		int ev = 0;
		int rc = bw_breaker_admit(&dest, &set, now, &ev);
		count_event(ev);
		if (rc < 0) {
			atomic_fetch_add(&rejected, 1);
			continue;
		}
		bool failed = rnd(&x) % 100 < failure_pct(now);
		uint64_t lat = rnd(&x) % 200 * MS;
		if (!BW_BREAKER_IS_PROBE(rc)) {
			ev = bw_breaker_record(&dest, &set, failed, lat, false,
					       now, NULL);
			count_event(ev);
			continue;
		}
		uint32_t gen = (uint32_t)rc >> 1;
		atomic_fetch_add(&probes_admitted, 1);
		if (atomic_fetch_add(&in_flight[gen], 1) + 1 > (int)set.probes)
			atomic_fetch_add(&over_probes, 1);
		unsigned fate = rnd(&x) % 100;
		if (fate < die_pct)
			continue; /* the prober is SIGKILLed: never settles */
		/* Settled: out of flight before the claim can be reused. */
		atomic_fetch_sub(&in_flight[gen], 1);
		if (fate < die_pct + 10) {
			bw_breaker_release_probe(&dest, rc);
			continue;
		}
		ev = bw_breaker_record(&dest, &set, failed, lat, true, now,
				       NULL);
		count_event(ev);
		if (i % 64 == 0) { /* a status reader */
			uint64_t left;
			(void)bw_breaker_view(&dest, now, &left);
			(void)bw_breaker_state_name(&dest, now);
		}
	}
	return NULL;
}

static void run(const struct bw_settings *s, unsigned die, uint64_t step)
{
	die_pct = die;
	step_ns = step;
	memset(&dest, 0, sizeof dest);
	memset(in_flight, 0, sizeof in_flight);
	set = *s;
	atomic_store(&clock_ns, SEC);
	atomic_store(&over_probes, 0);
	atomic_store(&probes_admitted, 0);
	atomic_store(&rejected, 0);
	for (int i = 0; i <= BW_BREAKER_EV_BOUNDED; i++)
		atomic_store(&events[i], 0);
	pthread_t t[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, hammer, (void *)(i + 1));
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
}

static struct bw_settings base(void)
{
	struct bw_settings s;
	memset(&s, 0, sizeof s);
	s.breaker_on = true;
	s.failures = 5;
	s.rate = 0.5;
	s.window_calls = 50;
	s.min_calls = 20;
	s.slow_ns = 150 * MS;
	s.slow_calls = 10;
	s.slow_rate = -1;
	s.open_ns = 50 * MS;
	s.open_max_ns = 400 * MS;
	s.probes = 3;
	s.breaker_errno = ECONNREFUSED;
	return s;
}

/* |a - b| <= slack. */
static bool within(uint64_t a, uint64_t b, uint64_t slack)
{
	return a > b ? a - b <= slack : b - a <= slack;
}

/* Every OPEN is left by one half-open, every round ends in one close or
 * reopen, every closed period ends in one trip (I1). */
static void check_events(void)
{
	uint64_t opened = atomic_load(&events[BW_BREAKER_EV_OPENED]);
	uint64_t reopened = atomic_load(&events[BW_BREAKER_EV_REOPENED]);
	uint64_t half = atomic_load(&events[BW_BREAKER_EV_HALF_OPENED]);
	uint64_t closed = atomic_load(&events[BW_BREAKER_EV_CLOSED]);
	uint64_t w = atomic_load(&dest.state);
	uint32_t st = (uint32_t)(w & 3);
	fprintf(stderr,
		"# opened %llu reopened %llu half_open %llu closed %llu "
		"expired %llu bounded %llu probes %llu rejected %llu "
		"final %u\n",
		(unsigned long long)opened, (unsigned long long)reopened,
		(unsigned long long)half, (unsigned long long)closed,
		(unsigned long long)atomic_load(
			&events[BW_BREAKER_EV_PROBES_EXPIRED]),
		(unsigned long long)atomic_load(&events[BW_BREAKER_EV_BOUNDED]),
		(unsigned long long)atomic_load(&probes_admitted),
		(unsigned long long)atomic_load(&rejected), st);
	BW_ASSERT_EQ(atomic_load(&over_probes), 0);
	BW_ASSERT(opened > 2 && closed > 2 && reopened > 0);
	BW_ASSERT_EQ(opened + reopened, atomic_load(&dest.opened_count));
	/* The fake clock lets a thread's reading lag seconds behind another's:
	 * its admit then sees a deadline beyond open_max from its "now" and
	 * bounds it (I9), a new generation under the other threads' feet.
	 * Each such bound may cost one round its events; none may cost more. */
	uint64_t bounded = atomic_load(&events[BW_BREAKER_EV_BOUNDED]);
	BW_ASSERT(within(opened + reopened,
			 half + (st == BW_BREAKER_OPEN ? 1 : 0), bounded));
	BW_ASSERT(within(
		half, closed + reopened + (st == BW_BREAKER_HALF_OPEN ? 1 : 0),
		bounded));
	BW_ASSERT(within(opened, closed + (st == BW_BREAKER_CLOSED ? 0 : 1),
			 bounded));
}

static void test_breaker_threads_count_window(void)
{
	struct bw_settings s = base();
	run(&s, 2, 200000);
	check_events();
}

static void test_breaker_threads_time_window_one_probe(void)
{
	struct bw_settings s = base();
	s.window_calls = 0;
	s.window_ns = 500 * MS;
	s.probes = 1;
	s.failures = 0;
	s.slow_rate = 0.6;
	run(&s, 2, 200000);
	check_events();
}

static void test_breaker_threads_dead_probes_expire(void)
{
	/* A third of the probers die: only renewed rounds (I6) let the
	 * breaker close again.  10 ms steps: about an hour of fake time. */
	struct bw_settings s = base();
	s.open_ns = 1 * SEC;
	s.open_max_ns = 8 * SEC;
	s.probes = 2;
	run(&s, 33, 10 * MS);
	check_events();
	BW_ASSERT(atomic_load(&events[BW_BREAKER_EV_PROBES_EXPIRED]) > 0);
}

/* I10 under contention: THREADS threads meet one corrupt word (state
 * bits 3) and one corrupt forced value at once; each is repaired by one
 * CAS and counted once; the admits that repaired get the event (one
 * admit that repaired both reports one). */
static struct bw_dest corrupt_dest;
static _Atomic int repaired_events;
static pthread_barrier_t corrupt_go;

static void *meet_corrupt(void *arg)
{
	const struct bw_settings *s = arg;
	pthread_barrier_wait(&corrupt_go);
	for (int i = 0; i < 1000; i++) {
		int ev = BW_BREAKER_EV_NONE;
		int rc = bw_breaker_admit(&corrupt_dest, s, SEC, &ev);
		if (ev == BW_BREAKER_EV_REPAIRED)
			atomic_fetch_add(&repaired_events, 1);
		if (rc == 0)
			bw_breaker_record(&corrupt_dest, s, false, MS, false,
					  SEC, NULL);
	}
	return NULL;
}

static void test_breaker_threads_corrupt_counted_once(void)
{
	struct bw_settings s = base();
	memset(&corrupt_dest, 0, sizeof(corrupt_dest));
	atomic_store(&corrupt_dest.state, 12345ull << 24 | 9ull << 2 | 3);
	atomic_store(&corrupt_dest.forced, 9);
	pthread_t th[THREADS];
	BW_ASSERT_EQ(pthread_barrier_init(&corrupt_go, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++)
		BW_ASSERT_EQ(pthread_create(&th[i], NULL, meet_corrupt, &s), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&corrupt_go);
	BW_ASSERT_EQ(atomic_load(&corrupt_dest.breaker_corrupt), 2);
	BW_ASSERT(atomic_load(&repaired_events) >= 1 &&
		  atomic_load(&repaired_events) <= 2);
	BW_ASSERT_EQ(atomic_load(&corrupt_dest.forced), BW_FORCE_AUTO);
	BW_ASSERT_EQ(atomic_load(&corrupt_dest.state) & 3, BW_BREAKER_CLOSED);
}

static const struct bw_test tests[] = {
	BW_TEST(test_breaker_threads_corrupt_counted_once),
	BW_TEST(test_breaker_threads_count_window),
	BW_TEST(test_breaker_threads_time_window_one_probe),
	BW_TEST(test_breaker_threads_dead_probes_expire),
};

BW_TEST_MAIN(tests)
