/* SPDX-License-Identifier: MIT */
/*
 * core/bulkhead.h: the bulkhead of bulwark-policy(7) (bulkhead.* keys): at most
 * bulkhead.max connections open at once to one destination (or group),
 * counted across every process sharing the state (scope=shared) or in this
 * process (scope=process), with a bounded, ordered wait.  A slot taken by
 * bw_bulkhead_acquire is held until bw_bulkhead_release; slots of a process
 * that dies (SIGKILL included) come back within a second, found by a sweep
 * that any process meeting a full bulkhead runs.  No daemon, no lock, no
 * malloc; errno is never changed.  Design and invariants: core/bulkhead.c.
 */
#ifndef BW_CORE_BULKHEAD_H
#define BW_CORE_BULKHEAD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"
#include "policy/policy.h"

/* A dead holder's slot is looked for at most this often per destination
 * (and only while the bulkhead is full, someone waits, or a shared
 * connection was closed), so a killed holder's slot returns within
 * 100 ms of being needed, well inside the second bulwark(1) FILES promises. */
#define BW_BULKHEAD_SWEEP_NS (100ull * 1000000)
/* A connection closed after a fork (SHARED slot) is looked for this often
 * by acquires that do not find the bulkhead full: each look may scan
 * /proc/<pid>/fd of the user's processes (ms), so not every 100 ms. */
#define BW_BULKHEAD_SHARED_NS (1000ull * 1000000)

/* What a slot is (bw_slot.kind). */
enum bw_slot_kind {
	BW_SLOT_NONE = 0,   /* nothing held: no bulkhead, or passed uncounted */
	BW_SLOT_SHARED = 1, /* a hold record in the segment */
	BW_SLOT_PROCESS = 2, /* this process's private counter */
};

/* One acquired slot; lives in the caller's per-connection record (the fd
 * table's bw_conn).  Plain data: copy it, never share it between two
 * connections.  Zeroed = nothing held. */
struct bw_slot {
	uint8_t kind; /* enum bw_slot_kind */
	uint8_t pad[3];
	uint32_t hold;	  /* hold record index (SHARED) */
	uint32_t dest;	  /* state slot index of the destination */
	uint32_t forks;	  /* bw_bulkhead_forked() count when acquired */
	uint64_t word;	  /* the hold record's word when acquired */
	uint64_t wait_ns; /* how long the acquire waited (also when it was
			   * refused in the end) */
};

/* Metrics of one destination (bulwark(1) status). */
struct bw_bulkhead_view {
	uint32_t active, max, waiting;
	uint64_t acquired, rejected, saturated;
	uint32_t corrupt;      /* impossible counts found (and rebuilt) */
	double rejection_rate; /* rejected / (acquired + rejected), 0 if none */
	/* bucket i: waits of [2^i, 2^(i+1)) µs, bucket 0 also < 1 µs and
	 * every acquire that did not wait (bh_wait_hist itself counts waits
	 * only) */
	uint64_t wait_hist[BW_STATE_HIST_BUCKETS];
};

/*
 * Whether a connect that finds the bulkhead full may wait for a slot (the
 * may_wait of bw_bulkhead_acquire and bw_bulkhead_acquire_nb): never,
 * always (up to bulkhead.wait), or if fd is a blocking socket, which is
 * asked of the kernel only when the bulkhead is full (a system call saved
 * on every connect that finds a free slot).
 */
enum bw_bh_wait_how {
	BW_BH_WAIT_NEVER = 0,
	BW_BH_WAIT_ALWAYS = 1,
	BW_BH_WAIT_IF_BLOCKING = 2,
};
struct bw_bh_wait {
	enum bw_bh_wait_how how;
	int fd; /* BW_BH_WAIT_IF_BLOCKING: the socket; else -1 */
};
#define BW_BH_NEVER ((struct bw_bh_wait){ BW_BH_WAIT_NEVER, -1 })
#define BW_BH_ALWAYS ((struct bw_bh_wait){ BW_BH_WAIT_ALWAYS, -1 })
#define BW_BH_IF_BLOCKING(fd) \
	((struct bw_bh_wait){ BW_BH_WAIT_IF_BLOCKING, (fd) })

/* bw_bulkhead_acquire_nb and bw_bulkhead_try: the connect waits in the
 * queue (its ticket filled in); not an error. */
#define BW_BULKHEAD_QUEUED 1

/*
 * Takes a slot of d under s before a connect; sock_ino is the socket's
 * inode (bw_bulkhead_sock_ino), or 0 when not known yet: the connect path
 * passes 0 (an fstat saved on every connect) and the fork handler fills
 * it in with bw_bulkhead_note_inode before a child can inherit the
 * socket.  A hold whose inode is unknown when its owner dies is freed at
 * once (see core/bulkhead.c "Limits").  Returns 0 with *out
 * filled (kind NONE when s has no bulkhead or the hold table is full), or
 * may_wait: BW_BH_NEVER, BW_BH_ALWAYS, or BW_BH_IF_BLOCKING(fd): wait if
 * fd is a blocking socket, which is asked of the kernel only when the
 * bulkhead is full.
 * -s->bulkhead_errno: the bulkhead is full and may not wait, the wait
 * queue is full, or bulkhead.wait ran out; -EINTR when a signal handler
 * without SA_RESTART ran during the wait (with SA_RESTART on every
 * installed handler the wait goes on to the same deadline, as the
 * kernel restarts a connect).  May sleep up to s->bulkhead_wait_ns when
 * may_wait (a blocking connect), in ticket order (FIFO); a release wakes
 * only the waiters the freed slot admits.  now_ns: CLOCK_MONOTONIC.
 * Records the metrics (an -EINTR is not a refusal).
 * AS-safe: yes (atomics, futex, kill, and /proc reads in a sweep).
 */
int bw_bulkhead_acquire(struct bw_state *st, struct bw_dest *d,
			const struct bw_settings *s, struct bw_bh_wait may_wait,
			uint64_t sock_ino, uint64_t now_ns,
			struct bw_slot *out);

/* A non-blocking connect's place in the queue (bw_bulkhead_acquire_nb),
 * kept in its connection until it takes a slot, leaves, or times out.
 * Zeroed (kind NONE) = none. */
struct bw_bh_ticket {
	uint8_t kind; /* enum bw_slot_kind of the bulkhead, NONE: none */
	uint8_t rechecked;
	uint32_t idx;	   /* hold record (SHARED), WAITING */
	uint32_t t;	   /* the ticket number */
	uint32_t didx;	   /* state slot index of the destination */
	uint32_t stuck_at; /* serving at the last re-check */
	uint32_t forks;
	uint64_t rw; /* the record's word */
	uint64_t t0_ns, check_ns, deadline_ns;
};

/*
 * bw_bulkhead_acquire for a connect that must not wait in the call (a
 * non-blocking socket; may_wait as for acquire: a blocking one still
 * waits here): when the bulkhead is full and bulkhead.wait > 0, takes a
 * ticket in the same FIFO as the blocking waiters and returns
 * BW_BULKHEAD_QUEUED with *tk
 * filled (bulkhead.queue bounds it as for them).  Otherwise as
 * bw_bulkhead_acquire: 0 with *out, or -bulkhead.errno.  AS-safe: yes.
 */
int bw_bulkhead_acquire_nb(struct bw_state *st, struct bw_dest *d,
			   const struct bw_settings *s,
			   struct bw_bh_wait may_wait, uint64_t now_ns,
			   struct bw_slot *out, struct bw_bh_ticket *tk);
/*
 * One non-blocking look for a queued ticket: 0 with *out (the slot, its
 * wait recorded), BW_BULKHEAD_QUEUED still, or -bulkhead.errno when
 * bulkhead.wait ran out (the ticket left the queue, the refusal counted).
 * Runs the no-progress rule and the sweep every 100 ms, as a blocking
 * waiter does.  The caller looks again at its own pace (the program's waits:
 * shim/async.c).  AS-safe: yes.
 */
int bw_bulkhead_try(struct bw_state *st, const struct bw_settings *s,
		    struct bw_bh_ticket *tk, uint64_t now_ns,
		    struct bw_slot *out);
/* Leaves the queue (the connect was closed or cancelled); nothing when
 * the ticket is empty.  AS-safe: yes. */
void bw_bulkhead_leave(struct bw_state *st, struct bw_bh_ticket *tk);

/*
 * Gives back the slot: the connect failed, or the last fd of the
 * connection's open file description in this process was closed.  If this
 * process forked since the slot was taken, a child may still hold the
 * socket: the slot is then handed to the sweep, which frees it once no
 * process has the socket open.  Clears *slot; a second call, or a call on a
 * zeroed slot, does nothing.  AS-safe: yes (atomics and a futex wake).
 */
void bw_bulkhead_release(struct bw_state *st, struct bw_slot *slot);

/*
 * Call in the child (child = true) and the parent (false) after fork(), and
 * in the parent of a vfork or posix_spawn whose child may inherit
 * connections.  Forgets the cached pid; marks every slot held now as maybe
 * shared.  AS-safe: yes.
 */
void bw_bulkhead_forked(bool child);

/*
 * Frees the slots of dead holders of d (every destination when d is NULL)
 * and of shared connections no process has open any more.  Runs at most
 * every BW_BULKHEAD_SWEEP_NS per destination unless force.  Returns the
 * slots freed.  Called by acquire; the command may call it for status.
 * Cost: one pass over BW_STATE_HOLDS records, a /proc/<pid>/stat read per
 * distinct other holder, and a scan of /proc/<pid>/fd of the user's
 * processes only when a holder died or a shared connection was closed.
 * With d, also checks d's counts against its hold records (one more pass)
 * and rebuilds them when they differ, counted in bh_corrupt: a corrupt
 * count never refuses connects for longer than one sweep, and bulwark
 * reset repairs it at once (force).  Holders of another pid namespace are
 * not judged by their pid.  AS-safe: yes.
 */
unsigned bw_bulkhead_sweep(struct bw_state *st, struct bw_dest *d,
			   uint64_t now_ns, bool force);

/* Records the inode of fd, the socket holding slot, in slot's hold record
 * if it is still that connection's and has none yet: a child about to
 * inherit the socket then keeps the slot counted after we die.  Called
 * by the fork handler for every held connection.  AS-safe (fstat). */
void bw_bulkhead_note_inode(struct bw_state *st, const struct bw_slot *slot,
			    int fd);
/* The socket inode of fd (fstat), 0 if fd is not a socket.  Keeps errno. */
uint64_t bw_bulkhead_sock_ino(int fd);

/* futex wake-up calls made by every bulkhead of this process, and
 * re-checks of waiters no wake-up reached in 100 ms (tests). */
extern _Atomic uint64_t bw__bulkhead_wakes, bw__bulkhead_rechecks;

/* Fills *v from d (exact, lock-free snapshot of each field).  AS-safe. */
void bw_bulkhead_view(const struct bw_dest *d, struct bw_bulkhead_view *v);

/* Whether d's bulkhead under s has no free slot now (a connect would
 * wait or be refused).  One load.  AS-safe. */
bool bw_bulkhead_full(const struct bw_state *st, const struct bw_dest *d,
		      const struct bw_settings *s);

/* Slots of d held in this process under scope=process.  AS-safe. */
uint32_t bw_bulkhead_process_active(const struct bw_state *st,
				    const struct bw_dest *d);

#endif
