/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_state_threads.c: core/state.c under concurrent threads:
 * 8 threads inserting the same keys get one slot per key, in private
 * memory and in a shared segment.  Kept apart from test_state.c (which
 * forks and SIGKILLs) so that it also builds with ThreadSanitizer:
 *
 *   cc $(TSAN_CFLAGS) -o $(B)/tests-tsan/test_state_threads \
 *      tests/unit/test_state_threads.c core/state.c core/breaker.c \
 *      -lpthread
 *
 * It needs only core/state.c and core/breaker.c (bw_state_reset_dest).
 */
#include "core/state.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/bw_test.h"

#define THREADS 8
#define KEYS 3000

struct run {
	struct bw_state *st;
	pthread_barrier_t *go;
	int id;
	struct bw_dest *got[KEYS];
	int nulls, busy;
};

static struct bw_dest_key key_of(uint32_t id)
{
	struct bw_dest_key k;
	uint32_t a = htonl(0xc0a80000u + id);

	memset(&k, 0, sizeof(k));
	k.family = (id & 1) ? AF_INET : AF_INET6;
	k.port = 443;
	memcpy(k.addr + ((id & 1) ? 0 : 12), &a, 4);
	return k;
}

/* Every thread walks all keys, each from a different start and
 * direction, and bumps a counter on each. */
static void *worker(void *arg)
{
	struct run *r = arg;
	char label[32];

	pthread_barrier_wait(r->go);
	for (uint32_t n = 0; n < KEYS; n++) {
		uint32_t i = (r->id & 1) ? (n + (uint32_t)r->id * 397) % KEYS
					 : (KEYS - 1 - n);
		struct bw_dest_key k = key_of(i);
		struct bw_dest *d;

		snprintf(label, sizeof(label), "k%u", i);
		/* NULL: another thread's claim of this key outlasted the
		 * bounded wait (it was preempted); a hook passes the call
		 * through untracked, we ask again. */
		for (int tries = 0; tries < 10000; tries++) {
			d = bw_state_get(r->st, &k, label, "rule");
			if (d)
				break;
			r->busy++;
		}
		r->got[i] = d;
		if (!d) {
			r->nulls++;
			continue;
		}
		atomic_fetch_add(&d->successful_calls, 1);
	}
	return NULL;
}

static struct run runs[THREADS];

static int one_slot_per_key(struct bw_state *st)
{
	pthread_t th[THREADS];
	pthread_barrier_t go;
	int bad = 0, ready = 0, busy = 0;

	pthread_barrier_init(&go, NULL, THREADS);
	for (int t = 0; t < THREADS; t++) {
		memset(&runs[t], 0, sizeof(runs[t]));
		runs[t].st = st;
		runs[t].go = &go;
		runs[t].id = t;
		pthread_create(&th[t], NULL, worker, &runs[t]);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&go);

	for (int t = 0; t < THREADS; t++)
		busy += runs[t].busy;
	printf("# %d lookups gave up on a preempted claimer\n", busy);
	for (int t = 0; t < THREADS; t++)
		if (runs[t].nulls) {
			fprintf(stderr, "# thread %d: %d NULLs\n", t,
				runs[t].nulls);
			bad++;
		}
	for (uint32_t i = 0; i < KEYS; i++) {
		struct bw_dest_key k = key_of(i);
		struct bw_dest *d = bw_state_find(st, &k);
		char label[32], want[32];

		for (int t = 0; t < THREADS; t++)
			if (runs[t].got[i] != d)
				bad++;
		if (!d) {
			bad++;
			continue;
		}
		if (atomic_load(&d->successful_calls) != THREADS)
			bad++;
		bw_state_label(d, label, sizeof(label));
		snprintf(want, sizeof(want), "k%u", i);
		if (strcmp(label, want) != 0)
			bad++;
	}
	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++)
		ready += bw_state_slot(st, i) != NULL;
	if (ready != KEYS || atomic_load(&st->hdr->used) != KEYS) {
		fprintf(stderr, "# %d ready slots, used %llu, want %d\n", ready,
			(unsigned long long)atomic_load(&st->hdr->used), KEYS);
		bad++;
	}
	return bad;
}

static void test_state_threads_private(void)
{
	struct bw_state st;

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	BW_ASSERT_EQ(one_slot_per_key(&st), 0);
	bw_state_detach(&st);
}

static void test_state_threads_shared(void)
{
	struct bw_state st;
	char name[64], why[256];

	snprintf(name, sizeof(name), "ut-%ld-threads", (long)getpid());
	BW_ASSERT_EQ(bw_state_attach(&st, name, true, why, sizeof(why)), 0);
	unlink(st.path); /* the mapping lives on */
	BW_ASSERT_EQ(one_slot_per_key(&st), 0);
	bw_state_detach(&st);
}

/* Threads racing to create the same segment all end up in one file. */
static void *attacher(void *arg)
{
	struct run *r = arg;
	char name[64], why[256];

	snprintf(name, sizeof(name), "ut-%ld-race", (long)getpid());
	pthread_barrier_wait(r->go);
	if (bw_state_attach(r->st, name, true, why, sizeof(why)) < 0) {
		fprintf(stderr, "# attach: %s\n", why);
		r->nulls = 1;
	}
	return NULL;
}

static void test_state_threads_create_race(void)
{
	static struct bw_state st[THREADS];
	pthread_t th[THREADS];
	pthread_barrier_t go;
	struct bw_dest_key k = key_of(5);
	struct bw_dest *d;
	char path[128], name[64];

	snprintf(name, sizeof(name), "ut-%ld-race", (long)getpid());
	BW_ASSERT_EQ(bw_state_path(name, (unsigned)geteuid(), path,
				   sizeof(path)),
		     0);
	unlink(path);
	pthread_barrier_init(&go, NULL, THREADS);
	for (int t = 0; t < THREADS; t++) {
		memset(&runs[t], 0, sizeof(runs[t]));
		runs[t].st = &st[t];
		runs[t].go = &go;
		pthread_create(&th[t], NULL, attacher, &runs[t]);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&go);
	for (int t = 0; t < THREADS; t++)
		BW_ASSERT_EQ(runs[t].nulls, 0);
	d = bw_state_get(&st[0], &k, "x", "y");
	BW_ASSERT(d != NULL);
	atomic_fetch_add(&d->failed_calls, 3);
	for (int t = 1; t < THREADS; t++) {
		struct bw_dest *e = bw_state_find(&st[t], &k);
		BW_ASSERT(e != NULL);
		BW_ASSERT_EQ(atomic_load(&e->failed_calls), 3);
	}
	unlink(st[0].path);
	for (int t = 0; t < THREADS; t++)
		bw_state_detach(&st[t]);
}

static const struct bw_test tests[] = {
	BW_TEST(test_state_threads_private),
	BW_TEST(test_state_threads_shared),
	BW_TEST(test_state_threads_create_race),
};

BW_TEST_MAIN(tests)
