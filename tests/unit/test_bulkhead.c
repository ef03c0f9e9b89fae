/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_bulkhead.c: core/bulkhead.c: limits, refusals, waits,
 * the queue bound, scope=process, metrics, release exactly once, slots of
 * SIGKILLed holders (reaped or zombie), fork-shared connections, and
 * consistency after holders are killed at random instants.
 */
#include "core/bulkhead.h"
#include "core/state.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/sigrule.h"
#include "tests/unit/bw_test.h"

#define MS 1000000ull

/* fork(2) with stdio flushed, so a child never repeats TAP output. */
static pid_t fork_(void)
{
	fflush(stdout);
	fflush(stderr);
	return fork();
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const char *seg_name(const char *what)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "ut-bh-%d-%s", (int)getpid(), what);
	return buf;
}

static void seg_unlink(const char *name)
{
	char path[128];

	if (bw_state_path(name, (unsigned)geteuid(), path, sizeof(path)) == 0)
		unlink(path);
}

/* A shared segment named for the test, and one destination in it. */
static int open_dest(struct bw_state *st, const char *what, char *name,
		     size_t cap, struct bw_dest **d)
{
	struct bw_dest_key k = { .family = 2,
				 .port = 80,
				 .addr = { 127, 0, 0, 1 } };
	char why[256];
	int rc;

	snprintf(name, cap, "%s", seg_name(what));
	seg_unlink(name);
	rc = bw_state_attach(st, name, true, why, sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "# attach %s: %s\n", name, why);
		return rc;
	}
	*d = bw_state_get(st, &k, "127.0.0.1:80", "t");
	return *d ? 0 : -ENOSPC;
}

static void close_dest(struct bw_state *st, const char *name)
{
	bw_state_detach(st);
	seg_unlink(name);
}

static struct bw_settings cfg(uint32_t max, uint64_t wait_ns, uint32_t queue,
			      enum bw_scope scope)
{
	struct bw_settings s;

	memset(&s, 0, sizeof(s));
	s.bulkhead_max = max;
	s.bulkhead_wait_ns = wait_ns;
	s.bulkhead_queue = queue;
	s.bulkhead_scope = scope;
	s.bulkhead_errno = ECONNREFUSED;
	return s;
}

static uint32_t active(const struct bw_dest *d)
{
	struct bw_bulkhead_view v;

	bw_bulkhead_view(d, &v);
	return v.active;
}

static uint32_t waiting(const struct bw_dest *d)
{
	struct bw_bulkhead_view v;

	bw_bulkhead_view(d, &v);
	return v.waiting;
}

/* Records not FREE (state bits 36-39 of the word). */
static unsigned holds_in_use(const struct bw_state *st)
{
	unsigned n = 0;

	for (unsigned i = 0; i < BW_STATE_HOLDS; i++)
		n += ((atomic_load(&st->holds[i].word) >> 36) & 0xf) != 0;
	return n;
}

static void test_bulkhead_no_bulkhead_passes(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot sl;
	char name[64];
	struct bw_settings s = cfg(0, 100 * MS, 0, BW_SCOPE_SHARED);

	BW_ASSERT_EQ(open_dest(&st, "none", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &sl),
		     0);
	BW_ASSERT_EQ(sl.kind, BW_SLOT_NONE);
	BW_ASSERT_EQ(active(d), 0);
	bw_bulkhead_release(&st, &sl);
	close_dest(&st, name);
}

/* A non-blocking connect queues (acquire_nb), tries without sleeping,
 * takes the slot a release frees, in FIFO order with another ticket, and
 * leaves on its deadline or on a cancel; both scopes. */
static void nb_queue(int scope)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot held, a, b, c;
	struct bw_bh_ticket ta, tb, tc;
	char name[64];
	struct bw_settings s = cfg(1, 200 * MS, 0, scope);
	uint64_t now = mono_ns();
	/* The view reads the shared counts; a private bulkhead's are the
	 * process's own (the order and the outcomes are checked alike). */
	bool sh = scope == BW_SCOPE_SHARED;

	BW_ASSERT_EQ(open_dest(&st, scope == BW_SCOPE_SHARED ? "nbs" : "nbp",
			       name, sizeof(name), &d),
		     0);
	/* A free slot: taken at once, no ticket. */
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s, BW_BH_NEVER, now, &held,
					    &ta),
		     0);
	BW_ASSERT(held.kind != BW_SLOT_NONE);
	BW_ASSERT_EQ(ta.kind, BW_SLOT_NONE);
	/* Full: two tickets, in order. */
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s, BW_BH_NEVER, now, &a,
					    &ta),
		     1);
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s, BW_BH_NEVER, now, &b,
					    &tb),
		     1);
	BW_ASSERT(!sh || waiting(d) == 2);
	BW_ASSERT_EQ(bw_bulkhead_try(&st, &s, &ta, mono_ns(), &a), 1);
	/* The slot frees: the first ticket gets it, not the second. */
	bw_bulkhead_release(&st, &held);
	BW_ASSERT_EQ(bw_bulkhead_try(&st, &s, &tb, mono_ns(), &b), 1);
	BW_ASSERT_EQ(bw_bulkhead_try(&st, &s, &ta, mono_ns(), &a), 0);
	BW_ASSERT(a.kind != BW_SLOT_NONE);
	BW_ASSERT_EQ(ta.kind, BW_SLOT_NONE);
	BW_ASSERT(!sh || active(d) == 1);
	BW_ASSERT(!sh || waiting(d) == 1);
	/* A third queues, and is cancelled (the program closed it). */
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s, BW_BH_NEVER, mono_ns(),
					    &c, &tc),
		     1);
	BW_ASSERT(!sh || waiting(d) == 2);
	bw_bulkhead_leave(&st, &tc);
	BW_ASSERT(!sh || waiting(d) == 1);
	bw_bulkhead_leave(&st, &tc); /* twice: nothing */
	/* The second's bulkhead.wait runs out: refused, out of the queue. */
	BW_ASSERT_EQ(bw_bulkhead_try(&st, &s, &tb, now + 300 * MS, &b),
		     -ECONNREFUSED);
	BW_ASSERT(!sh || waiting(d) == 0);
	BW_ASSERT_EQ(tb.kind, BW_SLOT_NONE);
	bw_bulkhead_release(&st, &a);
	BW_ASSERT(!sh || active(d) == 0);
	if (scope == BW_SCOPE_SHARED)
		BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

static void test_bulkhead_nonblocking_queue_shared(void)
{
	nb_queue(BW_SCOPE_SHARED);
}

static void test_bulkhead_nonblocking_queue_process(void)
{
	nb_queue(BW_SCOPE_PROCESS);
}

/* bulkhead.queue bounds the non-blocking tickets as the blocking ones;
 * bulkhead.wait=0 refuses at once. */
static void test_bulkhead_nonblocking_queue_bound(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot held, x;
	struct bw_bh_ticket t1, t2;
	char name[64];
	struct bw_settings s = cfg(1, 200 * MS, 1, BW_SCOPE_SHARED);
	struct bw_settings s0 = cfg(1, 0, 0, BW_SCOPE_SHARED);

	BW_ASSERT_EQ(open_dest(&st, "nbq", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s, BW_BH_NEVER, mono_ns(),
					    &held, &t1),
		     0);
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s0, BW_BH_NEVER, mono_ns(),
					    &x, &t1),
		     -ECONNREFUSED);
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s, BW_BH_NEVER, mono_ns(),
					    &x, &t1),
		     1);
	BW_ASSERT_EQ(bw_bulkhead_acquire_nb(&st, d, &s, BW_BH_NEVER, mono_ns(),
					    &x, &t2),
		     -ECONNREFUSED);
	BW_ASSERT_EQ(t2.kind, BW_SLOT_NONE);
	bw_bulkhead_leave(&st, &t1);
	bw_bulkhead_release(&st, &held);
	BW_ASSERT_EQ(waiting(d), 0);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

static void test_bulkhead_limits(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot sl[4], x;
	char name[64];
	struct bw_settings s = cfg(3, 0, 0, BW_SCOPE_SHARED);

	BW_ASSERT_EQ(open_dest(&st, "lim", name, sizeof(name), &d), 0);
	for (int i = 0; i < 3; i++) {
		BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0,
						 mono_ns(), &sl[i]),
			     0);
		BW_ASSERT_EQ(sl[i].kind, BW_SLOT_SHARED);
	}
	BW_ASSERT_EQ(active(d), 3);
	BW_ASSERT_EQ(atomic_load(&d->bh_max), 3);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &x),
		     -ECONNREFUSED);
	BW_ASSERT_EQ(x.kind, BW_SLOT_NONE);
	bw_bulkhead_release(&st, &sl[1]);
	BW_ASSERT_EQ(active(d), 2);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &sl[1]),
		     0);
	for (int i = 0; i < 3; i++)
		bw_bulkhead_release(&st, &sl[i]);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

static void test_bulkhead_nonblocking_refused_at_once(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	char name[64];
	struct bw_settings s = cfg(1, 1000 * MS, 0, BW_SCOPE_SHARED);
	uint64_t t0;
	int rc;

	s.bulkhead_errno = EAGAIN;
	BW_ASSERT_EQ(open_dest(&st, "nb", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	errno = 1234;
	t0 = mono_ns();
	rc = bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, t0, &b);
	BW_ASSERT_EQ(rc, -EAGAIN);
	BW_ASSERT(mono_ns() - t0 < 5 * MS);
	BW_ASSERT_EQ(errno, 1234);
	BW_ASSERT_EQ(waiting(d), 0);
	bw_bulkhead_release(&st, &a);
	BW_ASSERT_EQ(errno, 1234);
	close_dest(&st, name);
}

struct later {
	struct bw_state *st;
	struct bw_slot *slot;
	unsigned ms;
};

static void *release_later(void *arg)
{
	struct later *l = arg;

	sleep_ms(l->ms);
	bw_bulkhead_release(l->st, l->slot);
	return NULL;
}

static void test_bulkhead_wait_gets_freed_slot(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	char name[64];
	struct bw_settings s = cfg(1, 1000 * MS, 0, BW_SCOPE_SHARED);
	struct later l = { &st, &a, 50 };
	struct bw_bulkhead_view v;
	pthread_t th;
	uint64_t t0, dt;

	BW_ASSERT_EQ(open_dest(&st, "wait", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	pthread_create(&th, NULL, release_later, &l);
	t0 = mono_ns();
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, t0, &b),
		     0);
	dt = mono_ns() - t0;
	pthread_join(th, NULL);
	fprintf(stderr, "# waited %llu us\n", (unsigned long long)dt / 1000);
	BW_ASSERT(dt >= 40 * MS && dt < 500 * MS);
	BW_ASSERT_EQ(b.kind, BW_SLOT_SHARED);
	BW_ASSERT_EQ(active(d), 1);
	BW_ASSERT_EQ(waiting(d), 0);
	bw_bulkhead_view(d, &v);
	BW_ASSERT_EQ(v.acquired, 2);
	BW_ASSERT_EQ(v.saturated, 1);
	BW_ASSERT(v.wait_hist[15] == 1 || v.wait_hist[16] == 1);
	bw_bulkhead_release(&st, &b);
	BW_ASSERT_EQ(active(d), 0);
	close_dest(&st, name);
}

static void test_bulkhead_wait_times_out(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	char name[64];
	struct bw_settings s = cfg(1, 60 * MS, 0, BW_SCOPE_SHARED);
	uint64_t t0, dt;

	BW_ASSERT_EQ(open_dest(&st, "tmo", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	errno = 77;
	t0 = mono_ns();
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, t0, &b),
		     -ECONNREFUSED);
	dt = mono_ns() - t0;
	BW_ASSERT_EQ(errno, 77);
	BW_ASSERT(dt >= 60 * MS && dt < 300 * MS);
	BW_ASSERT_EQ(waiting(d), 0);
	BW_ASSERT_EQ(active(d), 1);
	BW_ASSERT_EQ(holds_in_use(&st), 1);
	bw_bulkhead_release(&st, &a);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

struct waiter {
	struct bw_state *st;
	struct bw_dest *d;
	struct bw_settings s;
	int rc;
	unsigned hold_ms;
	_Atomic int *order;
	int pos;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	struct bw_slot sl;

	w->rc = bw_bulkhead_acquire(w->st, w->d, &w->s, BW_BH_ALWAYS, 0,
				    mono_ns(), &sl);
	if (w->rc == 0) {
		if (w->order)
			w->pos = atomic_fetch_add(w->order, 1);
		sleep_ms(w->hold_ms);
		bw_bulkhead_release(w->st, &sl);
	}
	return NULL;
}

static void test_bulkhead_queue_bounds_waiters(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	char name[64];
	struct bw_settings s = cfg(1, 2000 * MS, 2, BW_SCOPE_SHARED);
	struct waiter w[2];
	pthread_t th[2];
	uint64_t t0;

	BW_ASSERT_EQ(open_dest(&st, "queue", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	for (int i = 0; i < 2; i++) {
		w[i] = (struct waiter){ &st, d, s, -1, 1, NULL, 0 };
		pthread_create(&th[i], NULL, wait_thread, &w[i]);
	}
	for (int i = 0; i < 2000 && waiting(d) < 2; i++)
		sleep_ms(1);
	BW_ASSERT_EQ(waiting(d), 2);
	t0 = mono_ns();
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, t0, &b),
		     -ECONNREFUSED);
	BW_ASSERT(mono_ns() - t0 < 5 * MS);
	bw_bulkhead_release(&st, &a);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		BW_ASSERT_EQ(w[i].rc, 0);
	}
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(waiting(d), 0);
	close_dest(&st, name);
}

static void test_bulkhead_waiters_in_arrival_order(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a;
	char name[64];
	struct bw_settings s = cfg(1, 3000 * MS, 0, BW_SCOPE_SHARED);
	struct waiter w[4];
	pthread_t th[4];
	_Atomic int order = 0;

	BW_ASSERT_EQ(open_dest(&st, "fifo", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct waiter){ &st, d, s, -1, 5, &order, -1 };
		pthread_create(&th[i], NULL, wait_thread, &w[i]);
		for (int k = 0; k < 1000 && waiting(d) < (uint32_t)i + 1; k++)
			sleep_ms(1);
	}
	bw_bulkhead_release(&st, &a);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++) {
		BW_ASSERT_EQ(w[i].rc, 0);
		BW_ASSERT_EQ(w[i].pos, i);
	}
	close_dest(&st, name);
}

static void test_bulkhead_scope_process(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot sl[3];
	char name[64];
	struct bw_settings s = cfg(2, 50 * MS, 0, BW_SCOPE_PROCESS);
	uint64_t t0;

	BW_ASSERT_EQ(open_dest(&st, "proc", name, sizeof(name), &d), 0);
	for (int i = 0; i < 2; i++) {
		BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0,
						 mono_ns(), &sl[i]),
			     0);
		BW_ASSERT_EQ(sl[i].kind, BW_SLOT_PROCESS);
	}
	BW_ASSERT_EQ(bw_bulkhead_process_active(&st, d), 2);
	BW_ASSERT_EQ(active(d), 0); /* the shared count is not touched */
	t0 = mono_ns();
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, t0,
					 &sl[2]),
		     -ECONNREFUSED);
	BW_ASSERT(mono_ns() - t0 >= 50 * MS);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, t0,
					 &sl[2]),
		     -ECONNREFUSED);
	/* Another process has its own count. */
	pid_t p = fork_();
	if (p == 0) {
		struct bw_settings sh = cfg(2, 0, 0, BW_SCOPE_SHARED);
		struct bw_slot x, y;

		bw_bulkhead_forked(true);
		_exit(bw_bulkhead_acquire(&st, d, &sh, BW_BH_NEVER, 0,
					  mono_ns(), &x) == 0 &&
				      bw_bulkhead_acquire(&st, d, &sh,
							  BW_BH_NEVER, 0,
							  mono_ns(), &y) == 0
			      ? 0
			      : 1);
	}
	int status = -1;
	waitpid(p, &status, 0);
	BW_ASSERT_EQ(status, 0);
	bw_bulkhead_release(&st, &sl[0]);
	BW_ASSERT_EQ(bw_bulkhead_process_active(&st, d), 1);
	bw_bulkhead_release(&st, &sl[1]);
	BW_ASSERT_EQ(bw_bulkhead_process_active(&st, d), 0);
	/* The child's two shared slots died with it. */
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 0);
	close_dest(&st, name);
}

static void test_bulkhead_metrics(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	char name[64];
	struct bw_settings s = cfg(1, 0, 0, BW_SCOPE_SHARED);
	struct bw_bulkhead_view v;
	uint64_t sum = 0;

	BW_ASSERT_EQ(open_dest(&st, "met", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	for (int i = 0; i < 3; i++)
		BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0,
						 mono_ns(), &b),
			     -ECONNREFUSED);
	bw_bulkhead_release(&st, &a);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	bw_bulkhead_view(d, &v);
	BW_ASSERT_EQ(v.active, 1);
	BW_ASSERT_EQ(v.max, 1);
	BW_ASSERT_EQ(v.waiting, 0);
	BW_ASSERT_EQ(v.acquired, 2);
	BW_ASSERT_EQ(v.rejected, 3);
	BW_ASSERT_EQ(v.saturated, 3);
	BW_ASSERT_NEAR(v.rejection_rate, 0.6, 1e-9);
	for (int i = 0; i < BW_STATE_HIST_BUCKETS; i++)
		sum += v.wait_hist[i];
	BW_ASSERT_EQ(sum, 2);
	BW_ASSERT_EQ(v.wait_hist[0], 2);
	/* bulwark reset keeps live slots. */
	bw_state_reset_dest(d);
	bw_bulkhead_view(d, &v);
	BW_ASSERT_EQ(v.active, 1);
	BW_ASSERT_EQ(v.rejected, 0);
	bw_bulkhead_release(&st, &a);
	BW_ASSERT_EQ(active(d), 0);
	close_dest(&st, name);
}

static void test_bulkhead_release_exactly_once(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b, copy, zero;
	char name[64];
	struct bw_settings s = cfg(2, 0, 0, BW_SCOPE_SHARED);

	BW_ASSERT_EQ(open_dest(&st, "once", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &b),
		     0);
	copy = a;
	bw_bulkhead_release(&st, &a);
	bw_bulkhead_release(&st, &a);	 /* zeroed: nothing */
	bw_bulkhead_release(&st, &copy); /* stale copy: nothing */
	BW_ASSERT_EQ(active(d), 1);
	/* The record is reused by a new slot; the stale copy still fails. */
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	bw_bulkhead_release(&st, &copy);
	BW_ASSERT_EQ(active(d), 2);
	memset(&zero, 0, sizeof(zero));
	bw_bulkhead_release(&st, &zero);
	bw_bulkhead_release(&st, NULL);
	bw_bulkhead_release(&st, &a);
	bw_bulkhead_release(&st, &b);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

/* Children that each take a slot (half with a socket), say so, and wait
 * to be killed.  reap: the parent waits for them before acquiring. */
static void crash_case(bool reap)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot x;
	char name[64];
	struct bw_settings s = cfg(5, 1000 * MS, 0, BW_SCOPE_SHARED);
	pid_t kids[5];
	int pfd[2];
	uint64_t t0, dt;

	BW_ASSERT_EQ(open_dest(&st, reap ? "crash" : "zombie", name,
			       sizeof(name), &d),
		     0);
	BW_ASSERT_EQ(pipe(pfd), 0);
	for (int i = 0; i < 5; i++) {
		kids[i] = fork_();
		if (kids[i] == 0) {
			struct bw_slot sl;
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			uint64_t ino = i % 2 ? bw_bulkhead_sock_ino(fd) : 0;

			bw_bulkhead_forked(true);
			if (bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, ino,
						mono_ns(), &sl) != 0)
				_exit(1);
			if (write(pfd[1], "x", 1) != 1)
				_exit(1);
			for (;;)
				pause();
		}
	}
	for (int i = 0; i < 5; i++) {
		char c;
		BW_ASSERT_EQ(read(pfd[0], &c, 1), 1);
	}
	close(pfd[0]);
	close(pfd[1]);
	BW_ASSERT_EQ(active(d), 5);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &x),
		     -ECONNREFUSED);
	for (int i = 0; i < 5; i++)
		kill(kids[i], SIGKILL);
	if (reap)
		for (int i = 0; i < 5; i++)
			waitpid(kids[i], NULL, 0);
	else
		sleep_ms(20); /* let them become zombies */
	t0 = mono_ns();
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, t0, &x),
		     0);
	dt = mono_ns() - t0;
	fprintf(stderr, "# slot back after %llu us\n",
		(unsigned long long)dt / 1000);
	BW_ASSERT(dt < 1000 * MS);
	if (!reap)
		for (int i = 0; i < 5; i++)
			waitpid(kids[i], NULL, 0);
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 1);
	bw_bulkhead_release(&st, &x);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

static void test_bulkhead_sigkilled_holders_freed(void)
{
	crash_case(true);
}

static void test_bulkhead_zombie_holders_freed(void)
{
	crash_case(false);
}

/* A connection taken before a fork stays counted until both processes
 * closed it. */
static void test_bulkhead_fork_shares_slot(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a;
	char name[64];
	struct bw_settings s = cfg(2, 0, 0, BW_SCOPE_SHARED);
	int fd = socket(AF_INET, SOCK_STREAM, 0), go[2];
	pid_t p;

	BW_ASSERT(fd >= 0);
	BW_ASSERT_EQ(open_dest(&st, "fork", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER,
					 bw_bulkhead_sock_ino(fd), mono_ns(),
					 &a),
		     0);
	BW_ASSERT_EQ(pipe(go), 0);
	p = fork_();
	if (p == 0) {
		char c;

		bw_bulkhead_forked(true);
		close(go[1]);
		if (read(go[0], &c, 1) < 0)
			_exit(1);
		bw_bulkhead_release(&st, &a); /* its close: a disown */
		close(fd);
		_exit(0);
	}
	bw_bulkhead_forked(false);
	close(go[0]);
	bw_bulkhead_release(&st, &a); /* parent's close: child still has it */
	close(fd);
	BW_ASSERT_EQ(active(d), 1);
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 1);
	BW_ASSERT_EQ(write(go[1], "x", 1), 1);
	close(go[1]);
	waitpid(p, NULL, 0);
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

/* The holder dies; a process it started (an exec'd program knows nothing
 * of the slot) still has the connection: the slot stays until it closes. */
static void test_bulkhead_inherited_by_survivor(void)
{
	struct bw_state st;
	struct bw_dest *d;
	char name[64];
	struct bw_settings s = cfg(2, 0, 0, BW_SCOPE_SHARED);
	int up[2], go[2];
	pid_t p, g = 0;

	BW_ASSERT_EQ(open_dest(&st, "inherit", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(pipe(up), 0);
	BW_ASSERT_EQ(pipe(go), 0);
	p = fork_();
	if (p == 0) {
		struct bw_slot sl;
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		char c;

		bw_bulkhead_forked(true);
		if (bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER,
					bw_bulkhead_sock_ino(fd), mono_ns(),
					&sl) != 0)
			_exit(1);
		g = fork_(); /* no bw_bulkhead_forked: like an exec */
		if (g == 0) {
			close(go[1]);
			if (read(go[0], &c, 1) < 0)
				_exit(1);
			_exit(0);
		}
		if (write(up[1], &g, sizeof(g)) != sizeof(g))
			_exit(1);
		for (;;)
			pause();
	}
	close(go[0]);
	BW_ASSERT_EQ(read(up[0], &g, sizeof(g)), (ssize_t)sizeof(g));
	BW_ASSERT_EQ(active(d), 1);
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 1); /* g holds it */
	BW_ASSERT_EQ(write(go[1], "x", 1), 1);
	close(go[1]);
	for (int i = 0; i < 100 && kill(g, 0) == 0; i++)
		sleep_ms(5); /* g is not our child: wait for its exit */
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close(up[0]);
	close(up[1]);
	close_dest(&st, name);
}

static void *hold_forever(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/* Whether /proc/<pid>/stat shows state Z. */
static bool shows_zombie(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'Z';
}

/* A holder whose main thread exited while another thread still has the
 * connection shows as a zombie in /proc/<pid>/stat: it is alive, and
 * neither a sweep nor a waiter (whose wait runs sweeps) may take its
 * slot.  Once the whole process is dead, the sweep frees it. */
static void test_bulkhead_sweep_spares_live_group(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot x;
	char name[64];
	struct bw_settings s = cfg(1, 250 * MS, 0, BW_SCOPE_SHARED);
	int up[2], rc;
	pid_t p;
	char c;
	bool ok, zombie;
	unsigned freed;
	uint32_t held, after_sweep, after_wait;

	BW_ASSERT_EQ(open_dest(&st, "group", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(pipe(up), 0);
	p = fork_();
	if (p == 0) {
		struct bw_slot sl;
		pthread_t t;
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		bw_bulkhead_forked(true);
		if (fd < 0 ||
		    bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER,
					bw_bulkhead_sock_ino(fd), mono_ns(),
					&sl) != 0 ||
		    pthread_create(&t, NULL, hold_forever, NULL) != 0)
			_exit(1);
		if (write(up[1], "x", 1) != 1)
			_exit(1);
		pthread_exit(NULL); /* the other thread keeps fd and slot */
	}
	ok = read(up[0], &c, 1) == 1;
	for (int i = 0; ok && i < 400 && !shows_zombie(p); i++)
		sleep_ms(5);
	zombie = shows_zombie(p);
	held = active(d);
	freed = bw_bulkhead_sweep(&st, d, mono_ns(), true);
	after_sweep = active(d);
	/* A waiter sweeps every BW_BULKHEAD_SWEEP_NS while it waits, and
	 * re-checks the limit after each: it must time out, not overtake. */
	rc = bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(), &x);
	after_wait = active(d);
	kill(p, SIGKILL); /* before any assertion: it would hold our stdout */
	waitpid(p, NULL, 0);
	BW_ASSERT(ok);
	BW_ASSERT(zombie);
	BW_ASSERT_EQ(held, 1);
	BW_ASSERT_EQ(freed, 0);
	BW_ASSERT_EQ(after_sweep, 1);
	BW_ASSERT_EQ(rc, -ECONNREFUSED);
	BW_ASSERT_EQ(after_wait, 1);
	BW_ASSERT_EQ(waiting(d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &x),
		     0);
	bw_bulkhead_release(&st, &x);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close(up[0]);
	close(up[1]);
	close_dest(&st, name);
}

/* Processes that acquire, wait and release in a loop are SIGKILLed at
 * random instants; afterwards one sweep leaves every count exact. */
static void test_bulkhead_killed_anywhere_consistent(void)
{
	struct bw_state st;
	struct bw_dest *d;
	char name[64];
	struct bw_settings s = cfg(3, 2 * MS, 0, BW_SCOPE_SHARED);
	unsigned kills = 0;

	BW_ASSERT_EQ(open_dest(&st, "anywhere", name, sizeof(name), &d), 0);
	srand(42);
	for (int round = 0; round < 40; round++) {
		pid_t kids[4];

		for (int i = 0; i < 4; i++) {
			kids[i] = fork_();
			if (kids[i] == 0) {
				bw_bulkhead_forked(true);
				for (unsigned n = 0;; n++) {
					struct bw_slot sl;

					if (bw_bulkhead_acquire(
						    &st, d, &s,
						    n % 3 ? BW_BH_ALWAYS
							  : BW_BH_NEVER,
						    0, mono_ns(), &sl) == 0)
						bw_bulkhead_release(&st, &sl);
				}
			}
		}
		sleep_ms(2 + (unsigned)(rand() % 8));
		for (int i = 0; i < 4; i++) {
			kill(kids[i], SIGKILL);
			kills++;
		}
		for (int i = 0; i < 4; i++)
			waitpid(kids[i], NULL, 0);
		BW_ASSERT(active(d) <= 3);
		bw_bulkhead_sweep(&st, d, mono_ns(), true);
		if (active(d) || waiting(d) || holds_in_use(&st) ||
		    atomic_load(&d->bh_corrupt)) {
			fprintf(stderr,
				"# round %d: active %u waiting %u "
				"holds %u corrupt %u\n",
				round, active(d), waiting(d), holds_in_use(&st),
				(unsigned)atomic_load(&d->bh_corrupt));
			BW_FAIL_("inconsistent after kills");
		}
	}
	fprintf(stderr, "# %u kills, acquired %llu\n", kills,
		(unsigned long long)atomic_load(&d->bh_acquired));
	close_dest(&st, name);
}

/* Waiters that each hold the slot longer than the old code's 20 ms
 * "aged" limit still get it in arrival order: no waiter overtakes the
 * ones queued before it (the old waiters, all aged after the first
 * release, raced for every slot). */
static void test_bulkhead_fifo_with_long_holds(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a;
	char name[64];
	struct bw_settings s = cfg(1, 5000 * MS, 0, BW_SCOPE_SHARED);
	struct waiter w[8];
	pthread_t th[8];
	_Atomic int order = 0;
	int inorder = 0;

	BW_ASSERT_EQ(open_dest(&st, "fifo2", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	for (int i = 0; i < 8; i++) {
		w[i] = (struct waiter){ &st, d, s, -1, 30, &order, -1 };
		pthread_create(&th[i], NULL, wait_thread, &w[i]);
		for (int k = 0; k < 1000 && waiting(d) < (uint32_t)i + 1; k++)
			sleep_ms(1);
	}
	BW_ASSERT_EQ(waiting(d), 8);
	sleep_ms(30); /* every waiter has waited longer than 20 ms */
	bw_bulkhead_release(&st, &a);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 8; i++) {
		BW_ASSERT_EQ(w[i].rc, 0);
		inorder += w[i].pos == i;
	}
	fprintf(stderr, "# %d of 8 in arrival order\n", inorder);
	BW_ASSERT_EQ(inorder, 8);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(waiting(d), 0);
	close_dest(&st, name);
}

/* Voluntary context switches of thread tid (each futex sleep is one). */
static long vol_switches(pid_t tid)
{
	char path[64], line[256];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

struct sleeper {
	struct bw_state *st;
	struct bw_dest *d;
	struct bw_settings s;
	_Atomic pid_t tid;
	_Atomic int got;
	_Atomic int *stop;
	int rc;
};

static void *sleeper_thread(void *arg)
{
	struct sleeper *z = arg;
	struct bw_slot sl;

	atomic_store(&z->tid, (pid_t)syscall(SYS_gettid));
	z->rc = bw_bulkhead_acquire(z->st, z->d, &z->s, BW_BH_ALWAYS, 0,
				    mono_ns(), &sl);
	if (z->rc == 0) {
		atomic_store(&z->got, 1);
		while (!atomic_load(z->stop))
			sleep_ms(1);
		bw_bulkhead_release(z->st, &sl);
	}
	return NULL;
}

/* A release wakes the one waiter its slot admits, not the others: their
 * sleeps are not interrupted while the first takes the slot (each may
 * see at most one re-check timeout, RECHECK 100 ms, in the window).  The
 * old code woke every waiter at each release and polled every 2 ms. */
static void test_bulkhead_release_wakes_one(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a;
	char name[64];
	struct bw_settings s = cfg(1, 5000 * MS, 0, BW_SCOPE_SHARED);
	struct sleeper z[8];
	pthread_t th[8];
	_Atomic int stop = 0;
	long before = 0, after = 0;
	uint64_t t0;

	BW_ASSERT_EQ(open_dest(&st, "wake1", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	for (int i = 0; i < 8; i++) {
		z[i] = (struct sleeper){
			.st = &st, .d = d, .s = s, .stop = &stop, .rc = -1
		};
		pthread_create(&th[i], NULL, sleeper_thread, &z[i]);
		for (int k = 0; k < 1000 && waiting(d) < (uint32_t)i + 1; k++)
			sleep_ms(1);
	}
	BW_ASSERT_EQ(waiting(d), 8);
	sleep_ms(5);
	t0 = mono_ns();
	for (int i = 1; i < 8; i++)
		before += vol_switches(atomic_load(&z[i].tid));
	bw_bulkhead_release(&st, &a);
	for (int k = 0; k < 1000 && !atomic_load(&z[0].got); k++)
		sleep_ms(1);
	sleep_ms(20);
	for (int i = 1; i < 8; i++)
		after += vol_switches(atomic_load(&z[i].tid));
	uint64_t window = mono_ns() - t0;
	fprintf(stderr, "# 7 waiters not admitted: %ld wake-ups in %llu ms\n",
		after - before, (unsigned long long)(window / MS));
	int first = atomic_load(&z[0].got), others = 0;
	for (int i = 1; i < 8; i++)
		others += atomic_load(&z[i].got);
	/* Join before any assertion: the threads use this frame. */
	atomic_store(&stop, 1);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	BW_ASSERT(first);
	BW_ASSERT_EQ(others, 0);
	if (window < 90 * MS)
		BW_ASSERT(after - before <= 7);
	for (int i = 0; i < 8; i++)
		BW_ASSERT_EQ(z[i].rc, 0);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(waiting(d), 0);
	close_dest(&st, name);
}

static void on_signal(int sig)
{
	(void)sig;
}

struct sig_waiter {
	struct bw_state *st;
	struct bw_dest *d;
	struct bw_settings s;
	_Atomic int started;
	int rc;
	uint64_t took;
};

static void *sig_wait_thread(void *arg)
{
	struct sig_waiter *x = arg;
	struct bw_slot sl;
	uint64_t t0 = mono_ns();

	atomic_store(&x->started, 1);
	x->rc = bw_bulkhead_acquire(x->st, x->d, &x->s, BW_BH_ALWAYS, 0, t0,
				    &sl);
	x->took = mono_ns() - t0;
	if (x->rc == 0)
		bw_bulkhead_release(x->st, &sl);
	return NULL;
}

/* A signal during the wait: with a handler without SA_RESTART the
 * acquire fails at once with -EINTR (the connect then fails with EINTR,
 * as the kernel's would); with SA_RESTART on every handler it waits on
 * to the same deadline.  The old wait ignored signals. */
static void sig_case(bool restart)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a;
	char name[64];
	struct bw_settings s = cfg(1, 400 * MS, 0, BW_SCOPE_SHARED);
	struct sig_waiter x;
	struct sigaction sa, old;
	pthread_t th;
	struct bw_bulkhead_view v;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	BW_ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
	if (restart && !bw_sigrule_restarts()) {
		/* Another handler without SA_RESTART is installed (the
		 * sanitizers' SIGSEGV handler): the rule says EINTR. */
		fprintf(stderr, "# skipped: a handler without SA_RESTART "
				"is installed\n");
		sigaction(SIGUSR1, &old, NULL);
		return;
	}
	BW_ASSERT_EQ(open_dest(&st, restart ? "sigr" : "sig", name,
			       sizeof(name), &d),
		     0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	x = (struct sig_waiter){ .st = &st, .d = d, .s = s, .rc = 1 };
	pthread_create(&th, NULL, sig_wait_thread, &x);
	for (int k = 0; k < 1000 && waiting(d) < 1; k++)
		sleep_ms(1);
	BW_ASSERT_EQ(waiting(d), 1);
	sleep_ms(20);
	pthread_kill(th, SIGUSR1);
	pthread_join(th, NULL);
	sigaction(SIGUSR1, &old, NULL);
	bw_bulkhead_view(d, &v);
	fprintf(stderr, "# %s: rc %d after %llu ms\n",
		restart ? "SA_RESTART" : "no SA_RESTART", x.rc,
		(unsigned long long)(x.took / MS));
	if (restart) {
		BW_ASSERT_EQ(x.rc, -ECONNREFUSED);
		BW_ASSERT(x.took >= 400 * MS);
		BW_ASSERT_EQ(v.rejected, 1);
	} else {
		BW_ASSERT_EQ(x.rc, -EINTR);
		BW_ASSERT(x.took < 300 * MS);
		BW_ASSERT_EQ(v.rejected, 0); /* not a refusal */
	}
	BW_ASSERT_EQ(waiting(d), 0);
	BW_ASSERT_EQ(active(d), 1);
	BW_ASSERT_EQ(holds_in_use(&st), 1);
	/* The queue is not stuck behind the interrupted waiter. */
	bw_bulkhead_release(&st, &a);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &a),
		     0);
	bw_bulkhead_release(&st, &a);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

static void test_bulkhead_wait_eintr_without_restart(void)
{
	sig_case(false);
}

static void test_bulkhead_wait_resumes_with_restart(void)
{
	sig_case(true);
}

/* bh_word with other counts: active (bits 0-19) and waiting (20-33),
 * the last-record fields kept. */
static void set_counts(struct bw_dest *d, uint32_t act, uint32_t wait)
{
	uint64_t w = atomic_load(&d->bh_word);

	w &= ~0x3ffffffffull;
	w |= (uint64_t)act | (uint64_t)wait << 20;
	atomic_store(&d->bh_word, w);
}

/* A count that goes below 0 (a release more than the holders: here the
 * segment lost two holders' counts) is corruption, counted and rebuilt
 * from the hold records: the other holder stays counted.  The old
 * commit() clamped it at 0, hiding it (and forgetting the holder). */
static void test_bulkhead_negative_count_rebuilt(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b, c;
	char name[64];
	struct bw_settings s = cfg(2, 0, 0, BW_SCOPE_SHARED);
	struct bw_bulkhead_view v;

	BW_ASSERT_EQ(open_dest(&st, "neg", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &b),
		     0);
	set_counts(d, 0, 0);
	bw_bulkhead_release(&st, &a); /* 0 - 1 */
	bw_bulkhead_view(d, &v);
	BW_ASSERT_EQ(v.corrupt, 1);
	BW_ASSERT_EQ(v.active, 1); /* b, from its hold record */
	/* The limit holds again: one slot free, not two. */
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &c),
		     -ECONNREFUSED);
	bw_bulkhead_release(&st, &a);
	bw_bulkhead_release(&st, &b);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

/* A count no hold table can hold (more than BW_STATE_HOLDS) refused every
 * connect for good; now the first acquire that meets it rebuilds it.  A
 * plausible but wrong count (above max, no holder) is repaired by the
 * sweep, as bulwark reset runs it (forced). */
static void test_bulkhead_corrupt_count_repaired(void)
{
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	char name[64];
	struct bw_settings s = cfg(3, 0, 0, BW_SCOPE_SHARED);
	struct bw_bulkhead_view v;

	BW_ASSERT_EQ(open_dest(&st, "corrupt", name, sizeof(name), &d), 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);
	set_counts(d, 0xfffff, 0);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &b),
		     0);
	BW_ASSERT_EQ(active(d), 2);
	bw_bulkhead_release(&st, &b);
	/* A sweep now: the acquire's own sweep below is rate limited (an
	 * acquire that meets the count after that repairs it too). */
	bw_bulkhead_sweep(&st, d, mono_ns(), false);
	set_counts(d, 50, 7); /* 50 > max 3, 7 waiters that do not exist */
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &b),
		     -ECONNREFUSED);
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	bw_bulkhead_view(d, &v);
	BW_ASSERT_EQ(v.active, 1);
	BW_ASSERT_EQ(v.waiting, 0);
	BW_ASSERT_EQ(v.corrupt, 2);
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &b),
		     0);
	/* A correct count is left alone. */
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	bw_bulkhead_view(d, &v);
	BW_ASSERT_EQ(v.corrupt, 2);
	BW_ASSERT_EQ(v.active, 2);
	bw_bulkhead_release(&st, &a);
	bw_bulkhead_release(&st, &b);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

/* A holder recorded in another pid namespace is not judged by its pid:
 * its pid names some other process (or none) here.  The same dead holder
 * recorded in our namespace is freed. */
static void test_bulkhead_other_pid_namespace_kept(void)
{
	struct bw_state st;
	struct bw_dest *d;
	char name[64];
	struct bw_settings s = cfg(2, 0, 0, BW_SCOPE_SHARED);
	pid_t p;
	int status = -1;
	uint32_t held = 0;

	BW_ASSERT_EQ(open_dest(&st, "pidns", name, sizeof(name), &d), 0);
	p = fork_();
	if (p == 0) {
		struct bw_slot sl;

		bw_bulkhead_forked(true);
		_exit(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					  &sl) == 0
			      ? 0
			      : 1);
	}
	waitpid(p, &status, 0);
	BW_ASSERT_EQ(status, 0);
	BW_ASSERT_EQ(active(d), 1);
	for (uint32_t i = 1; i < BW_STATE_HOLDS; i++)
		if (((atomic_load(&st.holds[i].word) >> 36) & 0xf) == 1)
			held = i;
	BW_ASSERT(held != 0);
	uint64_t nsw = atomic_load(&st.holds[held].ticket);
	BW_ASSERT((nsw >> 32) != 0); /* the child recorded its namespace */
	/* As if recorded by a process of another namespace. */
	atomic_store(&st.holds[held].ticket, nsw + (1ull << 32));
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 1);
	atomic_store(&st.holds[held].ticket, nsw);
	bw_bulkhead_sweep(&st, d, mono_ns(), true);
	BW_ASSERT_EQ(active(d), 0);
	BW_ASSERT_EQ(holds_in_use(&st), 0);
	close_dest(&st, name);
}

/* Last: the segments the tests above made (ut-bh-PID-*, 16 MiB of tmpfs
 * each) are removed, and none is left behind. */
static void test_bulkhead_segments_removed(void)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "bulwark-%u-ut-bh-%d-",
		 (unsigned)geteuid(), (int)getpid());
	for (int pass = 0; pass < 2; pass++) {
		unsigned left = 0;
		DIR *dir = opendir("/dev/shm");
		BW_ASSERT(dir != NULL);
		struct dirent *e;
		while ((e = readdir(dir)) != NULL) {
			if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
				continue;
			char path[320];
			snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
			left++;
			if (pass == 0)
				unlink(path);
		}
		closedir(dir);
		if (pass == 1)
			BW_ASSERT_EQ(left, 0);
	}
}

static const struct bw_test tests[] = {
	BW_TEST(test_bulkhead_no_bulkhead_passes),
	BW_TEST(test_bulkhead_limits),
	BW_TEST(test_bulkhead_nonblocking_refused_at_once),
	BW_TEST(test_bulkhead_wait_gets_freed_slot),
	BW_TEST(test_bulkhead_wait_times_out),
	BW_TEST(test_bulkhead_queue_bounds_waiters),
	BW_TEST(test_bulkhead_waiters_in_arrival_order),
	BW_TEST(test_bulkhead_scope_process),
	BW_TEST(test_bulkhead_metrics),
	BW_TEST(test_bulkhead_release_exactly_once),
	BW_TEST(test_bulkhead_sigkilled_holders_freed),
	BW_TEST(test_bulkhead_zombie_holders_freed),
	BW_TEST(test_bulkhead_fork_shares_slot),
	BW_TEST(test_bulkhead_inherited_by_survivor),
	BW_TEST(test_bulkhead_killed_anywhere_consistent),
	BW_TEST(test_bulkhead_sweep_spares_live_group),
	BW_TEST(test_bulkhead_fifo_with_long_holds),
	BW_TEST(test_bulkhead_release_wakes_one),
	BW_TEST(test_bulkhead_wait_eintr_without_restart),
	BW_TEST(test_bulkhead_wait_resumes_with_restart),
	BW_TEST(test_bulkhead_negative_count_rebuilt),
	BW_TEST(test_bulkhead_corrupt_count_repaired),
	BW_TEST(test_bulkhead_other_pid_namespace_kept),
	BW_TEST(test_bulkhead_nonblocking_queue_shared),
	BW_TEST(test_bulkhead_nonblocking_queue_process),
	BW_TEST(test_bulkhead_nonblocking_queue_bound),
	BW_TEST(test_bulkhead_segments_removed),
};

BW_TEST_MAIN(tests)
