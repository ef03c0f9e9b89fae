/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_clock_threads.c: the shim's clock (core/clock.c) against
 * clock_gettime(CLOCK_MONOTONIC): before bw_clock_init it is
 * clock_gettime; after it, every reading lies within 0.5 ms of the
 * clock_gettime readings taken around it, from one thread and from four
 * at once (the anchor's sequence count under contention), and on a
 * machine whose kernel keeps time with an invariant TSC the counter is
 * in use once its rate has been measured.  Also built with
 * -fsanitize=thread (the Makefile's tests-tsan/).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/clock.h"
#include "tests/unit/bw_test.h"

#define MS 1000000ull
#define SLACK (500 * 1000ull) /* the clock's promise: 0.5 ms */
#define THREADS 4

static uint64_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Reads for ms milliseconds; returns how many readings fell outside
 * [before - SLACK, after + SLACK]. */
static unsigned bad_readings(uint64_t ms, unsigned long *n)
{
	uint64_t end = mono() + ms * MS;
	unsigned bad = 0;
	*n = 0;
	for (;;) {
		uint64_t a = mono(), t = bw_clock_ns(), b = mono();
		if (t + SLACK < a || t > b + SLACK)
			bad++;
		++*n;
		if (b >= end)
			return bad;
	}
}

static void test_clock_before_init_is_clock_gettime(void)
{
	unsigned long n;
	uint64_t a = mono(), t = bw_clock_ns(), b = mono();
	BW_ASSERT(a <= t && t <= b);
	BW_ASSERT_EQ(bw_clock_uses_tsc(), 0);
	BW_ASSERT_EQ(bad_readings(5, &n), 0);
}

static void test_clock_within_half_a_millisecond(void)
{
	unsigned long n;
	bw_clock_init();
	/* 100 ms: past the rate's measurement (BW_CLOCK_CALIBRATE_NS). */
	BW_ASSERT_EQ(bad_readings(100, &n), 0);
	fprintf(stderr, "# %lu readings, from the time-stamp counter: %s\n", n,
		bw_clock_uses_tsc() ? "yes" : "no (clock_gettime)");
}

static void test_clock_uses_the_counter_where_the_kernel_does(void)
{
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
			"current_clocksource",
			"r");
	char src[32] = "";
	if (f) {
		if (!fgets(src, sizeof(src), f))
			src[0] = 0;
		fclose(f);
	}
	unsigned long n;
	bw_clock_init();
	bad_readings(30, &n); /* lets it measure the rate */
#if defined(__x86_64__)
	if (strcmp(src, "tsc\n") == 0) {
		/* The kernel trusts the counter; so do we (given the CPU
		 * says it is invariant, which such a kernel requires). */
		BW_ASSERT_EQ(bw_clock_uses_tsc(), 1);
		return;
	}
#endif
	fprintf(stderr, "# clocksource %s: clock_gettime stays in use\n",
		src[0] ? src : "unknown");
	BW_ASSERT_EQ(bw_clock_uses_tsc(), 0);
}

static _Atomic unsigned threads_bad;

static void *reader(void *arg)
{
	unsigned long n;
	(void)arg;
	atomic_fetch_add(&threads_bad, bad_readings(100, &n));
	return NULL;
}

static void test_clock_four_threads(void)
{
	pthread_t t[THREADS];
	bw_clock_init();
	for (int i = 0; i < THREADS; i++)
		BW_ASSERT_EQ(pthread_create(&t[i], NULL, reader, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	BW_ASSERT_EQ(atomic_load(&threads_bad), 0);
}

static const struct bw_test tests[] = {
	BW_TEST(test_clock_before_init_is_clock_gettime),
	BW_TEST(test_clock_within_half_a_millisecond),
	BW_TEST(test_clock_uses_the_counter_where_the_kernel_does),
	BW_TEST(test_clock_four_threads),
};

BW_TEST_MAIN(tests)
