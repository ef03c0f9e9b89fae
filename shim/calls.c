/* SPDX-License-Identifier: MIT */
/*
 * shim/calls.c: the life of a call (bulwark-policy(7) CALLS) as the policies
 * see it: its admission by the breaker before a connect, and its outcome, which
 * goes into the destination's counters and the breaker; breaker transitions and
 * rejections are logged here (bulwark(1) DIAGNOSTICS).  A connection no rule
 * matches (observed only) is counted and nothing more: admitted at once, its
 * outcomes kept from the breaker, nothing logged.
 * Owns: bw_call_*.  Never: allocates, locks, blocks.  Context: any hook
 * (AS-safe: relaxed atomics on the shared segment, AS-safe logging).
 */
#include <errno.h>

#include "core/breaker.h"
#include "core/bulkhead.h"
#include "shim/calls.h"
#include "shim/closing.h"
#include "shim/internal.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/usdt.h"

/* Every key off: the settings of a destination no rule matches.  Each
 * acting key is at its "nothing" value (breaker off, no bulkhead, one
 * attempt, no timeouts, no hedge); the others hold harmless values.
 * Defined here, not in init.c, so that everything linking the accounting
 * (the command, the unit tests, the bench) has it. */
/* The bulkhead's answers pass through as the call's own. */
_Static_assert(BW_CALL_QUEUED == BW_BULKHEAD_QUEUED, "queued");

const struct bw_settings bw_observed_settings = {
	.breaker_on = false,
	.rate = -1,
	.slow_rate = -1,
	.probes = 1,
	.breaker_errno = ECONNREFUSED,
	.bulkhead_errno = ECONNREFUSED,
	.retry_attempts = 1,
	.retry_multiplier = 1,
};

bool bw_call_connect_failed(int err)
{
	switch (err) {
	case ECONNREFUSED:
	case ETIMEDOUT:
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
	case ECONNRESET:
	case ECONNABORTED:
		return true;
	default:
		return false;
	}
}

bool bw_call_exchange_failed(int err)
{
	return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT;
}

static const char *const why_names[] = { "", "failures", "rate", "slow",
					 "slow_rate" };

/* Logs a breaker transition (bulwark(1) DIAGNOSTICS). */
static void log_transition(struct bw_dest *d, int ev, int why)
{
	char label[BW_STATE_LABEL_MAX];
	bw_state_label(d, label, sizeof(label));
	switch (ev) {
	case BW_BREAKER_EV_OPENED:
	case BW_BREAKER_EV_REOPENED:
		BW_USDT_BREAKER(d, "breaker_open");
		bw_log(BW_LOG_WARN, "breaker_open", label,
		       "failures=%u open_for=%D reason=%s",
		       atomic_load(&d->consecutive_failures),
		       (uint64_t)atomic_load(&d->open_ns),
		       ev == BW_BREAKER_EV_REOPENED ? "probe_failed"
		       : why > 0 && why < 5	    ? why_names[why]
						    : "failures");
		break;
	case BW_BREAKER_EV_HALF_OPENED:
	case BW_BREAKER_EV_PROBES_EXPIRED:
		BW_USDT_BREAKER(d, "breaker_half_open");
		bw_log(BW_LOG_INFO, "breaker_half_open", label, "%s",
		       ev == BW_BREAKER_EV_PROBES_EXPIRED ? "reason=probes_lost"
							  : "");
		break;
	case BW_BREAKER_EV_CLOSED:
		BW_USDT_BREAKER(d, "breaker_close");
		bw_log(BW_LOG_INFO, "breaker_close", label, "");
		break;
	case BW_BREAKER_EV_BOUNDED:
		bw_log(BW_LOG_WARN, "state_error", label,
		       "msg=%q action=bounded",
		       "open deadline in the shared state lay beyond "
		       "breaker.open_max from now (corrupt, or written in "
		       "another time namespace)");
		break;
	case BW_BREAKER_EV_REPAIRED:
		bw_log(BW_LOG_WARN, "state_error", label,
		       "breaker_corrupt=%u repaired=closed",
		       (unsigned)atomic_load_explicit(&d->breaker_corrupt,
						      memory_order_relaxed));
		break;
	default:
		break;
	}
}

/* The bulkhead found an impossible count in the segment during this
 * acquire (and rebuilt it from the hold records): logged (rate limited
 * by bw_log like every event). */
static void note_corrupt(struct bw_dest *d)
{
	char label[BW_STATE_LABEL_MAX];

	bw_state_label(d, label, sizeof(label));
	bw_log(BW_LOG_WARN, "state_error", label,
	       "bulkhead_corrupt=%u rebuilt=holds",
	       (unsigned)atomic_load_explicit(&d->bh_corrupt,
					      memory_order_relaxed));
}

/* A bulkhead refusal: counted and logged. */
static void note_bulkhead_refused(struct bw_conn *c, struct bw_dest *d,
				  const struct bw_settings *s, int rc)
{
	char label[BW_STATE_LABEL_MAX];
	atomic_fetch_add_explicit(&d->rejected_calls, 1, memory_order_relaxed);
	bw_state_label(d, label, sizeof(label));
	bw_log(BW_LOG_WARN, "reject_bulkhead", label,
	       "errno=%s max=%u waited=%D",
	       bw_policy_errno_name(-rc) ? bw_policy_errno_name(-rc) : "?",
	       s->bulkhead_max, c->slot.wait_ns);
	BW_USDT_REJECT(d, "reject_bulkhead", -rc);
}

/* Takes a bulkhead slot for the attempt when the rule has a bulkhead: a
 * blocking connect may wait bulkhead.wait for it in the call; a
 * non-blocking one takes a ticket in the same queue and waits in the
 * program's own waits (shim/async.c).  Returns BW_CALL_ADMITTED,
 * BW_CALL_QUEUED (c->ticket), or -bulkhead.errno (counted, logged). */
static int take_slot(struct bw_conn *c, struct bw_dest *d,
		     const struct bw_settings *s, int fd, bool may_queue,
		     uint64_t now_ns)
{
	/* A full bulkhead may hold slots of fds closed behind our back (a
	 * raw close system call: libuv's): they come back first. */
	if (BW_UNLIKELY(bw_bulkhead_full(&bw_g.state, d, s)))
		bw_conn_reap(d);
	/* errno: the bulkhead never changes it. */
	uint32_t bad =
		atomic_load_explicit(&d->bh_corrupt, memory_order_relaxed);
	int rc = may_queue
			 ? bw_bulkhead_acquire_nb(&bw_g.state, d, s,
						  BW_BH_IF_BLOCKING(fd), now_ns,
						  &c->slot, &c->ticket)
			 : bw_bulkhead_acquire(&bw_g.state, d, s,
					       BW_BH_IF_BLOCKING(fd), 0, now_ns,
					       &c->slot);
	if (BW_UNLIKELY(atomic_load_explicit(&d->bh_corrupt,
					     memory_order_relaxed) != bad))
		note_corrupt(d);
	/* A signal handler without SA_RESTART cut the wait short: the
	 * connect fails with EINTR, as the kernel's would; not a refusal. */
	if (rc < 0 && rc != -EINTR)
		note_bulkhead_refused(c, d, s, rc);
	return rc;
}

int bw_call_try_queued(struct bw_conn *c, uint64_t now_ns)
{
	const struct bw_settings *s = bw_settings_for(c->rule);
	struct bw_dest *live = bw_state_live(c->d, c->ten);
	if (live)
		bw_conn_reap(live); /* slots of fds closed behind our back */
	int rc = bw_bulkhead_try(&bw_g.state, s, &c->ticket, now_ns, &c->slot);
	if (rc < 0) {
		struct bw_dest *d = bw_state_live(c->d, c->ten);
		if (d)
			note_bulkhead_refused(c, d, s, rc);
		bw_call_release(c);
	}
	return rc;
}

void bw_call_leave_queue(struct bw_conn *c)
{
	if (c->ticket.kind)
		bw_bulkhead_leave(&bw_g.state, &c->ticket);
}

int bw_call_admit(struct bw_conn *c, int fd, bool may_queue, uint64_t now_ns)
{
	/* A slot reclaimed since the bind holds another destination now
	 * (core/state.c, T2): this connection goes on untracked.  Observed
	 * only: never refused, whatever the shared breaker says (another
	 * process's rule may have opened it), and no slot. */
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	if (!d || c->rule < 0)
		return 0;
	bw_state_touch(d, now_ns);
	const struct bw_settings *s = bw_settings_for(c->rule);
	int ev = BW_BREAKER_EV_NONE;
	int rc = bw_breaker_admit(d, s, now_ns, &ev);
	if (ev != BW_BREAKER_EV_NONE)
		log_transition(d, ev, 0);
	if (rc < 0) {
		char label[BW_STATE_LABEL_MAX];
		uint64_t left = 0;
		atomic_fetch_add_explicit(&d->rejected_calls, 1,
					  memory_order_relaxed);
		bw_breaker_view(d, now_ns, &left);
		bw_state_label(d, label, sizeof(label));
		bw_log(BW_LOG_WARN, "reject_open", label,
		       "errno=%s open_remaining=%D",
		       bw_policy_errno_name(-rc) ? bw_policy_errno_name(-rc)
						 : "?",
		       left);
		BW_USDT_REJECT(d, "reject_open", -rc);
		return rc;
	}
	c->probe = rc;
	if (s->bulkhead_max > 0) {
		int full = take_slot(c, d, s, fd, may_queue, now_ns);
		if (full < 0) {
			bw_call_release(c);
			return full;
		}
		return full; /* BW_CALL_ADMITTED, or BW_CALL_QUEUED */
	}
	return 0;
}

void bw_call_release(struct bw_conn *c)
{
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	if (d && c->probe > 0)
		bw_breaker_release_probe(d, c->probe);
	c->probe = 0;
	bw_call_end(c);
}

void bw_call_end(struct bw_conn *c)
{
	if (c->slot.kind)
		bw_bulkhead_release(&bw_g.state, &c->slot);
}

void bw_call_healthy(struct bw_conn *c)
{
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	if (d && c->rule >= 0)
		bw_breaker_note_healthy(d, bw_settings_for(c->rule));
}

/* Everything but the counters, for an outcome the breaker's fast path
 * did not take (a failure, a slow call, a breaker not closed): kept out
 * of the lines a successful call runs. */
static BW_NOINLINE void record_rest(struct bw_conn *c, struct bw_dest *d,
				    const struct bw_settings *s, bool connect,
				    bool failed, bool slow, bool probe,
				    uint64_t latency_ns, uint64_t now_ns)
{
	int why = 0;
	if (slow)
		atomic_fetch_add_explicit(&d->slow_calls, 1,
					  memory_order_relaxed);
	if (connect && failed)
		bw_call_end(c); /* a failed attempt holds no slot */
	int ev = connect && !failed
			 ? bw_breaker_record_connect_ok(d, s, latency_ns, probe,
							now_ns)
			 : bw_breaker_record(d, s, failed, latency_ns, probe,
					     now_ns, &why);
	if (ev != BW_BREAKER_EV_NONE)
		log_transition(d, ev, why);
	if (slow) {
		char label[BW_STATE_LABEL_MAX];
		bw_state_label(d, label, sizeof(label));
		bw_log(BW_LOG_INFO, "slow_call", label, "latency=%D slow=%D",
		       latency_ns, s->slow_ns);
	}
}

void bw_call_record(struct bw_conn *c, enum bw_call_kind kind, bool failed,
		    uint64_t latency_ns, uint64_t now_ns)
{
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	if (!d)
		return;
	bw_state_touch(d, now_ns);
	const struct bw_settings *s = bw_settings_for(c->rule);
	bool connect = kind == BW_CALL_CONNECT;
	bool slow = !failed && bw_breaker_is_slow(s, latency_ns);
	bool probe = connect && c->probe > 0;
	const memory_order r = memory_order_relaxed;

	atomic_fetch_add_explicit(
		failed ? &d->failed_calls : &d->successful_calls, 1, r);
	atomic_fetch_add_explicit(
		connect ? &d->connect_calls : &d->exchange_calls, 1, r);
	atomic_fetch_add_explicit(connect ? &d->connect_ns_sum
					  : &d->exchange_ns_sum,
				  latency_ns, r);
	if (connect)
		c->probe = 0;
	/* Observed only: counted (status, trace), never judged: the breaker
	 * it shares with processes that have a rule for it is theirs, and a
	 * transition would log. */
	if (BW_UNLIKELY(c->rule < 0))
		return;
	/* A good exchange starts the consecutive-failure count again; a
	 * good connect does not (bw_breaker_record_connect_ok). */
	if (failed || slow ||
	    !bw_breaker_record_ok(d, s, !connect, latency_ns, now_ns))
		record_rest(c, d, s, connect, failed, slow, probe, latency_ns,
			    now_ns);
}
