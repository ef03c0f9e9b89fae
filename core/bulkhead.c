/* SPDX-License-Identifier: MIT */
/*
 * core/bulkhead.c: the bulkhead (bulwark-policy(7) bulkhead.*,
 * bulwark(1) FILES).  Owns: bw_bulkhead_* and the bulkhead fields of bw_dest
 * (bh_*) and the hold records of the segment.  Never: allocates, locks, logs,
 * sets errno, or holds an fd past a call.  Context: acquire from the connect
 * path (may sleep when asked to wait); release from close, any thread or signal
 * handler (atomics and a futex wake only); sweep from acquire or the command.
 *
 * Counts.  bw_dest.bh_word packs active (20 bits), waiting (14) and the
 * last hold record to change them (index 14, generation 16).  Every change
 * of active or waiting is a CAS on it, so the limit holds exactly.
 *
 * Holds.  Each slot held, and each connect waiting, owns a hold record
 * (struct bw_bh_hold) whose word packs state, dest, owner pid and a
 * 24-bit generation.  A record changes the counts in three steps:
 *
 *   stable A --intend (CAS rec)--> INTENT(A->B) --commit (CAS bh_word,
 *        last = rec)--> counts changed --complete (CAS rec)--> stable B
 *
 *   FREE --ACQ--> HELD --REL--> FREE       HELD --disown--> SHARED
 *   FREE --ENQ--> WAITING --TAKE--> HELD   SHARED --SREL--> FREE (sweep)
 *                 WAITING --LEAVE--> FREE
 *
 * A process killed between any two steps leaves an INTENT record whose
 * commit is known exactly: it happened iff bh_word.last still names the
 * record, or the record was completed by a helper (I3).  A sweeper
 * completes or rolls it back, then frees what the dead owner held.
 *
 * I1: active = HELD + SHARED records of the dest + committed, uncompleted
 *     ACQ/TAKE intents - committed, uncompleted REL/SREL intents;
 *     waiting likewise for WAITING/ENQ/TAKE/LEAVE.  (Scope=shared only.)
 * I2: a record's generation grows by one at every intend, so (index, gen)
 *     names one intent; only its owner, or a sweeper that found the owner
 *     dead, intends on a record.
 * I3: before a CAS replaces bh_word.last = (R, g), the replacer completes
 *     R's intent g if R still shows it (helping).  So a dead owner's intent
 *     is committed iff last == (R, g) or R was completed: rolling it back
 *     otherwise is exact.
 * I4: a record is freed, and its slot given back, by exactly one CAS from
 *     HELD/SHARED/WAITING (release, or a sweeper that judged its owner
 *     dead and, for a connection, its socket closed in every process).
 * I5: an owner recorded in another pid namespace than ours (the inode
 *     of /proc/self/ns/pid, kept with the start time) is never judged by
 *     its pid here: it stays held until a sweeper of its own namespace
 *     judges it.  Otherwise an owner is dead when kill(pid, 0) says ESRCH,
 *     /proc/<pid>/stat
 *     shows a zombie that is its group's last thread (a leader that
 *     exited before its other threads shows Z too), or its start time
 *     differs from the record's (pid reuse); the start time counts only
 *     when its generation matches.  A verdict is about one word (index,
 *     generation): a sweeper acts on it only by a CAS from that word, or
 *     from the stable word its own rollback or completion of that
 *     intent left (same generation), never on a word read afterwards
 *     with a newer generation (the record was freed and claimed again,
 *     by an owner nobody judged).
 * I6: nothing in a record or bh_word is used as an index without a mask
 *     that keeps it in range (14-bit dest and record fields).
 * I7: a count that cannot be (below 0 after a change, or more slots than
 *     hold records) is corruption: counted in bw_dest.bh_corrupt and
 *     rebuilt from the records by I1 (rebuild()), never clamped.  Every
 *     sweep of a destination also checks its counts against its records,
 *     so a wrong but possible count (a segment written by someone else)
 *     lasts at most one sweep; bulwark reset forces one.
 *
 * Waiting.  A connect that finds the bulkhead full takes a ticket
 * (bh_ticket) and may take a slot when fewer tickets before it are still
 * queued than slots are free: t - serving < max - active, serving
 * counting the tickets done (taken, left, void).  Each waiter sleeps on
 * the futex word bh_wake with a bitset naming its ticket (see wait_bit);
 * whoever frees a slot or moves serving wakes only the bits of the
 * tickets that are now admitted, and a waiter that takes a slot passes
 * any room left on the same way.  No polling: a waiter also wakes every
 * 100 ms (RECHECK_NS) in case its waker died between its change and its
 * wake, and then runs the sweep; a waiter that sees free slots and no
 * progress over two such re-checks takes one out of order (the waiters
 * ahead are stopped or dead).
 *
 * Limits (honest): SHARED connections (forked while held, or inherited
 * by an exec'd program after their owner died) are freed by a sweep that
 * looks for the socket's inode in /proc/<pid>/fd of the user's processes:
 * a socket in flight over SCM_RIGHTS, or held only by a process whose fd
 * directory we cannot read, counts as closed.  The connect path leaves
 * a hold's inode unknown (an fstat per connect saved); the fork handler
 * records it for every held connection before a child can inherit one.
 * A hold whose inode is unknown when its owner dies is freed at once.
 * So a slot taken before a vfork/posix_spawn (no fork handler runs) is
 * released at the parent's close, or at its death, even if the child
 * still holds the socket.  The wait order is by ticket (FIFO); it can
 * be broken only by a waiter that left out of order (its deadline or a
 * signal), which lets the ones queued before it go first, or by the
 * no-progress rule above.  A holder of another pid namespace that died
 * with no live process of its namespace left keeps its slot until a
 * process of that namespace sweeps (bulwark reset does not free it).
 * Generations wrap (16 bits in bh_word): a stale last matching a fresh
 * intent of a killed owner needs 65536 intents on one record in between.
 */
#include "core/bulkhead.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sigrule.h"
#include "core/sys.h"
#include "policy/text.h"

/* ---- encodings ------------------------------------------------------------ */

/* Record word: pid 0-21, dest 22-35, state 36-39, generation 40-63.
 * PID_MAX_LIMIT is 2^22 on Linux. */
#define HW_PID_MASK 0x3fffffull
#define HW_DEST_SHIFT 22
#define HW_DEST_MASK 0x3fffull
#define HW_STATE_SHIFT 36
#define HW_STATE_MASK 0xfull
#define HW_GEN_SHIFT 40
#define HW_GEN_MASK 0xffffffull

/* bh_word: active 0-19, waiting 20-33, last index 34-47, last gen 48-63. */
#define BH_ACTIVE_MASK 0xfffffull
#define BH_WAIT_SHIFT 20
#define BH_WAIT_MASK 0x3fffull
#define BH_LAST_SHIFT 34
#define BH_LAST_MASK 0x3fffull
#define BH_LGEN_SHIFT 48
#define BH_LGEN_MASK 0xffffull

_Static_assert(BW_STATE_SLOTS - 1 <= HW_DEST_MASK, "dest field");
_Static_assert(BW_STATE_HOLDS - 1 <= BH_LAST_MASK, "last field");
_Static_assert(BW_STATE_HOLDS - 1 <= BH_WAIT_MASK, "waiting field");
_Static_assert(BW_POLICY_COUNT_MAX <= BH_ACTIVE_MASK, "active field");

/* Record states.  Record 0 is never used: last == 0 means none. */
enum {
	ST_FREE = 0,
	ST_HELD = 1,	 /* a slot; owner pid closes or dies */
	ST_WAITING = 2,	 /* a connect waiting for a slot */
	ST_SHARED = 3,	 /* a slot of a connection other processes may hold */
	ST_I_ACQ = 8,	 /* FREE -> HELD: active + 1 */
	ST_I_ENQ = 9,	 /* FREE -> WAITING: waiting + 1 */
	ST_I_TAKE = 10,	 /* WAITING -> HELD: active + 1, waiting - 1 */
	ST_I_LEAVE = 11, /* WAITING -> FREE: waiting - 1 */
	ST_I_REL = 12,	 /* HELD -> FREE: active - 1 */
	ST_I_SREL = 13,	 /* SHARED -> FREE: active - 1 */
};

/* clang-format off: the tables pair each intent with its transition. */
static const uint8_t intent_from[16] = {
	[ST_I_ACQ] = ST_FREE,	  [ST_I_ENQ] = ST_FREE,
	[ST_I_TAKE] = ST_WAITING, [ST_I_LEAVE] = ST_WAITING,
	[ST_I_REL] = ST_HELD,	  [ST_I_SREL] = ST_SHARED,
};
static const uint8_t intent_to[16] = {
	[ST_I_ACQ] = ST_HELD,	[ST_I_ENQ] = ST_WAITING, [ST_I_TAKE] = ST_HELD,
	[ST_I_LEAVE] = ST_FREE, [ST_I_REL] = ST_FREE,	 [ST_I_SREL] = ST_FREE,
};
static const int8_t intent_dact[16] = {
	[ST_I_ACQ] = 1,
	[ST_I_TAKE] = 1,
	[ST_I_REL] = -1,
	[ST_I_SREL] = -1,
};
static const int8_t intent_dwait[16] = {
	[ST_I_ENQ] = 1,
	[ST_I_TAKE] = -1,
	[ST_I_LEAVE] = -1,
};
/* clang-format on */

static inline bool is_intent(unsigned s)
{
	return s >= ST_I_ACQ && s <= ST_I_SREL;
}

static inline uint64_t hw_make(unsigned state, uint32_t dest, uint32_t pid,
			       uint32_t gen)
{
	return ((uint64_t)pid & HW_PID_MASK) |
	       ((uint64_t)dest & HW_DEST_MASK) << HW_DEST_SHIFT |
	       ((uint64_t)state & HW_STATE_MASK) << HW_STATE_SHIFT |
	       ((uint64_t)gen & HW_GEN_MASK) << HW_GEN_SHIFT;
}
static inline uint32_t hw_pid(uint64_t w)
{
	return (uint32_t)(w & HW_PID_MASK);
}
static inline uint32_t hw_dest(uint64_t w)
{
	return (uint32_t)(w >> HW_DEST_SHIFT & HW_DEST_MASK);
}
static inline unsigned hw_state(uint64_t w)
{
	return (unsigned)(w >> HW_STATE_SHIFT & HW_STATE_MASK);
}
static inline uint32_t hw_gen(uint64_t w)
{
	return (uint32_t)(w >> HW_GEN_SHIFT & HW_GEN_MASK);
}

static inline uint32_t bh_active(uint64_t w)
{
	return (uint32_t)(w & BH_ACTIVE_MASK);
}
static inline uint32_t bh_waiting(uint64_t w)
{
	return (uint32_t)(w >> BH_WAIT_SHIFT & BH_WAIT_MASK);
}
static inline uint32_t bh_last(uint64_t w)
{
	return (uint32_t)(w >> BH_LAST_SHIFT & BH_LAST_MASK);
}
static inline uint32_t bh_lgen(uint64_t w)
{
	return (uint32_t)(w >> BH_LGEN_SHIFT & BH_LGEN_MASK);
}
static inline uint64_t bh_make(uint32_t act, uint32_t wait, uint32_t last,
			       uint32_t gen)
{
	return ((uint64_t)act & BH_ACTIVE_MASK) |
	       ((uint64_t)wait & BH_WAIT_MASK) << BH_WAIT_SHIFT |
	       ((uint64_t)last & BH_LAST_MASK) << BH_LAST_SHIFT |
	       ((uint64_t)gen & BH_LGEN_MASK) << BH_LGEN_SHIFT;
}

/* ---- process-local state -------------------------------------------------- */

/* scope=process: one private bulkhead per destination slot (the same word
 * layout, no records: a dying process takes its counts with it). */
struct priv_bh {
	_Atomic uint64_t word;
	_Atomic uint32_t wake, ticket, serving, max;
};
static struct priv_bh priv[BW_STATE_SLOTS];

static _Atomic uint32_t self_pid;   /* 0: not known yet (or forked) */
static _Atomic uint32_t self_ns;    /* our pid namespace's inode, 0: unknown */
static _Atomic uint64_t self_start; /* our start time, 0: unknown */
static _Atomic uint32_t fork_count; /* bw_bulkhead_forked() calls */
/* Where this thread looks first for a free record: the one it freed last,
 * so a thread keeps reusing one warm record and threads do not collide
 * (initial-exec: doc/design.md L5). */
static __thread uint32_t claim_hint __attribute__((tls_model("initial-exec")));

/* A view of one bulkhead: the shared one of a dest, or a private one. */
struct bh {
	struct bw_state *st; /* NULL: scope=process (no records) */
	struct bw_dest *d;
	uint32_t didx;
	_Atomic uint64_t *word;
	_Atomic uint32_t *wake, *ticket, *serving, *max;
	int futex_flags; /* 0 or FUTEX_PRIVATE_FLAG */
};

/* ---- small helpers (system calls through bw_sys: errno untouched) ------- */

static int sys_open_at(int dirfd, const char *path, int flags)
{
	return bw_sys.openat(dirfd, path, flags | O_CLOEXEC, 0);
}

static void sys_close(int fd)
{
	bw_sys.close(fd);
}

/* Reads /proc/<pid>/stat (pid 0: self): start time in clock ticks (0 if
 * unreadable) and whether the process is a zombie.  Returns false when the
 * file cannot be read.  A thread-group leader that exited (pthread_exit
 * from main) while other threads run shows state Z too, with their fds
 * open: that is a zombie only once it is the group's last thread
 * (num_threads 1), so *zombie is false for it. */
static bool proc_stat(uint32_t pid, uint64_t *start, bool *zombie)
{
	char path[40], buf[512], *p, *end;
	struct bw__buf pb;
	ssize_t n;
	int fd, field;

	*start = 0;
	*zombie = false;
	bw__buf_init(&pb, path, sizeof(path));
	bw__buf_puts(&pb, "/proc/");
	if (pid)
		bw__buf_putu(&pb, pid);
	else
		bw__buf_puts(&pb, "self");
	bw__buf_puts(&pb, "/stat");
	fd = sys_open_at(AT_FDCWD, path, O_RDONLY);
	if (fd < 0)
		return false;
	n = bw_sys.read(fd, buf, sizeof(buf) - 1);
	sys_close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields start after the
	 * last ')'.  Field 3 is the state, 22 the start time. */
	end = buf + n;
	p = NULL;
	for (char *q = buf; q < end; q++)
		if (*q == ')')
			p = q;
	if (!p || p + 2 >= end)
		return false;
	p += 2;
	bool dead = (*p == 'Z' || *p == 'X' || *p == 'x');
	uint64_t threads = 0;
	for (field = 3; field < 22 && p < end; p++) {
		if (*p != ' ')
			continue;
		if (++field == 20) /* num_threads */
			for (char *q = p + 1; q < end && *q >= '0' && *q <= '9';
			     q++)
				threads = threads * 10 + (uint64_t)(*q - '0');
	}
	/* A group whose other threads still run is not dead; num_threads
	 * unreadable (0) counts as the last thread. */
	*zombie = dead && threads <= 1;
	if (field != 22)
		return true;
	while (p < end && *p >= '0' && *p <= '9')
		*start = *start * 10 + (uint64_t)(*p++ - '0');
	*start &= 0xffffffffffull; /* 40 bits: the owner field */
	return true;
}

/* The inode of our pid namespace (/proc/self/ns/pid -> "pid:[N]"), 0 if
 * unreadable.  Holders record it: a pid means something only in its own
 * namespace.  Proc inode numbers are 32-bit. */
static uint32_t pid_ns_of_self(void)
{
	char lnk[64];
	long n = bw_sys.readlinkat(AT_FDCWD, "/proc/self/ns/pid", lnk,
				   sizeof(lnk) - 1);
	uint64_t ino = 0;

	if (n < 6 || memcmp(lnk, "pid:[", 5) != 0)
		return 0;
	for (long k = 5; k < n && lnk[k] >= '0' && lnk[k] <= '9'; k++)
		ino = ino * 10 + (uint64_t)(lnk[k] - '0');
	return ino > UINT32_MAX ? 0 : (uint32_t)ino;
}

/* Our pid (cached until bw_bulkhead_forked) and start time. */
static uint32_t self(uint64_t *start)
{
	uint32_t pid = atomic_load_explicit(&self_pid, memory_order_acquire);

	if (!pid) {
		uint64_t s;
		bool z;

		proc_stat(0, &s, &z);
		atomic_store_explicit(&self_start, s, memory_order_relaxed);
		atomic_store_explicit(&self_ns, pid_ns_of_self(),
				      memory_order_relaxed);
		pid = (uint32_t)getpid() & HW_PID_MASK;
		atomic_store_explicit(&self_pid, pid, memory_order_release);
	}
	if (start)
		*start =
			atomic_load_explicit(&self_start, memory_order_relaxed);
	return pid;
}

/*
 * Who sleeps where.  Every waiter sleeps on the one futex word wake (a
 * counter every waker bumps before it wakes: a waiter that read it before
 * looking at the counts cannot miss a wake) with a bitset that names its
 * ticket t, relative to serving s:
 *   bits 0-15  near: t in the 8-ticket block of s or the next one, by
 *              t & 15 (one ticket per bit: the wake is exact);
 *   bits 16-30 far: t further on, by its 8-ticket block modulo 15, woken
 *              when s enters the block before it (then near);
 *   bit 31     behind: t < s (tickets after it left first): such a
 *              waiter may take any free slot, woken by every wake.
 * A waker wakes the bits of the tickets a free slot admits now (t - s <
 * free slots), and never the others.
 */
#define WB_NEAR_MASK 15u
#define WB_BLOCK_SHIFT 3
#define WB_FAR_BASE 16
#define WB_FAR_BITS 15u
#define WB_BEHIND (1u << 31)

static uint32_t far_bit(uint32_t block)
{
	return 1u << (WB_FAR_BASE + block % WB_FAR_BITS);
}

static uint32_t wait_bit(uint32_t t, uint32_t s)
{
	uint32_t ahead = t - s;

	if ((int32_t)ahead < 0)
		return WB_BEHIND;
	if (((t - (s & ~((1u << WB_BLOCK_SHIFT) - 1))) >> WB_BLOCK_SHIFT) <= 1)
		return 1u << (t & WB_NEAR_MASK);
	return far_bit(t >> WB_BLOCK_SHIFT);
}

/* Bits of the waiters that free slots admit at serving s. */
static uint32_t admit_mask(uint32_t s, uint32_t free)
{
	uint32_t m = WB_BEHIND;

	if (free > WB_NEAR_MASK)
		return ~0u;
	for (uint32_t i = 0; i < free; i++)
		m |= wait_bit(s + i, s);
	return m;
}

/* Counts every wake-up system call, and every re-check a waiter made
 * because no wake-up came for RECHECK_NS (the unit tests read them). */
_Atomic uint64_t bw__bulkhead_wakes, bw__bulkhead_rechecks;

static void wake_bits(struct bh *b, uint32_t mask)
{
	if (!mask)
		return;
	atomic_fetch_add_explicit(b->wake, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&bw__bulkhead_wakes, 1, memory_order_relaxed);
	bw_sys.futex((uint32_t *)b->wake, FUTEX_WAKE_BITSET | b->futex_flags,
		     INT_MAX, NULL, mask);
}

/* The bits of the waiters b's free slots admit now, 0 if none. */
static uint32_t room_mask(struct bh *b)
{
	uint64_t w = atomic_load(b->word);
	uint32_t act = bh_active(w), max = atomic_load(b->max);

	if (!bh_waiting(w) || act >= max)
		return 0;
	return admit_mask(atomic_load(b->serving), max - act);
}

/* With nobody waiting, serving catches up with ticket: a ticket lost by
 * a process killed between taking it and queueing would otherwise put
 * every later waiter one place back (order only: I1 does not depend on
 * tickets). */
static void resync(struct bh *b)
{
	if (bh_waiting(atomic_load(b->word)))
		return;
	uint32_t s = atomic_load(b->serving), t = atomic_load(b->ticket);
	if (s != t)
		atomic_compare_exchange_strong(b->serving, &s, t);
}

/*
 * A ticket is done (taken a slot, left the queue, or void): serving moves
 * on, and the waiters that this, or room left over, admits are woken:
 * the far block that became near, the waiter of the ticket serving
 * passed if that was not ours (it is behind now), and the tickets free
 * slots admit.  t: our ticket, or > UINT32_MAX when not known (a dead
 * waiter's).
 */
static void advance(struct bh *b, uint64_t t)
{
	uint32_t o = atomic_fetch_add(b->serving, 1), n = o + 1, mask = 0;

	if ((n & ((1u << WB_BLOCK_SHIFT) - 1)) == 0)
		mask |= far_bit((n >> WB_BLOCK_SHIFT) + 1);
	if (t != o)
		mask |= 1u << (o & WB_NEAR_MASK);
	resync(b);
	wake_bits(b, mask | room_mask(b));
}

static void bh_of_dest(struct bh *b, struct bw_state *st, uint32_t didx)
{
	struct bw_dest *d = &st->dests[didx & HW_DEST_MASK]; /* I6 */

	b->st = st;
	b->d = d;
	b->didx = didx & HW_DEST_MASK;
	b->word = &d->bh_word;
	b->wake = &d->bh_wake;
	b->ticket = &d->bh_ticket;
	b->serving = &d->bh_serving;
	b->max = &d->bh_max;
	b->futex_flags = 0;
}

static void bh_of_priv(struct bh *b, struct bw_dest *d, uint32_t didx)
{
	struct priv_bh *p = &priv[didx & HW_DEST_MASK];

	b->st = NULL;
	b->d = d;
	b->didx = didx & HW_DEST_MASK;
	b->word = &p->word;
	b->wake = &p->wake;
	b->ticket = &p->ticket;
	b->serving = &p->serving;
	b->max = &p->max;
	b->futex_flags = FUTEX_PRIVATE_FLAG;
}

/* ---- the three steps ------------------------------------------------------ */

static struct bw_bh_hold *rec(struct bw_state *st, uint32_t idx)
{
	return &st->holds[idx & BH_LAST_MASK]; /* I6 */
}

/* Plain stores: a sweeper trusts the start time and the pid namespace
 * only when their generation matches the record word it judges (I5). */
static void set_owner(struct bw_state *st, uint32_t idx, uint64_t w,
		      uint64_t start)
{
	uint64_t ns = atomic_load_explicit(&self_ns, memory_order_relaxed);

	atomic_store_explicit(&rec(st, idx)->owner, start << 24 | hw_gen(w),
			      memory_order_release);
	atomic_store_explicit(&rec(st, idx)->ticket, ns << 32 | hw_gen(w),
			      memory_order_release);
}

/* Completes intent w of record idx (the owner, or a helper: I3). */
static void complete(struct bw_state *st, uint32_t idx, uint64_t w)
{
	unsigned s = hw_state(w);
	uint64_t to;

	if (!is_intent(s))
		return;
	to = intent_to[s] == ST_FREE
		     ? hw_make(ST_FREE, 0, 0, hw_gen(w))
		     : hw_make(intent_to[s], hw_dest(w), hw_pid(w), hw_gen(w));
	atomic_compare_exchange_strong(&rec(st, idx)->word, &w, to);
}

/* I3: completes the intent bh_word w names, if its record still shows it. */
static void help(struct bw_state *st, uint64_t w)
{
	uint32_t idx = bh_last(w);
	uint64_t r;

	if (!idx)
		return;
	r = atomic_load(&rec(st, idx)->word);
	if (is_intent(hw_state(r)) && (hw_gen(r) & BH_LGEN_MASK) == bh_lgen(w))
		complete(st, idx, r);
}

/*
 * I1 applied: the counts of dest didx recomputed from the hold records,
 * stored in bh_word when they differ.  An intent counts in its to-state
 * when bh_word.last names it (committed, I3), else in its from-state.
 * The records are read between two reads of an unchanged bh_word: every
 * change of the counts is a CAS that also changes last (index and
 * generation), so the pass saw one consistent set.  Returns true when
 * bh_word was wrong and is now rebuilt.  One pass over the hold table
 * (about 0.1 ms); run on a count that cannot be, and by the sweep.
 */
static bool rebuild(struct bw_state *st, uint32_t didx)
{
	_Atomic uint64_t *word = &st->dests[didx & HW_DEST_MASK].bh_word;

	for (int tries = 0; tries < 8; tries++) {
		uint64_t w = atomic_load(word), n;
		uint32_t act = 0, wait = 0;

		for (uint32_t i = 1; i < BW_STATE_HOLDS; i++) {
			uint64_t r = atomic_load_explicit(&st->holds[i].word,
							  memory_order_acquire);
			unsigned s = hw_state(r);

			if (s == ST_FREE || hw_dest(r) != (didx & HW_DEST_MASK))
				continue;
			if (is_intent(s))
				s = bh_last(w) == i &&
						    bh_lgen(w) == (hw_gen(r) &
								   BH_LGEN_MASK)
					    ? intent_to[s]
					    : intent_from[s];
			act += s == ST_HELD || s == ST_SHARED;
			wait += s == ST_WAITING;
		}
		if (atomic_load(word) != w)
			continue;
		n = bh_make(act, wait, bh_last(w), bh_lgen(w));
		if (n == w)
			return false;
		if (atomic_compare_exchange_strong(word, &w, n))
			return true;
	}
	return false;
}

static void note_corrupt(struct bw_dest *d)
{
	if (d)
		atomic_fetch_add_explicit(&d->bh_corrupt, 1,
					  memory_order_relaxed);
}

/*
 * Commits intent rw (record idx, or 0 for a private bulkhead) to b's
 * counts.  ACQ needs active + waiting < max (no overtaking of waiters),
 * TAKE active < max, ENQ waiting < queue (0: no limit).  Returns 0, or
 * -EBUSY when the condition fails.
 */
static int commit(struct bh *b, uint32_t idx, uint64_t rw, uint32_t max,
		  uint32_t queue)
{
	unsigned s = hw_state(rw);
	uint64_t w = atomic_load(b->word);
	int rebuilt = 0;

	for (;;) {
		uint32_t act = bh_active(w), wait = bh_waiting(w);
		int64_t na, nw;

		/* Our own record cannot be the one to help: it shows
		 * our newer intent. */
		if (b->st && bh_last(w) != idx)
			help(b->st, w);
		na = (int64_t)act + intent_dact[s];
		nw = (int64_t)wait + intent_dwait[s];
		/* A count below 0, or more slots than hold records, cannot
		 * be: a corrupt segment (or a bug).  Counted, and the
		 * counts rebuilt from the records (our own intent counts
		 * in its from-state: it is not committed yet). */
		if (na < 0 || nw < 0 || (b->st && act >= BW_STATE_HOLDS)) {
			if (!rebuilt++)
				note_corrupt(b->d);
			if (b->st && rebuilt <= 2) {
				rebuild(b->st, b->didx);
				w = atomic_load(b->word);
				continue;
			}
			/* Private counts (or a rebuild that lost every
			 * race): never below 0. */
			na = na < 0 ? 0 : na;
			nw = nw < 0 ? 0 : nw;
		}
		if (s == ST_I_ACQ && (uint64_t)act + wait >= max)
			return -EBUSY;
		if (s == ST_I_TAKE && act >= max)
			return -EBUSY;
		if (s == ST_I_ENQ &&
		    ((queue && wait >= queue) || wait >= BH_WAIT_MASK))
			return -EBUSY;
		uint64_t n = b->st ? bh_make((uint32_t)na, (uint32_t)nw, idx,
					     hw_gen(rw))
				   : bh_make((uint32_t)na, (uint32_t)nw, 0, 0);
		if (atomic_compare_exchange_weak(b->word, &w, n))
			break;
	}
	if (b->st)
		complete(b->st, idx, rw);
	return 0;
}

/* The stable word our completed intent rw left: the same owner and
 * generation in the intent's to-state, or FREE with only the generation. */
static uint64_t completed(uint64_t rw)
{
	unsigned to = intent_to[hw_state(rw)];

	return to == ST_FREE ? hw_make(ST_FREE, 0, 0, hw_gen(rw))
			     : (rw & ~(HW_STATE_MASK << HW_STATE_SHIFT)) |
				       (uint64_t)to << HW_STATE_SHIFT;
}

/*
 * commit() of our own ACQ or REL intent rw on record idx of d, in the
 * case nearly every connect and close meets: bh_word's last names our
 * record or none, so there is no intent to help (I3), and an ACQ finds
 * room.  Commits and completes in one pass over d's bulkhead
 * line and the record.  Returns 0 when done, 1 when not that case or the
 * CAS lost a race: nothing changed, the caller runs commit().
 */
static int commit_own(struct bw_state *st, struct bw_dest *d, uint32_t idx,
		      uint64_t rw, uint32_t max)
{
	uint64_t w = atomic_load(&d->bh_word), n, to;
	uint32_t act = bh_active(w), last = bh_last(w);
	bool acq = hw_state(rw) == ST_I_ACQ;

	if ((last && last != idx) || act >= BW_STATE_HOLDS ||
	    (acq ? (uint64_t)act + bh_waiting(w) >= max : act == 0))
		return 1;
	n = bh_make(acq ? act + 1 : act - 1, bh_waiting(w), idx, hw_gen(rw));
	if (!atomic_compare_exchange_strong(&d->bh_word, &w, n))
		return 1;
	to = completed(rw);
	if (acq)
		/* HELD: from here only we, or a sweeper that found us dead,
		 * change it (I2, I4); a helper that completed it first wrote
		 * this same word (I3).  A store, not a locked CAS. */
		atomic_store_explicit(&rec(st, idx)->word, to,
				      memory_order_release);
	else
		/* FREE: a helper may have completed it and another
		 * claimant taken it since. */
		atomic_compare_exchange_strong(&rec(st, idx)->word, &rw, to);
	return 0;
}

/* Our own intent rw on record idx becomes intent s (a fresh generation),
 * or with s == 0 goes back to its from-state.  Updates *rw; false when
 * the record is not as we left it (it never should be). */
static bool retarget(struct bw_state *st, uint32_t idx, uint64_t *rw,
		     unsigned s, uint32_t pid, uint64_t start)
{
	uint64_t n;

	if (!s) {
		unsigned from = intent_from[hw_state(*rw)];
		n = from == ST_FREE ? hw_make(ST_FREE, 0, 0, hw_gen(*rw))
				    : hw_make(from, hw_dest(*rw), hw_pid(*rw),
					      hw_gen(*rw));
	} else
		n = hw_make(s, hw_dest(*rw), pid, hw_gen(*rw) + 1);
	if (!atomic_compare_exchange_strong(&rec(st, idx)->word, rw, n))
		return false;
	*rw = n;
	if (s)
		set_owner(st, idx, n, start);
	return true;
}

/* Claims a FREE record with intent s.  Returns its index, 0 if none. */
static uint32_t claim(struct bw_state *st, uint32_t didx, unsigned s,
		      uint32_t pid, uint64_t start, uint64_t *rw)
{
	uint32_t h = claim_hint;

	if (!h) /* spread threads over the table */
		h = (uint32_t)((uintptr_t)&claim_hint >> 4) * 2654435761u;

	for (uint32_t n = 0; n < BW_STATE_HOLDS; n++) {
		uint32_t i = (h + n) & (BW_STATE_HOLDS - 1);
		uint64_t w;

		if (i == 0)
			continue;
		w = atomic_load_explicit(&st->holds[i].word,
					 memory_order_relaxed);
		if (hw_state(w) != ST_FREE)
			continue;
		uint64_t nw = hw_make(s, didx, pid, hw_gen(w) + 1);
		if (!atomic_compare_exchange_strong(&st->holds[i].word, &w, nw))
			continue;
		/* The next claim starts past us; a release puts the hint
		 * back here (warm cache line). */
		claim_hint = i + 1;
		set_owner(st, i, nw, start);
		*rw = nw;
		return i;
	}
	return 0;
}

/* ---- liveness and the sweep ----------------------------------------------- */

#define PID_CACHE 32
struct pid_verdict {
	uint32_t pid;
	bool gone;  /* ESRCH or zombie */
	bool known; /* start read */
	uint64_t start;
};

/* I5: whether the owner of record word w (record idx) is dead. */
static bool owner_dead(struct bw_state *st, uint32_t idx, uint64_t w,
		       struct pid_verdict *cache, int *ncache)
{
	uint32_t pid = hw_pid(w), me;
	uint64_t own = atomic_load(&rec(st, idx)->owner), mystart;
	uint64_t rstart = (own & HW_GEN_MASK) == hw_gen(w) ? own >> 24 : 0;
	struct pid_verdict *v = NULL;

	if (pid == 0)
		return true;
	me = self(&mystart);
	/* A pid of another pid namespace names some other process here:
	 * never judged by it (the hold waits for a sweeper of its own
	 * namespace).  An unknown namespace (0, or an older generation)
	 * is judged as before. */
	uint64_t nsw = atomic_load(&rec(st, idx)->ticket);
	uint32_t rns = (nsw & HW_GEN_MASK) == hw_gen(w) ? (uint32_t)(nsw >> 32)
							: 0;
	uint32_t myns = atomic_load_explicit(&self_ns, memory_order_relaxed);
	if (rns && myns && rns != myns)
		return false;
	if (pid == me)
		return rstart && mystart && rstart != mystart;
	for (int i = 0; i < *ncache; i++)
		if (cache[i].pid == pid)
			v = &cache[i];
	if (!v) {
		struct pid_verdict tmp = { .pid = pid };
		bool z = false;

		tmp.gone = bw_sys.kill((pid_t)pid, 0) == -ESRCH;
		if (!tmp.gone) {
			tmp.known = proc_stat(pid, &tmp.start, &z) &&
				    tmp.start != 0;
			tmp.gone = z;
		}
		if (*ncache < PID_CACHE) {
			cache[*ncache] = tmp;
			v = &cache[(*ncache)++];
		} else {
			cache[PID_CACHE - 1] = tmp;
			v = &cache[PID_CACHE - 1];
		}
	}
	if (v->gone)
		return true;
	return v->known && rstart && v->start != rstart;
}

/* A dead owner's intent w on record idx: completed when committed (I3),
 * else rolled back.  Returns the record's word afterwards. */
static uint64_t recover(struct bw_state *st, uint32_t idx, uint64_t w)
{
	uint64_t bw = atomic_load(&st->dests[hw_dest(w)].bh_word);
	unsigned from = intent_from[hw_state(w)];
	uint64_t back;

	if (bh_last(bw) == idx && bh_lgen(bw) == (hw_gen(w) & BH_LGEN_MASK))
		complete(st, idx, w);
	back = from == ST_FREE
		       ? hw_make(ST_FREE, 0, 0, hw_gen(w))
		       : hw_make(from, hw_dest(w), hw_pid(w), hw_gen(w));
	atomic_compare_exchange_strong(&rec(st, idx)->word, &w, back);
	return atomic_load(&rec(st, idx)->word);
}

/* I4: frees stable record idx (word w: HELD, SHARED or WAITING of a dead
 * owner) with us as the new owner.  Returns true if we freed it. */
static bool reclaim(struct bw_state *st, uint32_t idx, uint64_t w)
{
	static const uint8_t how[4] = {
		[ST_HELD] = ST_I_REL,
		[ST_WAITING] = ST_I_LEAVE,
		[ST_SHARED] = ST_I_SREL,
	};
	unsigned s = hw_state(w);
	uint64_t start, rw;
	uint32_t pid = self(&start);
	struct bh b;

	if (s > ST_SHARED || !how[s])
		return false;
	rw = hw_make(how[s], hw_dest(w), pid, hw_gen(w) + 1);
	if (!atomic_compare_exchange_strong(&rec(st, idx)->word, &w, rw))
		return false;
	set_owner(st, idx, rw, start);
	bh_of_dest(&b, st, hw_dest(w));
	commit(&b, idx, rw, 0, 0);
	if (s == ST_WAITING)
		advance(&b, UINT64_MAX);
	else
		wake_bits(&b, room_mask(&b));
	return true;
}

#define SCAN_MAX 64
struct cand {
	uint64_t word, ino;
	uint32_t idx;
	bool found;
};

/* Marks the candidates whose socket inode some process of ours has open
 * (/proc/<pid>/fd/N -> "socket:[ino]").  Returns false if /proc cannot
 * be read at all. */
static bool proc_scan(struct cand *c, int n)
{
	char dbuf[1024] __attribute__((aligned(8)));
	char fbuf[1024] __attribute__((aligned(8)));
	int left = 0, pfd;
	long got;

	for (int i = 0; i < n; i++)
		left += !c[i].found;
	pfd = sys_open_at(AT_FDCWD, "/proc", O_RDONLY | O_DIRECTORY);
	if (pfd < 0)
		return false;
	while (left > 0 &&
	       (got = bw_sys.getdents64(pfd, dbuf, sizeof(dbuf))) > 0) {
		for (long off = 0; off < got && left > 0;) {
			/* struct linux_dirent64: ino 8, off 8, reclen 2,
			 * type 1, name. */
			unsigned short reclen;
			const char *name = dbuf + off + 19;
			char path[40], *p;
			int ffd;
			long fgot;

			memcpy(&reclen, dbuf + off + 16, sizeof(reclen));
			off += reclen;
			if (name[0] < '1' || name[0] > '9' || strlen(name) > 10)
				continue;
			p = path;
			memcpy(p, name, strlen(name));
			p += strlen(name);
			memcpy(p, "/fd", 4);
			ffd = sys_open_at(pfd, path, O_RDONLY | O_DIRECTORY);
			if (ffd < 0)
				continue; /* not ours, or gone */
			while (left > 0 &&
			       (fgot = bw_sys.getdents64(ffd, fbuf,
							 sizeof(fbuf))) > 0) {
				for (long fo = 0; fo < fgot && left > 0;) {
					char lnk[64];
					const char *fn = fbuf + fo + 19;
					unsigned short rl;
					long ln;
					uint64_t ino = 0;

					memcpy(&rl, fbuf + fo + 16, sizeof(rl));
					fo += rl;
					if (fn[0] < '0' || fn[0] > '9')
						continue;
					ln = bw_sys.readlinkat(ffd, fn, lnk,
							       sizeof(lnk) - 1);
					if (ln < 9 ||
					    memcmp(lnk, "socket:[", 8) != 0)
						continue;
					for (long k = 8;
					     k < ln && lnk[k] >= '0' &&
					     lnk[k] <= '9';
					     k++)
						ino = ino * 10 +
						      (uint64_t)(lnk[k] - '0');
					for (int i = 0; i < n; i++)
						if (!c[i].found &&
						    c[i].ino == ino) {
							c[i].found = true;
							left--;
						}
				}
			}
			sys_close(ffd);
		}
	}
	sys_close(pfd);
	return true;
}

unsigned bw_bulkhead_sweep(struct bw_state *st, struct bw_dest *d,
			   uint64_t now_ns, bool force)
{
	struct pid_verdict cache[PID_CACHE];
	struct cand cands[SCAN_MAX];
	int ncache = 0, ncand = 0;
	unsigned freed = 0, shared = 0;
	uint32_t didx = BW_STATE_SLOTS;

	if (!st || !st->holds || !st->dests)
		return 0;
	if (d) {
		didx = bw_state_index(st, d);
		if (didx >= BW_STATE_SLOTS)
			return 0;
		if (!force) {
			uint64_t last = atomic_load(&d->bh_sweep_ns);

			if (now_ns - last < BW_BULKHEAD_SWEEP_NS && last)
				return 0;
			if (!atomic_compare_exchange_strong(&d->bh_sweep_ns,
							    &last, now_ns))
				return 0;
		}
	}
	for (uint32_t i = 1; i < BW_STATE_HOLDS; i++) {
		uint64_t w = atomic_load_explicit(&st->holds[i].word,
						  memory_order_acquire);
		unsigned s = hw_state(w);

		if (s == ST_FREE || (d && hw_dest(w) != didx))
			continue;
		if (s != ST_SHARED) {
			if (!owner_dead(st, i, w, cache, &ncache))
				continue;
			if (is_intent(s)) {
				uint64_t was = w;

				w = recover(st, i, w);
				s = hw_state(w);
				/* I5: a newer generation is a new owner,
				 * alive or not: never judged here. */
				if (s == ST_FREE || is_intent(s) ||
				    hw_gen(w) != hw_gen(was))
					continue;
			}
		}
		if (s == ST_WAITING) {
			freed += reclaim(st, i, w);
			continue;
		}
		uint64_t ino = atomic_load(&st->holds[i].ino);
		if (!ino) {
			freed += reclaim(st, i, w);
			continue;
		}
		if (ncand < SCAN_MAX)
			cands[ncand++] = (struct cand){
				.word = w, .ino = ino, .idx = i, .found = false
			};
		else
			shared++; /* next sweep */
	}
	if (ncand && !proc_scan(cands, ncand))
		for (int i = 0; i < ncand; i++)
			cands[i].found = false; /* no /proc: free them */
	for (int i = 0; i < ncand; i++) {
		uint64_t w = cands[i].word;

		if (!cands[i].found) {
			freed += reclaim(st, cands[i].idx, w);
			continue;
		}
		shared++;
		if (hw_state(w) == ST_HELD) {
			/* Its owner died, another process holds the socket
			 * (a forked or exec'd child): keep the slot. */
			uint64_t n = hw_make(ST_SHARED, hw_dest(w), 0,
					     hw_gen(w) + 1);
			atomic_compare_exchange_strong(
				&rec(st, cands[i].idx)->word, &w, n);
		}
	}
	if (d) {
		atomic_store(&d->bh_shared, shared);
		/* The counts checked against the records they stand for
		 * (one more pass, as often as the sweep runs): a corrupt
		 * count is repaired here, not only when an operation finds
		 * it impossible. */
		if (rebuild(st, didx)) {
			struct bh b;

			note_corrupt(d);
			bh_of_dest(&b, st, didx);
			wake_bits(&b, room_mask(&b));
		}
	}
	return freed;
}

/* ---- acquire and release -------------------------------------------------- */

static unsigned hist_bucket(uint64_t wait_ns)
{
	uint64_t us = wait_ns / 1000;
	unsigned b = us ? 63u - (unsigned)__builtin_clzll(us) : 0;

	return b < BW_STATE_HIST_BUCKETS ? b : BW_STATE_HIST_BUCKETS - 1;
}

static void note_acquired(struct bw_dest *d, struct bw_slot *out,
			  uint64_t wait_ns)
{
	atomic_fetch_add_explicit(&d->bh_acquired, 1, memory_order_relaxed);
	/* An acquire that did not wait is bucket 0 by difference (view):
	 * one contended write less per connect. */
	if (wait_ns)
		atomic_fetch_add_explicit(
			&d->bh_wait_hist[hist_bucket(wait_ns)], 1,
			memory_order_relaxed);
	out->wait_ns = wait_ns;
}

static int refuse(struct bw_dest *d, const struct bw_settings *s)
{
	atomic_fetch_add_explicit(&d->bh_rejected, 1, memory_order_relaxed);
	return -(s->bulkhead_errno > 0 ? s->bulkhead_errno : ECONNREFUSED);
}

/* A waiter that no wake-up reached sleeps at most this long before it
 * looks again (a waker that died between its change and its wake, a
 * sweep to run for a dead holder or waiter).  Not a poll: a live waker
 * always wakes the waiters it admits. */
#define RECHECK_NS (100ull * 1000000)

/* Sleeps on b's wake word while it still reads v, on bits, until
 * CLOCK_MONOTONIC reaches until_ns (absolute).  Returns 0 or -errno
 * (-EINTR: a signal handler ran; -ETIMEDOUT; -EAGAIN: v changed). */
static int sleep_on(struct bh *b, uint32_t v, uint32_t bits, uint64_t until_ns)
{
	struct timespec now, ts;
	uint64_t left, n;

	n = bw_clock_ns();
	left = until_ns > n ? until_ns - n : 0;
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	n = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec + left;
	ts.tv_sec = (time_t)(n / 1000000000ull);
	ts.tv_nsec = (long)(n % 1000000000ull);
	return bw_sys.futex((uint32_t *)b->wake,
			    FUTEX_WAIT_BITSET | b->futex_flags, v, &ts, bits);
}

/* Leaves the queue: our record (idx, state WAITING in *rw) goes FREE
 * and the waiting count down by one.  False if the record is not ours
 * any more (a sweeper judged us dead: it did the same). */
static bool leave(struct bh *b, uint32_t idx, uint64_t *rw, uint32_t t,
		  uint32_t pid, uint64_t start)
{
	uint64_t iw = hw_make(ST_I_LEAVE, b->didx, 0, 0);

	if (b->st && !retarget(b->st, idx, rw, ST_I_LEAVE, pid, start))
		return false;
	commit(b, idx, b->st ? *rw : iw, 0, 0);
	advance(b, t);
	return true;
}

/*
 * One look at b for ticket t (record idx, WAITING in *rw; 0: private),
 * with bh_word w and serving s as read: takes a slot when the ticket is
 * admitted (FIFO: fewer tickets before it still queued than slots free),
 * or when overtake (the no-progress rule) and a slot is free.  Returns 0
 * taken (*rw HELD, serving advanced), 1 not now, -1 the record is not ours
 * any more.  Shared by the blocking wait and the non-blocking try.
 */
static int try_take(struct bh *b, uint32_t idx, uint64_t *rw, uint32_t t,
		    uint32_t max, uint64_t w, uint32_t s, bool overtake,
		    uint32_t pid, uint64_t start)
{
	uint32_t act = bh_active(w);

	if (act >= max ||
	    !((int32_t)(t - s) < (int32_t)(max - act) || overtake))
		return 1;
	uint64_t iw = hw_make(ST_I_TAKE, b->didx, 0, 0);

	if (b->st && !retarget(b->st, idx, rw, ST_I_TAKE, pid, start))
		return -1;
	if (commit(b, idx, b->st ? *rw : iw, max, 0) == 0) {
		if (b->st)
			*rw = completed(*rw);
		/* Wakes whom room left over admits. */
		advance(b, t);
		return 0;
	}
	if (b->st)
		retarget(b->st, idx, rw, 0, pid, start);
	return 1;
}

/*
 * Waits on b for a slot with record idx (0: private) in state WAITING
 * (*rw) holding ticket t.  Returns 0 with the slot taken (*rw HELD),
 * -EBUSY when the deadline passed or -EINTR when a signal handler
 * without SA_RESTART ran (the record left the queue: FREE).  Ticket t
 * may take a slot when fewer than the free slots' number of tickets
 * before it are still queued (FIFO); one that found no progress at all
 * in two re-checks (RECHECK_NS apart) while slots are free takes one
 * out of order: the waiters ahead are stopped or dead.
 */
static int wait_slot(struct bh *b, uint32_t idx, uint64_t *rw, uint32_t t,
		     uint32_t max, uint64_t t0, uint64_t deadline,
		     uint64_t *waited)
{
	uint32_t pid = 0, stuck_at = 0;
	uint64_t start = 0;
	bool rechecked = false, overtake = false;

	if (b->st)
		pid = self(&start);
	for (;;) {
		uint32_t v = atomic_load(b->wake);
		uint64_t w = atomic_load(b->word);
		uint32_t s = atomic_load(b->serving);
		uint64_t now = bw_clock_ns();
		int rc;

		/* Raised meanwhile (bw_bulkhead_acquire): never lowered for
		 * a waiter, as a lower limit never revokes a slot. */
		uint32_t now_max = atomic_load(b->max);
		if (now_max > max)
			max = now_max;
		int tk = try_take(b, idx, rw, t, max, w, s, overtake, pid,
				  start);
		if (tk < 0)
			return -EBUSY;
		if (tk == 0) {
			*waited = now - t0;
			return 0;
		}
		overtake = false;
		if (now >= deadline) {
			*waited = now - t0;
			leave(b, idx, rw, t, pid, start);
			return -EBUSY;
		}
		if (b->st)
			bw_bulkhead_sweep(b->st, b->d, now, false);
		rc = sleep_on(b, v, wait_bit(t, s),
			      deadline - now > RECHECK_NS ? now + RECHECK_NS
							  : deadline);
		if (rc == -EINTR && !bw_sigrule_restarts()) {
			*waited = bw_clock_ns() - t0;
			leave(b, idx, rw, t, pid, start);
			return -EINTR;
		}
		if (rc == -ETIMEDOUT && bw_clock_ns() < deadline) {
			atomic_fetch_add_explicit(&bw__bulkhead_rechecks, 1,
						  memory_order_relaxed);
			/* No wake for RECHECK_NS: progress since the last
			 * re-check, or free slots nobody takes? */
			uint32_t s2 = atomic_load(b->serving);

			overtake = rechecked && s2 == stuck_at;
			rechecked = true;
			stuck_at = s2;
		}
	}
}

/* Whether a connect that found the bulkhead full may wait (bulkhead.h,
 * struct bw_bh_wait): a blocking socket is asked of the kernel only now
 * (a system call saved on every connect that finds a free slot). */
static bool can_wait(struct bw_bh_wait may_wait)
{
	if (may_wait.how != BW_BH_WAIT_IF_BLOCKING)
		return may_wait.how == BW_BH_WAIT_ALWAYS;
	int fl = bw_sys.fcntl(may_wait.fd, F_GETFL, 0);
	return fl >= 0 && !(fl & O_NONBLOCK);
}

static void ticket_fill(struct bw_bh_ticket *tk, uint8_t kind, uint32_t idx,
			uint64_t rw, uint32_t t, uint32_t didx, uint32_t forks,
			uint64_t now_ns, const struct bw_settings *s);

/* scope=process: the same counts in private memory, no records. */
static int acquire_private(struct bw_dest *d, uint32_t didx,
			   const struct bw_settings *s, uint32_t max,
			   struct bw_bh_wait may_wait, uint64_t now_ns,
			   struct bw_slot *out, struct bw_bh_ticket *tk)
{
	struct bh b;
	uint64_t waited = 0, rw = 0;
	uint32_t t;

	bh_of_priv(&b, d, didx);
	if (atomic_load_explicit(b.max, memory_order_relaxed) != max)
		atomic_store_explicit(b.max, max, memory_order_relaxed);
	if (commit(&b, 0, hw_make(ST_I_ACQ, didx, 0, 0), max, 0) == 0) {
		out->kind = BW_SLOT_PROCESS;
		note_acquired(d, out, 0);
		return 0;
	}
	atomic_fetch_add_explicit(&d->bh_saturated, 1, memory_order_relaxed);
	bool blocking = s->bulkhead_wait_ns && can_wait(may_wait);
	if (s->bulkhead_wait_ns == 0 || (!blocking && !tk))
		return refuse(d, s);
	t = atomic_fetch_add(b.ticket, 1);
	if (commit(&b, 0, hw_make(ST_I_ENQ, didx, 0, 0), max,
		   s->bulkhead_queue) < 0) {
		advance(&b, t); /* our ticket is void */
		return refuse(d, s);
	}
	if (!blocking) {
		ticket_fill(tk, BW_SLOT_PROCESS, 0, 0, t, didx, out->forks,
			    now_ns, s);
		return 1;
	}
	int rc = wait_slot(&b, 0, &rw, t, max, now_ns,
			   now_ns + s->bulkhead_wait_ns, &waited);
	if (rc < 0) {
		out->wait_ns = waited;
		return rc == -EINTR ? rc : refuse(d, s);
	}
	out->kind = BW_SLOT_PROCESS;
	note_acquired(d, out, waited);
	return 0;
}

/* A queued non-blocking connect's ticket: what the blocking wait keeps
 * on its stack, kept in the connection instead (bw_bulkhead_try). */
static void ticket_fill(struct bw_bh_ticket *tk, uint8_t kind, uint32_t idx,
			uint64_t rw, uint32_t t, uint32_t didx, uint32_t forks,
			uint64_t now_ns, const struct bw_settings *s)
{
	*tk = (struct bw_bh_ticket){
		.kind = kind,
		.idx = idx,
		.rw = rw,
		.t = t,
		.didx = didx,
		.forks = forks,
		.t0_ns = now_ns,
		.check_ns = now_ns,
		.deadline_ns = now_ns + s->bulkhead_wait_ns,
	};
}

static int acquire(struct bw_state *st, struct bw_dest *d,
		   const struct bw_settings *s, struct bw_bh_wait may_wait,
		   uint64_t sock_ino, uint64_t now_ns, struct bw_slot *out,
		   struct bw_bh_ticket *tk)
{
	uint32_t max, didx, idx, pid, t;
	uint64_t start, rw, waited = 0;
	struct bh b;
	int rc = 0;

	*out = (struct bw_slot){ .kind = BW_SLOT_NONE };
	if (!s || !s->bulkhead_max)
		return 0;
	didx = bw_state_index(st, d);
	if (didx >= BW_STATE_SLOTS)
		return 0;
	max = s->bulkhead_max;
	if (max > BW_POLICY_COUNT_MAX)
		max = BW_POLICY_COUNT_MAX;
	uint32_t was = atomic_load_explicit(&d->bh_max, memory_order_relaxed);
	if (was != max) {
		atomic_store_explicit(&d->bh_max, max, memory_order_relaxed);
		/* A raised limit (a policy pushed, shim/live.c) admits
		 * waiters now: they take the larger of theirs and this. */
		if (max > was && s->bulkhead_scope != BW_SCOPE_PROCESS &&
		    st->holds) {
			struct bh wb;
			bh_of_dest(&wb, st, didx);
			wake_bits(&wb, room_mask(&wb));
		}
	}
	out->dest = didx;
	out->forks = atomic_load_explicit(&fork_count, memory_order_relaxed);
	if (s->bulkhead_scope == BW_SCOPE_PROCESS) {
		rc = acquire_private(d, didx, s, max, may_wait, now_ns, out,
				     tk);
		goto out;
	}
	if (!st->holds)
		goto out;
	pid = self(&start);
	/* Closed shared connections: looked for every BW_BULKHEAD_SHARED_NS
	 * (each look may scan /proc), or sooner when the bulkhead is full. */
	if (atomic_load_explicit(&d->bh_shared, memory_order_relaxed) &&
	    now_ns - atomic_load_explicit(&d->bh_sweep_ns,
					  memory_order_relaxed) >=
		    BW_BULKHEAD_SHARED_NS)
		bw_bulkhead_sweep(st, d, now_ns, false);
	idx = claim(st, didx, ST_I_ACQ, pid, start, &rw);
	if (!idx) {
		atomic_fetch_add_explicit(&st->hdr->bh_hold_full, 1,
					  memory_order_relaxed);
		goto out; /* passes uncounted, like a full state table */
	}
	if (sock_ino ||
	    atomic_load_explicit(&st->holds[idx].ino, memory_order_relaxed))
		atomic_store_explicit(&st->holds[idx].ino, sock_ino,
				      memory_order_release);
	if (commit_own(st, d, idx, rw, max) == 0)
		goto got;
	bh_of_dest(&b, st, didx);
	if (commit(&b, idx, rw, max, 0) == 0)
		goto got;
	atomic_fetch_add_explicit(&d->bh_saturated, 1, memory_order_relaxed);
	uint64_t bh_seen = atomic_load(&d->bh_word);
	/* Again after a sweep, which may have freed slots or rebuilt a
	 * corrupt count (I7). */
	if (bw_bulkhead_sweep(st, d, now_ns, false) ||
	    atomic_load(&d->bh_word) != bh_seen)
		if (commit(&b, idx, rw, max, 0) == 0)
			goto got;
	bool blocking = s->bulkhead_wait_ns && can_wait(may_wait);
	if (s->bulkhead_wait_ns == 0 || (!blocking && !tk)) {
		retarget(st, idx, &rw, 0, pid, start);
		rc = refuse(d, s);
		goto out;
	}
	t = atomic_fetch_add(b.ticket, 1);
	if (!retarget(st, idx, &rw, ST_I_ENQ, pid, start) ||
	    commit(&b, idx, rw, max, s->bulkhead_queue) < 0) {
		retarget(st, idx, &rw, 0, pid, start);
		advance(&b, t); /* our ticket is void */
		rc = refuse(d, s);
		goto out;
	}
	rw = completed(rw);
	if (!blocking) {
		/* Queued; the program's waits try the ticket. */
		ticket_fill(tk, BW_SLOT_SHARED, idx, rw, t, didx, out->forks,
			    now_ns, s);
		rc = 1;
		goto out;
	}
	rc = wait_slot(&b, idx, &rw, t, max, now_ns,
		       now_ns + s->bulkhead_wait_ns, &waited);
	if (rc < 0) {
		out->wait_ns = waited;
		/* A signal cut the wait short: not a refusal (the connect
		 * fails with EINTR, as the kernel's would). */
		if (rc != -EINTR)
			rc = refuse(d, s);
		goto out;
	}
	out->kind = BW_SLOT_SHARED;
	out->hold = idx;
	out->word = rw;
	note_acquired(d, out, waited);
	goto out;
got:
	out->kind = BW_SLOT_SHARED;
	out->hold = idx;
	out->word = completed(rw);
	note_acquired(d, out, 0);
out:
	return rc;
}

int bw_bulkhead_acquire(struct bw_state *st, struct bw_dest *d,
			const struct bw_settings *s, struct bw_bh_wait may_wait,
			uint64_t sock_ino, uint64_t now_ns, struct bw_slot *out)
{
	return acquire(st, d, s, may_wait, sock_ino, now_ns, out, NULL);
}

int bw_bulkhead_acquire_nb(struct bw_state *st, struct bw_dest *d,
			   const struct bw_settings *s,
			   struct bw_bh_wait may_wait, uint64_t now_ns,
			   struct bw_slot *out, struct bw_bh_ticket *tk)
{
	tk->kind = BW_SLOT_NONE;
	return acquire(st, d, s, may_wait, 0, now_ns, out, tk);
}

/* The bulkhead a ticket waits in. */
static bool ticket_bh(struct bw_state *st, const struct bw_bh_ticket *tk,
		      struct bh *b)
{
	if (tk->kind == BW_SLOT_PROCESS) {
		if (!st || !st->dests)
			return false;
		bh_of_priv(b, &st->dests[tk->didx & HW_DEST_MASK], tk->didx);
		return true;
	}
	if (tk->kind != BW_SLOT_SHARED || !st || !st->holds || !st->dests)
		return false;
	bh_of_dest(b, st, tk->didx);
	return true;
}

int bw_bulkhead_try(struct bw_state *st, const struct bw_settings *s,
		    struct bw_bh_ticket *tk, uint64_t now_ns,
		    struct bw_slot *out)
{
	struct bh b;
	uint32_t pid = 0;
	uint64_t start = 0;
	int rc = 1;

	*out = (struct bw_slot){ .kind = BW_SLOT_NONE };
	if (!ticket_bh(st, tk, &b)) {
		tk->kind = BW_SLOT_NONE;
		rc = 0; /* nothing to wait for: passes uncounted */
		goto out;
	}
	if (b.st)
		pid = self(&start);
	uint32_t max = atomic_load(b.max);
	bool overtake = false;
	if (now_ns - tk->check_ns >= RECHECK_NS) {
		/* The no-progress rule of the blocking wait, at the same
		 * pace: free slots and no progress over two re-checks. */
		uint32_t s2 = atomic_load(b.serving);
		overtake = tk->rechecked && s2 == tk->stuck_at;
		tk->rechecked = 1;
		tk->stuck_at = s2;
		tk->check_ns = now_ns;
		if (b.st)
			bw_bulkhead_sweep(b.st, b.d, now_ns, false);
	}
	for (int pass = 0; pass < 2; pass++) {
		int t = try_take(&b, tk->idx, &tk->rw, tk->t, max,
				 atomic_load(b.word), atomic_load(b.serving),
				 overtake, pid, start);
		if (t < 0) {
			/* A sweeper judged us dead and freed the record. */
			tk->kind = BW_SLOT_NONE;
			rc = refuse(b.d, s);
			goto out;
		}
		if (t == 0) {
			out->kind = tk->kind;
			out->dest = tk->didx;
			out->forks = tk->forks;
			if (tk->kind == BW_SLOT_SHARED) {
				out->hold = tk->idx;
				out->word = tk->rw;
			}
			note_acquired(b.d, out, now_ns - tk->t0_ns);
			tk->kind = BW_SLOT_NONE;
			rc = 0;
			goto out;
		}
		if (!overtake)
			break;
		overtake = false;
	}
	if (now_ns >= tk->deadline_ns) {
		out->wait_ns = now_ns - tk->t0_ns;
		leave(&b, tk->idx, &tk->rw, tk->t, pid, start);
		tk->kind = BW_SLOT_NONE;
		rc = refuse(b.d, s);
	}
out:
	return rc;
}

void bw_bulkhead_leave(struct bw_state *st, struct bw_bh_ticket *tk)
{
	struct bh b;
	uint32_t pid = 0;
	uint64_t start = 0;

	if (tk->kind && ticket_bh(st, tk, &b)) {
		if (b.st)
			pid = self(&start);
		leave(&b, tk->idx, &tk->rw, tk->t, pid, start);
	}
	tk->kind = BW_SLOT_NONE;
}

void bw_bulkhead_release(struct bw_state *st, struct bw_slot *slot)
{
	struct bh b;
	struct bw_dest *d;
	uint64_t w, rw, start;
	uint32_t pid;

	if (!slot || slot->kind == BW_SLOT_NONE || !st || !st->dests)
		goto out;
	if (slot->kind == BW_SLOT_PROCESS) {
		bh_of_priv(&b, &st->dests[slot->dest & HW_DEST_MASK],
			   slot->dest);
		commit(&b, 0, hw_make(ST_I_REL, slot->dest, 0, 0), 0, 0);
		wake_bits(&b, room_mask(&b));
		goto out;
	}
	if (!st->holds)
		goto out;
	w = slot->word;
	if (hw_state(w) != ST_HELD)
		goto out;
	d = &st->dests[hw_dest(w) & HW_DEST_MASK]; /* I6 */
	if (slot->forks !=
	    atomic_load_explicit(&fork_count, memory_order_relaxed)) {
		/* A fork since: a child may hold the socket.  The sweep
		 * frees the slot when no process has it open any more. */
		uint64_t n = hw_make(ST_SHARED, hw_dest(w), 0, hw_gen(w) + 1);
		if (atomic_compare_exchange_strong(&rec(st, slot->hold)->word,
						   &w, n))
			atomic_fetch_add(&d->bh_shared, 1);
		goto out;
	}
	pid = self(&start);
	rw = hw_make(ST_I_REL, hw_dest(w), pid, hw_gen(w) + 1);
	if (!atomic_compare_exchange_strong(&rec(st, slot->hold)->word, &w, rw))
		goto out; /* not ours any more (I4): nothing to give back */
	set_owner(st, slot->hold, rw, start);
	claim_hint = slot->hold;
	if (commit_own(st, d, slot->hold, rw, 0) != 0) {
		bh_of_dest(&b, st, hw_dest(w));
		commit(&b, slot->hold, rw, 0, 0);
	}
	if (bh_waiting(atomic_load(&d->bh_word))) {
		/* Wakes only whom the freed slot admits. */
		bh_of_dest(&b, st, hw_dest(w));
		wake_bits(&b, room_mask(&b));
	}
out:
	if (slot)
		*slot = (struct bw_slot){ .kind = BW_SLOT_NONE };
}

void bw_bulkhead_forked(bool child)
{
	atomic_fetch_add(&fork_count, 1);
	if (child)
		atomic_store(&self_pid, 0);
}

void bw_bulkhead_note_inode(struct bw_state *st, const struct bw_slot *slot,
			    int fd)
{
	if (!slot || slot->kind != BW_SLOT_SHARED || !st || !st->holds ||
	    slot->hold == 0 || slot->hold >= BW_STATE_HOLDS)
		return;
	struct bw_bh_hold *h = rec(st, slot->hold);
	/* Still the hold this connection took (not released and reused). */
	if (atomic_load(&h->word) != slot->word || atomic_load(&h->ino))
		return;
	uint64_t ino = bw_bulkhead_sock_ino(fd);
	if (ino)
		atomic_store(&h->ino, ino);
}

uint64_t bw_bulkhead_sock_ino(int fd)
{
	struct stat sb;

	if (bw_sys.fstat(fd, &sb) == 0 && S_ISSOCK(sb.st_mode))
		return (uint64_t)sb.st_ino;
	return 0;
}

void bw_bulkhead_view(const struct bw_dest *d, struct bw_bulkhead_view *v)
{
	uint64_t w = atomic_load(&d->bh_word);
	uint64_t tot;

	memset(v, 0, sizeof(*v));
	v->active = bh_active(w);
	v->waiting = bh_waiting(w);
	v->max = atomic_load_explicit(&d->bh_max, memory_order_relaxed);
	v->acquired =
		atomic_load_explicit(&d->bh_acquired, memory_order_relaxed);
	v->rejected =
		atomic_load_explicit(&d->bh_rejected, memory_order_relaxed);
	v->saturated =
		atomic_load_explicit(&d->bh_saturated, memory_order_relaxed);
	v->corrupt = atomic_load_explicit(&d->bh_corrupt, memory_order_relaxed);
	tot = v->acquired + v->rejected;
	v->rejection_rate = tot ? (double)v->rejected / (double)tot : 0.0;
	uint64_t waited = 0;
	for (int i = 0; i < BW_STATE_HIST_BUCKETS; i++) {
		v->wait_hist[i] = atomic_load_explicit(&d->bh_wait_hist[i],
						       memory_order_relaxed);
		waited += v->wait_hist[i];
	}
	/* bh_wait_hist counts waits only; acquires without one are < 1 µs. */
	if (v->acquired > waited)
		v->wait_hist[0] += v->acquired - waited;
}

uint32_t bw_bulkhead_process_active(const struct bw_state *st,
				    const struct bw_dest *d)
{
	uint32_t i = bw_state_index(st, d);

	if (i >= BW_STATE_SLOTS)
		return 0;
	return bh_active(atomic_load(&priv[i].word));
}

bool bw_bulkhead_full(const struct bw_state *st, const struct bw_dest *d,
		      const struct bw_settings *s)
{
	uint32_t act = s->bulkhead_scope == BW_SCOPE_PROCESS
			       ? bw_bulkhead_process_active(st, d)
			       : bh_active(atomic_load_explicit(
					 &d->bh_word, memory_order_relaxed));
	return s->bulkhead_max > 0 && act >= s->bulkhead_max;
}
