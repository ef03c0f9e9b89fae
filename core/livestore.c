/* SPDX-License-Identifier: MIT */
/*
 * core/livestore.c: the pushed-policy records of a shared state (see
 * livestore.h and struct bw_policy_area in state.h).
 * Owns: bw_livestore_*.  Never: allocates, logs, touches errno (but push,
 * which only the bulwark command calls, may sleep).
 *
 * Protocol.  A push takes the next generation g (fetch_add of next_gen),
 * so two racing pushes get two generations; record g % BW_POLICY_RECS is
 * claimed by moving its seq from even to odd (CAS; a writer that died
 * holding it, judged by kill(writer, 0), is taken over), every field and
 * the text are stored, then seq goes even again (release), and only then
 * published moves to g, if it is still below g (CAS loop: a push that
 * finishes after a later one does not undo it).
 * A reader loads published, then seq (acquire; odd: come back later),
 * copies every field and the text (acquire loads of atomic words, so a
 * concurrent writer is a torn copy, never undefined behaviour), and keeps
 * the copy only when seq is unchanged and gen is the one it wanted: a
 * process never sees a mix of two pushes.  The checksum then catches a
 * record damaged by anything else (a stray write into the segment).
 * I1: seq is odd exactly while one writer owns the record.
 * I2: published only grows, except when the segment is lost (then 0).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "core/livestore.h"
#include "core/sys.h"

uint64_t bw_livestore_sum(uint64_t gen, uint32_t flags, const char *text,
			  uint32_t len)
{
	uint64_t h = 14695981039346656037ull;
	const uint64_t head[2] = { gen, (uint64_t)flags << 32 | len };
	/* The head's 16 bytes in little-endian order: the order its bytes
	 * lie in memory on x86_64, so sums written before stay valid. */
	for (unsigned i = 0; i < 16; i++)
		h = (h ^ (unsigned char)(head[i / 8] >> (8 * (i % 8)))) *
		    1099511628211ull;
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)text[i]) * 1099511628211ull;
	return h;
}

uint64_t bw_livestore_published(const struct bw_state *st)
{
	if (!st || !st->pol)
		return 0;
	return atomic_load_explicit(&st->pol->published, memory_order_acquire);
}

static bool writer_gone(uint64_t pid)
{
	if (!pid || pid > 0x7fffffff)
		return true;
	return bw_sys.kill((pid_t)pid, 0) == -ESRCH;
}

/* Claims r (I1); returns the odd seq now held, or 0 after two seconds. */
static uint64_t claim(struct bw_policy_rec *r, uint32_t pid)
{
	for (int i = 0; i < 2000; i++) {
		uint64_t s =
			atomic_load_explicit(&r->seq, memory_order_acquire);
		if (!(s & 1)) {
			if (atomic_compare_exchange_strong(&r->seq, &s,
							   s + 1)) {
				atomic_store(&r->writer, pid);
				return s + 1;
			}
			continue;
		}
		if (writer_gone(atomic_load(&r->writer)) &&
		    atomic_compare_exchange_strong(&r->seq, &s, s + 2)) {
			atomic_store(&r->writer, pid);
			return s + 2;
		}
		struct timespec ts = { 0, 1000000 };
		bw_sys.nanosleep(&ts);
	}
	return 0;
}

int64_t bw_livestore_push(struct bw_state *st, const char *text, size_t len,
			  uint32_t flags, uint32_t uid, uint32_t pid,
			  uint64_t time_ns)
{
	if (!st || !st->pol)
		return -EINVAL;
	if (len > BW_POLICY_TEXT_MAX)
		return -E2BIG;
	struct bw_policy_area *a = st->pol;
	uint64_t g = atomic_fetch_add(&a->next_gen, 1) + 1;
	struct bw_policy_rec *r = &a->recs[g % BW_POLICY_RECS];
	uint64_t s = claim(r, pid);
	if (!s)
		return -EBUSY;
	atomic_store_explicit(&r->gen, g, memory_order_release);
	atomic_store_explicit(&r->time_ns, time_ns, memory_order_release);
	atomic_store_explicit(&r->uid, uid, memory_order_release);
	atomic_store_explicit(&r->pid, pid, memory_order_release);
	atomic_store_explicit(&r->len, (uint32_t)len, memory_order_release);
	atomic_store_explicit(&r->flags, flags, memory_order_release);
	for (size_t w = 0; w < (len + 7) / 8; w++) {
		uint64_t v = 0;
		size_t n = len - w * 8 < 8 ? len - w * 8 : 8;
		memcpy(&v, text + w * 8, n);
		atomic_store_explicit(&r->text[w], v, memory_order_release);
	}
	atomic_store_explicit(&r->sum,
			      bw_livestore_sum(g, flags, text, (uint32_t)len),
			      memory_order_release);
	atomic_store_explicit(&r->seq, s + 1, memory_order_release);
	uint64_t p = atomic_load(&a->published);
	while (p < g && !atomic_compare_exchange_weak(&a->published, &p, g))
		;
	return (int64_t)g;
}

int bw_livestore_read(const struct bw_state *st, uint64_t gen,
		      struct bw_livestore_meta *m, char *buf, size_t cap)
{
	if (!st || !st->pol || !gen || cap < BW_POLICY_TEXT_MAX + 1)
		return -ENOENT;
	struct bw_policy_rec *r = &st->pol->recs[gen % BW_POLICY_RECS];
	uint64_t s = atomic_load_explicit(&r->seq, memory_order_acquire);
	if (s & 1)
		return -EAGAIN;
	if (atomic_load_explicit(&r->gen, memory_order_acquire) != gen)
		return -ENOENT;
	m->gen = gen;
	m->time_ns = atomic_load_explicit(&r->time_ns, memory_order_acquire);
	m->uid = atomic_load_explicit(&r->uid, memory_order_acquire);
	m->pid = atomic_load_explicit(&r->pid, memory_order_acquire);
	m->len = atomic_load_explicit(&r->len, memory_order_acquire);
	m->flags = atomic_load_explicit(&r->flags, memory_order_acquire);
	uint64_t sum = atomic_load_explicit(&r->sum, memory_order_acquire);
	uint32_t len = m->len <= BW_POLICY_TEXT_MAX ? m->len : 0;
	for (size_t w = 0; w < (len + 7) / 8; w++) {
		uint64_t v =
			atomic_load_explicit(&r->text[w], memory_order_acquire);
		size_t n = len - w * 8 < 8 ? len - w * 8 : 8;
		memcpy(buf + w * 8, &v, n);
	}
	buf[len] = 0;
	if (atomic_load_explicit(&r->seq, memory_order_acquire) != s ||
	    atomic_load_explicit(&r->gen, memory_order_acquire) != gen)
		return -EAGAIN; /* rewritten while we copied */
	if (m->len > BW_POLICY_TEXT_MAX ||
	    sum != bw_livestore_sum(gen, m->flags, buf, len))
		return -EBADMSG;
	return 0;
}

int bw_livestore_register(struct bw_state *st, uint32_t pid, uint64_t gen)
{
	if (!st || !st->pol || !pid)
		return -1;
	_Atomic uint64_t *t = st->pol->procs;
	uint64_t mine = (uint64_t)pid << 32 | (uint32_t)gen;
	for (int i = 0; i < BW_POLICY_PROCS; i++) {
		uint64_t w = atomic_load_explicit(&t[i], memory_order_relaxed);
		if ((w >> 32) == pid &&
		    atomic_compare_exchange_strong(&t[i], &w, mine))
			return i; /* an earlier image of this pid (exec) */
	}
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < BW_POLICY_PROCS; i++) {
			uint64_t w = atomic_load_explicit(&t[i],
							  memory_order_relaxed);
			if (w && (pass == 0 || !writer_gone(w >> 32)))
				continue;
			if (atomic_compare_exchange_strong(&t[i], &w, mine))
				return i;
		}
	return -1;
}

void bw_livestore_note(struct bw_state *st, int idx, uint32_t pid, uint64_t gen)
{
	if (!st || !st->pol || idx < 0 || idx >= BW_POLICY_PROCS)
		return;
	uint64_t w = atomic_load(&st->pol->procs[idx]);
	/* Only our own entry (a sweep may have taken it: then not at all). */
	if ((w >> 32) == pid)
		atomic_compare_exchange_strong(&st->pol->procs[idx], &w,
					       (uint64_t)pid << 32 |
						       (uint32_t)gen);
}
