/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_policy_live_threads.c: the live policy (shim/live.c,
 * core/livestore.c).  The record protocol (round trip, a corrupt record
 * refused, an overwritten generation gone, racing pushes never mixed),
 * and threads binding and calling while pushes alternate two policies:
 * every settings read sees one whole generation (a torn read or a policy
 * object rewritten while a connection still reads it would show as a
 * mismatch, and under ThreadSanitizer as a race), and the process ends on
 * the last generation.  Named *threads* so that the Makefile also builds
 * it with ThreadSanitizer (build/tests-tsan/).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/livestore.h"
#include "shim/fd_table.h"
#include "shim/internal.h"
#include "shim/live.h"
#include "shim/log.h"
#include "tests/unit/bw_test.h"

struct bw_global bw_g; /* log.c reads the level: off */

static struct bw_state st;
static char buf[BW_POLICY_TEXT_MAX + 1];

/* Policy A: 3 rules, each failures=probes=11; B: 5 rules, 22. */
static const char pol_a[] = "10.0.0.1 breaker.failures=11 breaker.probes=11\n"
			    "10.0.0.2 breaker.failures=11 breaker.probes=11\n"
			    "* breaker.failures=11 breaker.probes=11\n";
static const char pol_b[] = "10.0.0.1 breaker.failures=22 breaker.probes=22\n"
			    "10.0.0.2 breaker.failures=22 breaker.probes=22\n"
			    "10.0.0.3 breaker.failures=22 breaker.probes=22\n"
			    "10.0.0.4 breaker.failures=22 breaker.probes=22\n"
			    "* breaker.failures=22 breaker.probes=22\n";

static void setup_state(void)
{
	if (st.hdr)
		bw_state_detach(&st);
	if (bw_state_attach_private(&st) < 0)
		abort();
}

static int64_t push(const char *t, uint32_t flags)
{
	return bw_livestore_push(&st, t, strlen(t), flags, 1000, 42, 7);
}

static void test_roundtrip(void)
{
	struct bw_livestore_meta m;
	setup_state();
	BW_ASSERT_EQ(bw_livestore_published(&st), 0);
	BW_ASSERT_EQ(bw_livestore_read(&st, 1, &m, buf, sizeof(buf)), -ENOENT);
	BW_ASSERT_EQ(push(pol_a, 0), 1);
	BW_ASSERT_EQ(push(pol_b, 0), 2);
	BW_ASSERT_EQ(bw_livestore_published(&st), 2);
	BW_ASSERT_EQ(bw_livestore_read(&st, 1, &m, buf, sizeof(buf)), 0);
	BW_ASSERT_STR(buf, pol_a);
	BW_ASSERT_EQ(m.uid, 1000);
	BW_ASSERT_EQ(m.pid, 42);
	BW_ASSERT_EQ(m.time_ns, 7);
	BW_ASSERT_EQ(m.len, strlen(pol_a));
	BW_ASSERT_EQ(bw_livestore_push(&st, buf, BW_POLICY_TEXT_MAX + 1, 0, 0,
				       0, 0),
		     -E2BIG);
	/* A stray write into the text: refused by its checksum. */
	struct bw_policy_rec *r = &st.pol->recs[2 % BW_POLICY_RECS];
	atomic_fetch_xor(&r->text[1], 0x20);
	BW_ASSERT_EQ(bw_livestore_read(&st, 2, &m, buf, sizeof(buf)), -EBADMSG);
	/* A record being written: come back later. */
	atomic_fetch_add(&r->seq, 1);
	BW_ASSERT_EQ(bw_livestore_read(&st, 2, &m, buf, sizeof(buf)), -EAGAIN);
	atomic_fetch_add(&r->seq, 1);
	/* Generation 1 is overwritten by generation 1 + BW_POLICY_RECS. */
	for (int i = 0; i < BW_POLICY_RECS; i++)
		push(pol_a, 0);
	BW_ASSERT_EQ(bw_livestore_read(&st, 1, &m, buf, sizeof(buf)), -ENOENT);
	BW_ASSERT_EQ(bw_livestore_published(&st), 2 + BW_POLICY_RECS);
}

/* Two writers race; readers see A or B whole, never a mix. */
static _Atomic int racing;
static _Atomic int mixed, reads_ok;

static void *racer(void *arg)
{
	const char *t = arg;
	for (int i = 0; i < 200; i++)
		push(t, 0);
	return NULL;
}

static void *race_reader(void *arg)
{
	static _Thread_local char rbuf[BW_POLICY_TEXT_MAX + 1];
	(void)arg;
	while (atomic_load(&racing)) {
		struct bw_livestore_meta m;
		uint64_t g = bw_livestore_published(&st);
		int rc = bw_livestore_read(&st, g, &m, rbuf, sizeof(rbuf));
		if (rc == 0) {
			if (strcmp(rbuf, pol_a) && strcmp(rbuf, pol_b))
				atomic_fetch_add(&mixed, 1);
			else
				atomic_fetch_add(&reads_ok, 1);
		} else if (rc != -EAGAIN && rc != -ENOENT && g) {
			atomic_fetch_add(&mixed, 1);
		}
	}
	return NULL;
}

static void test_racing_pushes(void)
{
	pthread_t w[2], r[2];
	setup_state();
	atomic_store(&racing, 1);
	for (int i = 0; i < 2; i++)
		pthread_create(&r[i], NULL, race_reader, NULL);
	pthread_create(&w[0], NULL, racer, (void *)pol_a);
	pthread_create(&w[1], NULL, racer, (void *)pol_b);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	atomic_store(&racing, 0);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	BW_ASSERT_EQ(atomic_load(&mixed), 0);
	BW_ASSERT_EQ(atomic_load(&st.pol->next_gen), 400);
	BW_ASSERT_EQ(bw_livestore_published(&st), 400);
	fprintf(stderr, "# %d whole reads\n", atomic_load(&reads_ok));
}

/* ---- the process side ------------------------------------------------ */

static void setup_live(void)
{
	struct bw_policy_error err;
	setup_state();
	st.shared = true; /* followed as a shared segment would be */
	bw_policy_init(bw_policy_env(), NULL, &err);
	static const char own[] = "* breaker.failures=5 breaker.probes=5";
	bw_policy_parse(bw_policy_env(), own, strlen(own), "policy", &err);
	bw_policy_finish(bw_policy_env());
	bw_live_setup(&st);
}

static int policy_failures(void)
{
	int id = bw_live_enter();
	int f = (int)bw_live_objs[id].rules[0].s.failures;
	bw_live_leave(id);
	return f;
}

static void test_apply_and_refuse(void)
{
	setup_live();
	BW_ASSERT_EQ(policy_failures(), 5);
	push(pol_a, 0);
	BW_ASSERT_EQ(policy_failures(), 11);
	BW_ASSERT_EQ(bw_live_gen_of(atomic_load(&bw_live_cur)), 1);
	/* The process table says generation 1 for us. */
	int mine = 0;
	for (int i = 0; i < BW_POLICY_PROCS; i++) {
		uint64_t w = atomic_load(&st.pol->procs[i]);
		if ((w >> 32) == (uint64_t)getpid() && (uint32_t)w == 1)
			mine++;
	}
	BW_ASSERT_EQ(mine, 1);
	/* A corrupt record: the old policy stays, the generation is
	 * handled once. */
	bw_livestore_push(&st, pol_b, strlen(pol_b), 0, 0, 0, 0);
	atomic_fetch_xor(&st.pol->recs[2 % BW_POLICY_RECS].text[0], 1);
	BW_ASSERT_EQ(policy_failures(), 11);
	BW_ASSERT_EQ(atomic_load(&bw_live_seen), 2);
	/* A text that does not parse (a push that bypassed check): kept. */
	push("10.0.0.1 breaker.failure=3", 0);
	BW_ASSERT_EQ(policy_failures(), 11);
	BW_ASSERT_EQ(atomic_load(&bw_live_seen), 3);
	push(pol_b, 0);
	BW_ASSERT_EQ(policy_failures(), 22);
	/* Clear: the process's own policy again. */
	push("", BW_POLICY_REC_CLEAR);
	BW_ASSERT_EQ(policy_failures(), 5);
	BW_ASSERT_EQ(atomic_load(&bw_live_cur), 0);
}

/* A connection bound to an object keeps it from being rewritten. */
static void test_bound_connection_pins(void)
{
	setup_live();
	push(pol_a, 0);
	int id = bw_live_enter();
	struct bw_conn *c = bw_fd_track(300);
	BW_ASSERT(c != NULL);
	bw_conn_set_rule(c, bw_live_rule(id, 2));
	bw_live_leave(id);
	BW_ASSERT(!bw_live_free(id)); /* in force, and bound */
	for (int i = 0; i < 3 * BW_LIVE_OBJS; i++) {
		push(i & 1 ? pol_a : pol_b, 0);
		bw_live_poll();
		BW_ASSERT(!bw_live_free(id));
		BW_ASSERT_EQ(bw_settings_for(c->rule)->failures, 11);
	}
	struct bw_conn *d = bw_fd_drop(300);
	BW_ASSERT(d == c);
	bw_conn_free(d);
	BW_ASSERT(atomic_load(&bw_live_cur) == id || bw_live_free(id));
}

#define CALLERS 4
#define PUSHES 200
static _Atomic int pushing, torn, calls;

static void *caller(void *arg)
{
	int fd = 500 + (int)(intptr_t)arg;
	while (atomic_load(&pushing)) {
		struct bw_conn *c = bw_fd_track(fd);
		if (!c)
			continue;
		int id = bw_live_enter();
		const struct bw_policy *p = &bw_live_objs[id];
		int n = p->nrules, f = (int)p->rules[0].s.failures;
		for (int i = 0; i < n; i++)
			if ((int)p->rules[i].s.failures != f ||
			    (int)p->rules[i].s.probes != f) {
				if (atomic_fetch_add(&torn, 1) < 3)
					fprintf(stderr, "# rule torn\n");
			}
		if (!((n == 3 && f == 11) || (n == 5 && f == 22) ||
		      (n == 1 && f == 5))) {
			if (atomic_fetch_add(&torn, 1) < 3)
				fprintf(stderr, "# torn n=%d f=%d id=%d\n", n,
					f, id);
		}
		bw_conn_set_rule(c, bw_live_rule(id, n - 1));
		bw_live_leave(id);
		/* Calls on the connection, while pushes go on. */
		for (int k = 0; k < 20; k++) {
			/* An exchange start: polls, and would give c the
			 * rule in force for its peer (no peer here: the
			 * rule stays, its generation is noted). */
			if (k == 10)
				bw_live_exchange(c, c->live_gen, fd);
			const struct bw_settings *s = bw_settings_for(c->rule);
			if (s->failures != (uint32_t)f ||
			    s->probes != s->failures) {
				if (atomic_fetch_add(&torn, 1) < 3)
					fprintf(stderr,
						"# call torn rule=%d f=%u/%d p=%u cur=%d\n",
						c->rule, s->failures, f,
						s->probes,
						atomic_load(&bw_live_cur));
			}
			atomic_fetch_add(&calls, 1);
		}
		struct bw_conn *d = bw_fd_drop(fd);
		if (d)
			bw_conn_free(d);
	}
	return NULL;
}

static void test_threads_while_pushing(void)
{
	pthread_t t[CALLERS];
	setup_live();
	atomic_store(&pushing, 1);
	for (int i = 0; i < CALLERS; i++)
		pthread_create(&t[i], NULL, caller, (void *)(intptr_t)i);
	for (int i = 1; i <= PUSHES; i++) {
		push(i & 1 ? pol_a : pol_b, 0);
		if (i % 8 == 0)
			usleep(1000);
	}
	usleep(20000);
	atomic_store(&pushing, 0);
	for (int i = 0; i < CALLERS; i++)
		pthread_join(t[i], NULL);
	BW_ASSERT_EQ(atomic_load(&torn), 0);
	BW_ASSERT(atomic_load(&calls) > 0);
	bw_live_poll();
	/* The last generation (200: pol_b) is in force. */
	BW_ASSERT_EQ(atomic_load(&bw_live_seen), PUSHES);
	BW_ASSERT_EQ(policy_failures(), 22);
	fprintf(stderr, "# %d calls\n", atomic_load(&calls));
}

static const struct bw_test tests[] = {
	BW_TEST(test_roundtrip),
	BW_TEST(test_racing_pushes),
	BW_TEST(test_apply_and_refuse),
	BW_TEST(test_bound_connection_pins),
	BW_TEST(test_threads_while_pushing),
};
BW_TEST_MAIN(tests)
