/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_retry.c: connect-retry decisions (core/retry.c) on a
 * zeroed struct bw_dest with a fake clock: retry.on classes, the backoff
 * schedule, jitter bounds and means, retry.adaptive factors, per-attempt
 * timeouts, the retry budget and its window, retry.min_success, and
 * bw_retry_decide's verdicts and counters.
 * Threads: tests/unit/test_retry_threads.c.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "core/breaker.h"
#include "core/retry.h"
#include "tests/unit/bw_test.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define SAMPLES 200000

/* bulwark-policy(7) built-in defaults, breaker and retry keys. */
static struct bw_settings defaults(void)
{
	struct bw_settings s;
	memset(&s, 0, sizeof s);
	s.breaker_on = true;
	s.failures = 5;
	s.rate = -1;
	s.window_calls = 100;
	s.min_calls = 20;
	s.slow_calls = 10;
	s.slow_rate = -1;
	s.open_ns = 60 * SEC;
	s.probes = 1;
	s.breaker_errno = ECONNREFUSED;
	s.retry_attempts = 3;
	s.retry_backoff_ns = 100 * MS;
	s.retry_max_backoff_ns = 10 * SEC;
	s.retry_multiplier = 2;
	s.retry_jitter = 0.1;
	s.retry_on = BW_RETRY_ON_REFUSED | BW_RETRY_ON_TIMEOUT |
		     BW_RETRY_ON_UNREACHABLE;
	s.retry_budget = 0.20;
	s.retry_min_success = 0.10;
	return s;
}

static struct bw_settings no_jitter(void)
{
	struct bw_settings s = defaults();
	s.retry_jitter = 0;
	return s;
}

static int take_all(struct bw_dest *d, const struct bw_settings *s,
		    uint64_t now)
{
	int n = 0;
	while (bw_retry_budget_take(d, s, now))
		if (++n > 100000)
			break;
	return n;
}

static void connects(struct bw_dest *d, int n, uint64_t now)
{
	for (int i = 0; i < n; i++)
		bw_retry_note_connect(d, now);
}

/* ---- retry.on ------------------------------------------------------------ */

static void test_retry_classes(void)
{
	BW_ASSERT_EQ(bw_retry_class(ECONNREFUSED), BW_RETRY_ON_REFUSED);
	BW_ASSERT_EQ(bw_retry_class(ETIMEDOUT), BW_RETRY_ON_TIMEOUT);
	BW_ASSERT_EQ(bw_retry_class(ENETUNREACH), BW_RETRY_ON_UNREACHABLE);
	BW_ASSERT_EQ(bw_retry_class(EHOSTUNREACH), BW_RETRY_ON_UNREACHABLE);
	BW_ASSERT_EQ(bw_retry_class(ENETDOWN), BW_RETRY_ON_UNREACHABLE);
	BW_ASSERT_EQ(bw_retry_class(EHOSTDOWN), BW_RETRY_ON_UNREACHABLE);
	BW_ASSERT_EQ(bw_retry_class(ECONNRESET), BW_RETRY_ON_RESET);
	BW_ASSERT_EQ(bw_retry_class(ECONNABORTED), BW_RETRY_ON_RESET);
	static const int never[] = { EACCES,	    EPERM,	   EINVAL,
				     EAFNOSUPPORT,  EADDRNOTAVAIL, EISCONN,
				     EINTR,	    EINPROGRESS,   EALREADY,
				     EAGAIN,	    EBADF,	   ENOTSOCK,
				     EPIPE,	    ENOMEM,	   0,
				     -ECONNREFUSED, 99999 };
	for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
		BW_ASSERT_EQ(bw_retry_class(never[i]), 0);
}

static void test_retry_retryable_defaults(void)
{
	struct bw_settings s = defaults();
	BW_ASSERT(bw_retry_retryable(&s, ECONNREFUSED));
	BW_ASSERT(bw_retry_retryable(&s, ETIMEDOUT));
	BW_ASSERT(bw_retry_retryable(&s, ENETUNREACH));
	BW_ASSERT(bw_retry_retryable(&s, EHOSTUNREACH));
	BW_ASSERT(bw_retry_retryable(&s, ENETDOWN));
	BW_ASSERT(bw_retry_retryable(&s, EHOSTDOWN));
	/* reset is not in the default retry.on */
	BW_ASSERT(!bw_retry_retryable(&s, ECONNRESET));
	BW_ASSERT(!bw_retry_retryable(&s, ECONNABORTED));
	BW_ASSERT(!bw_retry_retryable(&s, EACCES));
	BW_ASSERT(!bw_retry_retryable(&s, EPERM));
	BW_ASSERT(!bw_retry_retryable(&s, EINVAL));
	BW_ASSERT(!bw_retry_retryable(&s, EAFNOSUPPORT));
	BW_ASSERT(!bw_retry_retryable(&s, EADDRNOTAVAIL));
	BW_ASSERT(!bw_retry_retryable(&s, EISCONN));
	BW_ASSERT(!bw_retry_retryable(&s, EINTR));
}

static void test_retry_on_subsets(void)
{
	struct bw_settings s = defaults();
	s.retry_on = BW_RETRY_ON_TIMEOUT;
	BW_ASSERT(bw_retry_retryable(&s, ETIMEDOUT));
	BW_ASSERT(!bw_retry_retryable(&s, ECONNREFUSED));
	BW_ASSERT(!bw_retry_retryable(&s, ENETUNREACH));
	s.retry_on = BW_RETRY_ON_RESET;
	BW_ASSERT(bw_retry_retryable(&s, ECONNRESET));
	BW_ASSERT(bw_retry_retryable(&s, ECONNABORTED));
	BW_ASSERT(!bw_retry_retryable(&s, ETIMEDOUT));
	s.retry_on = BW_RETRY_ON_REFUSED | BW_RETRY_ON_UNREACHABLE |
		     BW_RETRY_ON_TIMEOUT | BW_RETRY_ON_RESET;
	BW_ASSERT(bw_retry_retryable(&s, ECONNRESET));
	BW_ASSERT(!bw_retry_retryable(&s, EINTR));
	BW_ASSERT(!bw_retry_retryable(&s, EACCES));
	s.retry_on = 0;
	BW_ASSERT(!bw_retry_retryable(&s, ECONNREFUSED));
	BW_ASSERT(!bw_retry_retryable(&s, ETIMEDOUT));
}

/* ---- backoff ------------------------------------------------------------- */

static void test_retry_delay_schedule(void)
{
	struct bw_settings s = no_jitter();
	static const uint64_t want[] = { 100 * MS,  200 * MS,  400 * MS,
					 800 * MS,  1600 * MS, 3200 * MS,
					 6400 * MS, 10 * SEC,  10 * SEC };
	for (unsigned n = 1; n <= 9; n++)
		BW_ASSERT_EQ(bw_retry_delay_ns(&s, n, ECONNREFUSED, -1, 12345),
			     want[n - 1]);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 0, ECONNREFUSED, -1, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 100, ECONNREFUSED, -1, 0), 10 * SEC);
	/* 2^4294967294 is inf: still the cap */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, UINT32_MAX, ETIMEDOUT, -1, 0),
		     10 * SEC);
	/* the error does not matter without retry.adaptive */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 2, ETIMEDOUT, 0.0, 0), 200 * MS);
}

static void test_retry_delay_multipliers(void)
{
	struct bw_settings s = no_jitter();
	s.retry_multiplier = 1.5;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ETIMEDOUT, -1, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 2, ETIMEDOUT, -1, 0), 150 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 3, ETIMEDOUT, -1, 0), 225 * MS);
	s.retry_multiplier = 1;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 50, ETIMEDOUT, -1, 0), 100 * MS);
	s.retry_multiplier = 100;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 2, ETIMEDOUT, -1, 0), 10 * SEC);
	s.retry_multiplier = 3;
	s.retry_max_backoff_ns = 1 * SEC;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 3, ETIMEDOUT, -1, 0), 900 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 4, ETIMEDOUT, -1, 0), 1 * SEC);
}

static void test_retry_delay_edges(void)
{
	struct bw_settings s = no_jitter();
	s.retry_backoff_ns = 0;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 3, ECONNREFUSED, -1, 0), 0);
	s = no_jitter();
	s.retry_max_backoff_ns = 0; /* a cap of 0: retry at once */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNREFUSED, -1, 0), 0);
	s = no_jitter();
	s.retry_max_backoff_ns = 50 * MS; /* cap below the first delay */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNREFUSED, -1, 0), 50 * MS);
	s = defaults();
	s.retry_jitter_full = true;
	s.retry_jitter = 1;
	s.retry_backoff_ns = 0;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNREFUSED, -1, ~0ull), 0);
	/* largest durations the policy accepts: no overflow */
	s = no_jitter();
	s.retry_backoff_ns = BW_POLICY_DURATION_MAX_NS;
	s.retry_max_backoff_ns = BW_POLICY_DURATION_MAX_NS;
	s.retry_multiplier = 100;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 100, ETIMEDOUT, -1, 0),
		     BW_POLICY_DURATION_MAX_NS);
	s.retry_adaptive = true;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 100, ETIMEDOUT, 0.0, 0),
		     BW_POLICY_DURATION_MAX_NS);
}

/* ---- jitter -------------------------------------------------------------- */

/* Draws SAMPLES delays for retry n; min, max and mean in ns. */
static void draw(const struct bw_settings *s, unsigned n, uint64_t *lo,
		 uint64_t *hi, double *mean)
{
	_Atomic uint64_t seed = 42;
	double sum = 0;
	*lo = UINT64_MAX;
	*hi = 0;
	for (int i = 0; i < SAMPLES; i++) {
		uint64_t v = bw_retry_delay_ns(s, n, ECONNREFUSED, -1,
					       bw_retry_rand(&seed));
		if (v < *lo)
			*lo = v;
		if (v > *hi)
			*hi = v;
		sum += (double)v;
	}
	*mean = sum / SAMPLES;
}

static void test_retry_jitter_factor_bounds(void)
{
	struct bw_settings s = defaults(); /* jitter 0.1 */
	uint64_t lo, hi;
	double mean;
	draw(&s, 1, &lo, &hi, &mean);
	BW_ASSERT(lo >= 90 * MS);
	BW_ASSERT(hi <= 110 * MS);
	BW_ASSERT(lo < 90 * MS + 100000); /* the range is covered */
	BW_ASSERT(hi > 110 * MS - 100000);
	BW_ASSERT_NEAR(mean, 100.0 * MS, 0.002 * 100 * MS);
	/* the extreme random values */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNREFUSED, -1, 0), 90 * MS);
	BW_ASSERT(bw_retry_delay_ns(&s, 1, ECONNREFUSED, -1, ~0ull) <=
		  110 * MS);
	draw(&s, 3, &lo, &hi, &mean); /* 400 ms */
	BW_ASSERT(lo >= 360 * MS && hi <= 440 * MS);
	BW_ASSERT_NEAR(mean, 400.0 * MS, 0.002 * 400 * MS);
	s.retry_jitter = 0.5;
	draw(&s, 2, &lo, &hi, &mean); /* 200 ms */
	BW_ASSERT(lo >= 100 * MS && hi <= 300 * MS);
	BW_ASSERT_NEAR(mean, 200.0 * MS, 0.005 * 200 * MS);
}

static void test_retry_jitter_full_bounds(void)
{
	struct bw_settings s = defaults();
	s.retry_jitter_full = true;
	s.retry_jitter = 1;
	uint64_t lo, hi;
	double mean;
	draw(&s, 2, &lo, &hi, &mean); /* [0, 200 ms) */
	BW_ASSERT(hi < 200 * MS);
	BW_ASSERT(lo < 1 * MS);
	BW_ASSERT(hi > 199 * MS);
	BW_ASSERT_NEAR(mean, 100.0 * MS, 0.01 * 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 2, ECONNREFUSED, -1, 0), 0);
}

/* At the cap, jitter never goes past max_backoff (reflected below it). */
static void test_retry_jitter_at_cap(void)
{
	struct bw_settings s = defaults();
	uint64_t lo, hi;
	double mean;
	draw(&s, 20, &lo, &hi, &mean);
	BW_ASSERT(hi <= 10 * SEC);
	BW_ASSERT(lo >= 9 * SEC);
	BW_ASSERT(lo < 9 * SEC + 10 * MS);
	BW_ASSERT(hi > 10 * SEC - 10 * MS);
	/* uniform in [9 s, 10 s]: mean 9.5 s */
	BW_ASSERT_NEAR(mean, 9.5 * SEC, 0.002 * 10 * SEC);
	/* just under the cap: bounded, no lump at the cap */
	s.retry_backoff_ns = 9500 * MS;
	draw(&s, 1, &lo, &hi, &mean);
	BW_ASSERT(hi <= 10 * SEC && lo >= 8550 * MS);
}

/* ---- retry.adaptive ------------------------------------------------------ */

static void test_retry_adaptive_by_kind(void)
{
	struct bw_settings s = no_jitter();
	s.retry_adaptive = true;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ETIMEDOUT, -1, 0), 200 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNREFUSED, -1, 0), 50 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ENETUNREACH, -1, 0), 150 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, EHOSTDOWN, -1, 0), 150 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, -1, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, EACCES, -1, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 3, ETIMEDOUT, -1, 0), 800 * MS);
	s.retry_adaptive = false;
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ETIMEDOUT, -1, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNREFUSED, 0.0, 0), 100 * MS);
}

static void test_retry_adaptive_by_success_rate(void)
{
	struct bw_settings s = no_jitter();
	s.retry_adaptive = true;
	/* reset: kind factor 1, so only the rate shows */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, 1.0, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, 0.75, 0), 150 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, 0.5, 0), 200 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, 0.0, 0), 300 * MS);
	/* unknown rates: factor 1 */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, -1, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, NAN, 0), 100 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNRESET, 1.5, 0), 100 * MS);
	/* both: timeout x2 and rate 0 x3 */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ETIMEDOUT, 0.0, 0), 600 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 1, ECONNREFUSED, 0.0, 0), 150 * MS);
}

static void test_retry_adaptive_capped(void)
{
	struct bw_settings s = no_jitter();
	s.retry_adaptive = true;
	/* 6.4 s x 2 = 12.8 s -> 10 s */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 7, ETIMEDOUT, -1, 0), 10 * SEC);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 5, ETIMEDOUT, 0.0, 0), 9600 * MS);
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 6, ETIMEDOUT, 0.0, 0), 10 * SEC);
	/* a capped base can still be shortened: 10 s x 0.5 */
	BW_ASSERT_EQ(bw_retry_delay_ns(&s, 20, ECONNREFUSED, -1, 0), 5 * SEC);
	/* with jitter, never past the cap */
	s.retry_jitter = 0.3;
	_Atomic uint64_t seed = 7;
	for (int i = 0; i < 10000; i++)
		BW_ASSERT(bw_retry_delay_ns(&s, 9, ETIMEDOUT, 0.0,
					    bw_retry_rand(&seed)) <= 10 * SEC);
}

/* ---- connect.timeout ----------------------------------------------------- */

static void test_retry_attempt_timeouts(void)
{
	struct bw_settings s = defaults();
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 1), 0); /* kernel's */
	s.connect_timeout_growth = BW_GROWTH_LINEAR;
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 3), 0);
	s.connect_timeout_ns = 2 * SEC;
	s.connect_timeout_growth = BW_GROWTH_FIXED;
	for (unsigned a = 0; a <= 5; a++)
		BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, a), 2 * SEC);
	s.connect_timeout_growth = BW_GROWTH_LINEAR;
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 0), 2 * SEC);
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 1), 2 * SEC);
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 2), 4 * SEC);
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 3), 6 * SEC);
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 100), 200 * SEC);
	s.connect_timeout_ns = BW_POLICY_DURATION_MAX_NS / 2;
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, 3),
		     BW_POLICY_DURATION_MAX_NS);
	BW_ASSERT_EQ(bw_retry_attempt_timeout_ns(&s, UINT32_MAX),
		     BW_POLICY_DURATION_MAX_NS);
}

/* ---- the budget ---------------------------------------------------------- */

static void test_retry_budget_minimum(void)
{
	struct bw_dest d = { 0 };
	struct bw_settings s = defaults();
	BW_ASSERT_EQ(take_all(&d, &s, 1 * SEC), BW_RETRY_BUDGET_MIN);
	/* 10 connects x 20 % = 2 < 3: still 3 in all */
	struct bw_dest e = { 0 };
	connects(&e, 10, 1 * SEC);
	BW_ASSERT_EQ(take_all(&e, &s, 1 * SEC), 3);
	/* retry.budget=0: only the minimum */
	struct bw_dest f = { 0 };
	s.retry_budget = 0;
	connects(&f, 1000, 1 * SEC);
	BW_ASSERT_EQ(take_all(&f, &s, 1 * SEC), 3);
}

static void test_retry_budget_share(void)
{
	struct bw_settings s = defaults();
	struct bw_dest d = { 0 };
	connects(&d, 100, 1 * SEC);
	BW_ASSERT_EQ(take_all(&d, &s, 1 * SEC), 20);
	/* more connects lift the limit again */
	connects(&d, 10, 2 * SEC);
	BW_ASSERT_EQ(take_all(&d, &s, 2 * SEC), 2);
	struct bw_dest e = { 0 };
	connects(&e, 1000, 1 * SEC);
	BW_ASSERT_EQ(take_all(&e, &s, 1 * SEC), 200);
	struct bw_dest f = { 0 };
	s.retry_budget = 1.0;
	connects(&f, 50, 1 * SEC);
	BW_ASSERT_EQ(take_all(&f, &s, 1 * SEC), 50);
	struct bw_dest g = { 0 };
	s.retry_budget = 0.33;
	connects(&g, 100, 1 * SEC);
	BW_ASSERT_EQ(take_all(&g, &s, 1 * SEC), 33);
}

/* A connect or retry counts for 5 to 10 s: gone 10 s after at the latest. */
static void test_retry_budget_window_expiry(void)
{
	struct bw_settings s = defaults();
	struct bw_dest d = { 0 };
	uint64_t t0 = 1000 * SEC + 4 * SEC; /* late in a half */
	connects(&d, 100, t0);
	BW_ASSERT_EQ(take_all(&d, &s, t0), 20);
	/* still spent 5 s on: the previous half counts */
	BW_ASSERT_EQ(take_all(&d, &s, t0 + 5 * SEC), 0);
	/* 10 s on: both halves have passed: nothing counts but the minimum */
	BW_ASSERT_EQ(take_all(&d, &s, t0 + 10 * SEC), 3);

	/* spent early in a half: counted for (almost) the full 10 s */
	struct bw_dest e = { 0 };
	uint64_t t1 = 2000 * SEC;
	connects(&e, 100, t1);
	BW_ASSERT_EQ(take_all(&e, &s, t1), 20);
	BW_ASSERT_EQ(take_all(&e, &s, t1 + 9 * SEC), 0);
	BW_ASSERT_EQ(take_all(&e, &s, t1 + 10 * SEC), 3);

	/* connects of the previous half still back retries */
	struct bw_dest f = { 0 };
	connects(&f, 100, t1);
	BW_ASSERT_EQ(take_all(&f, &s, t1 + 6 * SEC), 20);
	BW_ASSERT_EQ(take_all(&f, &s, t1 + 9 * SEC), 0);

	/* a long pause forgets everything */
	struct bw_dest g = { 0 };
	connects(&g, 100, t1);
	BW_ASSERT_EQ(take_all(&g, &s, t1), 20);
	BW_ASSERT_EQ(take_all(&g, &s, t1 + 3600 * SEC), 3);
}

/* A caller whose clock reading is older than the budget's half (it was
 * preempted past a rollover) counts in the current half, never rolls back. */
static void test_retry_budget_stale_clock(void)
{
	struct bw_settings s = defaults();
	struct bw_dest d = { 0 };
	uint64_t t = 3000 * SEC;
	connects(&d, 100, t + 6 * SEC); /* half h+1 */
	connects(&d, 50, t);		/* behind: counts in h+1 too */
	BW_ASSERT_EQ(take_all(&d, &s, t + 6 * SEC), 30);
	BW_ASSERT_EQ(take_all(&d, &s, t), 0);
	/* and they expire with the half they landed in */
	BW_ASSERT_EQ(take_all(&d, &s, t + 16 * SEC), 3);
}

/* A zeroed (new, reset) destination in the first half after boot. */
static void test_retry_budget_at_boot(void)
{
	struct bw_settings s = defaults();
	struct bw_dest d = { 0 };
	connects(&d, 100, 0);
	BW_ASSERT_EQ(take_all(&d, &s, 1), 20);
	BW_ASSERT_EQ(take_all(&d, &s, 5 * SEC), 0);
	BW_ASSERT_EQ(take_all(&d, &s, 10 * SEC), 3);
}

/* ---- retry.min_success --------------------------------------------------- */

static void record(struct bw_dest *d, const struct bw_settings *s, int n,
		   bool failed, uint64_t now)
{
	for (int i = 0; i < n; i++)
		bw_breaker_record(d, s, failed, 1 * MS, false, now, NULL);
}

static void test_retry_min_success(void)
{
	struct bw_settings s = defaults();
	s.failures = 0; /* keep the breaker closed: only the window */
	struct bw_dest d = { 0 };
	BW_ASSERT(bw_retry_worth_it(&d, &s, SEC));
	BW_ASSERT(bw_retry_success_rate(&d, &s, SEC) < 0);
	record(&d, &s, 19, true, SEC);
	BW_ASSERT(bw_retry_worth_it(&d, &s, SEC)); /* below min_calls */
	BW_ASSERT(bw_retry_success_rate(&d, &s, SEC) < 0);
	record(&d, &s, 1, true, SEC);
	BW_ASSERT(!bw_retry_worth_it(&d, &s, SEC)); /* 0 % of 20 */
	BW_ASSERT_NEAR(bw_retry_success_rate(&d, &s, SEC), 0.0, 1e-12);
	record(&d, &s, 2, false, SEC);
	BW_ASSERT(!bw_retry_worth_it(&d, &s, SEC)); /* 2/22 = 9.1 % */
	record(&d, &s, 1, false, SEC);
	BW_ASSERT(bw_retry_worth_it(&d, &s, SEC)); /* 3/23 = 13 % */
	BW_ASSERT_NEAR(bw_retry_success_rate(&d, &s, SEC), 3.0 / 23, 1e-12);
	/* off */
	record(&d, &s, 50, true, SEC);
	BW_ASSERT(!bw_retry_worth_it(&d, &s, SEC));
	s.retry_min_success = 0;
	BW_ASSERT(bw_retry_worth_it(&d, &s, SEC));
	/* min_calls 0 is taken as 1 */
	struct bw_dest e = { 0 };
	s.retry_min_success = 0.5;
	s.min_calls = 0;
	BW_ASSERT(bw_retry_worth_it(&e, &s, SEC));
	record(&e, &s, 1, true, SEC);
	BW_ASSERT(!bw_retry_worth_it(&e, &s, SEC));
}

static void test_retry_min_success_time_window(void)
{
	struct bw_settings s = defaults();
	s.failures = 0;
	s.window_calls = 0;
	s.window_ns = 10 * SEC;
	s.min_calls = 5;
	struct bw_dest d = { 0 };
	record(&d, &s, 5, true, 100 * SEC);
	BW_ASSERT(!bw_retry_worth_it(&d, &s, 100 * SEC));
	/* the failures leave the window */
	BW_ASSERT(bw_retry_worth_it(&d, &s, 120 * SEC));
	/* no window at all: never judged */
	s.window_ns = 0;
	BW_ASSERT(bw_retry_worth_it(&d, &s, 100 * SEC));
}

/* ---- the decision -------------------------------------------------------- */

static void test_retry_decide_reasons(void)
{
	struct bw_settings s = defaults();
	s.failures = 0;
	struct bw_dest d = { 0 };
	uint64_t t = 50 * SEC;
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 1, EACCES, t),
		     BW_RETRY_DENY_ERRNO);
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 1, EINTR, t), BW_RETRY_DENY_ERRNO);
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 1, ECONNRESET, t),
		     BW_RETRY_DENY_ERRNO);
	/* errno is judged before attempts */
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 3, EPERM, t), BW_RETRY_DENY_ERRNO);
	BW_ASSERT_EQ(atomic_load(&d.retries_denied), 0);
	BW_ASSERT_EQ(atomic_load(&d.retries), 0);

	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 1, ECONNREFUSED, t),
		     BW_RETRY_ALLOW);
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 2, ETIMEDOUT, t), BW_RETRY_ALLOW);
	BW_ASSERT_EQ(atomic_load(&d.retries), 2);
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 3, ECONNREFUSED, t),
		     BW_RETRY_DENY_ATTEMPTS);
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 99, ECONNREFUSED, t),
		     BW_RETRY_DENY_ATTEMPTS);
	BW_ASSERT_EQ(atomic_load(&d.retries_denied), 0);

	/* the third retry of the window is the minimum's last */
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 1, ENETUNREACH, t),
		     BW_RETRY_ALLOW);
	BW_ASSERT_EQ(bw_retry_decide(&d, &s, 1, ECONNREFUSED, t),
		     BW_RETRY_DENY_BUDGET);
	BW_ASSERT_EQ(atomic_load(&d.retries), 3);
	BW_ASSERT_EQ(atomic_load(&d.retries_denied), 1);

	/* min_success is judged before the budget and spends none of it */
	struct bw_dest e = { 0 };
	record(&e, &s, 20, true, t);
	BW_ASSERT_EQ(bw_retry_decide(&e, &s, 1, ECONNREFUSED, t),
		     BW_RETRY_DENY_ADAPTIVE);
	BW_ASSERT_EQ(atomic_load(&e.retries_denied), 1);
	BW_ASSERT_EQ(atomic_load(&e.retries), 0);
	s.retry_min_success = 0;
	BW_ASSERT_EQ(take_all(&e, &s, t), 3);

	/* retry.attempts=1: no retries at all */
	struct bw_dest f = { 0 };
	s.retry_attempts = 1;
	BW_ASSERT_EQ(bw_retry_decide(&f, &s, 1, ECONNREFUSED, t),
		     BW_RETRY_DENY_ATTEMPTS);
	BW_ASSERT_EQ(bw_retry_decide(&f, &s, 0, ECONNREFUSED, t),
		     BW_RETRY_DENY_ATTEMPTS);
	BW_ASSERT_EQ(atomic_load(&f.retries), 0);
}

static void test_retry_decide_untracked(void)
{
	struct bw_settings s = defaults();
	for (int i = 0; i < 10; i++)
		BW_ASSERT_EQ(bw_retry_decide(NULL, &s, 1, ECONNREFUSED, 0),
			     BW_RETRY_ALLOW);
	BW_ASSERT_EQ(bw_retry_decide(NULL, &s, 3, ECONNREFUSED, 0),
		     BW_RETRY_DENY_ATTEMPTS);
	BW_ASSERT_EQ(bw_retry_decide(NULL, &s, 1, EACCES, 0),
		     BW_RETRY_DENY_ERRNO);
}

static void test_retry_decide_budget_follows_connects(void)
{
	struct bw_settings s = defaults();
	s.retry_attempts = 100;
	struct bw_dest d = { 0 };
	uint64_t t = 70 * SEC;
	connects(&d, 50, t);
	int allowed = 0, denied = 0;
	for (int i = 0; i < 30; i++) {
		int v = bw_retry_decide(&d, &s, 1, ETIMEDOUT, t);
		allowed += v == BW_RETRY_ALLOW;
		denied += v == BW_RETRY_DENY_BUDGET;
	}
	BW_ASSERT_EQ(allowed, 10);
	BW_ASSERT_EQ(denied, 20);
	BW_ASSERT_EQ(atomic_load(&d.retries), 10);
	BW_ASSERT_EQ(atomic_load(&d.retries_denied), 20);
	bw_retry_note_success(&d);
	BW_ASSERT_EQ(atomic_load(&d.retries_ok), 1);
}

static void test_retry_verdict_names(void)
{
	BW_ASSERT_STR(bw_retry_verdict_name(BW_RETRY_ALLOW), "allow");
	BW_ASSERT_STR(bw_retry_verdict_name(BW_RETRY_DENY_ERRNO), "errno");
	BW_ASSERT_STR(bw_retry_verdict_name(BW_RETRY_DENY_ATTEMPTS),
		      "attempts");
	BW_ASSERT_STR(bw_retry_verdict_name(BW_RETRY_DENY_ADAPTIVE),
		      "min_success");
	BW_ASSERT_STR(bw_retry_verdict_name(BW_RETRY_DENY_BUDGET), "budget");
	BW_ASSERT_STR(bw_retry_verdict_name(-1), "?");
}

/* ---- random bits --------------------------------------------------------- */

static void test_retry_rand(void)
{
	_Atomic uint64_t st = 0;
	/* splitmix64's reference output for seed 0 */
	BW_ASSERT_EQ(bw_retry_rand(&st), (long long)0xe220a8397b1dcdafull);
	BW_ASSERT_EQ(bw_retry_rand(&st), (long long)0x6e789e6aa1b965f4ull);
	/* bits look uniform: each bit set about half the time */
	int ones[64] = { 0 };
	for (int i = 0; i < 20000; i++) {
		uint64_t v = bw_retry_rand(&st);
		for (int b = 0; b < 64; b++)
			ones[b] += (v >> b) & 1;
	}
	for (int b = 0; b < 64; b++)
		BW_ASSERT(ones[b] > 9500 && ones[b] < 10500);
}

static const struct bw_test tests[] = {
	BW_TEST(test_retry_classes),
	BW_TEST(test_retry_retryable_defaults),
	BW_TEST(test_retry_on_subsets),
	BW_TEST(test_retry_delay_schedule),
	BW_TEST(test_retry_delay_multipliers),
	BW_TEST(test_retry_delay_edges),
	BW_TEST(test_retry_jitter_factor_bounds),
	BW_TEST(test_retry_jitter_full_bounds),
	BW_TEST(test_retry_jitter_at_cap),
	BW_TEST(test_retry_adaptive_by_kind),
	BW_TEST(test_retry_adaptive_by_success_rate),
	BW_TEST(test_retry_adaptive_capped),
	BW_TEST(test_retry_attempt_timeouts),
	BW_TEST(test_retry_budget_minimum),
	BW_TEST(test_retry_budget_share),
	BW_TEST(test_retry_budget_window_expiry),
	BW_TEST(test_retry_budget_stale_clock),
	BW_TEST(test_retry_budget_at_boot),
	BW_TEST(test_retry_min_success),
	BW_TEST(test_retry_min_success_time_window),
	BW_TEST(test_retry_decide_reasons),
	BW_TEST(test_retry_decide_untracked),
	BW_TEST(test_retry_decide_budget_follows_connects),
	BW_TEST(test_retry_verdict_names),
	BW_TEST(test_retry_rand),
};

BW_TEST_MAIN(tests)
