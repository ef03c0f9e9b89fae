/* SPDX-License-Identifier: MIT */
/*
 * core/retry.c: connect-retry decisions (bulwark-policy(7) retry.*,
 * connect.timeout*) over the shared struct bw_dest, with the clock and random
 * bits passed in.
 * Owns: bw_retry_*, and of struct bw_dest the retry fields (retries,
 * retries_ok, retries_denied, budget_epoch, budget_connects, budget_retries).
 * Never: allocates, locks, makes a syscall, logs or touches errno.
 * Context: any hook, any thread, signal handlers, post-fork children, and
 * any number of processes sharing the segment, one of which may be
 * SIGKILLed between any two instructions.
 *
 * The retry budget counts, per destination, first connects and retries over
 * two 5 s halves (the current one and the one before): an event counts for
 * 5 to 10 s.  budget_connects / budget_retries hold the current half;
 * budget_epoch holds everything else in one word, so a rollover is one CAS:
 *
 *   63                    40 39                    20 19                   0
 *  +------------------------+------------------------+---------------------+
 *  | half number (24 bits)  | previous half connects | previous half       |
 *  | now_ns / 5 s, mod 2^24 | (20 bits, saturating)  | retries (20 bits)   |
 *  +------------------------+------------------------+---------------------+
 *
 * A zeroed word (new or reset destination) is half 0 with nothing counted.
 * Half numbers wrap after 2.6 years; a destination idle for a multiple of
 * that finds its old current half current again (a few stale counts).
 *
 * Invariants:
 * I1: the half in budget_epoch never goes back: the word changes only by
 *     CAS from a word of an older half (modular, 24 bits) to now's half; a
 *     caller whose now_ns lies behind the word's half (it read the clock,
 *     then was preempted past a rollover) takes the word's half as current.
 * I2: a rollover is claimed first: one CAS moves the word to now's half
 *     with nothing counted, so exactly one caller rolls each half.  The
 *     claimer then exchanges the current counters to 0 and, when one half
 *     passed, CASes its claim word to one holding them as the previous
 *     half (a newer rollover that replaced the claim meanwhile owns the
 *     word; those counts are then older than the window anyway).  So a
 *     half's connects and retries stay together, and a count is never in
 *     two halves.  (Exchanging first let two racing rollers split one
 *     half's counts, connects to one and retries to the other, and the
 *     next half grant twice its share.)
 * I3: budget_retries grows only by a CAS made after checking the limit
 *     against the same value: within one half the limit is never passed,
 *     whatever the concurrency.  Callers racing a rollover (between its
 *     claim and its last CAS) judge by the current counters alone and may
 *     grant up to BW_RETRY_BUDGET_MIN beyond the limit: bounded, and only
 *     at a rollover.
 * I4: a process killed inside a rollover (after its claim) leaves that
 *     half's counts in the current counters, or loses them after the
 *     exchange: the budget is off for at most one window (10 s).
 * I5: bw_retry_delay_ns never returns more than retry.max_backoff, and
 *     with jitter 0 and adaptive off it is exactly
 *     min(backoff x multiplier^(n-1), max_backoff) (rounded to the ns).
 * I6: retries counts retries allowed; retries_denied counts only retries
 *     the budget or min_success refused (not exhausted attempts, not
 *     errnos outside retry.on); retries_ok counts retries that connected.
 */
#include "core/retry.h"

#include <errno.h>
#include <stdatomic.h>

#include "core/breaker.h"

/* ---- the budget word ----------------------------------------------------- */

#define BUDGET_COUNT_BITS 20
#define BUDGET_COUNT_MAX ((1ull << BUDGET_COUNT_BITS) - 1)
#define BUDGET_HALF_SHIFT (2 * BUDGET_COUNT_BITS)
#define BUDGET_HALF_BITS (64 - BUDGET_HALF_SHIFT)
#define BUDGET_HALF_MASK ((1ull << BUDGET_HALF_BITS) - 1)

/* Rollover and take retries when other callers keep changing the words.
 * Each failed CAS means another caller made progress (lock-free); past this
 * a retry is refused rather than spin in a signal handler. */
#define BUDGET_TRIES 64

static inline uint64_t w_half(uint64_t w)
{
	return w >> BUDGET_HALF_SHIFT;
}

static inline uint32_t w_prev_connects(uint64_t w)
{
	return (uint32_t)((w >> BUDGET_COUNT_BITS) & BUDGET_COUNT_MAX);
}

static inline uint32_t w_prev_retries(uint64_t w)
{
	return (uint32_t)(w & BUDGET_COUNT_MAX);
}

static inline uint64_t sat_count(uint32_t n)
{
	return n > BUDGET_COUNT_MAX ? BUDGET_COUNT_MAX : n;
}

static inline uint64_t budget_word(uint64_t half, uint32_t connects,
				   uint32_t retries)
{
	return (half & BUDGET_HALF_MASK) << BUDGET_HALF_SHIFT |
	       sat_count(connects) << BUDGET_COUNT_BITS | sat_count(retries);
}

static inline uint64_t half_of(uint64_t now_ns)
{
	return (now_ns / BW_RETRY_BUDGET_HALF_NS) & BUDGET_HALF_MASK;
}

/*
 * Brings d's budget to now's half (I1, I2) and returns the word that
 * describes the previous half.  Cost: one load when the half is current.
 */
static uint64_t budget_sync(struct bw_dest *d, uint64_t now_ns)
{
	uint64_t now_half = half_of(now_ns);
	uint64_t w = atomic_load(&d->budget_epoch);
	for (int i = 0; i < BUDGET_TRIES; i++) {
		uint64_t gap = (now_half - w_half(w)) & BUDGET_HALF_MASK;
		if (gap == 0 || gap > BUDGET_HALF_MASK / 2)
			return w; /* current, or we are behind it (I1) */
		uint64_t claim = budget_word(now_half, 0, 0);
		if (!atomic_compare_exchange_strong(&d->budget_epoch, &w,
						    claim))
			continue; /* another caller rolled it (w reloaded) */
		/* Ours (I2): the half's counts move together. */
		uint32_t c = atomic_exchange(&d->budget_connects, 0);
		uint32_t r = atomic_exchange(&d->budget_retries, 0);
		if (gap > 1)
			return claim;
		uint64_t nw = budget_word(now_half, c, r);
		w = claim;
		return atomic_compare_exchange_strong(&d->budget_epoch, &w, nw)
			       ? nw
			       : w;
	}
	return w;
}

void bw_retry_note_connect(struct bw_dest *d, uint64_t now_ns)
{
	budget_sync(d, now_ns);
	atomic_fetch_add_explicit(&d->budget_connects, 1, memory_order_relaxed);
}

/* Retries the budget allows in a window that holds connects connects. */
static uint64_t budget_limit(const struct bw_settings *s, uint64_t connects)
{
	double b = s->retry_budget;
	uint64_t lim = 0;
	if (b > 0) {
		/* The epsilon keeps 20 % of 100 at 20 whatever the rounding
		 * of 0.2; connects < 2^33, so the product is exact enough. */
		double x = b * (double)connects + 1e-9;
		lim = x >= 1.8e19 ? UINT64_MAX : (uint64_t)x;
	}
	return lim < BW_RETRY_BUDGET_MIN ? BW_RETRY_BUDGET_MIN : lim;
}

bool bw_retry_budget_take(struct bw_dest *d, const struct bw_settings *s,
			  uint64_t now_ns)
{
	for (int i = 0; i < BUDGET_TRIES; i++) {
		/* Again each time: a failed CAS may mean a rollover. */
		uint64_t w = budget_sync(d, now_ns);
		uint32_t r = atomic_load(&d->budget_retries);
		uint64_t c = atomic_load(&d->budget_connects);
		uint64_t used = (uint64_t)w_prev_retries(w) + r;
		if (used >= budget_limit(s, c + w_prev_connects(w)))
			return false;
		if (atomic_compare_exchange_strong(&d->budget_retries, &r,
						   r + 1))
			return true; /* I3 */
	}
	return false;
}

/* ---- success rate, min_success ------------------------------------------- */

double bw_retry_success_rate(const struct bw_dest *d,
			     const struct bw_settings *s, uint64_t now_ns)
{
	uint32_t calls, failures;
	bw_breaker_window(d, s, now_ns, &calls, &failures, NULL);
	uint32_t min = s->min_calls ? s->min_calls : 1;
	if (calls < min)
		return -1.0;
	/* Buckets are read one counter at a time: failures may run ahead. */
	if (failures > calls)
		failures = calls;
	return (double)(calls - failures) / (double)calls;
}

bool bw_retry_worth_it(const struct bw_dest *d, const struct bw_settings *s,
		       uint64_t now_ns)
{
	if (!(s->retry_min_success > 0))
		return true;
	double rate = bw_retry_success_rate(d, s, now_ns);
	return rate < 0 || rate >= s->retry_min_success;
}

/* ---- classes, delays, timeouts ------------------------------------------- */

uint32_t bw_retry_class(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return BW_RETRY_ON_REFUSED;
	case ETIMEDOUT:
		return BW_RETRY_ON_TIMEOUT;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
		return BW_RETRY_ON_UNREACHABLE;
	case ECONNRESET:
	case ECONNABORTED:
		return BW_RETRY_ON_RESET;
	default:
		return 0;
	}
}

bool bw_retry_retryable(const struct bw_settings *s, int err)
{
	return (bw_retry_class(err) & s->retry_on) != 0;
}

/*
 * retry.adaptive's factor for the failure's kind, after the seed's
 * calculateAdaptiveDelay: a timeout waits longer (the peer or path is
 * overloaded: x2, as the seed), a refusal shorter (nothing listens yet, a
 * restart is quick to notice: x0.5, the seed's ConnectException), an
 * unreachable network in between (routes and ARP take seconds to heal:
 * x1.5); a reset keeps the plain schedule.
 */
static double kind_factor(int err)
{
	switch (bw_retry_class(err)) {
	case BW_RETRY_ON_TIMEOUT:
		return 2.0;
	case BW_RETRY_ON_REFUSED:
		return 0.5;
	case BW_RETRY_ON_UNREACHABLE:
		return 1.5;
	default:
		return 1.0;
	}
}

/*
 * retry.adaptive's factor for the destination's recent success rate p:
 * 1 + 2 (1 - p), from x1 for a healthy destination to x3 for one that
 * always fails (the seed's x3 when success is unlikely), linear in between
 * so that many clients watching the same shared rate do not all jump at one
 * threshold.  The seed also halves the wait when success is likely; here a
 * healthy destination keeps the plain schedule instead, so adaptive never
 * retries a failing-now destination faster than the policy says (refusals
 * excepted, above).  Unknown p (< 0, NaN): x1.
 */
static double rate_factor(double p)
{
	if (!(p >= 0.0 && p <= 1.0))
		return 1.0;
	return 1.0 + 2.0 * (1.0 - p);
}

/* b^e for e >= 0 by squaring: O(log e), no libm. */
static double pow_u(double b, unsigned e)
{
	double r = 1.0;
	while (e) {
		if (e & 1)
			r *= b;
		e >>= 1;
		if (e)
			b *= b;
	}
	return r;
}

/* 53 random bits as a double in [0, 1). */
static inline double unit(uint64_t rnd)
{
	return (double)(rnd >> 11) * 0x1.0p-53;
}

uint64_t bw_retry_delay_ns(const struct bw_settings *s, unsigned n, int err,
			   double success_rate, uint64_t rnd)
{
	double cap = (double)s->retry_max_backoff_ns;
	if (s->retry_backoff_ns == 0 || cap <= 0)
		return 0;
	if (n == 0)
		n = 1;
	double d =
		(double)s->retry_backoff_ns * pow_u(s->retry_multiplier, n - 1);
	if (!(d < cap)) /* also catches inf from a huge power */
		d = cap;
	if (s->retry_adaptive) {
		d *= kind_factor(err) * rate_factor(success_rate);
		if (!(d < cap))
			d = cap;
	}
	double j = s->retry_jitter;
	if (s->retry_jitter_full)
		d *= unit(rnd);
	else if (j > 0)
		d *= 1.0 - j + 2.0 * j * unit(rnd);
	if (d > cap) /* reflect at the cap (I5); j <= 1 keeps it >= 0 */
		d = 2.0 * cap - d;
	if (!(d > 0))
		return 0;
	uint64_t ns = (uint64_t)(d + 0.5);
	return ns > s->retry_max_backoff_ns ? s->retry_max_backoff_ns : ns;
}

uint64_t bw_retry_attempt_timeout_ns(const struct bw_settings *s,
				     unsigned attempt)
{
	uint64_t t = s->connect_timeout_ns;
	if (t == 0 || s->connect_timeout_growth != BW_GROWTH_LINEAR ||
	    attempt <= 1)
		return t;
	if (t > BW_POLICY_DURATION_MAX_NS / attempt)
		return BW_POLICY_DURATION_MAX_NS;
	return t * attempt;
}

/* ---- the decision -------------------------------------------------------- */

int bw_retry_decide(struct bw_dest *d, const struct bw_settings *s,
		    unsigned attempt, int err, uint64_t now_ns)
{
	if (!bw_retry_retryable(s, err))
		return BW_RETRY_DENY_ERRNO;
	if (attempt == 0)
		attempt = 1;
	if (attempt >= s->retry_attempts)
		return BW_RETRY_DENY_ATTEMPTS;
	if (!d)
		return BW_RETRY_ALLOW;
	/* min_success before the budget: a refused retry spends nothing. */
	if (!bw_retry_worth_it(d, s, now_ns)) {
		atomic_fetch_add_explicit(&d->retries_denied, 1,
					  memory_order_relaxed);
		return BW_RETRY_DENY_ADAPTIVE;
	}
	if (!bw_retry_budget_take(d, s, now_ns)) {
		atomic_fetch_add_explicit(&d->retries_denied, 1,
					  memory_order_relaxed);
		return BW_RETRY_DENY_BUDGET;
	}
	atomic_fetch_add_explicit(&d->retries, 1, memory_order_relaxed);
	return BW_RETRY_ALLOW;
}

void bw_retry_note_success(struct bw_dest *d)
{
	atomic_fetch_add_explicit(&d->retries_ok, 1, memory_order_relaxed);
}

const char *bw_retry_verdict_name(int verdict)
{
	switch (verdict) {
	case BW_RETRY_ALLOW:
		return "allow";
	case BW_RETRY_DENY_ERRNO:
		return "errno";
	case BW_RETRY_DENY_ATTEMPTS:
		return "attempts";
	case BW_RETRY_DENY_ADAPTIVE:
		return "min_success";
	case BW_RETRY_DENY_BUDGET:
		return "budget";
	default:
		return "?";
	}
}

/* ---- random bits --------------------------------------------------------- */

uint64_t bw_retry_rand(_Atomic uint64_t *state)
{
	/* splitmix64 (Steele, Lea, Flood 2014): a Weyl sequence, one atomic
	 * add per value, then a bijective mix. */
	uint64_t z = atomic_fetch_add_explicit(state, 0x9e3779b97f4a7c15ull,
					       memory_order_relaxed) +
		     0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
