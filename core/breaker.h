/* SPDX-License-Identifier: MIT */
/*
 * core/breaker.h: the circuit breaker of bulwark-policy(7) (breaker.* keys,
 * CALLS) as a pure state machine over one shared struct bw_dest.  The caller
 * supplies the clock (CLOCK_MONOTONIC, ns) and the compiled settings; the
 * module makes no syscalls, takes no locks, allocates nothing and never touches
 * errno, so every function is AS-safe and usable from any hook, thread or
 * process sharing the segment.  Design and invariants: core/breaker.c.
 */
#ifndef BW_CORE_BREAKER_H
#define BW_CORE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"
#include "policy/policy.h"

/*
 * A half-open round that outlives max(current open time, this) is taken to
 * have lost its probes (their processes were killed, or the probes hang)
 * and a fresh round starts: see bw_breaker_admit.  30 s is longer than any
 * reasonable probe connect with connect.timeout set, and short enough that
 * a SIGKILLed prober blocks a destination for about one open period.  The
 * cost when a real probe is merely slow: one more probe per expiry (a
 * blackholed connect with the kernel's ~127 s SYN timeout sees at most 5).
 */
#define BW_BREAKER_PROBE_STALE_MIN_NS (30ull * 1000000000ull)

/* What a call to bw_breaker_record / bw_breaker_admit changed, for the log
 * (bulwark(1) DIAGNOSTICS).  Each transition is returned to exactly one
 * caller. */
enum bw_breaker_event {
	BW_BREAKER_EV_NONE = 0,
	BW_BREAKER_EV_OPENED,	      /* closed -> open: breaker_open */
	BW_BREAKER_EV_HALF_OPENED,    /* open -> half_open: breaker_half_open */
	BW_BREAKER_EV_CLOSED,	      /* half_open -> closed: breaker_close */
	BW_BREAKER_EV_REOPENED,	      /* half_open -> open: breaker_open */
	BW_BREAKER_EV_PROBES_EXPIRED, /* half_open round renewed: its probes
				       * never reported (breaker_half_open) */
	BW_BREAKER_EV_BOUNDED,	      /* a deadline read from the segment lay
				       * beyond breaker.open_max (or the probe
				       * round's limit) from now: corrupt, or
				       * written in another time namespace;
				       * it was brought back (state_error) */
	BW_BREAKER_EV_REPAIRED,	      /* a state word or forced value read
				       * from the segment was one no code
				       * writes: repaired and counted in
				       * breaker_corrupt (breaker.c I10) */
};

/* Why a closed breaker opened (bw_breaker_record's *why). */
enum bw_breaker_why {
	BW_BREAKER_WHY_NONE = 0,
	BW_BREAKER_WHY_FAILURES,  /* breaker.failures consecutive failures */
	BW_BREAKER_WHY_RATE,	  /* breaker.rate over the window */
	BW_BREAKER_WHY_SLOW,	  /* breaker.slow_calls slow-call count */
	BW_BREAKER_WHY_SLOW_RATE, /* breaker.slow_rate over the window */
};

/* bw_breaker_admit's result: > 0 is a probe ticket. */
#define BW_BREAKER_IS_PROBE(rc) ((rc) > 0)

/*
 * Before a connect to d.  Returns 0: admitted; > 0: admitted as a
 * half-open probe, the value being a ticket the caller keeps until it
 * reports the outcome (bw_breaker_record with probe = true) or, if the
 * attempt ends as neither success nor failure, bw_breaker_release_probe;
 * -s->breaker_errno: rejected (open, forced open, or half-open with every
 * probe taken).  Performs the lazy open -> half-open transition and the
 * dead-probe renewal; *event (may be NULL) receives the resulting event.
 * Cost: two loads when closed.  AS-safe: yes.
 */
int bw_breaker_admit(struct bw_dest *d, const struct bw_settings *s,
		     uint64_t now_ns, int *event);

/*
 * After a call to d finished (a connect attempt or an exchange,
 * bulwark-policy(7) CALLS): failed, its latency, and whether it was a probe
 * admitted by bw_breaker_admit.  Returns an enum bw_breaker_event (NONE,
 * OPENED, CLOSED or REOPENED); *why (may be NULL) receives the reason for
 * OPENED.  Only a successful call can be slow.  Cannot fail.  AS-safe: yes.
 */
int bw_breaker_record(struct bw_dest *d, const struct bw_settings *s,
		      bool failed, uint64_t latency_ns, bool probe,
		      uint64_t now_ns, int *why);

/*
 * A successful connect: a success in the window (and for a probe), but it
 * leaves the consecutive-failure count alone.  Only a good exchange, or a
 * connection that ends without a failed one (bw_breaker_note_healthy),
 * shows that the destination answers: a server that accepts and then
 * resets every request would otherwise never trip breaker.failures.  A
 * slow connect raises the slow-call count; a fast one never lowers it, or
 * a client making one slow exchange per connection could never trip
 * breaker.slow_calls.
 * Returns an enum bw_breaker_event.  AS-safe: yes.
 */
int bw_breaker_record_connect_ok(struct bw_dest *d, const struct bw_settings *s,
				 uint64_t latency_ns, bool probe,
				 uint64_t now_ns);

/*
 * The outcome of nearly every call, recorded in one pass: a success that
 * is not slow, the breaker closed and not forced, under settings that
 * judge no rate (so it cannot open).  clears: a good exchange, which
 * starts the consecutive-failure count again and lowers the slow-call
 * count by one; a good connect (false) leaves both.  Does
 * what bw_breaker_record / bw_breaker_record_connect_ok would and returns
 * true; returns false, having changed nothing, in any other case (the
 * caller records through those).  AS-safe: yes.
 */
bool bw_breaker_record_ok(struct bw_dest *d, const struct bw_settings *s,
			  bool clears, uint64_t latency_ns, uint64_t now_ns);

/* A connection ended without a failed exchange: the consecutive-failure
 * count starts again.  AS-safe: yes. */
void bw_breaker_note_healthy(struct bw_dest *d, const struct bw_settings *s);

/* A probe ended as neither success nor failure (closed before its connect
 * completed, doc/design.md L6): gives its claim back so another call may probe.
 * A ticket of an earlier round is ignored.  AS-safe: yes. */
void bw_breaker_release_probe(struct bw_dest *d, int ticket);

/*
 * For status: the automatic state to show (an open breaker past its
 * deadline shows as half-open: the next admit makes it so) and, when open,
 * the time left in *open_remaining_ns (may be NULL; 0 otherwise).  Does not
 * look at d->forced.  AS-safe: yes.
 */
enum bw_breaker_state bw_breaker_view(const struct bw_dest *d, uint64_t now_ns,
				      uint64_t *open_remaining_ns);

/*
 * Whether d's breaker leaves its slot free to go (core/state.c reclaim):
 * closed, or its open time (or half-open round) ended idle_ns ago or
 * more, so the next connect would be let through anyway.  AS-safe: yes.
 */
bool bw_breaker_quiet(const struct bw_dest *d, uint64_t now_ns,
		      uint64_t idle_ns);

/* The state as bulwark(1) status spells it, forced states included:
 * "closed", "open", "half_open", "forced_open", "disabled". */
const char *bw_breaker_state_name(const struct bw_dest *d, uint64_t now_ns);

/*
 * Calls, failures and slow calls in d's window (count or time,
 * bulwark-policy(7)) as of now_ns; all 0 when s defines no window.
 * Approximate: the window is BW_STATE_WINDOW_BUCKETS slices, so it spans 90 to
 * 100 % of its size.  Used by retry.min_success.  AS-safe: yes.
 */
void bw_breaker_window(const struct bw_dest *d, const struct bw_settings *s,
		       uint64_t now_ns, uint32_t *calls, uint32_t *failures,
		       uint32_t *slow);

/* Closes d's breaker and clears its counters and window, as an operator
 * reset does (bulwark reset); in-flight probes become stale.  Leaves
 * d->forced alone.  AS-safe: yes. */
void bw_breaker_reset(struct bw_dest *d);

/* Whether a call of latency_ns is slow under s (breaker.slow). */
static inline bool bw_breaker_is_slow(const struct bw_settings *s,
				      uint64_t latency_ns)
{
	return s->slow_ns > 0 && latency_ns >= s->slow_ns;
}

#endif
