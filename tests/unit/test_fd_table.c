/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_fd_table.c: the fd -> connection table (shim/fd_table.c):
 * tracking, dup sharing, last-reference settlement, limits, and concurrent
 * use from threads (also built under ThreadSanitizer).
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim/fd_table.h"
#include "tests/unit/bw_test.h"

static void test_fd_table_untracked_by_default(void)
{
	bw_fd_reset();
	BW_ASSERT(bw_fd_conn(0) == NULL);
	BW_ASSERT(bw_fd_conn(-1) == NULL);
	BW_ASSERT(bw_fd_conn(BW_FD_TABLE_MAX) == NULL);
	BW_ASSERT(bw_fd_conn(1 << 30) == NULL);
}

static void test_fd_table_track_and_drop(void)
{
	bw_fd_reset();
	struct bw_conn *c = bw_fd_track(7);
	BW_ASSERT(c != NULL);
	BW_ASSERT(bw_fd_conn(7) == c);
	BW_ASSERT_EQ(atomic_load(&c->state), BW_CONN_FRESH);
	BW_ASSERT_EQ(c->rule, -1);
	BW_ASSERT(bw_fd_drop(7) == c); /* last fd: the caller settles */
	BW_ASSERT(bw_fd_conn(7) == NULL);
	bw_conn_free(c);
	BW_ASSERT_EQ(atomic_load(&c->refs), 0);
	BW_ASSERT(bw_fd_drop(7) == NULL); /* twice: nothing */
}

static void test_fd_table_out_of_range_is_never_tracked(void)
{
	bw_fd_reset();
	BW_ASSERT(bw_fd_track(-3) == NULL);
	BW_ASSERT(bw_fd_track(BW_FD_TABLE_MAX) == NULL);
	bw_fd_dup(3, BW_FD_TABLE_MAX + 5); /* must not write out of bounds */
	BW_ASSERT(bw_fd_drop(BW_FD_TABLE_MAX) == NULL);
}

static void test_fd_table_dup_shares_until_last_close(void)
{
	bw_fd_reset();
	struct bw_conn *c = bw_fd_track(10);
	bw_fd_dup(10, 11);
	bw_fd_dup(11, 12);
	BW_ASSERT(bw_fd_conn(11) == c && bw_fd_conn(12) == c);
	BW_ASSERT_EQ(atomic_load(&c->refs), 3);
	BW_ASSERT(bw_fd_drop(10) == NULL);
	BW_ASSERT(bw_fd_drop(12) == NULL);
	BW_ASSERT(bw_fd_drop(11) == c);
	bw_conn_free(c);
}

static void test_fd_table_dup_of_untracked_clears_target(void)
{
	bw_fd_reset();
	struct bw_conn *c = bw_fd_track(20);
	bw_fd_dup(5, 20); /* dup2(untracked, 20) replaces the connection */
	BW_ASSERT(bw_fd_conn(20) == NULL);
	BW_ASSERT_EQ(atomic_load(&c->refs), 0);
}

static void test_fd_table_retrack_drops_stale_entry(void)
{
	bw_fd_reset();
	struct bw_conn *a = bw_fd_track(30);
	bw_fd_dup(30, 31);
	struct bw_conn *b = bw_fd_track(30); /* fd 30 reused by the kernel */
	BW_ASSERT(b != NULL && b != a);
	BW_ASSERT(bw_fd_conn(31) == a);
	BW_ASSERT_EQ(atomic_load(&a->refs), 1);
}

static void test_fd_table_high_water_mark(void)
{
	bw_fd_reset();
	BW_ASSERT_EQ(bw_fd_high(), 0);
	bw_fd_track(100);
	bw_fd_dup(100, 4000);
	BW_ASSERT_EQ(bw_fd_high(), 4001);
}

static void test_fd_table_settling_connection_is_not_reclaimed(void)
{
	bw_fd_reset();
	struct bw_conn *c = bw_fd_track(40);
	BW_ASSERT(bw_fd_drop(40) == c); /* being settled, not yet freed */
	struct bw_conn *d = bw_fd_track(40);
	BW_ASSERT(d != NULL && d != c);
	bw_conn_free(c);
	BW_ASSERT_EQ(atomic_load(&c->state), BW_CONN_FREE);
}

#define THREADS 8
#define ROUNDS 20000

static void *churn(void *arg)
{
	int base = (int)(long)arg * 64;
	for (int i = 0; i < ROUNDS; i++) {
		int fd = base + i % 32;
		struct bw_conn *c = bw_fd_track(fd);
		if (!c)
			continue;
		bw_fd_dup(fd, fd + 32);
		struct bw_conn *x = bw_fd_drop(fd);
		struct bw_conn *y = bw_fd_drop(fd + 32);
		if (x)
			bw_conn_free(x);
		if (y)
			bw_conn_free(y);
	}
	return NULL;
}

static void test_fd_table_concurrent_churn_leaves_nothing(void)
{
	pthread_t t[THREADS];
	bw_fd_reset();
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, churn, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	int busy = 0;
	for (int i = 0; i < BW_CONN_MAX; i++)
		busy += atomic_load(&bw_conns[i].refs) != 0;
	BW_ASSERT_EQ(busy, 0);
	for (int fd = 0; fd < THREADS * 64; fd++)
		BW_ASSERT(bw_fd_conn(fd) == NULL);
}

/* A vfork child runs on the parent's memory with the parent thread's mark
 * (bw_vfork_parent: the parent's pid, another getpid): the table reads as
 * empty and nothing changes it.  Faked here with a pid that is not ours. */
static void test_fd_table_vfork_child_changes_nothing(void)
{
	bw_fd_reset();
	struct bw_conn *c = bw_fd_track(5);
	BW_ASSERT(c != NULL);
	bw_vfork_dups = 0;
	bw_vfork_parent = (uint32_t)getpid() + 1;
	BW_ASSERT(bw_fd_borrowed());
	BW_ASSERT(bw_fd_conn(5) == NULL);
	BW_ASSERT(bw_fd_drop(5) == NULL);
	BW_ASSERT(bw_fd_track(6) == NULL);
	bw_fd_dup(7, 5); /* untracked onto tracked: 5 stays */
	BW_ASSERT_EQ(bw_vfork_dups, 0);
	bw_fd_dup(5, 0); /* tracked onto 0: noted, not done */
	BW_ASSERT_EQ(bw_vfork_dups, 1);
	/* The parent thread itself, in a signal handler around vfork. */
	bw_vfork_parent = (uint32_t)getpid();
	BW_ASSERT(!bw_fd_borrowed());
	BW_ASSERT(bw_fd_conn(5) == c);
	bw_vfork_parent = 0;
	bw_vfork_dups = 0;
	BW_ASSERT(bw_fd_conn(5) == c);
	BW_ASSERT(bw_fd_conn(0) == NULL);
	BW_ASSERT(bw_fd_conn(6) == NULL);
	BW_ASSERT_EQ(atomic_load(&c->refs), 1);
	BW_ASSERT(bw_fd_drop(5) == c);
	bw_conn_free(c);
}

/* A connection freed twice breaks I3 (only the thread that dropped the
 * last fd frees it, once).  In the builds that check invariants (BW_DEBUG:
 * the sanitizer and TSan builds of this test, `make DEBUG=1`) a child
 * process doing it dies by SIGABRT after one line naming the invariant on
 * its standard error; the release build checks nothing. */
static void test_fd_table_double_free_breaks_i3(void)
{
	int p[2];
	BW_ASSERT(pipe(p) == 0);
	pid_t pid = fork();
	BW_ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 2);
		close(p[0]);
		bw_fd_reset();
		struct bw_conn *c = bw_fd_track(9);
		if (!c || bw_fd_drop(9) != c)
			_exit(3);
		bw_conn_free(c);
		bw_conn_free(c); /* the breach */
		_exit(0);
	}
	close(p[1]);
	char buf[512];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 &&
	       (r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = 0;
	close(p[0]);
	int st;
	BW_ASSERT(waitpid(pid, &st, 0) == pid);
#ifdef BW_DEBUG
	BW_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	BW_ASSERT(strstr(buf, "bulwark: assert shim/fd_table.c:") == buf);
	BW_ASSERT(strstr(buf, " I3: ") != NULL);
	BW_ASSERT(strstr(buf, "BW_CONN_FREE") != NULL);
#else
	BW_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	BW_ASSERT_EQ(n, 0);
#endif
}

static const struct bw_test tests[] = {
	BW_TEST(test_fd_table_untracked_by_default),
	BW_TEST(test_fd_table_track_and_drop),
	BW_TEST(test_fd_table_out_of_range_is_never_tracked),
	BW_TEST(test_fd_table_dup_shares_until_last_close),
	BW_TEST(test_fd_table_dup_of_untracked_clears_target),
	BW_TEST(test_fd_table_retrack_drops_stale_entry),
	BW_TEST(test_fd_table_high_water_mark),
	BW_TEST(test_fd_table_settling_connection_is_not_reclaimed),
	BW_TEST(test_fd_table_concurrent_churn_leaves_nothing),
	BW_TEST(test_fd_table_vfork_child_changes_nothing),
	BW_TEST(test_fd_table_double_free_breaks_i3),
};

BW_TEST_MAIN(tests)
