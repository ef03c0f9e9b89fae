/* SPDX-License-Identifier: MIT */
/*
 * shim/calls.h: the one place a finished call (bulwark-policy(7) CALLS) is
 * accounted: the destination's counters, and the breaker that acts on them.
 */
#ifndef BW_SHIM_CALLS_H
#define BW_SHIM_CALLS_H

#include <stdbool.h>
#include <stdint.h>

#include "shim/fd_table.h"

enum bw_call_kind { BW_CALL_CONNECT = 0, BW_CALL_EXCHANGE = 1 };

/* What bw_call_admit and bw_call_try_queued answer when they refuse
 * nothing (a refusal is -errno). */
enum bw_call_admit_result {
	BW_CALL_ADMITTED = 0, /* go on: the attempt may be made */
	BW_CALL_QUEUED = 1,   /* a non-blocking connect waits in the queue */
};

/* Before a connect attempt of c on fd: BW_CALL_ADMITTED (c->probe holds a
 * half-open probe ticket, if any; c->slot a bulkhead slot, if the rule has
 * a bulkhead), or -errno (breaker.errno, bulkhead.errno) when the breaker
 * or the bulkhead refuses it; the refusal is counted and logged, and
 * nothing reached the network.  A blocking connect may wait for a slot;
 * with may_queue, a non-blocking one that finds the bulkhead full
 * (bulkhead.wait > 0) is queued: returns BW_CALL_QUEUED, its ticket in
 * c->ticket (bw_call_try_queued).
 * AS-safe: yes. */
int bw_call_admit(struct bw_conn *c, int fd, bool may_queue, uint64_t now_ns);
/* A non-blocking connect that bw_call_admit queued (BW_CALL_QUEUED, the
 * ticket in c->ticket): one look at the bulkhead.  BW_CALL_ADMITTED
 * (c->slot), BW_CALL_QUEUED still, or -bulkhead.errno once bulkhead.wait
 * ran out (counted, logged, the probe claim given back).  AS-safe: yes. */
int bw_call_try_queued(struct bw_conn *c, uint64_t now_ns);
/* c's queued ticket, if any, leaves the queue (closed, cancelled). */
void bw_call_leave_queue(struct bw_conn *c);
/* An admitted attempt ended as neither success nor failure (closed before
 * completing, or a local error): gives back its probe claim and its slot.
 * AS-safe: yes. */
void bw_call_release(struct bw_conn *c);
/* c's connection ended (its last fd closed) or its attempt failed: gives
 * back its bulkhead slot, if it holds one.  AS-safe: yes. */
void bw_call_end(struct bw_conn *c);

/* c ends (its last fd closes) established, with no failed exchange: the
 * destination answered.  AS-safe: yes. */
void bw_call_healthy(struct bw_conn *c);

/* Records one finished call of c: a connect attempt or an exchange, failed
 * or not, its latency, and when it ended.  AS-safe: yes; atomics on the shared
 * state. */
void bw_call_record(struct bw_conn *c, enum bw_call_kind kind, bool failed,
		    uint64_t latency_ns, uint64_t now_ns);

/* Whether err is a call failure of bulwark-policy(7) CALLS for a connect
 * attempt (refused, timed out, unreachable, reset). */
bool bw_call_connect_failed(int err);
/* ... for an exchange (reset, broken pipe, timed out). */
bool bw_call_exchange_failed(int err);

#endif
