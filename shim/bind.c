/* SPDX-License-Identifier: MIT */
/*
 * shim/bind.c: destination binding: which destination (address and port,
 * or the rule's group) and which rule (first match, bulwark-policy(7); none:
 * observed only) a connect belongs to, its slot in the state (found, or
 * made with its label), and the last-bind cache that lets a loop of
 * connects to one destination skip the match and the hash lookup.
 * Owns: bw_bind.  Never: makes a system call, touches errno, allocates,
 * logs but the once-per-process "no room in the state".
 * Context: the connect path (connect.c, and hedge.c for a hedge's next
 * address), from the connect and send hooks; AS-safe (inet_ntop formats,
 * nothing locks; the policy in force is pinned with bw_live_enter).
 */
#include <arpa/inet.h>
#include <string.h>

#include "policy/text.h"
#include "shim/addr.h"
#include "shim/bind.h"
#include "shim/hostmap.h"
#include "shim/internal.h"
#include "shim/log.h"

/* The destination key of sa; IPv4-mapped IPv6 counts as IPv4 (doc/design.md
 * L10).  Returns 0 or -EAFNOSUPPORT. */
static int key_of(const struct sockaddr *sa, socklen_t len,
		  struct bw_dest_key *k)
{
	memset(k, 0, sizeof(*k));
	if (len < (sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					     : sizeof(struct sockaddr_in)))
		return -EAFNOSUPPORT;
	int family = bw_sa_addr(sa, k->addr, &k->port);
	if (!family)
		return -EAFNOSUPPORT;
	k->family = (uint8_t)family;
	return 0;
}

/* The label of k as status shows it: "127.0.0.1:6379", "[::1]:80".
 * Made only when a destination is new (inet_ntop formats with sprintf). */
static void label_of(const struct bw_dest_key *k, char *label, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];
	struct bw__buf b;
	_Static_assert(BW_STATE_LABEL_MAX >= INET6_ADDRSTRLEN + 8,
		       "a label holds [v6]:port");
	bw__buf_init(&b, label, cap);
	if (k->family == AF_INET) {
		for (int i = 0; i < 4; i++) {
			if (i)
				bw__buf_putc(&b, '.');
			bw__buf_putu(&b, k->addr[i]);
		}
	} else {
		inet_ntop(AF_INET6, k->addr, ip, sizeof(ip));
		bw__buf_putc(&b, '[');
		bw__buf_puts(&b, ip);
		bw__buf_putc(&b, ']');
	}
	bw__buf_putc(&b, ':');
	bw__buf_putu(&b, k->port);
}

/* FNV-1a of a group name; never 0. */
static uint32_t group_hash(const char *g)
{
	uint32_t h = 2166136261u;
	for (; *g; g++)
		h = (h ^ (unsigned char)*g) * 16777619u;
	return h ? h : 1;
}

/* The destination this process bound last and its rule, one word that
 * threads and signal handlers read whole: (rule + 2) << 16 | (slot + 1),
 * 0 for none.  A loop of connects to one destination skips the policy
 * match and the hash lookup.  Trusted only when the slot still holds the
 * same key (a slot keeps its key once it has one; the rule is a function
 * of the address when no rule names a host) and for an address, not a
 * group (whose slot's key is the group's). */
static _Atomic uint64_t last_bind;
/* Its low word's fields: slot + 1 in 16 bits, rule + 2 in the next 16. */
_Static_assert(BW_STATE_SLOTS + 1 <= 0xffff, "last_bind: slot fits");
_Static_assert((BW_LIVE_OBJS + 1) * BW_POLICY_RULES_MAX + 2 <= 0xffff,
	       "last_bind: rule fits");
/* last_bind's bits 32-63 hold the generation of the policy it was made
 * under (shim/live.h): after a push the next connect matches again. */
static uint64_t bind_gen(int id)
{
	return (bw_live_gen_of(id) & 0xffffffffull) << 32;
}

static void bind_to(struct bw_conn *c, int r, uint32_t slot, uint32_t ten)
{
	bw_conn_set_rule(c, r); /* r is encoded (shim/live.h) */
	c->d = &bw_g.state.dests[slot];
	c->ten = ten;
	c->io_timeout = bw_settings_for(r)->io_timeout_ns > 0;
}

static int bind_in(struct bw_conn *c, const struct sockaddr *sa, socklen_t len,
		   int id);

/* Binds a fresh connection to its rule and destination.  A destination
 * no rule matches is bound as observed (rule BW_RULE_OBSERVED): its calls
 * are counted, nothing is applied or logged.  Returns 0, or 1 when
 * nothing applies to it (a rule says off, or no room in the state).
 * The policy in force is pinned meanwhile (shim/live.c I2). */
int bw_bind(struct bw_conn *c, const struct sockaddr *sa, socklen_t len)
{
	int id = bw_live_enter();
	int rc = bind_in(c, sa, len, id);
	c->live_gen = (uint32_t)bw_live_gen_of(id);
	bw_live_leave(id);
	return rc;
}

static int bind_in(struct bw_conn *c, const struct sockaddr *sa, socklen_t len,
		   int id)
{
	struct bw_dest_key k;
	char label[BW_STATE_LABEL_MAX];
	struct bw_hostmask hosts;
	const struct bw_policy *p = &bw_live_objs[id];

	if (key_of(sa, len, &k) < 0)
		return 1;
	uint64_t lastw = atomic_load_explicit(&last_bind, memory_order_relaxed);
	uint32_t last = (uint32_t)lastw;
	if (BW_LIKELY(last && !p->has_host_rules) &&
	    BW_LIKELY((lastw & ~0xffffffffull) == bind_gen(id))) {
		/* The tenancy before the key check (core/state.c, T2). */
		uint32_t ten = bw_state_ten(&bw_g.state, (last & 0xffff) - 1);
		if (BW_LIKELY(bw_state_find_at(&bw_g.state, (last & 0xffff) - 1,
					       &k))) {
			bind_to(c, (int)(last >> 16) - 2, (last & 0xffff) - 1,
				ten);
			return 0;
		}
	}
	bool named = p->has_host_rules &&
		     bw_hostmap_lookup(k.family, k.addr, &hosts);
	int r = bw_policy_match(p, sa, len, named ? bw_hostmap_hit : NULL,
				&hosts);
	if (r >= 0 && p->rules[r].off)
		return 1;
	const char *rule = r >= 0 ? p->rules[r].text : BW_RULE_OBSERVED_TEXT;
	r = r < 0 ? BW_RULE_OBSERVED : bw_live_rule(id, r);
	const struct bw_settings *s = bw_settings_for(r);
	if (s->group[0]) {
		memset(&k, 0, sizeof(k));
		k.group_hash = group_hash(s->group);
	}
	/* Known destinations are found without making their label. */
	struct bw_dest *d = bw_state_find(&bw_g.state, &k);
	uint32_t ten = 0;
	if (d && !bw_state_pin(&bw_g.state, d, &k, &ten))
		d = NULL; /* reclaimed meanwhile: made anew below */
	if (!d) {
		if (s->group[0]) {
			strncpy(label, s->group, sizeof(label) - 1);
			label[sizeof(label) - 1] = 0;
		} else {
			label_of(&k, label, sizeof(label));
		}
		d = bw_state_get(&bw_g.state, &k, label, rule);
		if (d && !bw_state_pin(&bw_g.state, d, &k, &ten))
			d = NULL;
	}
	if (!d) {
		/* Every slot taken (or one stuck mid-claim): the connection
		 * passes through untracked; said once per process, unless it
		 * was only observed (nothing is logged about those). */
		static _Atomic int said;
		if (r >= 0 && !atomic_exchange(&said, 1))
			bw_log(BW_LOG_WARN, "state_error", label,
			       "msg=%q slots=%u action=pass-through",
			       "no room for this destination in the state: "
			       "it is not protected",
			       (unsigned)BW_STATE_SLOTS);
		return 1;
	}
	uint32_t slot = bw_state_index(&bw_g.state, d);
	bind_to(c, r, slot, ten);
	if (!s->group[0]) {
		atomic_store_explicit(&last_bind,
				      bind_gen(id) | (uint32_t)(r + 2) << 16 |
					      (slot + 1),
				      memory_order_relaxed);
	}
	return 0;
}
