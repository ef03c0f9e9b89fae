/* SPDX-License-Identifier: MIT */
/*
 * shim/names.c: resolved name -> its address list, in order (names.h).
 * Owns: bw_names_*.  Never: allocates, locks, logs, touches errno.
 * Context: resolver hooks write; connect reads (AS-safe, lock-free).
 *
 * Each entry is a seqlock: a writer claims it by CAS of an even seq to
 * seq + 1, stores the list, and publishes seq + 2; a reader copies it and
 * keeps the copy only if seq was even and unchanged around the copy.
 * Every field is an atomic word, so a torn read is detected, never UB;
 * no fences (TSan cannot check them): the writer's stores are releases
 * (ordered after its claiming CAS), the reader's loads acquires (ordered
 * before its second look at seq).
 * I1: seq is odd exactly while one writer owns the entry.
 * I2: a writer that cannot claim an entry drops its list (never waits).
 * I3: a name resolved again overwrites its own entry (same name hash), so
 *     a program resolving one name in a loop holds one entry.
 * Costs: a write scans the BW_NAMES_LISTS name words; a lookup copies at
 * most every entry (256 x 25 words): microseconds, and only a blocking
 * connect under hedge.delay ever asks.
 */
#include <netinet/in.h>
#include <string.h>

#include "shim/internal.h"
#include "shim/addr.h"
#include "shim/names.h"

struct entry {
	_Atomic uint32_t seq;
	_Atomic uint32_t n;
	_Atomic uint64_t name;
	/* per address: family, then the 16 address bytes as two words */
	_Atomic uint64_t a[BW_NAMES_ADDRS][3];
};

static struct entry entries[BW_NAMES_LISTS];
static _Atomic uint32_t cursor;
/* (generation of the policy judged + 1) << 2 | 1 no, 2 yes; 0: not yet
 * (a pushed policy is judged again: shim/live.h). */
static _Atomic uint64_t wanted;

bool bw_names_wanted(void)
{
	if (!atomic_load_explicit(&bw_g.ready, memory_order_acquire) ||
	    !bw_g.active)
		return false;
	int id = bw_live_enter();
	uint64_t key = (bw_live_gen_of(id) + 1) << 2;
	uint64_t w = atomic_load_explicit(&wanted, memory_order_relaxed);
	if (BW_LIKELY((w & ~3ull) == key)) {
		bw_live_leave(id);
		return (w & 3) == 2;
	}
	const struct bw_policy *p = &bw_live_objs[id];
	bool any = p->defaults.hedge_delay_ns > 0;
	for (int i = 0; i < p->nrules && !any; i++)
		any = !p->rules[i].off && p->rules[i].s.hedge_delay_ns > 0;
	bw_live_leave(id);
	atomic_store_explicit(&wanted, key | (any ? 2 : 1),
			      memory_order_relaxed);
	return any;
}

void bw_names_begin(struct bw_names_batch *b, const char *name)
{
	uint64_t h = 1469598103934665603ull;
	size_t n = name ? strlen(name) : 0;
	if (n && name[n - 1] == '.')
		n--; /* "host." is "host" */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch - 'A' + 'a');
		h = (h ^ ch) * 1099511628211ull;
	}
	b->name_hash = h ? h : 1;
	b->n = 0;
}

void bw_names_add(struct bw_names_batch *b, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam = sa ? bw_sa_addr(sa, a, NULL) : 0;
	if (!fam || b->n >= BW_NAMES_ADDRS)
		return;
	/* fe80::/10: the hedge could not know the scope id. */
	if (fam == AF_INET6 && a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return;
	for (int i = 0; i < b->n; i++)
		if (b->family[i] == fam && memcmp(b->addr[i], a, 16) == 0)
			return;
	b->family[b->n] = (uint8_t)fam;
	memcpy(b->addr[b->n], a, 16);
	b->n++;
}

static uint64_t word_of(const uint8_t *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

/* Claims entry e for writing (I1); false if another writer holds it. */
static bool claim(struct entry *e, uint32_t *seq)
{
	uint32_t s = atomic_load_explicit(&e->seq, memory_order_relaxed);
	if (s & 1)
		return false;
	if (!atomic_compare_exchange_strong_explicit(&e->seq, &s, s + 1,
						     memory_order_acq_rel,
						     memory_order_relaxed))
		return false;
	*seq = s + 1;
	return true;
}

void bw_names_commit(const struct bw_names_batch *b)
{
	struct entry *e = NULL;
	uint32_t seq = 0;

	if (b->n < 2)
		return; /* nothing to hedge to */
	for (uint32_t i = 0; i < BW_NAMES_LISTS; i++) {
		if (atomic_load_explicit(&entries[i].name,
					 memory_order_relaxed) ==
		    b->name_hash) {
			if (!claim(&entries[i], &seq))
				return; /* I2 */
			e = &entries[i];
			break;
		}
	}
	for (int tries = 0; !e && tries < 4; tries++) {
		uint32_t i = atomic_fetch_add_explicit(&cursor, 1,
						       memory_order_relaxed);
		if (claim(&entries[i % BW_NAMES_LISTS], &seq))
			e = &entries[i % BW_NAMES_LISTS];
	}
	if (!e)
		return; /* I2 */
	atomic_store_explicit(&e->name, b->name_hash, memory_order_release);
	atomic_store_explicit(&e->n, (uint32_t)b->n, memory_order_release);
	for (int i = 0; i < b->n; i++) {
		atomic_store_explicit(&e->a[i][0], b->family[i],
				      memory_order_release);
		atomic_store_explicit(&e->a[i][1], word_of(b->addr[i]),
				      memory_order_release);
		atomic_store_explicit(&e->a[i][2], word_of(b->addr[i] + 8),
				      memory_order_release);
	}
	atomic_store_explicit(&e->seq, seq + 1, memory_order_release);
}

/* A consistent copy of e into n/a; false if empty, or being written. */
static bool snapshot(struct entry *e, uint32_t *n,
		     uint64_t a[BW_NAMES_ADDRS][3])
{
	uint32_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
	if (s1 == 0 || (s1 & 1))
		return false;
	*n = atomic_load_explicit(&e->n, memory_order_acquire);
	if (*n > BW_NAMES_ADDRS)
		return false;
	for (uint32_t i = 0; i < *n; i++)
		for (int w = 0; w < 3; w++)
			a[i][w] = atomic_load_explicit(&e->a[i][w],
						       memory_order_acquire);
	return atomic_load_explicit(&e->seq, memory_order_relaxed) == s1;
}

bool bw_names_next(const struct sockaddr *sa, socklen_t len,
		   struct sockaddr_storage *out, socklen_t *outlen)
{
	uint8_t want[16];
	int fam;
	uint16_t port; /* network order */

	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
		port = ((const struct sockaddr_in *)sa)->sin_port;
	else if (sa->sa_family == AF_INET6 &&
		 len >= sizeof(struct sockaddr_in6))
		port = ((const struct sockaddr_in6 *)sa)->sin6_port;
	else
		return false;
	if (!(fam = bw_sa_addr(sa, want, NULL)))
		return false;
	uint64_t w1 = word_of(want), w2 = word_of(want + 8);
	/* Newest first: the most recent answer holding the address wins. */
	uint32_t top = atomic_load_explicit(&cursor, memory_order_relaxed);
	for (uint32_t k = 0; k < BW_NAMES_LISTS; k++) {
		struct entry *e = &entries[(top - 1 - k) % BW_NAMES_LISTS];
		uint64_t a[BW_NAMES_ADDRS][3];
		uint32_t n;
		if (!snapshot(e, &n, a))
			continue;
		for (uint32_t i = 0; i < n; i++) {
			if (a[i][0] != (uint64_t)fam || a[i][1] != w1 ||
			    a[i][2] != w2)
				continue;
			uint64_t *nx = a[(i + 1) % n];
			memset(out, 0, sizeof(*out));
			if (nx[0] == AF_INET) {
				struct sockaddr_in *in =
					(struct sockaddr_in *)out;
				in->sin_family = AF_INET;
				in->sin_port = port;
				memcpy(&in->sin_addr, &nx[1], 4);
				*outlen = sizeof(*in);
			} else {
				struct sockaddr_in6 *in6 =
					(struct sockaddr_in6 *)out;
				in6->sin6_family = AF_INET6;
				in6->sin6_port = port;
				memcpy(in6->sin6_addr.s6_addr, &nx[1], 8);
				memcpy(in6->sin6_addr.s6_addr + 8, &nx[2], 8);
				*outlen = sizeof(*in6);
			}
			return true;
		}
	}
	return false;
}

void bw_names_reset(void)
{
	memset(entries, 0, sizeof(entries));
	atomic_store(&cursor, 0);
	atomic_store(&wanted, 0);
}
