/* SPDX-License-Identifier: MIT */
/*
 * shim/fd_table.h: fd -> connection.  A flat array indexed by fd holds 0
 * for every fd bulwark does not track (files, pipes, Unix and UDP sockets),
 * so a hook on an untracked fd costs one load and one branch
 * (doc/design.md L5).  A tracked fd holds the index + 1 of a bw_conn: the TCP
 * connection behind the fd's open file description, shared by every dup of it.
 */
#ifndef BW_SHIM_FD_TABLE_H
#define BW_SHIM_FD_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "core/bulkhead.h"
#include "shim/assert.h"
#include "shim/internal.h"

/* fds at or above this are never tracked (I2).  65536 covers the default
 * hard RLIMIT_NOFILE of Debian 12 (524288 soft is rare for legacy
 * programs); the table costs 256 KiB of address space, touched lazily. */
#define BW_FD_TABLE_MAX 65536
/* Connections tracked at once; one per tracked fd at most. */
#define BW_CONN_MAX BW_FD_TABLE_MAX

/* Connection states (c->state; man/bulwark.1 describes what each does).
 *
 *   FREE --claim (bw_fd_track: socket(), accept, a first connect)--> FRESH
 *   FRESH --connect(), blocking, succeeded--------------------> ESTABLISHED
 *   FRESH --connect(): EINPROGRESS / EINTR, or an async phase--> CONNECTING
 *   FRESH --a rule says off / no room in the state-------------> IGNORED
 *   FRESH --an epoll fd (bw_async_epoll_new)-------------------> EPOLL
 *   CONNECTING --settled: connected-----------------------------> ESTABLISHED
 *   CONNECTING --failed (counted, or final in shim/async.c)----> FRESH
 *   CONNECTING, FRESH --connect(AF_UNSPEC) succeeded (the association
 *                dissolved, async work cancelled)--------------> FRESH
 *   ESTABLISHED --exchange failed (reset, EOF while a request is
 *                outstanding, io.timeout)-----------------------> DEAD
 *   any state --last fd dropped, settled (bw_conn_free)--------> FREE
 *   any state --fork child of a process with async connects----> IGNORED
 *
 * CONNECTING carries the async phases of shim/async.c in c->aphase (NONE:
 * the kernel's own non-blocking connect, ATTEMPT, BACKOFF, QUEUED); a
 * phase other than NONE only ever exists in CONNECTING.
 *
 * FRESH has two sub-states, each set only after a failed connect:
 * - stale: the failed attempt is still in the kernel, whose next connect
 *   answers ECONNABORTED once; the shim swallows that answer;
 * - pending_err != 0: a connect error the shim read (SO_ERROR in a wait,
 *   a final async failure, an EINTR'd bulkhead wait or backoff) and owes
 *   the program: its next connect, SO_ERROR, send or receive reports it
 *   and clears it.
 * IGNORED, DEAD, ESTABLISHED and EPOLL are final until FREE: connect()
 * passes straight to the kernel there.
 *
 * Transitions go through bw_conn_set_state (or assert their source state
 * in place), which checks them with BW_INVARIANT in debug builds.
 */
enum bw_conn_state {
	BW_CONN_FREE = 0,
	BW_CONN_FRESH,	    /* a TCP socket, not connected yet */
	BW_CONN_CONNECTING, /* connect in progress (non-blocking or EINTR) */
	BW_CONN_ESTABLISHED,
	BW_CONN_DEAD,	 /* failed or reset: nothing more is counted */
	BW_CONN_IGNORED, /* a rule says off, or no room in the state */
	BW_CONN_EPOLL,	 /* an epoll fd (shim/async.c): only its
			    registrations matter */
	BW_CONN_NSTATES
};

/* A set of states, for bw_conn_set_state's from_mask. */
#define BW_CONN_BIT(st) (1u << (st))
#define BW_CONN_LIVE \
	(((1u << BW_CONN_NSTATES) - 1) & ~BW_CONN_BIT(BW_CONN_FREE))
/* c's state is one of mask (a relaxed load: for checks). */
#define BW_CONN_IN(c, mask)                                                 \
	(BW_CONN_BIT(                                                       \
		 atomic_load_explicit(&(c)->state, memory_order_relaxed)) & \
	 (mask))

/* Async phases of a non-blocking connect the shim manages (shim/async.c). */
enum bw_async_phase {
	BW_ASYNC_NONE = 0,
	BW_ASYNC_ATTEMPT, /* a real connect in progress in the kernel */
	BW_ASYNC_BACKOFF, /* the last attempt failed; next due at adue_ns */
	BW_ASYNC_QUEUED,  /* waiting for a bulkhead slot (c->ticket) */
};

/* Epoll sets one connection may be registered in, as the shim knows them. */
#define BW_EPREG_MAX 3

/* One program registration of the connection's fd in an epoll set. */
struct bw_epreg {
	int32_t epfd;	 /* -1: free */
	int32_t fd;	 /* the fd number registered */
	uint32_t ep_gen; /* the epoll fd's generation (its conn's ten) */
	uint32_t events;
	uint64_t data;
};

/* Exchange phase of an established connection. */
enum bw_phase {
	BW_PHASE_IDLE = 0, /* nothing sent since the last response */
	BW_PHASE_SENT,	   /* a request went out; waiting for the answer */
};

struct bw_conn {
	_Atomic uint32_t refs;	/* fds of this process pointing here */
	_Atomic uint8_t state;	/* enum bw_conn_state */
	uint8_t phase;		/* enum bw_phase */
	uint8_t io_timeout;	/* the rule sets io.timeout */
	uint8_t stale;		/* an async connect failed: the next connect
				   reports it again or ECONNABORTED
				   (doc/design.md L7) */
	uint8_t pending_err;	/* a connect error bulwark read from SO_ERROR
				   and owes the program (poll retries) */
	_Atomic uint8_t aphase; /* enum bw_async_phase */
	_Atomic uint8_t alock;	/* async fields' lock (shim/async.c) */
	uint8_t ahidden;	/* the epoll registrations are out of the
				   kernel's sets (BACKOFF, QUEUED) */
	uint8_t nepreg;		/* registrations in epreg (0..MAX), or
				   MAX + 1: some were not recorded */
	uint8_t wr_shut;	/* the program shut down its sending side:
				   the peer's close then answers (one-way
				   protocols), it is no failure */
	int16_t rule;		/* encoded rule (shim/live.h), -1: observed
				   only; written with bw_conn_set_rule */
	int32_t probe;		/* breaker probe ticket, 0: not a probe */
	uint32_t attempt;	/* connect attempt number of this connect */
	struct bw_slot slot;	/* bulkhead slot held (kind NONE: none) */
	struct bw_conn_peer {	/* where the connect goes, for retries */
		uint16_t family, port; /* port in network order */
		uint32_t scope;
		uint8_t addr[16];
	} peer;
	struct bw_dest *d;	    /* its destination's slot, NULL: none */
	uint32_t ten;		    /* d's tenancy when bound: d is used only
				       while bw_state_live(d, ten) */
	uint32_t live_gen;	    /* generation of the policy its rule was
				       matched under (shim/live.h) */
	uint64_t t0_ns;		    /* connect start, or exchange start */
	int32_t afd;		    /* the fd the shim connects on (async) */
	uint32_t aslot;		    /* index + 1 in the async set, 0: none */
	uint64_t adue_ns;	    /* ATTEMPT: connect.timeout deadline (0:
				       none); BACKOFF: next attempt; QUEUED: next
				       look at the bulkhead */
	struct bw_bh_ticket ticket; /* QUEUED: the place in the queue */
	struct bw_epreg epreg[BW_EPREG_MAX];
};

/* c's rule, as shim/live.c's scan reads it from another thread (a
 * relaxed atomic store; the owner's own reads stay plain). */
static inline void bw_conn_set_rule(struct bw_conn *c, int rule)
{
	__atomic_store_n(&c->rule, (int16_t)rule, __ATOMIC_RELAXED);
}
static inline int bw_conn_rule_peek(const struct bw_conn *c)
{
	return __atomic_load_n(&c->rule, __ATOMIC_RELAXED);
}

extern _Atomic uint32_t bw_fd_map[BW_FD_TABLE_MAX];
extern struct bw_conn bw_conns[BW_CONN_MAX];

/* c moves to state to from one of the states in from_mask (BW_CONN_BIT
 * of each; the diagram above).  Debug builds check the source state. */
static inline void bw_conn_set_state(struct bw_conn *c, unsigned from_mask,
				     int to)
{
	BW_INVARIANT(BW_CONN_IN(c, from_mask), "bw_conn transition");
	atomic_store(&c->state, (uint8_t)to);
}

/* The packings of struct bw_conn. */
_Static_assert(BW_CONN_NSTATES <= 8, "state bits fit a uint8_t");
_Static_assert(BW_ASYNC_QUEUED < 256 && BW_PHASE_SENT < 256,
	       "phases fit their uint8_t");
_Static_assert(BW_EPREG_MAX + 1 < 256, "nepreg fits a uint8_t");
/* pending_err and the errno values the shim owes (connect errors, the
 * bulkhead's errno) fit a uint8_t: Linux's largest errno is EHWPOISON
 * (133). */
_Static_assert(EHWPOISON < 256 && ECONNREFUSED < 256 && EHOSTUNREACH < 256 &&
		       ETIMEDOUT < 256 && ECONNABORTED < 256 &&
		       ENETUNREACH < 256,
	       "errno values fit pending_err");
/* Every encoded rule (shim/live.h: id * BW_POLICY_RULES_MAX + index, for
 * the BW_LIVE_OBJS pushed policies and the process's own) fits c->rule. */
_Static_assert((BW_LIVE_OBJS + 1) * BW_POLICY_RULES_MAX - 1 <= INT16_MAX &&
		       BW_RULE_OBSERVED >= INT16_MIN,
	       "encoded rules fit c->rule");
/* fd + 1 and connection index + 1 fit bw_fd_map's entries. */
_Static_assert(BW_CONN_MAX < UINT32_MAX && BW_FD_TABLE_MAX <= INT32_MAX,
	       "bw_fd_map entries fit");

/*
 * A vfork child runs on its parent's memory: every table here, the
 * connections' bulkhead slots and the hooks' statics are the parent's, and
 * the fd numbers the child closes or duplicates (Python's subprocess calls
 * close_range and dup2 there) are not the parent's fds.  So in a vfork
 * child nothing may be changed: the table reads as empty and refuses every
 * change, and each hook passes straight to libc.
 *
 * The vfork hook (shim/hook_spawn.c) sets bw_vfork_parent, in the calling
 * thread only, to that process's pid before the system call and restores
 * it when the call returns in the parent.  The child runs on that thread's
 * stack and thread pointer, so it sees the pid; every other thread of the
 * parent, which goes on running meanwhile, sees 0 (its own copy) and costs
 * one thread-local load on a tracked fd.  While the value is set, getpid()
 * (a system call since glibc 2.25: no cache that could still hold the
 * parent's pid) tells the child from a signal handler that runs in the
 * parent thread just before or after the call.  A fork child, raw clone()
 * children included, has its own memory and is not concerned.
 */
extern __thread uint32_t bw_vfork_parent
	__attribute__((tls_model("initial-exec")));
/* Set by a vfork child that duplicated a tracked fd (dup2 onto its stdin,
 * say): the child may keep the socket, which the parent learns from this
 * flag when vfork returns.  The one write a vfork child makes. */
extern __thread uint8_t bw_vfork_dups
	__attribute__((tls_model("initial-exec")));

/* True in a vfork child (see above).  AS-safe. */
static inline bool bw_fd_borrowed(void)
{
	uint32_t p = bw_vfork_parent;
	return BW_UNLIKELY(p != 0) && (uint32_t)getpid() != p;
}

/* The connection of fd, or NULL when fd is untracked or this is a vfork
 * child (nothing is tracked there).  AS-safe. */
static inline struct bw_conn *bw_fd_conn(int fd)
{
	if (fd < 0 || fd >= BW_FD_TABLE_MAX)
		return NULL;
	uint32_t c = atomic_load_explicit(&bw_fd_map[fd], memory_order_acquire);
	if (BW_LIKELY(!c) || bw_fd_borrowed())
		return NULL;
	return &bw_conns[c - 1];
}

/* Starts tracking fd as a fresh TCP socket.  Returns the connection or NULL
 * (fd out of range, no free connection, a vfork child).  AS-safe. */
struct bw_conn *bw_fd_track(int fd);
/* fd now refers to what old refers to (dup, dup2, dup3, F_DUPFD*), or to
 * nothing if old is untracked.  In a vfork child: changes nothing, notes
 * bw_vfork_dups if old is tracked.  AS-safe. */
void bw_fd_dup(int old, int fd);
/* fd was closed or reused: drop it.  Returns the connection when this was
 * its last fd (the caller settles its accounts), else NULL (also in a
 * vfork child, where nothing is dropped).  AS-safe. */
struct bw_conn *bw_fd_drop(int fd);
/* Releases a connection returned by bw_fd_drop. */
void bw_conn_free(struct bw_conn *c);
/* Highest fd ever tracked + 1, to bound close_range/closefrom scans. */
int bw_fd_high(void);
/* Forgets every fd (fork child of a disabled shim, tests). */
void bw_fd_reset(void);

#endif
