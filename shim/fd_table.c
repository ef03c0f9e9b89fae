/* SPDX-License-Identifier: MIT */
/*
 * shim/fd_table.c: the fd -> connection table and the connection pool.
 * Owns: bw_fd_map, bw_conns, bw_fd_*, bw_vfork_parent.  Never: allocates,
 * locks, logs, makes a system call (but getpid, in the window of a vfork:
 * fd_table.h), or touches errno.  Context: any hook, signal handlers
 * included (all AS-safe, lock-free); in a vfork child it changes nothing.
 *
 * I1: bw_fd_map[fd] is 0 or the index + 1 of a connection whose refs counts
 *     that fd.
 * I2: fds >= BW_FD_TABLE_MAX are never tracked.
 * I3: a connection is claimed by CAS of refs 0 -> 1 while its state is
 *     FREE; the thread that drops refs to 0 settles it and sets it FREE,
 *     once (a second bw_conn_free is a breach).
 * Checked by BW_INVARIANT (shim/assert.h) in debug and sanitizer builds.
 */
#include <string.h>

#include "shim/assert.h"
#include "shim/fd_table.h"

_Atomic uint32_t bw_fd_map[BW_FD_TABLE_MAX];
struct bw_conn bw_conns[BW_CONN_MAX];
static _Atomic int fd_high;
__thread uint32_t bw_vfork_parent __attribute__((tls_model("initial-exec")));
__thread uint8_t bw_vfork_dups __attribute__((tls_model("initial-exec")));

int bw_fd_high(void)
{
	return atomic_load_explicit(&fd_high, memory_order_relaxed);
}

static void note_high(int fd)
{
	int h = atomic_load_explicit(&fd_high, memory_order_relaxed);
	while (fd >= h && !atomic_compare_exchange_weak(&fd_high, &h, fd + 1))
		;
}

/* Claims a free connection, trying the fd's own index first: fd numbers
 * are unique, so that slot is nearly always free (O(1) in practice). */
static struct bw_conn *conn_claim(int fd)
{
	for (unsigned i = 0; i < BW_CONN_MAX; i++) {
		struct bw_conn *c = &bw_conns[((unsigned)fd + i) % BW_CONN_MAX];
		uint32_t zero = 0;
		if (atomic_load_explicit(&c->refs, memory_order_relaxed) != 0 ||
		    !atomic_compare_exchange_strong(&c->refs, &zero, 1))
			continue;
		if (atomic_load_explicit(&c->state, memory_order_acquire) !=
		    BW_CONN_FREE) {
			/* Its last fd is still being settled (I3). */
			atomic_store(&c->refs, 0);
			continue;
		}
		/* Claimed: this thread holds its only reference (I3). */
		BW_INVARIANT(atomic_load(&c->refs) == 1, "I3");
		c->phase = BW_PHASE_IDLE;
		c->probe = 0;
		c->io_timeout = 0;
		c->attempt = 0;
		c->pending_err = 0;
		c->ahidden = 0;
		c->nepreg = 0;
		c->afd = -1;
		c->adue_ns = 0;
		c->ticket.kind = 0; /* the rest is written when queued */
		/* A connection freed without a cancel (its fd closed behind
		 * our back) may still sit in the async set: aslot is left for
		 * the pump to clear (shim/async.c, still_ours). */
		atomic_store_explicit(&c->aphase, 0, memory_order_relaxed);
		c->wr_shut = 0;
		memset(&c->slot, 0, sizeof(c->slot));
		c->stale = 0;
		bw_conn_set_rule(c, -1);
		c->d = NULL;
		c->ten = 0;
		c->live_gen = 0;
		c->peer.family = 0; /* set by the connect that may need it */
		c->t0_ns = 0;
		/* Published by the map's release store (bw_fd_track). */
		atomic_store_explicit(&c->state, BW_CONN_FRESH,
				      memory_order_release);
		return c;
	}
	return NULL;
}

struct bw_conn *bw_fd_track(int fd)
{
	if (fd < 0 || fd >= BW_FD_TABLE_MAX || bw_fd_borrowed())
		return NULL;
	/* A fresh fd's entry is nearly always empty: one plain load, not
	 * the exchange (a locked instruction) that takes a stale one. */
	if (atomic_load_explicit(&bw_fd_map[fd], memory_order_relaxed)) {
		struct bw_conn *old = bw_fd_drop(fd);
		if (old)
			bw_conn_free(old);
	}
	struct bw_conn *c = conn_claim(fd);
	if (!c)
		return NULL;
	BW_INVARIANT(atomic_load(&c->state) == BW_CONN_FRESH, "I3");
	note_high(fd);
	atomic_store_explicit(&bw_fd_map[fd], (uint32_t)(c - bw_conns) + 1,
			      memory_order_release);
	return c;
}

void bw_fd_dup(int old, int fd)
{
	if (fd < 0 || fd >= BW_FD_TABLE_MAX)
		return;
	if (BW_UNLIKELY(bw_vfork_parent) && bw_fd_borrowed()) {
		/* The child's new fd may keep the socket past exec. */
		if (old >= 0 && old < BW_FD_TABLE_MAX &&
		    atomic_load_explicit(&bw_fd_map[old], memory_order_relaxed))
			bw_vfork_dups = 1;
		return;
	}
	struct bw_conn *prev = bw_fd_drop(fd);
	if (prev)
		bw_conn_free(prev);
	struct bw_conn *c = bw_fd_conn(old);
	if (!c)
		return;
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_acq_rel);
	note_high(fd);
	atomic_store_explicit(&bw_fd_map[fd], (uint32_t)(c - bw_conns) + 1,
			      memory_order_release);
}

struct bw_conn *bw_fd_drop(int fd)
{
	if (fd < 0 || fd >= BW_FD_TABLE_MAX || bw_fd_borrowed())
		return NULL;
	uint32_t c = atomic_exchange_explicit(&bw_fd_map[fd], 0,
					      memory_order_acq_rel);
	if (!c)
		return NULL;
	BW_INVARIANT(c <= BW_CONN_MAX, "I1");
	struct bw_conn *conn = &bw_conns[c - 1];
	/* The last fd's owner settles the connection; it cannot be claimed
	 * again before bw_conn_free marks it FREE (I3). */
	uint32_t refs =
		atomic_fetch_sub_explicit(&conn->refs, 1, memory_order_acq_rel);
	/* The entry was counted (I1), so refs was at least 1. */
	BW_INVARIANT(refs >= 1, "I1");
	if (refs == 1)
		return conn;
	return NULL;
}

void bw_conn_free(struct bw_conn *c)
{
	/* Only the thread that dropped its last fd frees it, once (I3). */
	BW_INVARIANT(c >= bw_conns && c < bw_conns + BW_CONN_MAX, "I3");
	BW_INVARIANT(atomic_load(&c->state) != BW_CONN_FREE, "I3");
	atomic_store_explicit(&c->state, BW_CONN_FREE, memory_order_release);
}

void bw_fd_reset(void)
{
	memset(bw_fd_map, 0, sizeof(bw_fd_map));
	memset(bw_conns, 0, sizeof(bw_conns));
	atomic_store(&fd_high, 0);
}
