/* SPDX-License-Identifier: MIT */
/*
 * core/retry.h: connect retries (bulwark-policy(7) retry.*, connect.timeout,
 * connect.timeout_growth) as pure decisions: which errors are retried, how
 * long to wait, how long each attempt may take, and whether a retry is
 * allowed now (attempts, retry budget, retry.min_success).  The caller
 * supplies the clock (CLOCK_MONOTONIC, ns) and random bits; the module
 * makes no syscalls, takes no locks, allocates nothing and never touches
 * errno, so every function is AS-safe.  Design and invariants:
 * core/retry.c.
 *
 * The connect hook, per connect(2) the program makes:
 *
 *   bw_retry_note_connect(d, now)                   once, first attempt
 *   for (attempt = 1;; attempt++) {
 *       timeout = bw_retry_attempt_timeout_ns(s, attempt)
 *       ...breaker admit, real connect bounded by timeout...
 *       if ok: if attempt > 1: bw_retry_note_success(d); done
 *       rc = bw_retry_decide(d, s, attempt, err, now)
 *       if rc: log retry_exhausted unless rc == BW_RETRY_DENY_ERRNO; fail
 *       delay = bw_retry_delay_ns(s, attempt, err,
 *                                 bw_retry_success_rate(d, s, now),
 *                                 bw_retry_rand(&seed))
 *       log retry; sleep delay; (breaker open now: fail with its errno)
 *   }
 */
#ifndef BW_CORE_RETRY_H
#define BW_CORE_RETRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"
#include "policy/policy.h"

/* The retry budget's window (bulwark-policy(7) retry.budget),
 * kept as two halves: a connect or retry counts for 5 to 10 s.  Halves
 * (rather than 10 slices) because the whole past fits one 64-bit word
 * next to the current half's two counters: see core/retry.c. */
#define BW_RETRY_BUDGET_WINDOW_NS (10ull * 1000000000ull)
#define BW_RETRY_BUDGET_HALF_NS (BW_RETRY_BUDGET_WINDOW_NS / 2)
/* Retries the budget always allows per window, whatever the connects
 * (bulwark-policy(7): "at least 3 retries always allowed"; Envoy's
 * min_retry_concurrency default).  Lets a quiet destination retry at all. */
#define BW_RETRY_BUDGET_MIN 3u

/* bw_retry_decide's result: 0 or the first reason that applies, in this
 * order. */
enum bw_retry_verdict {
	BW_RETRY_ALLOW = 0,
	BW_RETRY_DENY_ERRNO,	/* err not in retry.on (bulwark-policy(7)) */
	BW_RETRY_DENY_ATTEMPTS, /* retry.attempts used up */
	BW_RETRY_DENY_ADAPTIVE, /* retry.min_success: success unlikely */
	BW_RETRY_DENY_BUDGET,	/* retry.budget spent for the last 10 s */
};

/*
 * The retry.on class of err: one BW_RETRY_ON_* bit, or 0 for an errno no
 * class holds (EACCES, EPERM, EINVAL, EAFNOSUPPORT, EADDRNOTAVAIL,
 * EISCONN, EINTR, EINPROGRESS... are never retried).  err is positive.
 *   refused      ECONNREFUSED
 *   timeout      ETIMEDOUT
 *   unreachable  ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN
 *   reset        ECONNRESET, ECONNABORTED
 */
uint32_t bw_retry_class(int err);

/* Whether err is retried under s->retry_on. */
bool bw_retry_retryable(const struct bw_settings *s, int err);

/*
 * The wait before retry number n (n = 1 before the second attempt; 0 is
 * taken as 1), in ns:
 *   1. backoff x multiplier^(n-1), capped at max_backoff;
 *   2. retry.adaptive: x the error kind's factor (timeout 2, unreachable
 *      1.5, reset 1, refused 0.5) x (1 + 2 (1 - success_rate)), capped at
 *      max_backoff again; success_rate outside [0, 1] (bw_retry_success_rate
 *      gives -1 for "not known yet") counts as factor 1;
 *   3. jitter from rnd (64 random bits): retry.jitter j -> uniform in
 *      D x [1 - j, 1 + j]; full -> uniform in [0, D).  A jittered value past
 *      max_backoff is reflected below it (2 max - x), so the result never
 *      exceeds max_backoff and has no lump at the cap.
 * Cannot fail.  AS-safe: yes.
 */
uint64_t bw_retry_delay_ns(const struct bw_settings *s, unsigned n, int err,
			   double success_rate, uint64_t rnd);

/*
 * The connect.timeout for attempt number attempt (1-based; 0 is taken as
 * 1): 0 (the kernel's own) when connect.timeout is off; connect.timeout
 * with growth fixed; attempt x connect.timeout with growth linear, at most
 * BW_POLICY_DURATION_MAX_NS (so it still fits poll()'s ms).
 */
uint64_t bw_retry_attempt_timeout_ns(const struct bw_settings *s,
				     unsigned attempt);

/* A first connect attempt to d: counts toward the retry budget's base.
 * Retries, and hedged connects, are not connects here.  AS-safe: yes. */
void bw_retry_note_connect(struct bw_dest *d, uint64_t now_ns);

/*
 * Asks d's retry budget for one retry (or one hedged connect): true, and
 * the retry counted, when retries in the window stay within
 * max(BW_RETRY_BUDGET_MIN, retry.budget x connects in the window); false
 * otherwise (nothing counted).  Shared by every process using d.  Never
 * grants more than the limit except, briefly, to callers racing a window
 * rollover (core/retry.c I3).  AS-safe: yes.
 */
bool bw_retry_budget_take(struct bw_dest *d, const struct bw_settings *s,
			  uint64_t now_ns);

/*
 * d's success rate over its breaker window ((calls - failures) / calls),
 * or -1 when the window holds fewer than breaker.min_calls calls (at least
 * 1) or s defines no window.  AS-safe: yes.
 */
double bw_retry_success_rate(const struct bw_dest *d,
			     const struct bw_settings *s, uint64_t now_ns);

/*
 * retry.min_success: false when it is on (> 0) and d's success rate over
 * the breaker window, once that holds breaker.min_calls calls, is below
 * it; true otherwise.  AS-safe: yes.
 */
bool bw_retry_worth_it(const struct bw_dest *d, const struct bw_settings *s,
		       uint64_t now_ns);

/*
 * After attempt number attempt (1-based) to d failed with err (positive
 * errno): whether to retry.  Returns BW_RETRY_ALLOW, having taken one
 * retry from the budget and counted it in d->retries, or the first
 * bw_retry_verdict that refuses: ERRNO, ATTEMPTS (attempt >=
 * retry.attempts), ADAPTIVE (bw_retry_worth_it), BUDGET
 * (bw_retry_budget_take); the last two count in d->retries_denied (the
 * retries "the retry budget or min_success refused" of bulwark status).
 * d may be NULL (an untracked destination): then only errno and attempts
 * are judged.  The breaker is the caller's: a retry goes through
 * bw_breaker_admit like any attempt.  AS-safe: yes.
 */
int bw_retry_decide(struct bw_dest *d, const struct bw_settings *s,
		    unsigned attempt, int err, uint64_t now_ns);

/* A retry (attempt > 1) to d connected: counts it in d->retries_ok. */
void bw_retry_note_success(struct bw_dest *d);

/* A verdict's name for the log: "allow", "errno", "attempts",
 * "min_success", "budget"; "?" for anything else. */
const char *bw_retry_verdict_name(int verdict);

/*
 * 64 random bits from *state (splitmix64 over an atomic counter): safe to
 * share between threads and to call from a signal handler; distinct
 * callers get distinct values.  Seed *state with anything (pid, clock,
 * an address) and reseed in a fork child, or parent and child jitter in
 * step.  Cannot fail.
 */
uint64_t bw_retry_rand(_Atomic uint64_t *state);

#endif
