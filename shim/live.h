/* SPDX-License-Identifier: MIT */
/*
 * shim/live.h: the policy in force in this process: its own (from the
 * environment, compiled once at start) or the one pushed into its shared
 * state with `bulwark policy push` (README "Changing the policy of
 * running programs").  See shim/live.c for how a push is applied without
 * a lock, an allocation or a system call on the hot path.
 *
 * A rule is named everywhere by one int (struct bw_conn.rule): -1 for a
 * destination no rule matches (observed only), else id * 256 + index,
 * where id is the policy object the rule lives in (0: the environment's)
 * and index its place there.  bw_settings_for (internal.h) decodes it, so
 * a connection bound under one generation keeps reading that
 * generation's rule, never another's rule of the same index.
 */
#ifndef BW_SHIM_LIVE_H
#define BW_SHIM_LIVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"
#include "policy/policy.h"

/* Policy objects for pushed generations (ids 1..BW_LIVE_OBJS); id 0 is
 * the process's own.  An object is parsed into only when no thread is
 * binding with it and no connection is bound to it (live.c). */
#define BW_LIVE_OBJS 8
_Static_assert(BW_POLICY_RULES_MAX == 256, "rule encoding");
_Static_assert((BW_LIVE_OBJS + 1) * 256 + 2 < 32768, "fits int16_t");

extern struct bw_policy bw_live_objs[1 + BW_LIVE_OBJS];
/* Id of the object in force. */
extern _Atomic int bw_live_cur;
/* The area of the shared state, NULL when private (no live policy). */
extern struct bw_policy_area *bw_live_area;
/* Generation handled last (applied, or refused as corrupt). */
extern _Atomic uint64_t bw_live_seen;

/* The process's own policy (compiled by init.c). */
static inline struct bw_policy *bw_policy_env(void)
{
	return &bw_live_objs[0];
}

/* The encoded rule of index r in object id (r < 0: observed). */
static inline int bw_live_rule(int id, int r)
{
	return r < 0 ? r : id * BW_POLICY_RULES_MAX + r;
}

/* The rule behind an encoded rule. */
static inline const struct bw_rule *bw_live_rule_of(int rule)
{
	return &bw_live_objs[rule / BW_POLICY_RULES_MAX]
			.rules[rule % BW_POLICY_RULES_MAX];
}

void bw_live_apply(void);

/* Applies a newly published generation, if any: one load and a compare
 * when nothing changed.  AS-safe (a signal handler that arrives while its
 * thread applies one keeps the policy in force). */
static inline void bw_live_poll(void)
{
	struct bw_policy_area *a = bw_live_area;
	if (__builtin_expect(a != 0, 1) &&
	    __builtin_expect(atomic_load_explicit(&a->published,
						  memory_order_relaxed) !=
				     atomic_load_explicit(&bw_live_seen,
							  memory_order_relaxed),
			     0))
		bw_live_apply();
}

/* Polls, then pins the policy in force and returns its id: the object is
 * not rewritten before bw_live_leave(id).  AS-safe, lock-free. */
int bw_live_enter(void);
void bw_live_leave(int id);

/* The policy in force, unpinned: for a glance at a flag only. */
static inline const struct bw_policy *bw_policy_now(void)
{
	return &bw_live_objs[atomic_load_explicit(&bw_live_cur,
						  memory_order_acquire)];
}
/* Generation of the policy in force (0: the process's own), as
 * struct bw_conn.live_gen records it. */
extern _Atomic uint32_t bw_live_gen;

struct bw_conn;
/* c (fd) was matched under another generation: its rule under the policy
 * in force.  May change errno (its caller, the send hooks' bookkeeping,
 * keeps the program's). */
void bw_live_rebind(struct bw_conn *c, int fd);

/* At the start of an exchange on c (fd): polls, and gives c the rule
 * that the policy in force has for its peer if c was matched under
 * another generation (one load and a compare when not). */
static inline void bw_live_exchange(struct bw_conn *c, uint32_t live_gen,
				    int fd)
{
	bw_live_poll();
	if (__builtin_expect(live_gen !=
				     atomic_load_explicit(&bw_live_gen,
							  memory_order_relaxed),
			     0))
		bw_live_rebind(c, fd);
}

/* Whether the policy in force has host rules (resolver hooks). */
bool bw_live_host_rules(void);
/* The generation object id holds (0: the process's own policy). */
uint64_t bw_live_gen_of(int id);

/*
 * Starts following st's pushed policy (a shared state; private: nothing
 * to follow): registers this process in its table and applies the
 * generation in force.  Called once by init.c with the state attached;
 * bw_live_forked in a fork child (a new pid).
 */
void bw_live_setup(struct bw_state *st);
void bw_live_forked(void);

/* Tests: whether object id may be parsed into now (not in force, not
 * pinned, no connection bound to it). */
bool bw_live_free(int id);

#endif
