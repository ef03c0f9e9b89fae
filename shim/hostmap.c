/* SPDX-License-Identifier: MIT */
/*
 * shim/hostmap.c: resolved address -> host rules (see hostmap.h).
 * Owns: bw_hostmap_*.  Never: allocates, locks, logs.  Context: resolver
 * hooks write, connect reads (AS-safe, lock-free).
 *
 * I1: a slot goes EMPTY -> WRITING -> READY once and is never emptied; a
 *     reader skips WRITING slots and keeps probing.
 * I2: two threads may record one address into two slots; a lookup takes
 *     the union of every READY slot holding the address.
 * I3: rule bits are only ever set, with atomic OR, while the policy in
 *     force stays the same generation; a record under another generation
 *     (a policy pushed meanwhile, shim/live.h) replaces them, and a lookup
 *     ignores bits recorded under a generation not in force: rule numbers
 *     differ between policies.  A name resolved before a push matches the
 *     pushed policy's host rules from its next resolution.
 */
#include <netinet/in.h>
#include <string.h>

#include "shim/addr.h"
#include "shim/hostmap.h"
#include "shim/internal.h"

enum { SLOT_EMPTY = 0, SLOT_WRITING, SLOT_READY };

struct slot {
	_Atomic uint32_t state;
	uint32_t family;
	uint8_t addr[16];
	_Atomic uint64_t rules[(BW_POLICY_RULES_MAX + 63) / 64];
	_Atomic uint64_t gen; /* generation the bits were recorded under */
};

static struct slot slots[BW_HOSTMAP_SLOTS];

static uint32_t addr_hash(int family, const uint8_t *addr)
{
	uint32_t h = 2166136261u ^ (uint32_t)family;
	for (int i = 0; i < (family == AF_INET ? 4 : 16); i++)
		h = (h ^ addr[i]) * 16777619u;
	return h;
}

static bool same(const struct slot *s, int family, const uint8_t *addr)
{
	return (int)s->family == family &&
	       memcmp(s->addr, addr, family == AF_INET ? 4 : 16) == 0;
}

static void record_in(const struct bw_policy *p, uint64_t gen, const char *name,
		      const struct sockaddr *sa);

void bw_hostmap_record(const char *name, const struct sockaddr *sa)
{
	int id = bw_live_enter();
	record_in(&bw_live_objs[id], bw_live_gen_of(id), name, sa);
	bw_live_leave(id);
}

static void record_in(const struct bw_policy *p, uint64_t gen, const char *name,
		      const struct sockaddr *sa)
{
	struct bw_hostmask m = { { 0 } };
	bool any = false;
	uint8_t addr[16] = { 0 };
	int family;

	if (!p->has_host_rules || !name ||
	    !(family = bw_sa_addr(sa, addr, NULL)))
		return;
	for (int i = 0; i < p->nrules; i++) {
		const struct bw_rule *r = &p->rules[i];
		if ((r->match.kind == BW_MATCH_HOST ||
		     r->match.kind == BW_MATCH_SUFFIX) &&
		    bw_policy_name_matches(r, name)) {
			m.w[i / 64] |= 1ull << (i % 64);
			any = true;
		}
	}
	if (!any)
		return;

	uint32_t h = addr_hash(family, addr);
	for (uint32_t i = 0; i < BW_HOSTMAP_SLOTS; i++) {
		struct slot *s = &slots[(h + i) % BW_HOSTMAP_SLOTS];
		uint32_t st =
			atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == SLOT_EMPTY) {
			if (!atomic_compare_exchange_strong(&s->state, &st,
							    SLOT_WRITING))
				goto taken;
			s->family = (uint32_t)family;
			memcpy(s->addr, addr, 16);
			atomic_store(&s->gen, gen);
			atomic_store_explicit(&s->state, SLOT_READY,
					      memory_order_release);
			st = SLOT_READY;
		}
taken:
		if (st == SLOT_READY && same(s, family, addr)) {
			if (atomic_load(&s->gen) != gen) {
				for (size_t w = 0; w < sizeof(m.w) / 8; w++)
					atomic_store(&s->rules[w], m.w[w]);
				atomic_store(&s->gen, gen);
				return;
			}
			for (size_t w = 0; w < sizeof(m.w) / 8; w++)
				if (m.w[w])
					atomic_fetch_or(&s->rules[w], m.w[w]);
			return;
		}
	}
}

bool bw_hostmap_lookup(int family, const uint8_t *addr, struct bw_hostmask *m)
{
	bool found = false;
	uint32_t h = addr_hash(family, addr);
	uint64_t gen = bw_live_gen_of(atomic_load(&bw_live_cur));
	memset(m, 0, sizeof(*m));
	for (uint32_t i = 0; i < BW_HOSTMAP_SLOTS; i++) {
		struct slot *s = &slots[(h + i) % BW_HOSTMAP_SLOTS];
		uint32_t st =
			atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == SLOT_EMPTY)
			break;
		if (st != SLOT_READY || !same(s, family, addr) ||
		    atomic_load(&s->gen) != gen)
			continue;
		for (size_t w = 0; w < sizeof(m->w) / 8; w++)
			m->w[w] |= atomic_load(&s->rules[w]);
		found = true;
	}
	return found;
}

bool bw_hostmap_hit(void *ctx, int rule)
{
	const struct bw_hostmask *m = ctx;
	return rule >= 0 && rule < BW_POLICY_RULES_MAX &&
	       (m->w[rule / 64] >> (rule % 64)) & 1;
}
