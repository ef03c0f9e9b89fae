/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_sys.c: core/sys.c, the core's system-call table bw_sys,
 * and faults injected through it: the defaults return -errno and leave
 * errno alone; the state's attach reports a failed open and holds no fd;
 * the bulkhead's "is this socket blocking?" question goes through it.
 * Each case puts bw_sys_default back.
 */
#include "core/bulkhead.h"
#include "core/state.h"
#include "core/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/bw_test.h"

#define MS 1000000ull

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *seg_name(const char *what)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "ut-sys-%d-%s", (int)getpid(), what);
	return buf;
}

static void seg_unlink(const char *name)
{
	char path[128];

	if (bw_state_path(name, (unsigned)geteuid(), path, sizeof(path)) == 0)
		unlink(path);
}

static bool seg_exists(const char *name)
{
	char path[128];

	return bw_state_path(name, (unsigned)geteuid(), path, sizeof(path)) ==
		       0 &&
	       access(path, F_OK) == 0;
}

/* ---- injected entries ---------------------------------------------------- */

static _Atomic int n_open, n_close, n_fcntl, last_fcntl_fd, last_fcntl_cmd;
static _Atomic int fcntl_answer;

static int open_emfile(int dfd, const char *p, int fl, mode_t m)
{
	(void)dfd, (void)p, (void)fl, (void)m;
	atomic_fetch_add(&n_open, 1);
	errno = 0; /* an entry's errno must never reach the caller */
	return -EMFILE;
}

static int open_count(int dfd, const char *p, int fl, mode_t m)
{
	int fd = bw_sys_default.openat(dfd, p, fl, m);
	if (fd >= 0)
		atomic_fetch_add(&n_open, 1);
	return fd;
}

static int close_count(int fd)
{
	atomic_fetch_add(&n_close, 1);
	return bw_sys_default.close(fd);
}

static int fcntl_fixed(int fd, int cmd, long arg)
{
	(void)arg;
	atomic_fetch_add(&n_fcntl, 1);
	atomic_store(&last_fcntl_fd, fd);
	atomic_store(&last_fcntl_cmd, cmd);
	return atomic_load(&fcntl_answer);
}

static void reset(void)
{
	bw_sys = bw_sys_default;
	atomic_store(&n_open, 0);
	atomic_store(&n_close, 0);
	atomic_store(&n_fcntl, 0);
	atomic_store(&last_fcntl_fd, -1);
	atomic_store(&last_fcntl_cmd, -1);
}

/* ---- cases ------------------------------------------------------------- */

static void test_sys_defaults_keep_errno(void)
{
	struct sigaction sa;
	int p[2];

	reset();
	BW_ASSERT_EQ(pipe(p), 0);
	errno = 1234;
	BW_ASSERT_EQ(bw_sys.close(-1), -EBADF);
	BW_ASSERT_EQ(bw_sys.openat(AT_FDCWD, "/nonexistent/bulwark", O_RDONLY,
				   0),
		     -ENOENT);
	BW_ASSERT_EQ(bw_sys.fcntl(-1, F_GETFL, 0), -EBADF);
	BW_ASSERT_EQ(bw_sys.kill(INT_MAX, 0), -ESRCH);
	BW_ASSERT_EQ(bw_sys.sigaction(-1, NULL, &sa), -EINVAL);
	BW_ASSERT_EQ(errno, 1234);
	BW_ASSERT_EQ(bw_sys.kill(getpid(), 0), 0);
	BW_ASSERT(bw_sys.fcntl(p[0], F_GETFL, 0) >= 0);
	BW_ASSERT_EQ(bw_sys.fcntl(p[0], F_GETFL, 0) & O_NONBLOCK, 0);
	BW_ASSERT_EQ(bw_sys.sigaction(SIGUSR1, NULL, &sa), 0);
	int fd = bw_sys.openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
	BW_ASSERT(fd >= 0);
	BW_ASSERT_EQ(bw_sys.close(fd), 0);
	BW_ASSERT_EQ(bw_sys.close(p[0]), 0);
	BW_ASSERT_EQ(bw_sys.close(p[1]), 0);
	BW_ASSERT_EQ(errno, 1234);
}

/* open fails with EMFILE: attach says so, creates nothing, leaves errno;
 * the private state the shim then falls back to still works. */
static void test_sys_state_attach_open_fails(void)
{
	const char *name = seg_name("emfile");
	struct bw_state st;
	char why[256];

	reset();
	seg_unlink(name);
	bw_sys.openat = open_emfile;
	errno = 77;
	BW_ASSERT_EQ(bw_state_attach(&st, name, true, why, sizeof(why)),
		     -EMFILE);
	BW_ASSERT_EQ(errno, 77);
	BW_ASSERT(atomic_load(&n_open) >= 1);
	BW_ASSERT(strstr(why, "too many open files") != NULL);
	BW_ASSERT(!seg_exists(name));
	BW_ASSERT_EQ(bw_state_attach(&st, "private", true, why, sizeof(why)),
		     0);
	BW_ASSERT(!st.shared);
	bw_state_detach(&st);
	reset();
	seg_unlink(name);
}

/* Creating and attaching a segment holds no fd: every open is closed,
 * through the table. */
static void test_sys_state_attach_closes_every_fd(void)
{
	const char *name = seg_name("fds");
	struct bw_state a, b;
	char why[256];

	reset();
	seg_unlink(name);
	bw_sys.openat = open_count;
	bw_sys.close = close_count;
	BW_ASSERT_EQ(bw_state_attach(&a, name, true, why, sizeof(why)), 0);
	BW_ASSERT_EQ(bw_state_attach(&b, name, false, why, sizeof(why)), 0);
	BW_ASSERT(a.shared && b.shared);
	fprintf(stderr, "# opens %d closes %d\n", atomic_load(&n_open),
		atomic_load(&n_close));
	BW_ASSERT(atomic_load(&n_open) >= 2);
	BW_ASSERT_EQ(atomic_load(&n_close), atomic_load(&n_open));
	bw_state_detach(&a);
	bw_state_detach(&b);
	reset();
	seg_unlink(name);
}

/* A full bulkhead with bulkhead.wait asks the table whether the
 * connect's socket blocks: a failed fcntl means "do not wait" (refused at
 * once), an answer "blocking" makes it wait out bulkhead.wait. */
static void test_sys_bulkhead_blocking_check(void)
{
	const char *name = seg_name("bh");
	struct bw_dest_key k = { .family = 2,
				 .port = 80,
				 .addr = { 127, 0, 0, 1 } };
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	struct bw_settings s;
	char why[256];
	uint64_t t0, dt;
	int rc;

	reset();
	seg_unlink(name);
	BW_ASSERT_EQ(bw_state_attach(&st, name, true, why, sizeof(why)), 0);
	d = bw_state_get(&st, &k, "127.0.0.1:80", "t");
	BW_ASSERT(d != NULL);
	memset(&s, 0, sizeof(s));
	s.bulkhead_max = 1;
	s.bulkhead_wait_ns = 100 * MS;
	s.bulkhead_scope = BW_SCOPE_SHARED;
	s.bulkhead_errno = ECONNREFUSED;
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_NEVER, 0, mono_ns(),
					 &a),
		     0);

	/* fd 5 is only a number here: the table answers for it. */
	bw_sys.fcntl = fcntl_fixed;
	atomic_store(&fcntl_answer, -EBADF);
	t0 = mono_ns();
	rc = bw_bulkhead_acquire(&st, d, &s, BW_BH_IF_BLOCKING(5), 0, t0, &b);
	dt = mono_ns() - t0;
	BW_ASSERT_EQ(rc, -ECONNREFUSED);
	BW_ASSERT_EQ(atomic_load(&n_fcntl), 1);
	BW_ASSERT_EQ(atomic_load(&last_fcntl_fd), 5);
	BW_ASSERT_EQ(atomic_load(&last_fcntl_cmd), F_GETFL);
	BW_ASSERT(dt < 50 * MS);

	atomic_store(&fcntl_answer, O_RDWR); /* blocking */
	t0 = mono_ns();
	rc = bw_bulkhead_acquire(&st, d, &s, BW_BH_IF_BLOCKING(5), 0, t0, &b);
	dt = mono_ns() - t0;
	fprintf(stderr, "# waited %llu us\n", (unsigned long long)dt / 1000);
	BW_ASSERT_EQ(rc, -ECONNREFUSED);
	BW_ASSERT_EQ(atomic_load(&n_fcntl), 2);
	BW_ASSERT(dt >= 80 * MS);

	atomic_store(&fcntl_answer, O_RDWR | O_NONBLOCK);
	t0 = mono_ns();
	rc = bw_bulkhead_acquire(&st, d, &s, BW_BH_IF_BLOCKING(5), 0, t0, &b);
	dt = mono_ns() - t0;
	BW_ASSERT_EQ(rc, -ECONNREFUSED);
	BW_ASSERT(dt < 50 * MS);

	reset();
	bw_bulkhead_release(&st, &a);
	bw_state_detach(&st);
	seg_unlink(name);
}

static const struct bw_test tests[] = {
	BW_TEST(test_sys_defaults_keep_errno),
	BW_TEST(test_sys_state_attach_open_fails),
	BW_TEST(test_sys_state_attach_closes_every_fd),
	BW_TEST(test_sys_bulkhead_blocking_check),
};

BW_TEST_MAIN(tests)
