/* SPDX-License-Identifier: MIT */
/*
 * core/state.h: the per-destination state of bulwark(1) FILES, in a
 * shared-memory segment (/dev/shm/bulwark-<uid>-<NAME>) or in private memory.
 *
 * Used by the shim (counters, breaker, bulkhead) and by the bulwark command
 * (status, reset, force).  The segment is lock-free: every field is written
 * with atomics, so a process killed at any instant leaves nothing locked.
 */
#ifndef BW_CORE_STATE_H
#define BW_CORE_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BW_STATE_MAGIC 0x214b525957554c42ull /* "BULWYRK!" little endian */
/* Version 7 added the live-policy area (core/livestore.c) after the
 * hold records: a segment of version 6 is refused and falls back to
 * private state until it is removed (or the machine restarts). */
#define BW_STATE_VERSION 7
/* Destination slots: a power of two.  The issue asks for at least 10,000
 * destinations; 16384 keeps open addressing below 62 % load there.  When
 * a new destination finds no room, an idle one gives up its slot
 * (BW_STATE_IDLE_S, core/state.c "Reclaim"); only when none is idle does
 * the new one pass through untracked. */
#define BW_STATE_SLOTS 16384
/* Longest probe sequence for one key; past it the table counts as full. */
#define BW_STATE_PROBE_MAX 512
#define BW_STATE_LABEL_MAX 64
#define BW_STATE_RULE_MAX 48
/* Buckets of a breaker window (count or time); a window of N calls or T
 * seconds is judged in BW_STATE_WINDOW_BUCKETS slices. */
#define BW_STATE_WINDOW_BUCKETS 10
/* Wait-time histogram buckets (log2 of microseconds). */
#define BW_STATE_HIST_BUCKETS 24
/* Bulkhead hold records (core/bulkhead.c): one per slot held or connect
 * waiting, across every process and destination of the segment.  16384
 * (a 14-bit index packed in bw_dest.bh_word) = 512 KiB; past it, connects
 * pass uncounted (bw_state_hdr.bh_hold_full). */
#define BW_STATE_HOLDS 16384

struct bw_dest_key {
	uint8_t family; /* AF_INET, AF_INET6, or 0 for a group */
	uint8_t pad;
	uint16_t port;	     /* host byte order; 0 for a group */
	uint32_t group_hash; /* group name hash, 0 for an address */
	uint8_t addr[16];    /* network order; 4 bytes used for AF_INET */
};

/* Slot tag: 0 empty; PENDING while one process writes the key (pid in the
 * low bits so a dead writer can be taken over); READY|hash once usable.
 * Exactly, with h = bw_state_key_hash(key) >> 2 and sec = CLOCK_MONOTONIC
 * seconds at the claim:
 *   PENDING | (h & BW_TAG_HASH16) | (sec & BW_TAG_SEC_MASK) << 32 | pid
 *   READY | h
 * The claim time lives in the tag so that it changes in the same CAS as
 * the owner (a separate field could be seen stale by a lookup). */
#define BW_TAG_PENDING (1ull << 62)
#define BW_TAG_READY (1ull << 63)
#define BW_TAG_HASH16 0x3fffc00000000000ull
#define BW_TAG_SEC_MASK 0x3fffull
#define BW_TAG_PID_MASK 0xffffffffull
/* A slot whose destination was reclaimed: skipped by lookups, reused by
 * the next new key whose probe sequence has no empty slot before it. */
#define BW_TAG_TOMB (BW_TAG_READY | BW_TAG_PENDING)
/* A destination idle this long (no call, no connect; breaker closed or
 * its open time over that long ago; not forced; no bulkhead slot held or
 * waited for) gives up its slot to a new destination that needs one. */
#define BW_STATE_IDLE_S 600
/* bw_dest.touched counts CLOCK_MONOTONIC in units of 2^30 ns (1.07 s). */
#define BW_STATE_TOUCH_SHIFT 30

struct bw_window_bucket {
	_Atomic uint64_t epoch; /* call number / time slice this bucket holds */
	_Atomic uint32_t calls, failures, slow;
	uint32_t pad;
};

/* Breaker states (bulwark-policy(7) CALLS).  Low bits of bw_dest.state
 * (core/breaker.h). */
enum bw_breaker_state {
	BW_BREAKER_CLOSED = 0,
	BW_BREAKER_OPEN = 1,
	BW_BREAKER_HALF_OPEN = 2,
};
/* Operator override (bulwark force). */
enum bw_force {
	BW_FORCE_AUTO = 0,
	BW_FORCE_OPEN = 1,
	BW_FORCE_DISABLED = 2,
};

struct bw_dest {
	_Atomic uint64_t tag;
	struct bw_dest_key key;
	/* "127.0.0.1:6379", "[::1]:80", or the group's name */
	char label[BW_STATE_LABEL_MAX];
	char rule[BW_STATE_RULE_MAX]; /* the rule's match as written */

	/* Tenancy (core/state.c owns these; version 6).  ten counts the
	 * destinations this slot has held: a connection keeps the value it
	 * bound with and stops counting when it changes (bw_state_live).
	 * touched is the last admit or call, CLOCK_MONOTONIC >> 30. */
	_Atomic uint32_t ten;
	_Atomic uint32_t touched;

	/* Calls (bulwark-policy(7) CALLS): connect attempts and exchanges. */
	_Atomic uint64_t successful_calls, failed_calls; /* total: their sum */
	_Atomic uint64_t rejected_calls, slow_calls;
	_Atomic uint64_t connect_calls, exchange_calls;
	_Atomic uint64_t connect_ns_sum, exchange_ns_sum;

	/* Breaker (core/breaker.h owns these; read them through it). */
	_Atomic uint64_t state;	 /* packed word: enum bw_breaker_state,
				  * generation, deadline; decode with
				  * bw_breaker_view() */
	_Atomic uint32_t forced; /* enum bw_force */
	_Atomic uint32_t consecutive_failures;
	_Atomic uint32_t slow_count;	  /* the seed's slow-call counter */
	_Atomic uint32_t breaker_corrupt; /* impossible values found in state
					   * or forced (and repaired; breaker.c
					   * I10).  Was padding, always 0: no
					   * version change */
	_Atomic uint64_t open_until_ns;	  /* best-effort mirror of the word's
					   * deadline (CLOCK_MONOTONIC), 0 when
					   * not open */
	_Atomic uint64_t open_ns;	  /* current open time (doubles) */
	/* Half-open round: generation << 32 | count. */
	_Atomic uint64_t probes_claimed, probes_ok;
	_Atomic uint64_t window_seq; /* calls ever put in the window */
	struct bw_window_bucket win[BW_STATE_WINDOW_BUCKETS];
	_Atomic uint64_t opened_count;

	/* Bulkhead (core/bulkhead.h owns these).  bh_word is the truth:
	 * active, waiting and the last hold record to change them, in one
	 * word (core/bulkhead.c); readers decode it (bw_bulkhead_view).
	 * bh_ticket / bh_serving order the waiters, bh_wake is
	 * their futex word.  The fields every acquire and release touch
	 * share one cache line: one transfer per operation under contention.
	 */
	_Alignas(64) _Atomic uint64_t bh_word;
	_Atomic uint32_t bh_max, bh_ticket, bh_serving, bh_wake;
	_Atomic uint64_t bh_acquired, bh_rejected, bh_saturated;
	_Atomic uint64_t bh_sweep_ns; /* CLOCK_MONOTONIC of the last sweep */
	_Atomic uint64_t bh_wait_hist[BW_STATE_HIST_BUCKETS];
	_Atomic uint32_t bh_shared;  /* hint: SHARED holds to look at */
	_Atomic uint32_t bh_corrupt; /* impossible counts found in bh_word
				      * (and rebuilt from the holds) */

	/* Retries. */
	_Atomic uint64_t retries, retries_ok, retries_denied;
	_Atomic uint64_t budget_epoch;
	_Atomic uint32_t budget_connects, budget_retries;

	uint8_t reserved[72]; /* 960 bytes in all: 64-byte aligned */
};

struct bw_state_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t slots;
	uint64_t size; /* bytes of the whole segment */
	uint32_t uid;
	uint32_t hdr_sum;	       /* checksum of the fields above */
	_Atomic uint64_t used;	       /* slots READY */
	_Atomic uint64_t full_events;  /* lookups refused for lack of room */
	_Atomic uint64_t bh_hold_full; /* connects passed for lack of a hold */
	uint8_t pad[56];
};

/* One bulkhead hold record (core/bulkhead.c owns the layout). */
struct bw_bh_hold {
	_Atomic uint64_t word;	 /* state, dest, owner pid, generation */
	_Atomic uint64_t owner;	 /* owner's start time << 24 | generation */
	_Atomic uint64_t ino;	 /* socket inode, 0: unknown */
	_Atomic uint64_t ticket; /* owner's pid namespace (inode of
				  * /proc/<pid>/ns/pid, 0: unknown) << 32 |
				  * generation; the name is historical */
};

/*
 * The live-policy area (bulwark policy push; core/livestore.c owns the
 * protocol).  BW_POLICY_RECS records keep the last pushed generations,
 * generation g in recs[g % BW_POLICY_RECS]; published is the generation
 * every process sharing the state applies (0: none pushed).  procs holds,
 * per process, pid << 32 | the generation it applied, for policy show.
 */
#define BW_POLICY_RECS 8
#define BW_POLICY_TEXT_MAX 65536
#define BW_POLICY_PROCS 1024
/* A record that says "back to each process's own policy". */
#define BW_POLICY_REC_CLEAR 1u
struct bw_policy_rec {
	_Atomic uint64_t seq;	 /* even: stable; odd: being written */
	_Atomic uint64_t writer; /* pid of the writer holding seq odd */
	_Atomic uint64_t gen;
	_Atomic uint64_t time_ns;    /* CLOCK_REALTIME of the push */
	_Atomic uint32_t uid, pid;   /* who pushed */
	_Atomic uint32_t len, flags; /* text bytes; BW_POLICY_REC_* */
	_Atomic uint64_t sum; /* bw_livestore_sum of the fields and text */
	_Atomic uint64_t text[BW_POLICY_TEXT_MAX / 8];
};
struct bw_policy_area {
	_Atomic uint64_t next_gen;  /* generations handed out */
	_Atomic uint64_t published; /* generation in force, 0: none */
	uint8_t pad[48];
	struct bw_policy_rec recs[BW_POLICY_RECS];
	_Atomic uint64_t procs[BW_POLICY_PROCS];
};

struct bw_state {
	struct bw_state_hdr *hdr;
	struct bw_dest *dests;
	struct bw_bh_hold *holds;   /* BW_STATE_HOLDS, after the dests */
	struct bw_policy_area *pol; /* after the holds */
	size_t map_len;
	bool shared;	/* false: private memory */
	char path[128]; /* the segment file, "" for private */
};

/* Size of a segment: header, BW_STATE_SLOTS destinations, then
 * BW_STATE_HOLDS bulkhead hold records, then the live-policy area. */
size_t bw_state_size(void);

/* The segment path for a state name: /dev/shm/bulwark-<uid>-<name>.
 * Returns 0 or -EINVAL (bad name) / -ENAMETOOLONG. */
int bw_state_path(const char *name, unsigned uid, char *buf, size_t cap);

/*
 * Maps state name (BULWARK_STATE in bulwark(1)), creating the segment when
 * create is true and it does not exist.  "private" maps anonymous memory.  A
 * segment owned by another user, not a regular file, a symlink, of the wrong
 * mode, size or version, or with a bad header is refused: returns -errno and
 * writes the reason to why.  Holds no fd after it returns (doc/design.md L9).
 */
int bw_state_attach(struct bw_state *st, const char *name, bool create,
		    char *why, size_t whycap);
int bw_state_attach_private(struct bw_state *st);
void bw_state_detach(struct bw_state *st);

/*
 * The destination for key, created when absent with label and rule.
 * Returns NULL when the table is full (the caller passes the call through
 * untracked) or the key's slot could not be claimed in bounded time.
 * AS-safe: yes; never blocks for long, never allocates.
 */
struct bw_dest *bw_state_get(struct bw_state *st, const struct bw_dest_key *k,
			     const char *label, const char *rule);
/* The destination for key, or NULL; never creates. */
struct bw_dest *bw_state_find(struct bw_state *st, const struct bw_dest_key *k);
/* Slot i (0 <= i < BW_STATE_SLOTS) if it holds a destination, else NULL. */
struct bw_dest *bw_state_slot(struct bw_state *st, uint32_t i);
/* Slot i if it holds the destination for key k, else NULL: a slot keeps
 * its key once it holds one, so a remembered index is checked this way. */
struct bw_dest *bw_state_find_at(struct bw_state *st, uint32_t i,
				 const struct bw_dest_key *k);
/* Index of d in st; BW_STATE_SLOTS when d is not one of st's slots. */
uint32_t bw_state_index(const struct bw_state *st, const struct bw_dest *d);

/*
 * Tenancy (core/state.c "Reclaim").  A connection binds to d with
 * bw_state_ten(st, i) read BEFORE the lookup that returned slot i (or
 * with bw_state_pin after it), and uses d only while bw_state_live(d, ten)
 * returns it: a reclaimed slot's new destination is never touched through
 * an old pointer.  Cost: one load and one compare.  AS-safe: yes.
 */
static inline uint32_t bw_state_ten(const struct bw_state *st, uint32_t i)
{
	return atomic_load_explicit(&st->dests[i & (BW_STATE_SLOTS - 1)].ten,
				    memory_order_acquire);
}
static inline struct bw_dest *bw_state_live(struct bw_dest *d, uint32_t ten)
{
	return d && atomic_load_explicit(&d->ten, memory_order_relaxed) == ten
		       ? d
		       : NULL;
}
/* d, just returned by a lookup for k, still holds k: *ten is its tenancy.
 * False when it was reclaimed meanwhile (look it up again).  AS-safe. */
bool bw_state_pin(struct bw_state *st, struct bw_dest *d,
		  const struct bw_dest_key *k, uint32_t *ten);
/* d was used at now_ns (a connect admitted, a call recorded): it is not
 * idle.  Stores at most about once a second.  AS-safe: yes. */
static inline void bw_state_touch(struct bw_dest *d, uint64_t now_ns)
{
	uint32_t t = (uint32_t)(now_ns >> BW_STATE_TOUCH_SHIFT);
	if (atomic_load_explicit(&d->touched, memory_order_relaxed) != t)
		atomic_store_explicit(&d->touched, t, memory_order_relaxed);
}

/* How bw_state_reclaim judges a slot. */
enum bw_reclaim_mode {
	BW_RECLAIM_IDLE = 0, /* idle BW_STATE_IDLE_S, breaker closed (or its
			      * open time over that long ago), not forced,
			      * no bulkhead slot held or waited for */
	BW_RECLAIM_RESET,    /* bulwark reset --all: not forced, no bulkhead
			      * slot held or waited for */
};
/*
 * Frees slot i when it holds a destination that mode allows to give it up
 * (its next lookup makes it anew, with fresh counters).  Returns true when
 * freed.  AS-safe: yes.
 */
bool bw_state_reclaim(struct bw_state *st, uint32_t i, uint64_t now_ns,
		      enum bw_reclaim_mode mode);
/*
 * The segment's file was truncated under us (a SIGBUS inside the mapping,
 * shim/hook_signal.c): the whole mapping becomes private anonymous memory
 * in place (MAP_FIXED), an empty table with a fresh header, so every
 * pointer into it stays valid and nothing more faults.  Connections bound
 * before keep a tenancy the zeroed slots do not have (bw_state_live).
 * Returns 0 or -errno (the mapping is then unchanged).  AS-safe: yes.
 */
int bw_state_lose(struct bw_state *st);
/* Whether addr lies inside st's mapping. */
bool bw_state_contains(const struct bw_state *st, const void *addr);

/* Slots holding a destination now (READY tags), by a scan. */
uint32_t bw_state_count_used(const struct bw_state *st);

/* Zeroes every counter and closes the breaker of d (bulkhead slots held by
 * live connections stay counted: bh_word, bh_ticket, bh_max are kept).
 * The breaker part is bw_breaker_reset (core/breaker.c), which also keeps
 * the operator override (forced): only "bulwark force DEST auto" lifts
 * it.  AS-safe: yes. */
void bw_state_reset_dest(struct bw_dest *d);

/* Copies d's label into buf, NUL-terminated whatever the segment holds. */
void bw_state_label(const struct bw_dest *d, char *buf, size_t cap);
void bw_state_rule(const struct bw_dest *d, char *buf, size_t cap);

/* Hash of a key (FNV-1a 64); never 0.  Keys compare in a canonical form:
 * pad is ignored, so are addr[4..15] for AF_INET and addr for a group. */
uint64_t bw_state_key_hash(const struct bw_dest_key *k);

#endif
