/* SPDX-License-Identifier: MIT */
/*
 * shim/live.c: applies the policy pushed into the shared state (`bulwark
 * policy push`, README "Changing the policy of running programs") in a
 * running process, and gives the hooks the policy in force.
 * Owns: bw_live_*, the policy objects (the process's own, id 0, and
 * BW_LIVE_OBJS more for pushed generations).  Never: allocates, locks
 * (a try-lock that nobody waits on), re-reads the environment, makes a
 * system call on the hot path.
 *
 * Hot path: bw_live_poll is one relaxed load of the published generation
 * and a compare with the one handled last, at each connect, name lookup
 * and exchange start.  When they differ, the thread
 * that wins the try-lock (the others go on with the policy in force)
 * copies the record (livestore.c: never a torn or mixed one), parses it
 * into a free object (the parser allocates nothing: policy.h), and makes
 * that object the one in force with one store of its id.  A corrupt
 * record or a text that does not parse keeps the policy in force and is
 * said once (policy_error); an applied one is said once at info level
 * (policy_applied generation=N).  A "clear" record puts the process's own
 * policy (id 0, compiled at start) back in force.
 *
 * Lifetime of an object (no use after rewrite):
 * I1: only the applier (holding the try-lock) writes an object, and only
 *     one that bw_live_free judges free: not in force, pin count 0, and no
 *     connection of this process bound to a rule of it.
 * I2: a thread reads an object only while it pins it (bw_live_enter ...
 *     bw_live_leave: the bind of a connection), or through a connection
 *     bound to one of its rules (bw_settings_for(c->rule)).  enter pins
 *     the id in force, then checks that it is still in force (all
 *     seq_cst): the applier stores the new id before it reads the pins,
 *     so either it sees the pin or the binder sees the new id and backs
 *     off.  A binder stores the connection's rule before it unpins, so a
 *     scan that follows a zero pin count sees the connection.
 * I3: the scan covers the connections of the fd table up to the highest
 *     fd tracked (+ 64: a connection's index is near its fd); a
 *     connection whose last fd is being closed at that very instant may
 *     be missed: its settle would then read settings of a rewritten
 *     object (static memory: wrong thresholds for that one call, never a
 *     crash).  It needs two pushes inside one close.  Likewise a
 *     hedge's own binding (shim/hedge.c, on its thread's stack) until it
 *     is adopted into the connection, which is bound to the same or an
 *     older generation.
 * A new connect binds under the generation in force; a connection bound
 * under another takes, at the start of its next exchange (its next
 * request: bw_live_exchange from exchange.c), the rule the policy in
 * force has for its peer (bw_live_rebind: getpeername once per
 * connection and generation), keeping its destination.  Counters,
 * breakers and bulkhead slots live in the shared state, untouched by a
 * push.
 */
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/livestore.h"
#include "shim/addr.h"
#include "shim/fd_table.h"
#include "shim/hostmap.h"
#include "shim/live.h"
#include "shim/log.h"

struct bw_policy bw_live_objs[1 + BW_LIVE_OBJS];
_Atomic int bw_live_cur;
struct bw_policy_area *bw_live_area;
_Atomic uint64_t bw_live_seen;
_Atomic uint32_t bw_live_gen;

static struct bw_state *live_st;
static _Atomic uint32_t pins[1 + BW_LIVE_OBJS];
static _Atomic uint64_t obj_gen[1 + BW_LIVE_OBJS];
static _Atomic int applying;
static _Atomic uint64_t next_try_ns;
static _Atomic uint64_t said_busy;
static int my_idx = -1;
static uint32_t my_pid;
/* The record's text, copied under the try-lock. */
static char text_buf[BW_POLICY_TEXT_MAX + 1];

uint64_t bw_live_gen_of(int id)
{
	if (id < 0 || id > BW_LIVE_OBJS)
		return 0;
	return atomic_load(&obj_gen[id]);
}

bool bw_live_host_rules(void)
{
	int id = bw_live_enter();
	bool v = bw_live_objs[id].has_host_rules;
	bw_live_leave(id);
	return v;
}

int bw_live_enter(void)
{
	bw_live_poll();
	for (;;) {
		int id = atomic_load(&bw_live_cur);
		atomic_fetch_add(&pins[id], 1);
		if (atomic_load(&bw_live_cur) == id)
			return id;
		atomic_fetch_sub(&pins[id], 1); /* swapped meanwhile: I2 */
	}
}

void bw_live_leave(int id)
{
	/* Never false for an id bw_live_enter gave; it keeps GCC's LTO+PGO
	 * build from warning about an index bw_live_gen_of checks. */
	if ((unsigned)id > BW_LIVE_OBJS)
		return;
	atomic_fetch_sub(&pins[id], 1);
}

bool bw_live_free(int id)
{
	if (id <= 0 || id > BW_LIVE_OBJS || atomic_load(&bw_live_cur) == id ||
	    atomic_load(&pins[id]) != 0)
		return false;
	int high = bw_fd_high() + 64;
	if (high > BW_CONN_MAX)
		high = BW_CONN_MAX;
	for (int i = 0; i < high; i++) {
		const struct bw_conn *c = &bw_conns[i];
		if (atomic_load_explicit(&c->state, memory_order_acquire) ==
		    BW_CONN_FREE)
			continue;
		int r = bw_conn_rule_peek(c);
		if (r >= 0 && r / BW_POLICY_RULES_MAX == id)
			return false;
	}
	return true;
}

static void say_applied(uint64_t gen, const struct bw_livestore_meta *m, int id)
{
	if (live_st && my_idx >= 0)
		bw_livestore_note(live_st, my_idx, my_pid, gen);
	if (id == 0)
		bw_log(BW_LOG_INFO, "policy_applied", NULL,
		       "generation=%llu policy=own", (unsigned long long)gen);
	else
		bw_log(BW_LOG_INFO, "policy_applied", NULL,
		       "generation=%llu rules=%d pushed_by_pid=%u",
		       (unsigned long long)gen, bw_live_objs[id].nrules,
		       m ? m->pid : 0);
}

static void refuse(uint64_t gen, const char *msg)
{
	bw_log(BW_LOG_ERROR, "policy_error", NULL,
	       "msg=%q generation=%llu action=kept", msg,
	       (unsigned long long)gen);
	atomic_store_explicit(&bw_live_seen, gen, memory_order_relaxed);
}

/* Parses text into object id (free: I1).  Returns 0 or -errno. */
static int parse_into(int id, const char *text, size_t len,
		      struct bw_policy_error *err)
{
	struct bw_policy *p = &bw_live_objs[id];
	const struct bw_policy *own = bw_policy_env();
	int rc = bw_policy_init(p, NULL, err);
	if (rc < 0)
		return rc;
	/* Each rule starts from the process's own defaults (built in,
	 * overridden by its BULWARK_<KEY>), as its own rules do. */
	p->defaults = own->defaults;
	p->env_mask = own->env_mask;
	rc = bw_policy_parse(p, text, len, "policy", err);
	if (rc < 0)
		return rc;
	return bw_policy_finish(p);
}

static void apply_locked(void)
{
	struct bw_policy_area *a = bw_live_area;
	uint64_t gen =
		atomic_load_explicit(&a->published, memory_order_acquire);
	if (gen == atomic_load_explicit(&bw_live_seen, memory_order_relaxed))
		return;
	if (gen == 0) {
		/* The segment was lost (private memory now): our own. */
		atomic_store(&obj_gen[0], 0);
		atomic_store(&bw_live_cur, 0);
		atomic_store(&bw_live_gen, 0);
		atomic_store_explicit(&bw_live_seen, 0, memory_order_relaxed);
		return;
	}
	uint64_t now = bw_clock_ns();
	if (now < atomic_load_explicit(&next_try_ns, memory_order_relaxed))
		return;
	struct bw_livestore_meta m;
	int rc =
		bw_livestore_read(live_st, gen, &m, text_buf, sizeof(text_buf));
	if (rc == -EAGAIN || rc == -ENOENT)
		return; /* being written, or already replaced: next time */
	if (rc < 0) {
		refuse(gen, "the stored policy is corrupt (bad checksum or "
			    "length): the policy in force is kept");
		return;
	}
	int id = 0;
	if (!(m.flags & BW_POLICY_REC_CLEAR)) {
		for (id = 1; id <= BW_LIVE_OBJS && !bw_live_free(id); id++)
			;
		if (id > BW_LIVE_OBJS) {
			/* Every object still has connections bound to it:
			 * try again in 100 ms. */
			atomic_store_explicit(&next_try_ns, now + 100000000ull,
					      memory_order_relaxed);
			if (atomic_exchange(&said_busy, gen) != gen)
				bw_log(BW_LOG_WARN, "policy_error", NULL,
				       "msg=%q generation=%llu action=retry",
				       "every policy object still has "
				       "connections bound to it",
				       (unsigned long long)gen);
			return;
		}
		struct bw_policy_error err;
		if (parse_into(id, text_buf, m.len, &err) < 0 ||
		    bw_live_objs[id].nrules == 0) {
			char msg[512];
			if (bw_live_objs[id].nrules == 0 && err.msg[0] == 0)
				strcpy(msg, "the stored policy has no rules");
			else
				bw_policy_error_format(&err, msg, sizeof(msg));
			/* The object holds garbage now; it is not in force
			 * and nothing is bound to it: free as before. */
			refuse(gen, msg);
			return;
		}
	}
	atomic_store(&obj_gen[id], id ? gen : 0);
	atomic_store(&bw_live_cur, id); /* I2: before anyone reads pins */
	atomic_store(&bw_live_gen, (uint32_t)(id ? gen : 0));
	atomic_store_explicit(&bw_live_seen, gen, memory_order_relaxed);
	say_applied(gen, &m, id);
}

void bw_live_rebind(struct bw_conn *c, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct bw_hostmask hosts;
	uint8_t addr[16];
	int id = bw_live_enter();
	uint32_t g = (uint32_t)bw_live_gen_of(id);
	const struct bw_policy *p = &bw_live_objs[id];

	if (c->live_gen == g)
		goto out;
	c->live_gen = g;
	/* Once per connection and generation: not the hot path.  Not
	 * interposed, so no bw_real entry. */
	if (syscall(SYS_getpeername, fd, &ss, &len) < 0)
		goto out; /* keeps the rule it has */
	int family = bw_sa_addr((struct sockaddr *)&ss, addr, NULL);
	if (!family)
		goto out;
	bool named = p->has_host_rules &&
		     bw_hostmap_lookup(family, addr, &hosts);
	int r = bw_policy_match(p, (struct sockaddr *)&ss, len,
				named ? bw_hostmap_hit : NULL, &hosts);
	/* Its destination (counters, breaker, bulkhead slot) stays the one
	 * it connected to; only the settings change.  A rule that says off,
	 * or none: observed only from now on. */
	int nr = r < 0 || p->rules[r].off ? -1 : bw_live_rule(id, r);
	bw_conn_set_rule(c, nr);
	c->io_timeout = nr >= 0 && bw_live_rule_of(nr)->s.io_timeout_ns > 0;
out:
	bw_live_leave(id);
}

void bw_live_apply(void)
{
	if (!bw_live_area || atomic_exchange(&applying, 1))
		return; /* another thread is at it: keep the one in force */
	apply_locked();
	atomic_store(&applying, 0);
}

void bw_live_setup(struct bw_state *st)
{
	if (!st || !st->shared || !st->pol)
		return;
	live_st = st;
	my_pid = (uint32_t)getpid();
	my_idx = bw_livestore_register(st, my_pid, 0);
	bw_live_area = st->pol;
	bw_live_apply();
}

void bw_live_forked(void)
{
	if (!live_st)
		return;
	atomic_store(&applying, 0); /* the parent's applier is not ours */
	my_pid = (uint32_t)getpid();
	my_idx = bw_livestore_register(
		live_st, my_pid,
		atomic_load_explicit(&bw_live_seen, memory_order_relaxed));
}
