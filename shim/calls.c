/* SPDX-License-Identifier: MIT */
/*
 * shim/calls.c: accounting of finished calls (SPEC §4) into the
 * per-destination counters of the state.
 * Owns: bw_call_*.  Never: allocates, locks, blocks.  Context: any hook
 * (AS-safe: relaxed atomics on the shared segment only).
 */
#include <errno.h>

#include "shim/calls.h"
#include "shim/internal.h"
#include "shim/log.h"

struct bw_dest *bw_conn_dest(const struct bw_conn *c)
{
	if (!c->dest || c->dest > BW_STATE_SLOTS || !bw_g.state.dests)
		return NULL;
	return &bw_g.state.dests[c->dest - 1];
}

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

#define ADD(field, v) atomic_fetch_add_explicit(&d->field, (v), memory_order_relaxed)

void bw_call_record(struct bw_conn *c, enum bw_call_kind kind, bool failed,
		    uint64_t latency_ns, uint64_t now_ns)
{
	struct bw_dest *d = bw_conn_dest(c);
	if (!d)
		return;
	const struct bw_settings *s = bw_settings_for(c->rule);
	bool slow = !failed && s->slow_ns && latency_ns >= s->slow_ns;

	ADD(total_calls, 1);
	if (failed)
		ADD(failed_calls, 1);
	else
		ADD(successful_calls, 1);
	if (slow)
		ADD(slow_calls, 1);
	if (kind == BW_CALL_CONNECT) {
		ADD(connect_calls, 1);
		ADD(connect_ns_sum, latency_ns);
	} else {
		ADD(exchange_calls, 1);
		ADD(exchange_ns_sum, latency_ns);
	}
	atomic_store_explicit(&d->last_call_ns, now_ns, memory_order_relaxed);
	if (slow) {
		char label[BW_STATE_LABEL_MAX];
		bw_state_label(d, label, sizeof(label));
		bw_log(BW_LOG_INFO, "slow_call", label, "latency=%D slow=%D",
		       latency_ns, s->slow_ns);
	}
}
