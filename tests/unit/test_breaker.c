/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_breaker.c: the breaker state machine (core/breaker.c)
 * on a zeroed struct bw_dest with a fake clock: every transition and
 * breaker.* option, forced states, breaker=off, events returned once,
 * impossible values from the segment counted and repaired (I10).
 * Threads: tests/unit/test_breaker_threads.c.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/breaker.h"
#include "tests/unit/bw_test.h"

#define MS 1000000ull
#define SEC 1000000000ull

/* bulwark-policy(7) built-in defaults. */
static struct bw_settings defaults(void)
{
	struct bw_settings s;
	memset(&s, 0, sizeof s);
	s.breaker_on = true;
	s.failures = 5;
	s.rate = -1;
	s.window_calls = 100;
	s.min_calls = 20;
	s.slow_ns = 0;
	s.slow_calls = 10;
	s.slow_rate = -1;
	s.open_ns = 60 * SEC;
	s.open_max_ns = 0;
	s.probes = 1;
	s.breaker_errno = ECONNREFUSED;
	return s;
}

static int fail(struct bw_dest *d, const struct bw_settings *s, uint64_t now)
{
	return bw_breaker_record(d, s, true, 1 * MS, false, now, NULL);
}

static int ok(struct bw_dest *d, const struct bw_settings *s, uint64_t now)
{
	return bw_breaker_record(d, s, false, 1 * MS, false, now, NULL);
}

static enum bw_breaker_state view(const struct bw_dest *d, uint64_t now)
{
	return bw_breaker_view(d, now, NULL);
}

/* Trips d with s->failures failures at now (s->failures > 0). */
static int trip(struct bw_dest *d, const struct bw_settings *s, uint64_t now)
{
	int ev = BW_BREAKER_EV_NONE;
	for (uint32_t i = 0; i < s->failures; i++)
		ev = fail(d, s, now);
	return ev;
}

static void test_breaker_closed_admits(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	int ev = -1;
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 0, &ev), 0);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(view(&d, 0), BW_BREAKER_CLOSED);
	BW_ASSERT_STR(bw_breaker_state_name(&d, 0), "closed");
}

static void test_breaker_opens_after_consecutive_failures(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	int why = -1;
	for (int i = 0; i < 4; i++) {
		BW_ASSERT_EQ(bw_breaker_record(&d, &s, true, MS, false, SEC,
					       &why),
			     BW_BREAKER_EV_NONE);
		BW_ASSERT_EQ(why, BW_BREAKER_WHY_NONE);
		BW_ASSERT_EQ(bw_breaker_admit(&d, &s, SEC, NULL), 0);
	}
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, true, MS, false, SEC, &why),
		     BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(why, BW_BREAKER_WHY_FAILURES);
	BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 5);
	BW_ASSERT_EQ(atomic_load(&d.opened_count), 1);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, SEC, NULL), -ECONNREFUSED);
	BW_ASSERT_EQ(view(&d, SEC), BW_BREAKER_OPEN);
	BW_ASSERT_STR(bw_breaker_state_name(&d, SEC), "open");
	/* Failures recorded while open change nothing, open nothing again. */
	BW_ASSERT_EQ(fail(&d, &s, SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.opened_count), 1);
	/* breaker.errno */
	s.breaker_errno = EHOSTUNREACH;
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, SEC, NULL), -EHOSTUNREACH);
}

static void test_breaker_success_resets_count(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 4; i++)
			BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
		BW_ASSERT_EQ(ok(&d, &s, 0), BW_BREAKER_EV_NONE);
		BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 0);
	}
	BW_ASSERT_EQ(view(&d, 0), BW_BREAKER_CLOSED);
}

static void test_breaker_failures_zero_never_trips_by_count(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	for (int i = 0; i < 1000; i++)
		BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(view(&d, 0), BW_BREAKER_CLOSED);
}

static void test_breaker_rate_count_window_min_calls(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.rate = 0.5;
	s.window_calls = 10;
	s.min_calls = 10;
	/* 9 calls, 8 failed: above the rate but below min_calls. */
	BW_ASSERT_EQ(ok(&d, &s, 0), BW_BREAKER_EV_NONE);
	for (int i = 0; i < 8; i++)
		BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
	/* The 10th call, a success, makes the rate judgeable: 8/10. */
	int why = -1;
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, false, 0, &why),
		     BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(why, BW_BREAKER_WHY_RATE);
}

static void test_breaker_rate_count_window_slides(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.rate = 0.5;
	s.window_calls = 10;
	s.min_calls = 10;
	uint32_t c, f, sl;
	/* 4 failures then 6 successes: 40 %. */
	for (int i = 0; i < 4; i++)
		BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
	for (int i = 0; i < 16; i++) /* ... and 10 more successes */
		BW_ASSERT_EQ(ok(&d, &s, 0), BW_BREAKER_EV_NONE);
	bw_breaker_window(&d, &s, 0, &c, &f, &sl);
	BW_ASSERT_EQ(c, 10);
	BW_ASSERT_EQ(f, 0); /* the old failures slid out */
	for (int i = 0; i < 4; i++)
		BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
	bw_breaker_window(&d, &s, 0, &c, &f, &sl);
	BW_ASSERT_EQ(c, 10);
	BW_ASSERT_EQ(f, 4);
	/* 5 of the last 10: trips (counting every call it would be 9/25). */
	BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_OPENED);
}

static void test_breaker_rate_large_count_window(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults(); /* window 100, min_calls 20 */
	s.failures = 0;
	s.rate = 0.5;
	for (int i = 0; i < 19; i++)
		BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_OPENED);

	/* Approximate: the window spans 90 to 100 calls. */
	struct bw_dest e = { 0 };
	uint32_t c;
	for (int i = 0; i < 1005; i++)
		ok(&e, &s, 0);
	bw_breaker_window(&e, &s, 0, &c, NULL, NULL);
	BW_ASSERT(c >= 90 && c <= 100);
}

static void test_breaker_rate_time_window_expires(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.rate = 0.5;
	s.window_calls = 0;
	s.window_ns = 10 * SEC; /* 1 s buckets */
	s.min_calls = 4;
	uint32_t c, f;
	for (int i = 0; i < 3; i++)
		BW_ASSERT_EQ(fail(&d, &s, SEC / 2), BW_BREAKER_EV_NONE);
	bw_breaker_window(&d, &s, SEC / 2, &c, &f, NULL);
	BW_ASSERT_EQ(c, 3);
	BW_ASSERT_EQ(f, 3);
	/* 20 s later the failures are gone: 1 call, no trip (3/4 if not). */
	BW_ASSERT_EQ(ok(&d, &s, 20 * SEC), BW_BREAKER_EV_NONE);
	bw_breaker_window(&d, &s, 20 * SEC, &c, &f, NULL);
	BW_ASSERT_EQ(c, 1);
	BW_ASSERT_EQ(f, 0);
	/* A bucket 9 s old still counts, one 10 s old does not. */
	BW_ASSERT_EQ(fail(&d, &s, 20 * SEC + SEC / 2), BW_BREAKER_EV_NONE);
	bw_breaker_window(&d, &s, 29 * SEC + SEC / 2, &c, &f, NULL);
	BW_ASSERT_EQ(c, 2);
	bw_breaker_window(&d, &s, 30 * SEC, &c, &f, NULL);
	BW_ASSERT_EQ(c, 0);
	/* Judged over the live window only. */
	BW_ASSERT_EQ(ok(&d, &s, 40 * SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(fail(&d, &s, 40 * SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(ok(&d, &s, 41 * SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(fail(&d, &s, 42 * SEC), BW_BREAKER_EV_OPENED);
	/* A late call for a recycled bucket is dropped, not misfiled. */
	struct bw_dest e = { 0 };
	BW_ASSERT_EQ(ok(&e, &s, 15 * SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(ok(&e, &s, 5 * SEC), BW_BREAKER_EV_NONE);
	bw_breaker_window(&e, &s, 15 * SEC, &c, NULL, NULL);
	BW_ASSERT_EQ(c, 1);
}

static void test_breaker_no_window_no_rate(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.rate = 0;
	s.window_calls = 0;
	s.window_ns = 0;
	s.min_calls = 1;
	for (int i = 0; i < 50; i++)
		BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
}

static void test_breaker_slow_calls_counter(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.slow_ns = 100 * MS;
	s.slow_calls = 3;
	int why = -1;
	BW_ASSERT(bw_breaker_is_slow(&s, 100 * MS));
	BW_ASSERT(!bw_breaker_is_slow(&s, 100 * MS - 1));
	/* A fast call lowers the count by one, never below 0. */
	for (int i = 0; i < 5; i++)
		BW_ASSERT_EQ(ok(&d, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.slow_count), 0);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, 200 * MS, false, 0, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, 100 * MS, false, 0, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.slow_count), 2);
	BW_ASSERT_EQ(ok(&d, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.slow_count), 1);
	/* A failed call, however long, is a failure, not a slow call. */
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, true, 5 * SEC, false, 0, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.slow_count), 1);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, SEC, false, 0, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, SEC, false, 0, &why),
		     BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(why, BW_BREAKER_WHY_SLOW);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 0, NULL), -ECONNREFUSED);

	/* breaker.slow off: nothing is slow. */
	struct bw_dest e = { 0 };
	s.slow_ns = 0;
	for (int i = 0; i < 10; i++)
		BW_ASSERT_EQ(bw_breaker_record(&e, &s, false, 100 * SEC, false,
					       0, NULL),
			     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&e.slow_count), 0);
}

/* One slow exchange per connection (each curl run): the fast connects
 * between them must not undo the slow exchanges, else breaker.slow_calls
 * never trips.  A slow connect raises the count; a fast exchange, on
 * either record path, still lowers it by one. */
static void test_breaker_fast_connect_keeps_slow_count(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.slow_ns = 50 * MS;
	s.slow_calls = 3;
	int ev = BW_BREAKER_EV_NONE, why = -1;
	for (int run = 0; run < 3; run++) {
		/* The connect: through the one-pass path, as calls.c does
		 * first, and through the full one. */
		BW_ASSERT(bw_breaker_record_ok(&d, &s, false, 1 * MS, 0));
		BW_ASSERT_EQ(bw_breaker_record_connect_ok(&d, &s, 1 * MS, false,
							  0),
			     BW_BREAKER_EV_NONE);
		BW_ASSERT_EQ(atomic_load(&d.slow_count), (uint32_t)run);
		ev = bw_breaker_record(&d, &s, false, 120 * MS, false, 0, &why);
	}
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(why, BW_BREAKER_WHY_SLOW);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 0, NULL), -ECONNREFUSED);

	/* A slow connect raises; fast exchanges lower, on both paths. */
	struct bw_dest e = { 0 };
	BW_ASSERT_EQ(bw_breaker_record_connect_ok(&e, &s, 60 * MS, false, 0),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&e, &s, false, 70 * MS, false, 0, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&e.slow_count), 2);
	BW_ASSERT(bw_breaker_record_ok(&e, &s, true, 1 * MS, 0));
	BW_ASSERT_EQ(atomic_load(&e.slow_count), 1);
	BW_ASSERT_EQ(ok(&e, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&e.slow_count), 0);
}

static void test_breaker_slow_rate(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.slow_ns = 100 * MS;
	s.slow_calls = 0; /* off by count */
	s.slow_rate = 0.5;
	s.window_calls = 10;
	s.min_calls = 4;
	int why = -1;
	BW_ASSERT_EQ(ok(&d, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, SEC, false, 0, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, SEC, false, 0, NULL),
		     BW_BREAKER_EV_NONE); /* 2/3, below min_calls */
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, false, 0, &why),
		     BW_BREAKER_EV_OPENED); /* 2/4 */
	BW_ASSERT_EQ(why, BW_BREAKER_WHY_SLOW_RATE);
}

static void test_breaker_open_duration_lazy_half_open(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	uint64_t t0 = 1 * SEC, left = 0;
	int ev = -1;
	BW_ASSERT_EQ(trip(&d, &s, t0), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(bw_breaker_view(&d, t0 + 4 * SEC, &left), BW_BREAKER_OPEN);
	BW_ASSERT_EQ(left, 6 * SEC);
	BW_ASSERT_EQ(atomic_load(&d.open_until_ns), t0 + 10 * SEC);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, t0 + 10 * SEC - 1, &ev),
		     -ECONNREFUSED);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_NONE);
	/* Past the deadline it shows half-open before anyone admits. */
	BW_ASSERT_EQ(bw_breaker_view(&d, t0 + 10 * SEC, &left),
		     BW_BREAKER_HALF_OPEN);
	BW_ASSERT_EQ(left, 0);
	BW_ASSERT_STR(bw_breaker_state_name(&d, t0 + 10 * SEC), "half_open");
	int rc = bw_breaker_admit(&d, &s, t0 + 10 * SEC, &ev);
	BW_ASSERT(BW_BREAKER_IS_PROBE(rc));
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_HALF_OPENED);
	/* The transition is reported once. */
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, t0 + 10 * SEC, &ev),
		     -ECONNREFUSED);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, t0 + 11 * SEC,
				       NULL),
		     BW_BREAKER_EV_CLOSED);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, t0 + 11 * SEC, &ev), 0);
}

static void test_breaker_open_deadline_rounds_up(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	uint64_t t0 = 1; /* 1 ns: the deadline rounds up to 10.001 s */
	BW_ASSERT_EQ(trip(&d, &s, t0), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(view(&d, t0 + 10 * SEC), BW_BREAKER_OPEN);
	BW_ASSERT_EQ(view(&d, 10 * SEC + MS), BW_BREAKER_HALF_OPEN);
	/* An open time past the word's range saturates: stays open. */
	struct bw_dest e = { 0 };
	s.open_ns = UINT64_MAX / 2;
	BW_ASSERT_EQ(trip(&e, &s, SEC), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(bw_breaker_admit(&e, &s, UINT64_MAX / 4, NULL),
		     -ECONNREFUSED);
}

/* Opens, waits, admits a probe and fails it; returns the reopen event. */
static int reopen_once(struct bw_dest *d, const struct bw_settings *s,
		       uint64_t *now)
{
	uint64_t left = 0;
	bw_breaker_view(d, *now, &left);
	*now += left;
	int rc = bw_breaker_admit(d, s, *now, NULL);
	if (!BW_BREAKER_IS_PROBE(rc))
		return -1;
	return bw_breaker_record(d, s, true, MS, true, *now, NULL);
}

static void test_breaker_open_time_doubles_and_resets(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.open_max_ns = 35 * SEC;
	uint64_t now = SEC, left = 0;
	BW_ASSERT_EQ(trip(&d, &s, now), BW_BREAKER_EV_OPENED);
	bw_breaker_view(&d, now, &left);
	BW_ASSERT_EQ(left, 10 * SEC);
	static const uint64_t want[] = { 20 * SEC, 35 * SEC, 35 * SEC };
	for (int i = 0; i < 3; i++) {
		BW_ASSERT_EQ(reopen_once(&d, &s, &now), BW_BREAKER_EV_REOPENED);
		bw_breaker_view(&d, now, &left);
		BW_ASSERT_EQ(left, want[i]);
		BW_ASSERT_EQ(atomic_load(&d.open_ns), want[i]);
	}
	BW_ASSERT_EQ(atomic_load(&d.opened_count), 4);
	/* Close, trip again: back to the base open time. */
	now += left;
	int rc = bw_breaker_admit(&d, &s, now, NULL);
	BW_ASSERT(BW_BREAKER_IS_PROBE(rc));
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_CLOSED);
	BW_ASSERT_EQ(trip(&d, &s, now), BW_BREAKER_EV_OPENED);
	bw_breaker_view(&d, now, &left);
	BW_ASSERT_EQ(left, 10 * SEC);

	/* open_max = 0 (= open): no doubling. */
	struct bw_dest e = { 0 };
	s.open_max_ns = 0;
	now = SEC;
	BW_ASSERT_EQ(trip(&e, &s, now), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(reopen_once(&e, &s, &now), BW_BREAKER_EV_REOPENED);
	bw_breaker_view(&e, now, &left);
	BW_ASSERT_EQ(left, 10 * SEC);
}

static void test_breaker_probes_exactly_n_then_close(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.probes = 3;
	uint64_t now = 10 * SEC;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	for (int i = 0; i < 3; i++)
		BW_ASSERT(BW_BREAKER_IS_PROBE(
			bw_breaker_admit(&d, &s, now, NULL)));
	for (int i = 0; i < 5; i++)
		BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL),
			     -ECONNREFUSED);
	/* Non-probe results in half-open are not judged. */
	BW_ASSERT_EQ(ok(&d, &s, now), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(fail(&d, &s, now), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(view(&d, now), BW_BREAKER_HALF_OPEN);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(view(&d, now), BW_BREAKER_HALF_OPEN);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_CLOSED);
	BW_ASSERT_EQ(view(&d, now), BW_BREAKER_CLOSED);
	BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 0);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), 0);
	/* The window and the failure count start afresh. */
	uint32_t c = 1;
	bw_breaker_window(&d, &s, now, &c, NULL, NULL);
	BW_ASSERT_EQ(c, 0);
	for (int i = 0; i < 4; i++)
		BW_ASSERT_EQ(fail(&d, &s, now), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(fail(&d, &s, now), BW_BREAKER_EV_OPENED);
}

static void test_breaker_probe_failure_reopens(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.probes = 3;
	uint64_t now = 10 * SEC;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	for (int i = 0; i < 3; i++)
		BW_ASSERT(BW_BREAKER_IS_PROBE(
			bw_breaker_admit(&d, &s, now, NULL)));
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, true, MS, true, now, NULL),
		     BW_BREAKER_EV_REOPENED);
	BW_ASSERT_EQ(view(&d, now), BW_BREAKER_OPEN);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), -ECONNREFUSED);
	/* The last probe reports late: the breaker is open, nothing changes. */
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(view(&d, now), BW_BREAKER_OPEN);
	/* Next round: a fresh set of claims and successes. */
	now += 20 * SEC;
	for (int i = 0; i < 3; i++)
		BW_ASSERT(BW_BREAKER_IS_PROBE(
			bw_breaker_admit(&d, &s, now, NULL)));
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), -ECONNREFUSED);
	for (int i = 0; i < 2; i++)
		BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now,
					       NULL),
			     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_CLOSED);
}

static void test_breaker_slow_probe_reopens(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.slow_ns = 100 * MS;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	BW_ASSERT(
		BW_BREAKER_IS_PROBE(bw_breaker_admit(&d, &s, 10 * SEC, NULL)));
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, SEC, true, 10 * SEC,
				       NULL),
		     BW_BREAKER_EV_REOPENED);
}

static void test_breaker_probe_release(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	uint64_t now = 10 * SEC;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	int t1 = bw_breaker_admit(&d, &s, now, NULL);
	BW_ASSERT(BW_BREAKER_IS_PROBE(t1));
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), -ECONNREFUSED);
	bw_breaker_release_probe(&d, t1);
	int t2 = bw_breaker_admit(&d, &s, now, NULL);
	BW_ASSERT_EQ(t2, t1); /* same round, same ticket */
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), -ECONNREFUSED);
	/* Releasing nothing, or twice, never frees more than was claimed. */
	bw_breaker_release_probe(&d, 0);
	bw_breaker_release_probe(&d, t2);
	bw_breaker_release_probe(&d, t2);
	BW_ASSERT_EQ((uint32_t)atomic_load(&d.probes_claimed), 0);
	int t3 = bw_breaker_admit(&d, &s, now, NULL);
	BW_ASSERT(BW_BREAKER_IS_PROBE(t3));
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), -ECONNREFUSED);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_CLOSED);
	/* A ticket of an ended round is ignored. */
	BW_ASSERT_EQ(trip(&d, &s, now), BW_BREAKER_EV_OPENED);
	now += 10 * SEC;
	int t4 = bw_breaker_admit(&d, &s, now, NULL);
	BW_ASSERT(BW_BREAKER_IS_PROBE(t4));
	BW_ASSERT(t4 != t3);
	bw_breaker_release_probe(&d, t3);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), -ECONNREFUSED);
}

static void test_breaker_dead_probe_recovery(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.probes = 2;
	uint64_t ho = 10 * SEC;
	int ev = -1;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	/* Two probes whose processes die: never reported nor released. */
	int dead = bw_breaker_admit(&d, &s, ho, &ev);
	BW_ASSERT(BW_BREAKER_IS_PROBE(dead));
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_HALF_OPENED);
	BW_ASSERT(BW_BREAKER_IS_PROBE(bw_breaker_admit(&d, &s, ho, NULL)));
	/* The round lasts max(open time, 30 s). */
	uint64_t stale = BW_BREAKER_PROBE_STALE_MIN_NS;
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, ho + stale - 1, &ev),
		     -ECONNREFUSED);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(view(&d, ho + stale - 1), BW_BREAKER_HALF_OPEN);
	int t = bw_breaker_admit(&d, &s, ho + stale, &ev);
	BW_ASSERT(BW_BREAKER_IS_PROBE(t));
	BW_ASSERT(t != dead);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_PROBES_EXPIRED);
	BW_ASSERT(BW_BREAKER_IS_PROBE(
		bw_breaker_admit(&d, &s, ho + stale, NULL)));
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, ho + stale, NULL), -ECONNREFUSED);
	/* The dead round's ticket frees nothing of the new round. */
	bw_breaker_release_probe(&d, dead);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, ho + stale, NULL), -ECONNREFUSED);
	for (int i = 0; i < 2; i++)
		ev = bw_breaker_record(&d, &s, false, MS, true, ho + stale,
				       NULL);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_CLOSED);

	/* A long open time makes a longer round. */
	struct bw_dest e = { 0 };
	s.open_ns = 100 * SEC;
	BW_ASSERT_EQ(trip(&e, &s, 0), BW_BREAKER_EV_OPENED);
	BW_ASSERT(
		BW_BREAKER_IS_PROBE(bw_breaker_admit(&e, &s, 100 * SEC, NULL)));
	BW_ASSERT(
		BW_BREAKER_IS_PROBE(bw_breaker_admit(&e, &s, 100 * SEC, NULL)));
	BW_ASSERT_EQ(bw_breaker_admit(&e, &s, 199 * SEC, NULL), -ECONNREFUSED);
	BW_ASSERT(
		BW_BREAKER_IS_PROBE(bw_breaker_admit(&e, &s, 200 * SEC, NULL)));
}

static void test_breaker_late_probe_failure_reopens_renewed_round(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	uint64_t ho = 10 * SEC, stale = BW_BREAKER_PROBE_STALE_MIN_NS;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	BW_ASSERT(BW_BREAKER_IS_PROBE(bw_breaker_admit(&d, &s, ho, NULL)));
	BW_ASSERT(BW_BREAKER_IS_PROBE(
		bw_breaker_admit(&d, &s, ho + stale, NULL)));
	/* The first probe (a blackholed connect) fails at last: it still
	 * says the destination is down. */
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, true, 40 * SEC, true,
				       ho + stale + SEC, NULL),
		     BW_BREAKER_EV_REOPENED);
}

static void test_breaker_probe_result_after_close_counts_as_call(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.probes = 1;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	BW_ASSERT(
		BW_BREAKER_IS_PROBE(bw_breaker_admit(&d, &s, 10 * SEC, NULL)));
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, 10 * SEC, NULL),
		     BW_BREAKER_EV_CLOSED);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, true, MS, true, 10 * SEC, NULL),
		     BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 1);
}

static void test_breaker_probes_zero_counts_as_one(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.probes = 0;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	BW_ASSERT(
		BW_BREAKER_IS_PROBE(bw_breaker_admit(&d, &s, 10 * SEC, NULL)));
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 10 * SEC, NULL), -ECONNREFUSED);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, 10 * SEC, NULL),
		     BW_BREAKER_EV_CLOSED);
}

static void test_breaker_forced_open(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	atomic_store(&d.forced, BW_FORCE_OPEN);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 0, NULL), -ECONNREFUSED);
	BW_ASSERT_STR(bw_breaker_state_name(&d, 0), "forced_open");
	for (int i = 0; i < 10; i++)
		BW_ASSERT_EQ(fail(&d, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 0);
	atomic_store(&d.forced, BW_FORCE_AUTO);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 0, NULL), 0);
	BW_ASSERT_STR(bw_breaker_state_name(&d, 0), "closed");
}

static void test_breaker_forced_disabled(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	atomic_store(&d.forced, BW_FORCE_DISABLED);
	BW_ASSERT_STR(bw_breaker_state_name(&d, 0), "disabled");
	for (int i = 0; i < 10; i++)
		BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 0, NULL), 0);
	/* Nothing recorded, and no lazy half-open behind the override. */
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 20 * SEC, NULL), 0);
	BW_ASSERT_EQ(ok(&d, &s, 20 * SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 5);
	/* Back to auto: the automatic machine resumes where it was. */
	atomic_store(&d.forced, BW_FORCE_AUTO);
	int ev = -1;
	BW_ASSERT(BW_BREAKER_IS_PROBE(bw_breaker_admit(&d, &s, 20 * SEC, &ev)));
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_HALF_OPENED);

	struct bw_dest e = { 0 };
	atomic_store(&e.forced, BW_FORCE_DISABLED);
	for (int i = 0; i < 20; i++)
		BW_ASSERT_EQ(fail(&e, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&e.consecutive_failures), 0);
	BW_ASSERT_EQ(atomic_load(&e.window_seq), 0);
}

static void test_breaker_off(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	s.breaker_on = false;
	int ev = -1;
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, 0, &ev), 0);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_NONE);
	struct bw_dest e = { 0 };
	for (int i = 0; i < 20; i++)
		BW_ASSERT_EQ(fail(&e, &s, 0), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&e.consecutive_failures), 0);
	BW_ASSERT_EQ(view(&e, 0), BW_BREAKER_CLOSED);
}

static void test_breaker_events_once(void)
{
	/* Two callers that loaded the same closed word: only the first CAS
	 * opens (I1).  Replayed by hand: the loser's record sees OPEN. */
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	int opened = 0, closed = 0, half = 0;
	for (int i = 0; i < 12; i++)
		opened += fail(&d, &s, 0) == BW_BREAKER_EV_OPENED;
	BW_ASSERT_EQ(opened, 1);
	for (int i = 0; i < 5; i++) {
		int ev = 0;
		int rc = bw_breaker_admit(&d, &s, 10 * SEC, &ev);
		half += ev == BW_BREAKER_EV_HALF_OPENED;
		if (BW_BREAKER_IS_PROBE(rc))
			closed += bw_breaker_record(&d, &s, false, MS, true,
						    10 * SEC, NULL) ==
				  BW_BREAKER_EV_CLOSED;
	}
	BW_ASSERT_EQ(half, 1);
	BW_ASSERT_EQ(closed, 1);
	BW_ASSERT_EQ(atomic_load(&d.opened_count), 1);
}

static void test_breaker_reset(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.open_ns = 10 * SEC;
	s.open_max_ns = 100 * SEC;
	BW_ASSERT_EQ(trip(&d, &s, 0), BW_BREAKER_EV_OPENED);
	uint64_t now = 0;
	BW_ASSERT_EQ(reopen_once(&d, &s, &now), BW_BREAKER_EV_REOPENED);
	bw_breaker_reset(&d);
	BW_ASSERT_EQ(view(&d, now), BW_BREAKER_CLOSED);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, now, NULL), 0);
	BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 0);
	BW_ASSERT_EQ(atomic_load(&d.open_ns), 0);
	BW_ASSERT_EQ(atomic_load(&d.open_until_ns), 0);
	/* Open time back to base. */
	uint64_t left = 0;
	BW_ASSERT_EQ(trip(&d, &s, now), BW_BREAKER_EV_OPENED);
	bw_breaker_view(&d, now, &left);
	BW_ASSERT_EQ(left, 10 * SEC);
	/* Reset of a half-open breaker voids its probes. */
	now += left;
	int t = bw_breaker_admit(&d, &s, now, NULL);
	BW_ASSERT(BW_BREAKER_IS_PROBE(t));
	bw_breaker_reset(&d);
	BW_ASSERT_EQ(bw_breaker_record(&d, &s, false, MS, true, now, NULL),
		     BW_BREAKER_EV_NONE);
	bw_breaker_release_probe(&d, t);
	BW_ASSERT_EQ(view(&d, now), BW_BREAKER_CLOSED);
}

/* I10: a state word no transition writes (state bits 3) is corruption.
 * The first admit that meets it admits as closed, repairs the word to
 * CLOSED with the next generation and no deadline, clears the counters,
 * counts it once in breaker_corrupt and returns BW_BREAKER_EV_REPAIRED;
 * the breaker then trips as it should.  A record or a reset that meets
 * it first repairs and counts it the same way.  On the old code the word
 * stayed 3: admitted as closed, but failures never opened the breaker,
 * and nothing counted it. */
static void test_breaker_corrupt_state_counted_and_repaired(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	/* deadline 777 ms, generation 5, state 3 */
	atomic_store(&d.state, 777ull << 24 | 5ull << 2 | 3);
	atomic_store(&d.consecutive_failures, 4);
	int ev = -1;
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, SEC, &ev), 0);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_REPAIRED);
	BW_ASSERT_EQ(atomic_load(&d.breaker_corrupt), 1);
	uint64_t w = atomic_load(&d.state);
	BW_ASSERT_EQ(w & 3, BW_BREAKER_CLOSED);
	BW_ASSERT_EQ((w >> 2) & 0x3fffff, 6);
	BW_ASSERT_EQ(w >> 24, 0);
	BW_ASSERT_EQ(atomic_load(&d.consecutive_failures), 0);
	BW_ASSERT_EQ(view(&d, SEC), BW_BREAKER_CLOSED);
	/* Counted once: the word is closed now. */
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, SEC, &ev), 0);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(trip(&d, &s, SEC), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, SEC, NULL), -ECONNREFUSED);
	BW_ASSERT_EQ(atomic_load(&d.breaker_corrupt), 1);

	/* Met first by a record: repaired there, and the call counts. */
	struct bw_dest e = { 0 };
	s.failures = 1;
	atomic_store(&e.state, 3);
	BW_ASSERT_EQ(fail(&e, &s, SEC), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(atomic_load(&e.breaker_corrupt), 1);

	/* Met by bulwark reset: closed, as ever, and counted; a second
	 * reset replaces a valid word, which counts nothing. */
	struct bw_dest f = { 0 };
	atomic_store(&f.state, 3);
	bw_breaker_reset(&f);
	BW_ASSERT_EQ(view(&f, SEC), BW_BREAKER_CLOSED);
	BW_ASSERT_EQ(atomic_load(&f.breaker_corrupt), 1);
	bw_breaker_reset(&f);
	BW_ASSERT_EQ(atomic_load(&f.breaker_corrupt), 1);
}

/* I10: a forced value bulwark force never writes is corruption: set back
 * to auto and counted once, by the admit or the record that meets it.
 * On the old code admit took it for auto but every record ignored the
 * destination (not auto): the breaker never opened. */
static void test_breaker_corrupt_forced_counted_and_repaired(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 1;
	atomic_store(&d.forced, 7);
	int ev = -1;
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, SEC, &ev), 0);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_REPAIRED);
	BW_ASSERT_EQ(atomic_load(&d.forced), BW_FORCE_AUTO);
	BW_ASSERT_EQ(atomic_load(&d.breaker_corrupt), 1);
	BW_ASSERT_STR(bw_breaker_state_name(&d, SEC), "closed");
	BW_ASSERT_EQ(fail(&d, &s, SEC), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(atomic_load(&d.breaker_corrupt), 1);

	struct bw_dest e = { 0 };
	atomic_store(&e.forced, 0xffffffffu);
	BW_ASSERT_EQ(fail(&e, &s, SEC), BW_BREAKER_EV_OPENED);
	BW_ASSERT_EQ(atomic_load(&e.forced), BW_FORCE_AUTO);
	BW_ASSERT_EQ(atomic_load(&e.breaker_corrupt), 1);

	/* The operator's own values are not corruption. */
	struct bw_dest g = { 0 };
	atomic_store(&g.forced, BW_FORCE_OPEN);
	BW_ASSERT_EQ(bw_breaker_admit(&g, &s, SEC, NULL), -ECONNREFUSED);
	atomic_store(&g.forced, BW_FORCE_DISABLED);
	BW_ASSERT_EQ(bw_breaker_admit(&g, &s, SEC, NULL), 0);
	BW_ASSERT_EQ(fail(&g, &s, SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(atomic_load(&g.breaker_corrupt), 0);
}

/* A deadline read from the segment that lies beyond open_max from now
 * (corrupt, or written in another time namespace) is brought back to
 * now + open_max at the next admit, once (an event for the log), and
 * status never shows more than the open time the trip stored.  On the
 * old code a saturated deadline kept a 1 s breaker open for ever. */
static void test_breaker_deadline_bounded(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 1;
	s.open_ns = 1 * SEC;
	uint64_t t0 = 100 * SEC, left = 0;
	int ev = -1;

	BW_ASSERT_EQ(trip(&d, &s, t0), BW_BREAKER_EV_OPENED);
	/* Garbage: OPEN, generation 7, the largest deadline (the 40 bits
	 * of ms saturated, "open for 34 years"). */
	uint64_t w = ~0ull << 24 | 7u << 2 | BW_BREAKER_OPEN;
	atomic_store(&d.state, w);
	BW_ASSERT_EQ(bw_breaker_view(&d, t0, &left), BW_BREAKER_OPEN);
	BW_ASSERT(left <= 1 * SEC);
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, t0, &ev), -ECONNREFUSED);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_BOUNDED);
	BW_ASSERT(atomic_load(&d.state) != w);
	/* Once repaired it is an ordinary open breaker: no second event. */
	BW_ASSERT_EQ(bw_breaker_admit(&d, &s, t0 + 500 * MS, &ev),
		     -ECONNREFUSED);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_NONE);
	/* open_max from the bounding admit: half-open, the probe passes. */
	BW_ASSERT(BW_BREAKER_IS_PROBE(
		bw_breaker_admit(&d, &s, t0 + 1 * SEC + 1 * MS, &ev)));
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_HALF_OPENED);

	/* A larger open_max bounds it there, not at open. */
	struct bw_dest e = { 0 };
	s.open_max_ns = 8 * SEC;
	BW_ASSERT_EQ(trip(&e, &s, t0), BW_BREAKER_EV_OPENED);
	atomic_store(&e.state, w);
	BW_ASSERT_EQ(bw_breaker_admit(&e, &s, t0, &ev), -ECONNREFUSED);
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_BOUNDED);
	BW_ASSERT_EQ(bw_breaker_admit(&e, &s, t0 + 7 * SEC, NULL),
		     -ECONNREFUSED);
	BW_ASSERT(BW_BREAKER_IS_PROBE(
		bw_breaker_admit(&e, &s, t0 + 8 * SEC + 1 * MS, NULL)));

	/* A half-open round far in the future is bounded by the probe
	 * limit (30 s here) too. */
	struct bw_dest h = { 0 };
	s.open_max_ns = 0;
	atomic_store(&h.state, ~0ull << 24 | 9u << 2 | BW_BREAKER_HALF_OPEN);
	atomic_store(&h.probes_claimed, (uint64_t)9 << 32 | 1);
	/* Bounded with a new round: the lost claim no longer counts. */
	BW_ASSERT(BW_BREAKER_IS_PROBE(bw_breaker_admit(&h, &s, t0, &ev)));
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_BOUNDED);
	BW_ASSERT_EQ(bw_breaker_admit(&h, &s, t0 + 1 * SEC, &ev),
		     -ECONNREFUSED);
	BW_ASSERT(BW_BREAKER_IS_PROBE(bw_breaker_admit(
		&h, &s, t0 + BW_BREAKER_PROBE_STALE_MIN_NS + 1 * MS, &ev)));
	BW_ASSERT_EQ(ev, BW_BREAKER_EV_PROBES_EXPIRED);
}

/* Whether a breaker leaves its slot free to go (state.c reclaim). */
static void test_breaker_quiet(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 1;
	s.open_ns = 1 * SEC;
	BW_ASSERT(bw_breaker_quiet(&d, 5 * SEC, 600 * SEC));
	trip(&d, &s, 5 * SEC);
	BW_ASSERT(!bw_breaker_quiet(&d, 5 * SEC, 600 * SEC));
	BW_ASSERT(!bw_breaker_quiet(&d, 500 * SEC, 600 * SEC));
	BW_ASSERT(bw_breaker_quiet(&d, 607 * SEC, 600 * SEC));
}

/* A window holding more than it can (garbage from the segment) is not
 * judged: it starts over instead of opening the breaker on junk; a bucket
 * whose epoch lies far ahead is taken back, not dropped for ever.  On the
 * old code the junk opened the breaker at the first call. */
static void test_breaker_window_garbage(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	s.failures = 0;
	s.rate = 0.5;
	s.window_calls = 20;
	s.min_calls = 10;
	for (int i = 0; i < BW_STATE_WINDOW_BUCKETS; i++) {
		atomic_store(&d.win[i].epoch, (uint64_t)i + 1);
		atomic_store(&d.win[i].calls, 1000000);
		atomic_store(&d.win[i].failures, 1000000);
	}
	atomic_store(&d.window_seq, 20);
	BW_ASSERT_EQ(ok(&d, &s, SEC), BW_BREAKER_EV_NONE);
	BW_ASSERT_EQ(view(&d, SEC), BW_BREAKER_CLOSED);
	uint32_t c = 0;
	bw_breaker_window(&d, &s, SEC, &c, NULL, NULL);
	BW_ASSERT(c <= s.window_calls);

	struct bw_dest e = { 0 };
	s.rate = -1;
	for (int i = 0; i < BW_STATE_WINDOW_BUCKETS; i++)
		atomic_store(&e.win[i].epoch, ~0ull >> 1);
	for (int i = 0; i < 20; i++)
		ok(&e, &s, SEC);
	bw_breaker_window(&e, &s, SEC, &c, NULL, NULL);
	BW_ASSERT(c >= 18);
}

static const struct bw_test tests[] = {
	BW_TEST(test_breaker_deadline_bounded),
	BW_TEST(test_breaker_quiet),
	BW_TEST(test_breaker_window_garbage),
	BW_TEST(test_breaker_closed_admits),
	BW_TEST(test_breaker_opens_after_consecutive_failures),
	BW_TEST(test_breaker_success_resets_count),
	BW_TEST(test_breaker_failures_zero_never_trips_by_count),
	BW_TEST(test_breaker_rate_count_window_min_calls),
	BW_TEST(test_breaker_rate_count_window_slides),
	BW_TEST(test_breaker_rate_large_count_window),
	BW_TEST(test_breaker_rate_time_window_expires),
	BW_TEST(test_breaker_no_window_no_rate),
	BW_TEST(test_breaker_slow_calls_counter),
	BW_TEST(test_breaker_fast_connect_keeps_slow_count),
	BW_TEST(test_breaker_slow_rate),
	BW_TEST(test_breaker_open_duration_lazy_half_open),
	BW_TEST(test_breaker_open_deadline_rounds_up),
	BW_TEST(test_breaker_open_time_doubles_and_resets),
	BW_TEST(test_breaker_probes_exactly_n_then_close),
	BW_TEST(test_breaker_probe_failure_reopens),
	BW_TEST(test_breaker_slow_probe_reopens),
	BW_TEST(test_breaker_probe_release),
	BW_TEST(test_breaker_dead_probe_recovery),
	BW_TEST(test_breaker_late_probe_failure_reopens_renewed_round),
	BW_TEST(test_breaker_probe_result_after_close_counts_as_call),
	BW_TEST(test_breaker_probes_zero_counts_as_one),
	BW_TEST(test_breaker_forced_open),
	BW_TEST(test_breaker_forced_disabled),
	BW_TEST(test_breaker_off),
	BW_TEST(test_breaker_events_once),
	BW_TEST(test_breaker_reset),
	BW_TEST(test_breaker_corrupt_state_counted_and_repaired),
	BW_TEST(test_breaker_corrupt_forced_counted_and_repaired),
};

BW_TEST_MAIN(tests)
