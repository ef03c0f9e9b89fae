/* SPDX-License-Identifier: MIT */
/*
 * core/livestore.h: the pushed policies kept in a shared state
 * (struct bw_policy_area in core/state.h), written by `bulwark policy
 * push/rollback/clear` and read by every process sharing the state
 * (shim/live.c).  See core/livestore.c for the protocol.
 */
#ifndef BW_CORE_LIVESTORE_H
#define BW_CORE_LIVESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/state.h"

/* What a record says besides its text. */
struct bw_livestore_meta {
	uint64_t gen;
	uint64_t time_ns; /* CLOCK_REALTIME of the push */
	uint32_t uid, pid;
	uint32_t len, flags;
};

/* FNV-1a 64 over gen, flags, len and the text. */
uint64_t bw_livestore_sum(uint64_t gen, uint32_t flags, const char *text,
			  uint32_t len);

/*
 * Stores text (len <= BW_POLICY_TEXT_MAX) as a new generation and
 * publishes it unless a later one was published meanwhile.  Not for the
 * shim (it may sleep while another writer holds the record).  Returns the
 * generation (> 0), or -E2BIG, -EBUSY (another writer holds the record
 * for over two seconds), -EINVAL (no area).
 */
int64_t bw_livestore_push(struct bw_state *st, const char *text, size_t len,
			  uint32_t flags, uint32_t uid, uint32_t pid,
			  uint64_t time_ns);

/* The generation in force (0: none pushed).  AS-safe. */
uint64_t bw_livestore_published(const struct bw_state *st);

/*
 * Copies generation gen: its meta into *m and its text into buf (cap >=
 * BW_POLICY_TEXT_MAX + 1; NUL-terminated).  Returns 0, -ENOENT (no such
 * generation kept: overwritten, or never written), -EAGAIN (being
 * written: try again later), -EBADMSG (corrupt: bad checksum or length).
 * AS-safe: reads atomics only.
 */
int bw_livestore_read(const struct bw_state *st, uint64_t gen,
		      struct bw_livestore_meta *m, char *buf, size_t cap);

/*
 * The process table (policy show's live count).  register claims the
 * entry of pid (its own, if an earlier image of pid had one; else an
 * empty one; else one whose process is gone) and returns its index or -1
 * (table full).  note stores the generation pid runs.  AS-safe.
 */
int bw_livestore_register(struct bw_state *st, uint32_t pid, uint64_t gen);
void bw_livestore_note(struct bw_state *st, int idx, uint32_t pid,
		       uint64_t gen);

#endif
