/* SPDX-License-Identifier: MIT */
/*
 * core/breaker.c: the circuit breaker (bulwark-policy(7) breaker.* and CALLS)
 * over the shared struct bw_dest, as a pure state machine with the clock passed
 * in.
 * Owns: bw_breaker_*, the breaker fields of struct bw_dest.
 * Never: allocates, locks, makes a syscall, logs or touches errno.
 * Context: any hook, any thread, signal handlers, post-fork children, and
 * any number of processes sharing the segment, one of which may be
 * SIGKILLed between any two instructions.
 *
 * State word (d->state, 64 bits, changed only by compare-and-swap):
 *
 *   63                         24 23                 2 1   0
 *  +-----------------------------+--------------------+-----+
 *  | deadline, ms (40 bits)      | generation (22)    |state|
 *  +-----------------------------+--------------------+-----+
 *
 * The deadline is when an OPEN breaker may go half-open, or when a
 * HALF_OPEN round expires; CLOCK_MONOTONIC in ms, rounded up (40 bits last
 * 34 years of uptime; later deadlines saturate, i.e. stay open).  Every
 * transition takes the next generation (never 0 after the first), so a CAS
 * from a stale word fails even when the state looks the same (no ABA short
 * of 4 million transitions between one load and its CAS).
 *
 *                      breaker_trip (record: failures, rate,
 *                                    slow_calls or slow_rate)
 *      +--------+  ------------------------------------------->  +------+
 *      | CLOSED |                                                 | OPEN |
 *      +--------+  <--+                        +---------------> +------+
 *          ^          |                        | breaker_reopen     |
 *          |          | bw_breaker_reset       | (record: a probe   |
 *          |          | (operator, any state)  |  failed or slow;   |
 *          |          |                        |  open time doubles)|
 *          |                                   |                    |
 *          | breaker_close            +-----------+                 |
 *          | (record: probes     <----| HALF_OPEN |<----------------+
 *          |  successes)              +-----------+   breaker_half_open
 *          +-------------------------   |      ^     (admit: now >= deadline)
 *                                       +------+
 *                            breaker_renew (admit: round past its deadline,
 *                            its probes presumed dead: fresh claims)
 *
 * Invariants:
 * I1: d->state changes only by CAS from a word loaded by the same call, and
 *     every transition bumps the generation; so each transition happens
 *     once and its event goes to exactly one caller, the CAS winner, who
 *     alone does the follow-up (opened_count, open_ns, open_until_ns).
 * I2: state, generation and deadline change together in one word: no
 *     reader pairs a new state with an old deadline.
 * I3: in a half-open round of generation g at most probes_of(s) claims are
 *     held: probes_claimed holds g << 32 | count, changes only by CAS, is
 *     written only after a check that the state word is still round g, and
 *     release gives back only a claim of its own round (the ticket).
 * I4: records change the machine only in CLOSED (counters, breaker_trip)
 *     and, for probes, in HALF_OPEN; OPEN, forced states and breaker=off
 *     ignore them.  A probe's outcome counts in the round current when it
 *     is reported (a late failure still reopens); if the breaker has closed
 *     meanwhile, it counts as an ordinary call.
 * I5: OPEN -> HALF_OPEN happens only in admit, at or after the deadline
 *     (lazily: no timer), and never before open time has passed.
 * I6: no round is wedged by dead probes: a HALF_OPEN word carries a
 *     deadline max(open time, BW_BREAKER_PROBE_STALE_MIN_NS) ahead, past
 *     which admit starts a fresh round (breaker_renew) with fresh claims.
 * I7: open time: breaker_trip uses s->open_ns; each breaker_reopen doubles
 *     the last one, capped at max(s->open_max_ns, s->open_ns).
 * I9: a deadline is bounded when read: admit brings an OPEN word whose
 *     deadline lies beyond open_max (of the settings in force) from now, or
 *     a HALF_OPEN word beyond the longest round, back to that bound with a
 *     new generation (BW_BREAKER_EV_BOUNDED); beyond means by more than
 *     BOUND_SLACK_NS, as a caller may hold a clock reading older than the
 *     one a deadline was set from.  The segment is shared by
 *     processes that may be in another time namespace (their monotonic
 *     clock differs) or may have written garbage; a 1 s breaker must not
 *     stay open for days because of either.  bw_breaker_view bounds what
 *     it shows by the open time the trip stored.  Window counts beyond
 *     what the window holds, and bucket epochs far ahead of any call, are
 *     garbage too: the window starts over (window_trips, window_add).
 * I8: a process killed anywhere leaves a word some later call continues
 *     from; the worst it costs is one lost window count or one held claim
 *     (freed by I6).  Counters and the window are approximate by design:
 *     a bucket recycled by CAS on its epoch may lose the increments that
 *     race with its zeroing.
 * I10: a value no code writes is corruption: a state word whose state
 *     bits are 3, a forced value outside enum bw_force.  The first call
 *     that meets one (admit, record, reset) repairs it by one CAS from the
 *     value it read: the word to CLOSED with a new generation and the
 *     counters cleared (as bw_breaker_reset does), forced to
 *     BW_FORCE_AUTO; the CAS winner alone counts it in
 *     bw_dest.breaker_corrupt, which bulwark status shows as
 *     breaker_corrupt (bulwark(1) status).  Unrepaired, such a word
 *     admitted as closed but recorded no call, so the breaker never
 *     opened again.  Values that may be right in another process are not
 *     counted: a deadline beyond open_max (another time namespace: I9), an
 *     open time or a probe count outside this process's settings (another
 *     policy), a window holding more than it can (loads racing a recycle:
 *     I8; it starts over).
 */
#include "core/breaker.h"

#include <errno.h>
#include <stdatomic.h>

#define BREAKER_LIKELY(x) __builtin_expect(!!(x), 1)

#define W_STATE_MASK 0x3ull
#define W_GEN_SHIFT 2
#define W_GEN_BITS 22
#define W_GEN_MASK ((1ull << W_GEN_BITS) - 1)
#define W_MS_SHIFT (W_GEN_SHIFT + W_GEN_BITS)
#define W_MS_MAX ((1ull << (64 - W_MS_SHIFT)) - 1)
#define NS_PER_MS 1000000ull

/* Admit's retries when other callers keep changing the word under it.
 * Each failed CAS means another caller made progress (lock-free); past
 * this the connect is refused rather than spin in a signal handler. */
#define BREAKER_ADMIT_TRIES 64

/* ---- the state word ------------------------------------------------------ */

static inline uint32_t w_state(uint64_t w)
{
	return (uint32_t)(w & W_STATE_MASK);
}

static inline uint32_t w_gen(uint64_t w)
{
	return (uint32_t)((w >> W_GEN_SHIFT) & W_GEN_MASK);
}

static inline uint64_t w_deadline_ms(uint64_t w)
{
	return w >> W_MS_SHIFT;
}

static inline uint64_t w_make(uint32_t state, uint32_t gen, uint64_t ms)
{
	return (ms << W_MS_SHIFT) | ((uint64_t)gen << W_GEN_SHIFT) | state;
}

/* The generation after w's; skips 0 so a round tag is never 0 (I1). */
static inline uint32_t gen_next(uint64_t w)
{
	uint32_t g = (uint32_t)((w_gen(w) + 1) & W_GEN_MASK);
	return g ? g : 1;
}

/* now + dur in ms, rounded up so a breaker never opens for less than its
 * open time; saturates at W_MS_MAX. */
static uint64_t deadline_ms(uint64_t now_ns, uint64_t dur_ns)
{
	uint64_t t = now_ns + dur_ns;
	if (t < now_ns)
		return W_MS_MAX;
	uint64_t ms = t / NS_PER_MS + (t % NS_PER_MS != 0);
	return ms > W_MS_MAX ? W_MS_MAX : ms;
}

/* Whether now_ns has reached w's deadline. */
static inline bool w_due(uint64_t w, uint64_t now_ns)
{
	return now_ns / NS_PER_MS >= w_deadline_ms(w);
}

static inline bool cas_state(struct bw_dest *d, uint64_t *w, uint64_t nw)
{
	return atomic_compare_exchange_strong(&d->state, w, nw);
}

/* ---- settings ------------------------------------------------------------ */

/* ---- corruption (I10) ----------------------------------------------------- */

static void corrupt_count(struct bw_dest *d)
{
	atomic_fetch_add_explicit(&d->breaker_corrupt, 1, memory_order_relaxed);
}

static void counters_clear(struct bw_dest *d);

/* *w's state bits are 3: back to CLOSED with a new generation, as
 * bw_breaker_reset does.  Returns whether this caller repaired (and
 * counted) it; *w becomes the word now current either way. */
static bool repair_word(struct bw_dest *d, uint64_t *w)
{
	uint64_t nw = w_make(BW_BREAKER_CLOSED, gen_next(*w), 0);
	counters_clear(d);
	if (!cas_state(d, w, nw))
		return false;
	*w = nw;
	atomic_store(&d->open_ns, 0);
	atomic_store(&d->open_until_ns, 0);
	corrupt_count(d);
	return true;
}

/* f, read from d->forced, is none of enum bw_force: back to auto. */
static bool repair_forced(struct bw_dest *d, uint32_t f)
{
	if (!atomic_compare_exchange_strong(&d->forced, &f, BW_FORCE_AUTO))
		return false;
	corrupt_count(d);
	return true;
}

static inline int reject(const struct bw_settings *s)
{
	return s->breaker_errno > 0 ? -s->breaker_errno : -ECONNREFUSED;
}

/* breaker.probes; 0 would never close, so it counts as 1. */
static inline uint32_t probes_of(const struct bw_settings *s)
{
	return s->probes ? s->probes : 1;
}

static inline uint64_t open_max_of(const struct bw_settings *s)
{
	return s->open_max_ns > s->open_ns ? s->open_max_ns : s->open_ns;
}

/* The open time last used, within [open_ns, open_max] of s (I7). */
static uint64_t open_cur(const struct bw_dest *d, const struct bw_settings *s)
{
	uint64_t cur = atomic_load_explicit(&d->open_ns, memory_order_relaxed);
	uint64_t max = open_max_of(s);
	if (cur < s->open_ns)
		cur = s->open_ns;
	return cur > max ? max : cur;
}

static uint64_t probe_stale_ns(const struct bw_dest *d,
			       const struct bw_settings *s)
{
	uint64_t cur = open_cur(d, s);
	return cur > BW_BREAKER_PROBE_STALE_MIN_NS
		       ? cur
		       : BW_BREAKER_PROBE_STALE_MIN_NS;
}

/* ---- round-tagged counters (I3) ------------------------------------------ */

static inline uint32_t round_count(uint64_t c, uint32_t gen)
{
	return (uint32_t)(c >> 32) == gen ? (uint32_t)c : 0;
}

static inline uint64_t round_make(uint32_t gen, uint32_t count)
{
	return ((uint64_t)gen << 32) | count;
}

static inline int ticket_of(uint32_t gen)
{
	return (int)((gen << 1) | 1); /* > 0 (gen < 2^22) */
}

/* Gives back one claim of round gen, if that round still holds one. */
static void unclaim(struct bw_dest *d, uint32_t gen)
{
	uint64_t c = atomic_load(&d->probes_claimed);
	while (round_count(c, gen) > 0)
		if (atomic_compare_exchange_weak(&d->probes_claimed, &c, c - 1))
			return;
}

/* ---- the window ---------------------------------------------------------- */

/* Calls per bucket of a count window: N calls in ceil(N / 10)-call
 * buckets. */
static uint64_t count_bucket_size(const struct bw_settings *s)
{
	uint64_t n = s->window_calls;
	uint64_t sz =
		(n + BW_STATE_WINDOW_BUCKETS - 1) / BW_STATE_WINDOW_BUCKETS;
	return sz ? sz : 1;
}

/* The bucket size, and the buckets in use. */
static void count_geometry(const struct bw_settings *s, uint64_t *size,
			   uint32_t *nb)
{
	uint64_t n = s->window_calls, sz = count_bucket_size(s);
	*size = sz;
	*nb = (uint32_t)((n + sz - 1) / sz);
	if (*nb == 0)
		*nb = 1;
}

static uint64_t time_slice_ns(const struct bw_settings *s)
{
	uint64_t sl = s->window_ns / BW_STATE_WINDOW_BUCKETS;
	return sl ? sl : 1;
}

/* Bucket epochs ahead of a call's own by this many or more are corrupt. */
#define WINDOW_AHEAD_MAX (1ull << 20)

static void window_add(struct bw_dest *d, const struct bw_settings *s,
		       uint64_t now_ns, bool failed, bool slow)
{
	uint64_t ep;
	if (s->window_calls) {
		ep = atomic_fetch_add_explicit(&d->window_seq, 1,
					       memory_order_relaxed) /
		     count_bucket_size(s);
	} else if (s->window_ns) {
		ep = now_ns / time_slice_ns(s);
	} else {
		return;
	}
	/* Bucket tags are epoch + 1: 0 marks an empty (cleared) bucket. */
	uint64_t tag = ep + 1;
	struct bw_window_bucket *b = &d->win[ep % BW_STATE_WINDOW_BUCKETS];
	uint64_t e = atomic_load(&b->epoch);
	while (e != tag) {
		/* A late call for a recycled bucket: drop it.  An epoch
		 * further ahead than any delay explains is garbage from the
		 * segment (I9): the bucket is taken back. */
		if (e > tag && e - tag < WINDOW_AHEAD_MAX)
			return;
		if (atomic_compare_exchange_weak(&b->epoch, &e, tag)) {
			atomic_store_explicit(&b->calls, 0,
					      memory_order_relaxed);
			atomic_store_explicit(&b->failures, 0,
					      memory_order_relaxed);
			atomic_store_explicit(&b->slow, 0,
					      memory_order_relaxed);
			break;
		}
	}
	atomic_fetch_add_explicit(&b->calls, 1, memory_order_relaxed);
	if (failed)
		atomic_fetch_add_explicit(&b->failures, 1,
					  memory_order_relaxed);
	if (slow)
		atomic_fetch_add_explicit(&b->slow, 1, memory_order_relaxed);
}

static void window_clear(struct bw_dest *d)
{
	for (int i = 0; i < BW_STATE_WINDOW_BUCKETS; i++) {
		struct bw_window_bucket *b = &d->win[i];
		atomic_store(&b->epoch, 0);
		atomic_store_explicit(&b->calls, 0, memory_order_relaxed);
		atomic_store_explicit(&b->failures, 0, memory_order_relaxed);
		atomic_store_explicit(&b->slow, 0, memory_order_relaxed);
	}
}

/* Cost: BW_STATE_WINDOW_BUCKETS x 4 loads. */
void bw_breaker_window(const struct bw_dest *d, const struct bw_settings *s,
		       uint64_t now_ns, uint32_t *calls, uint32_t *failures,
		       uint32_t *slow)
{
	uint64_t last, span; /* newest tag, and tags in the window */
	uint32_t c = 0, f = 0, sl = 0;
	if (s->window_calls) {
		uint64_t size;
		uint32_t nb;
		count_geometry(s, &size, &nb);
		uint64_t seq = atomic_load_explicit(&d->window_seq,
						    memory_order_relaxed);
		if (seq == 0)
			goto out;
		last = (seq - 1) / size + 1;
		span = nb;
	} else if (s->window_ns) {
		last = now_ns / time_slice_ns(s) + 1;
		span = BW_STATE_WINDOW_BUCKETS;
	} else {
		goto out;
	}
	for (int i = 0; i < BW_STATE_WINDOW_BUCKETS; i++) {
		const struct bw_window_bucket *b = &d->win[i];
		uint64_t e = atomic_load(&b->epoch);
		if (e == 0 || e > last || last - e >= span)
			continue;
		c += atomic_load_explicit(&b->calls, memory_order_relaxed);
		f += atomic_load_explicit(&b->failures, memory_order_relaxed);
		sl += atomic_load_explicit(&b->slow, memory_order_relaxed);
	}
out:
	if (calls)
		*calls = c;
	if (failures)
		*failures = f;
	if (slow)
		*slow = sl;
}

/* Whether the window's rates are judged (breaker.rate, slow_rate). */
static bool window_judged(const struct bw_settings *s)
{
	return s->rate >= 0 || s->slow_rate >= 0;
}

/* Whether the window's rates trip s; sets *why. */
static bool window_trips(struct bw_dest *d, const struct bw_settings *s,
			 uint64_t now_ns, int *why)
{
	if (!window_judged(s))
		return false;
	uint32_t c, f, sl;
	bw_breaker_window(d, s, now_ns, &c, &f, &sl);
	if (f > c || sl > c ||
	    (s->window_calls && c > s->window_calls + count_bucket_size(s))) {
		/* More than the window can hold (I9): corrupt; start over. */
		window_clear(d);
		return false;
	}
	uint32_t min = s->min_calls ? s->min_calls : 1;
	if (c < min)
		return false;
	if (s->rate >= 0 && f > 0 && (double)f >= s->rate * (double)c) {
		*why = BW_BREAKER_WHY_RATE;
		return true;
	}
	if (s->slow_rate >= 0 && sl > 0 &&
	    (double)sl >= s->slow_rate * (double)c) {
		*why = BW_BREAKER_WHY_SLOW_RATE;
		return true;
	}
	return false;
}

/* Clears what a closed breaker judges by.  Runs before the closing CAS: if
 * that CAS loses, the breaker is open or half-open, where these counters
 * are unused and cleared again by the next close (I4). */
static void counters_clear(struct bw_dest *d)
{
	atomic_store(&d->consecutive_failures, 0);
	atomic_store(&d->slow_count, 0);
	window_clear(d);
}

/* ---- transitions (the diagram's names) ----------------------------------- */

/* CLOSED -> OPEN for s->open_ns.  Returns whether this caller did it. */
static bool breaker_trip(struct bw_dest *d, const struct bw_settings *s,
			 uint64_t w, uint64_t now_ns)
{
	uint64_t until = deadline_ms(now_ns, s->open_ns);
	if (!cas_state(d, &w, w_make(BW_BREAKER_OPEN, gen_next(w), until)))
		return false;
	atomic_store(&d->open_ns, s->open_ns);
	atomic_store(&d->open_until_ns, until * NS_PER_MS);
	atomic_fetch_add(&d->opened_count, 1);
	return true;
}

/* HALF_OPEN -> OPEN for twice the last open time, capped (I7). */
static bool breaker_reopen(struct bw_dest *d, const struct bw_settings *s,
			   uint64_t w, uint64_t now_ns)
{
	uint64_t old = atomic_load(&d->open_ns);
	uint64_t cur = open_cur(d, s), max = open_max_of(s);
	uint64_t dur = cur > max / 2 ? max : cur * 2;
	uint64_t until = deadline_ms(now_ns, dur);
	if (!cas_state(d, &w, w_make(BW_BREAKER_OPEN, gen_next(w), until)))
		return false;
	/* From old only: a winner delayed past a later transition must not
	 * overwrite that one's open time (I1). */
	atomic_compare_exchange_strong(&d->open_ns, &old, dur);
	atomic_store(&d->open_until_ns, until * NS_PER_MS);
	atomic_fetch_add(&d->opened_count, 1);
	return true;
}

/* OPEN -> HALF_OPEN once the deadline passed (I5).  *w becomes the word
 * now current, whoever wrote it. */
static bool breaker_half_open(struct bw_dest *d, const struct bw_settings *s,
			      uint64_t *w, uint64_t now_ns)
{
	uint64_t nw = w_make(BW_BREAKER_HALF_OPEN, gen_next(*w),
			     deadline_ms(now_ns, probe_stale_ns(d, s)));
	if (!cas_state(d, w, nw))
		return false;
	*w = nw;
	atomic_store(&d->open_until_ns, 0);
	return true;
}

/* HALF_OPEN -> HALF_OPEN with a new generation: the expired round's claims
 * and successes no longer count (I6). */
static bool breaker_renew(struct bw_dest *d, const struct bw_settings *s,
			  uint64_t *w, uint64_t now_ns)
{
	uint64_t nw = w_make(BW_BREAKER_HALF_OPEN, gen_next(*w),
			     deadline_ms(now_ns, probe_stale_ns(d, s)));
	if (!cas_state(d, w, nw))
		return false;
	*w = nw;
	return true;
}

/* HALF_OPEN -> CLOSED: open time back to base, counters cleared. */
static bool breaker_close(struct bw_dest *d, uint64_t w)
{
	counters_clear(d);
	if (!cas_state(d, &w, w_make(BW_BREAKER_CLOSED, gen_next(w), 0)))
		return false;
	atomic_store(&d->open_ns, 0);
	atomic_store(&d->open_until_ns, 0);
	return true;
}

/* ---- admit --------------------------------------------------------------- */

/* Claims a probe of round w.  Returns a ticket, -errno when every probe is
 * taken, or 0 when the word moved on (the caller reloads it) (I3). */
static int claim_probe(struct bw_dest *d, const struct bw_settings *s,
		       uint64_t w)
{
	uint32_t gen = w_gen(w), n = probes_of(s);
	uint64_t c = atomic_load(&d->probes_claimed);
	for (;;) {
		if (atomic_load(&d->state) != w)
			return 0;
		uint32_t cnt = round_count(c, gen);
		if (cnt >= n)
			return reject(s);
		if (atomic_compare_exchange_weak(&d->probes_claimed, &c,
						 round_make(gen, cnt + 1)))
			break;
	}
	/* The round may have ended between the check and the claim: then
	 * the claim is void, give it back and decide on the new word. */
	if (atomic_load(&d->state) != w) {
		unclaim(d, gen);
		return 0;
	}
	return ticket_of(gen);
}

/* A deadline may lie this far beyond now + its duration without being
 * corrupt: callers read the clock before they call, so a caller delayed
 * between the two meets deadlines set from later clock readings. */
#define BOUND_SLACK_NS (5ull * 1000000000ull)

/* I9: w's deadline, not yet due, lies beyond dur (+ the slack) from now:
 * the word is put back to now + dur with a new generation.  Returns
 * whether w was beyond (the caller goes on with *w, the word now
 * current). */
static bool bound_deadline(struct bw_dest *d, uint64_t *w, uint64_t now_ns,
			   uint64_t dur, int *event)
{
	if (BREAKER_LIKELY(w_deadline_ms(*w) <=
			   deadline_ms(now_ns, dur + BOUND_SLACK_NS)))
		return false;
	uint64_t max = deadline_ms(now_ns, dur);
	uint64_t nw = w_make(w_state(*w), gen_next(*w), max);
	if (cas_state(d, w, nw)) {
		*w = nw;
		if (w_state(nw) == BW_BREAKER_OPEN)
			atomic_store(&d->open_until_ns, max * NS_PER_MS);
		/* A transition of this same admit is the event to log. */
		if (event && *event == BW_BREAKER_EV_NONE)
			*event = BW_BREAKER_EV_BOUNDED;
	}
	return true;
}

static int admit_slow(struct bw_dest *d, const struct bw_settings *s,
		      uint64_t now_ns, uint64_t w, int *event)
{
	for (int i = 0; i < BREAKER_ADMIT_TRIES; i++) {
		int rc;
		switch (w_state(w)) {
		case BW_BREAKER_OPEN:
			if (!w_due(w, now_ns)) {
				if (bound_deadline(d, &w, now_ns,
						   open_max_of(s), event))
					continue;
				return reject(s);
			}
			if (breaker_half_open(d, s, &w, now_ns) && event)
				*event = BW_BREAKER_EV_HALF_OPENED;
			continue;
		case BW_BREAKER_HALF_OPEN:
			if (w_due(w, now_ns)) {
				if (breaker_renew(d, s, &w, now_ns) && event)
					*event = BW_BREAKER_EV_PROBES_EXPIRED;
				continue;
			}
			/* The longest round any open time gives (I6). */
			if (bound_deadline(
				    d, &w, now_ns,
				    open_max_of(
					    s) > BW_BREAKER_PROBE_STALE_MIN_NS
					    ? open_max_of(s)
					    : BW_BREAKER_PROBE_STALE_MIN_NS,
				    event))
				continue;
			rc = claim_probe(d, s, w);
			if (rc != 0)
				return rc;
			w = atomic_load(&d->state);
			continue;
		case BW_BREAKER_CLOSED:
			return 0;
		default: /* 3: corrupt, repaired to CLOSED (I10) */
			if (repair_word(d, &w) && event &&
			    *event == BW_BREAKER_EV_NONE)
				*event = BW_BREAKER_EV_REPAIRED;
			continue;
		}
	}
	return reject(s);
}

int bw_breaker_admit(struct bw_dest *d, const struct bw_settings *s,
		     uint64_t now_ns, int *event)
{
	if (event)
		*event = BW_BREAKER_EV_NONE;
	if (!s->breaker_on)
		return 0;
	uint32_t f = atomic_load_explicit(&d->forced, memory_order_relaxed);
	if (f != BW_FORCE_AUTO) {
		if (f == BW_FORCE_OPEN)
			return reject(s);
		if (f == BW_FORCE_DISABLED)
			return 0;
		if (repair_forced(d, f) && event) /* I10 */
			*event = BW_BREAKER_EV_REPAIRED;
	}
	uint64_t w = atomic_load(&d->state);
	if (BREAKER_LIKELY(w_state(w) == BW_BREAKER_CLOSED))
		return 0;
	return admit_slow(d, s, now_ns, w, event);
}

void bw_breaker_release_probe(struct bw_dest *d, int ticket)
{
	if (ticket <= 0)
		return;
	unclaim(d, (uint32_t)ticket >> 1);
}

/* ---- record -------------------------------------------------------------- */

/* The consecutive-failure count starts again (stored only when it was
 * not 0: a write per good call would bounce the line between CPUs). */
static void failures_clear(struct bw_dest *d)
{
	if (atomic_load_explicit(&d->consecutive_failures,
				 memory_order_relaxed) != 0)
		atomic_store(&d->consecutive_failures, 0);
}

/* Lowers the slow count by one, not below 0 (the seed's fast call). */
static void slow_count_lower(struct bw_dest *d)
{
	uint32_t v = atomic_load_explicit(&d->slow_count, memory_order_relaxed);
	while (v > 0 && !atomic_compare_exchange_weak_explicit(
				&d->slow_count, &v, v - 1, memory_order_relaxed,
				memory_order_relaxed))
		;
}

static int record_closed(struct bw_dest *d, const struct bw_settings *s,
			 uint64_t w, bool failed, bool slow, bool clears,
			 uint64_t now_ns, int *why)
{
	uint32_t nfail = 0, nslow = 0;
	if (failed)
		nfail = atomic_fetch_add(&d->consecutive_failures, 1) + 1;
	else if (clears)
		failures_clear(d);
	/* A fast exchange lowers the slow count; a fast connect leaves it:
	 * with one exchange per connection, the fast connects would undo
	 * every slow exchange and breaker.slow_calls never trip. */
	if (slow)
		nslow = atomic_fetch_add(&d->slow_count, 1) + 1;
	else if (!failed && clears)
		slow_count_lower(d);
	window_add(d, s, now_ns, failed, slow);

	int reason = BW_BREAKER_WHY_NONE;
	if (failed && s->failures && nfail >= s->failures)
		reason = BW_BREAKER_WHY_FAILURES;
	else if (slow && s->slow_calls && nslow >= s->slow_calls)
		reason = BW_BREAKER_WHY_SLOW;
	else if (!window_trips(d, s, now_ns, &reason))
		return BW_BREAKER_EV_NONE;
	if (!breaker_trip(d, s, w, now_ns))
		return BW_BREAKER_EV_NONE;
	if (why)
		*why = reason;
	return BW_BREAKER_EV_OPENED;
}

/* A probe's outcome in half-open round w (I4). */
static int record_probe(struct bw_dest *d, const struct bw_settings *s,
			uint64_t w, bool bad, uint64_t now_ns)
{
	if (bad)
		return breaker_reopen(d, s, w, now_ns) ? BW_BREAKER_EV_REOPENED
						       : BW_BREAKER_EV_NONE;
	uint32_t gen = w_gen(w);
	uint64_t c = atomic_load(&d->probes_ok);
	uint32_t ok;
	for (;;) {
		/* Checked after loading c: a newer round's count is never
		 * overwritten with this round's tag (I3). */
		if (atomic_load(&d->state) != w)
			return BW_BREAKER_EV_NONE;
		ok = round_count(c, gen) + 1;
		if (atomic_compare_exchange_weak(&d->probes_ok, &c,
						 round_make(gen, ok)))
			break;
	}
	if (ok < probes_of(s))
		return BW_BREAKER_EV_NONE;
	return breaker_close(d, w) ? BW_BREAKER_EV_CLOSED : BW_BREAKER_EV_NONE;
}

static int record(struct bw_dest *d, const struct bw_settings *s, bool failed,
		  bool clears, uint64_t latency_ns, bool probe, uint64_t now_ns,
		  int *why)
{
	if (why)
		*why = BW_BREAKER_WHY_NONE;
	if (!s->breaker_on)
		return BW_BREAKER_EV_NONE;
	uint32_t f = atomic_load_explicit(&d->forced, memory_order_relaxed);
	if (f != BW_FORCE_AUTO) {
		if (f == BW_FORCE_OPEN || f == BW_FORCE_DISABLED)
			return BW_BREAKER_EV_NONE;
		repair_forced(d, f); /* I10 */
	}
	bool slow = !failed && bw_breaker_is_slow(s, latency_ns);
	uint64_t w = atomic_load(&d->state);
	if (w_state(w) == W_STATE_MASK) /* 3: corrupt (I10) */
		repair_word(d, &w);
	switch (w_state(w)) {
	case BW_BREAKER_CLOSED:
		return record_closed(d, s, w, failed, slow, clears, now_ns,
				     why);
	case BW_BREAKER_HALF_OPEN:
		if (!probe)
			return BW_BREAKER_EV_NONE;
		return record_probe(d, s, w, failed || slow, now_ns);
	default: /* OPEN: nothing to judge until half-open (or a word
		  * corrupted again since the repair above) */
		return BW_BREAKER_EV_NONE;
	}
}

bool bw_breaker_record_ok(struct bw_dest *d, const struct bw_settings *s,
			  bool clears, uint64_t latency_ns, uint64_t now_ns)
{
	if (!s->breaker_on)
		return true; /* nothing to judge */
	if (window_judged(s) || bw_breaker_is_slow(s, latency_ns) ||
	    atomic_load_explicit(&d->forced, memory_order_relaxed) !=
		    BW_FORCE_AUTO ||
	    w_state(atomic_load(&d->state)) != BW_BREAKER_CLOSED)
		return false;
	/* record_closed() for a success that cannot trip. */
	if (clears) {
		failures_clear(d);
		slow_count_lower(d);
	}
	window_add(d, s, now_ns, false, false);
	return true;
}

int bw_breaker_record(struct bw_dest *d, const struct bw_settings *s,
		      bool failed, uint64_t latency_ns, bool probe,
		      uint64_t now_ns, int *why)
{
	return record(d, s, failed, true, latency_ns, probe, now_ns, why);
}

int bw_breaker_record_connect_ok(struct bw_dest *d, const struct bw_settings *s,
				 uint64_t latency_ns, bool probe,
				 uint64_t now_ns)
{
	return record(d, s, false, false, latency_ns, probe, now_ns, NULL);
}

void bw_breaker_note_healthy(struct bw_dest *d, const struct bw_settings *s)
{
	if (s->breaker_on)
		failures_clear(d);
}

/* ---- status and reset ---------------------------------------------------- */

enum bw_breaker_state bw_breaker_view(const struct bw_dest *d, uint64_t now_ns,
				      uint64_t *open_remaining_ns)
{
	uint64_t w = atomic_load(&d->state);
	uint64_t left = 0;
	enum bw_breaker_state st;
	switch (w_state(w)) {
	case BW_BREAKER_OPEN:
		if (w_due(w, now_ns)) {
			st = BW_BREAKER_HALF_OPEN;
		} else {
			/* I9: no more than the open time the trip stored
			 * (admit repairs the word itself). */
			uint64_t dur = atomic_load_explicit(
				&d->open_ns, memory_order_relaxed);
			st = BW_BREAKER_OPEN;
			left = w_deadline_ms(w) * NS_PER_MS - now_ns;
			if (dur && left > dur)
				left = dur;
		}
		break;
	case BW_BREAKER_HALF_OPEN:
		st = BW_BREAKER_HALF_OPEN;
		break;
	default:
		st = BW_BREAKER_CLOSED;
		break;
	}
	if (open_remaining_ns)
		*open_remaining_ns = left;
	return st;
}

const char *bw_breaker_state_name(const struct bw_dest *d, uint64_t now_ns)
{
	switch (atomic_load_explicit(&d->forced, memory_order_relaxed)) {
	case BW_FORCE_OPEN:
		return "forced_open";
	case BW_FORCE_DISABLED:
		return "disabled";
	default:
		break;
	}
	switch (bw_breaker_view(d, now_ns, NULL)) {
	case BW_BREAKER_OPEN:
		return "open";
	case BW_BREAKER_HALF_OPEN:
		return "half_open";
	default:
		return "closed";
	}
}

bool bw_breaker_quiet(const struct bw_dest *d, uint64_t now_ns,
		      uint64_t idle_ns)
{
	uint64_t w = atomic_load(&d->state);
	uint32_t st = w_state(w);
	if (st != BW_BREAKER_OPEN && st != BW_BREAKER_HALF_OPEN)
		return true; /* closed; a corrupt state admits as closed */
	return now_ns / NS_PER_MS >= w_deadline_ms(w) &&
	       now_ns / NS_PER_MS - w_deadline_ms(w) >= idle_ns / NS_PER_MS;
}

void bw_breaker_reset(struct bw_dest *d)
{
	uint64_t w = atomic_load(&d->state);
	do
		counters_clear(d);
	while (!cas_state(d, &w, w_make(BW_BREAKER_CLOSED, gen_next(w), 0)));
	/* The word this reset replaced, as its CAS saw it (I10). */
	if (w_state(w) == W_STATE_MASK)
		corrupt_count(d);
	atomic_store(&d->open_ns, 0);
	atomic_store(&d->open_until_ns, 0);
}
