/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_sys.c: core/sys.c, the core's system-call table bw_sys,
 * and faults injected through it: the defaults return -errno and leave
 * errno alone; the state's attach reports a failed open and holds no fd;
 * the bulkhead's "is this socket blocking?" question goes through it, and
 * so do the state's mapping and file calls, the bulkhead's fstat and
 * futex and the live store's sleep: a failure injected there comes back
 * as -errno with the program's errno unchanged (the core never touches
 * errno).  Each case puts bw_sys_default back.
 */
#include "core/bulkhead.h"
#include "core/livestore.h"
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
#include <sys/mman.h>
#include <sys/stat.h>
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
static _Atomic int n_mmap, n_fstat, n_futex, n_sleep, fault_errno;

static int open_emfile(int dfd, const char *p, int fl, mode_t m)
{
	(void)dfd, (void)p, (void)fl, (void)m;
	atomic_fetch_add(&n_open, 1);
	return -EMFILE; /* an entry never touches errno, as the defaults */
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

static int mmap_fail(void *a, size_t len, int prot, int fl, int fd, off_t off,
		     void **out)
{
	(void)a, (void)len, (void)prot, (void)fl, (void)fd, (void)off;
	(void)out;
	atomic_fetch_add(&n_mmap, 1);
	return -atomic_load(&fault_errno);
}

static int fstat_fail(int fd, struct stat *sb)
{
	(void)fd, (void)sb;
	atomic_fetch_add(&n_fstat, 1);
	return -atomic_load(&fault_errno);
}

/* Says every fd is socket inode 4242. */
static int fstat_sock(int fd, struct stat *sb)
{
	(void)fd;
	atomic_fetch_add(&n_fstat, 1);
	memset(sb, 0, sizeof(*sb));
	sb->st_mode = S_IFSOCK | 0777;
	sb->st_ino = 4242;
	return 0;
}

static int fchmod_fail(int fd, mode_t mode)
{
	(void)fd, (void)mode;
	return -atomic_load(&fault_errno);
}

static int futex_count(uint32_t *w, int op, uint32_t val,
		       const struct timespec *ts, uint32_t mask)
{
	atomic_fetch_add(&n_futex, 1);
	return bw_sys_default.futex(w, op, val, ts, mask);
}

static int sleep_count(const struct timespec *req)
{
	(void)req;
	atomic_fetch_add(&n_sleep, 1);
	return -EINTR; /* a signal handler ran */
}

static void reset(void)
{
	bw_sys = bw_sys_default;
	atomic_store(&n_mmap, 0);
	atomic_store(&n_fstat, 0);
	atomic_store(&n_futex, 0);
	atomic_store(&n_sleep, 0);
	atomic_store(&fault_errno, 0);
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

/* A new segment NAME whose destination 127.0.0.1:PORT has a shared
 * bulkhead of one slot, held in *held: the next acquire finds it full,
 * waits up to wait_ns where it may, then is refused with ECONNREFUSED. */
static void full_bulkhead(const char *name, uint16_t port, uint64_t wait_ns,
			  struct bw_state *st, struct bw_settings *s,
			  struct bw_dest **dp, struct bw_slot *held)
{
	struct bw_dest_key k = { .family = 2,
				 .port = port,
				 .addr = { 127, 0, 0, 1 } };
	char why[256], label[32];

	seg_unlink(name);
	BW_ASSERT_EQ(bw_state_attach(st, name, true, why, sizeof(why)), 0);
	snprintf(label, sizeof(label), "127.0.0.1:%u", (unsigned)port);
	struct bw_dest *d = bw_state_get(st, &k, label, "t");
	*dp = d;
	BW_ASSERT(d != NULL);
	memset(s, 0, sizeof(*s));
	s->bulkhead_max = 1;
	s->bulkhead_wait_ns = wait_ns;
	s->bulkhead_scope = BW_SCOPE_SHARED;
	s->bulkhead_errno = ECONNREFUSED;
	BW_ASSERT_EQ(bw_bulkhead_acquire(st, d, s, BW_BH_NEVER, 0, mono_ns(),
					 held),
		     0);
}

/* A full bulkhead with bulkhead.wait asks the table whether the
 * connect's socket blocks: a failed fcntl means "do not wait" (refused at
 * once), an answer "blocking" makes it wait out bulkhead.wait. */
static void test_sys_bulkhead_blocking_check(void)
{
	const char *name = seg_name("bh");
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	struct bw_settings s;
	uint64_t t0, dt;
	int rc;

	reset();
	full_bulkhead(name, 80, 100 * MS, &st, &s, &d, &a);

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

/* The entries added for the core's mapping, file, futex and sleep calls
 * also return -errno and leave errno alone. */
static void test_sys_more_defaults_keep_errno(void)
{
	struct stat sb;
	char buf[64];
	void *m = NULL;
	uint32_t word = 7;
	struct timespec past = { 0, 0 }, bad = { 0, 2000000000L };

	reset();
	errno = EDOM;
	BW_ASSERT_EQ(bw_sys.read(-1, buf, sizeof(buf)), -EBADF);
	BW_ASSERT_EQ(bw_sys.pwrite(-1, buf, 1, 0), -EBADF);
	BW_ASSERT_EQ(bw_sys.fstat(-1, &sb), -EBADF);
	BW_ASSERT_EQ(bw_sys.fchmod(-1, 0600), -EBADF);
	BW_ASSERT_EQ(bw_sys.ftruncate(-1, 10), -EBADF);
	BW_ASSERT_EQ(bw_sys.fallocate(-1, 0, 10), -EBADF);
	BW_ASSERT_EQ(bw_sys.linkat(AT_FDCWD, "/nonexistent/a", AT_FDCWD,
				   "/nonexistent/b", 0),
		     -ENOENT);
	BW_ASSERT_EQ(bw_sys.unlinkat(AT_FDCWD, "/nonexistent/a", 0), -ENOENT);
	BW_ASSERT_EQ(bw_sys.readlinkat(AT_FDCWD, "/nonexistent/a", buf,
				       sizeof(buf)),
		     -ENOENT);
	BW_ASSERT_EQ(bw_sys.getdents64(-1, buf, sizeof(buf)), -EBADF);
	BW_ASSERT_EQ(bw_sys.mmap(NULL, 0, PROT_READ,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &m),
		     -EINVAL);
	BW_ASSERT(m == NULL);
	BW_ASSERT_EQ(bw_sys.munmap((void *)1, 4096), -EINVAL);
	/* FUTEX_WAIT_BITSET is 9, FUTEX_BITSET_MATCH_ANY ~0. */
	BW_ASSERT_EQ(bw_sys.futex(&word, 9, 8, &past, ~0u), -EAGAIN);
	BW_ASSERT_EQ(bw_sys.futex(&word, 9, 7, &past, ~0u), -ETIMEDOUT);
	BW_ASSERT_EQ(bw_sys.nanosleep(&bad), -EINVAL);
	BW_ASSERT_EQ(errno, EDOM);
	BW_ASSERT_EQ(bw_sys.sched_yield(), 0);
	BW_ASSERT_EQ(bw_sys.readlinkat(AT_FDCWD, "/proc/self/ns/pid", buf,
				       sizeof(buf)) > 5,
		     1);
	BW_ASSERT_EQ(bw_sys.mmap(NULL, 4096, PROT_READ,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &m),
		     0);
	BW_ASSERT(m != NULL && m != MAP_FAILED);
	BW_ASSERT_EQ(bw_sys.munmap(m, 4096), 0);
	BW_ASSERT_EQ(errno, EDOM);
}

/* The private table cannot be mapped (ENOMEM): attach says so and
 * returns the error; the program's errno is as it was. */
static void test_sys_state_private_mmap_fails(void)
{
	struct bw_state st;
	char why[256];

	reset();
	bw_sys.mmap = mmap_fail;
	atomic_store(&fault_errno, ENOMEM);
	errno = EDOM;
	BW_ASSERT_EQ(bw_state_attach_private(&st), -ENOMEM);
	BW_ASSERT_EQ(errno, EDOM);
	BW_ASSERT(st.hdr == NULL);
	BW_ASSERT_EQ(bw_state_attach(&st, "private", true, why, sizeof(why)),
		     -ENOMEM);
	BW_ASSERT_EQ(errno, EDOM);
	BW_ASSERT(strstr(why, "out of memory") != NULL);
	BW_ASSERT_EQ(atomic_load(&n_mmap), 2);
	reset();
	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	bw_state_detach(&st);
	BW_ASSERT_EQ(errno, EDOM);
}

/* A segment file that cannot be examined (fstat fails) or sized (fchmod
 * fails while creating it): attach returns that error, names it, holds no
 * fd and leaves errno; a segment that cannot be mapped likewise. */
static void test_sys_state_file_faults(void)
{
	const char *name = seg_name("faults");
	struct bw_state st;
	char why[256];

	reset();
	seg_unlink(name);
	bw_sys.openat = open_count;
	bw_sys.close = close_count;
	bw_sys.fchmod = fchmod_fail;
	atomic_store(&fault_errno, EROFS);
	errno = EDOM;
	BW_ASSERT_EQ(bw_state_attach(&st, name, true, why, sizeof(why)),
		     -EROFS);
	BW_ASSERT_EQ(errno, EDOM);
	BW_ASSERT(strstr(why, "read-only file system") != NULL);
	BW_ASSERT(!seg_exists(name));
	BW_ASSERT_EQ(atomic_load(&n_close), atomic_load(&n_open));

	bw_sys.fchmod = bw_sys_default.fchmod;
	BW_ASSERT_EQ(bw_state_attach(&st, name, true, why, sizeof(why)), 0);
	bw_state_detach(&st);
	bw_sys.fstat = fstat_fail;
	atomic_store(&fault_errno, EIO);
	errno = EDOM; /* seg_exists's access() set it */
	BW_ASSERT_EQ(bw_state_attach(&st, name, false, why, sizeof(why)), -EIO);
	BW_ASSERT_EQ(errno, EDOM);
	BW_ASSERT(atomic_load(&n_fstat) >= 1);
	BW_ASSERT(st.hdr == NULL);

	bw_sys.fstat = bw_sys_default.fstat;
	bw_sys.mmap = mmap_fail;
	atomic_store(&fault_errno, ENOMEM);
	BW_ASSERT_EQ(bw_state_attach(&st, name, false, why, sizeof(why)),
		     -ENOMEM);
	BW_ASSERT_EQ(errno, EDOM);
	BW_ASSERT(strstr(why, "cannot map: out of memory") != NULL);
	BW_ASSERT_EQ(atomic_load(&n_close), atomic_load(&n_open));
	reset();
	seg_unlink(name);
}

/* The bulkhead's socket inode comes from bw_sys.fstat: its answer is
 * used, a failure is 0, and errno is left alone either way. */
static void test_sys_bulkhead_sock_ino(void)
{
	reset();
	bw_sys.fstat = fstat_sock;
	errno = EDOM;
	BW_ASSERT_EQ(bw_bulkhead_sock_ino(5), 4242);
	bw_sys.fstat = fstat_fail;
	atomic_store(&fault_errno, EBADF);
	BW_ASSERT_EQ(bw_bulkhead_sock_ino(5), 0);
	BW_ASSERT_EQ(atomic_load(&n_fstat), 2);
	BW_ASSERT_EQ(errno, EDOM);
	reset();
	BW_ASSERT_EQ(bw_bulkhead_sock_ino(0) == 4242, 0);
	BW_ASSERT_EQ(errno, EDOM);
}

/* A connect that waits in a full bulkhead sleeps on the futex through
 * bw_sys; the timed-out sleep (ETIMEDOUT from the kernel) leaves errno. */
static void test_sys_bulkhead_wait_futex(void)
{
	const char *name = seg_name("futex");
	struct bw_state st;
	struct bw_dest *d;
	struct bw_slot a, b;
	struct bw_settings s;

	reset();
	full_bulkhead(name, 81, 30 * MS, &st, &s, &d, &a);
	bw_sys.futex = futex_count;
	errno = EDOM;
	BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &s, BW_BH_ALWAYS, 0, mono_ns(),
					 &b),
		     -ECONNREFUSED);
	BW_ASSERT(atomic_load(&n_futex) >= 1);
	BW_ASSERT_EQ(errno, EDOM);
	bw_bulkhead_release(&st, &a);
	BW_ASSERT_EQ(errno, EDOM);
	bw_state_detach(&st);
	reset();
	seg_unlink(name);
}

/* A push that finds its record held by a live writer sleeps through
 * bw_sys between its 2000 looks, then gives up with -EBUSY; the sleeps
 * (here each "interrupted") leave errno alone. */
static void test_sys_livestore_push_sleeps(void)
{
	struct bw_state st;

	reset();
	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	/* The first push takes generation 1: hold its record. */
	struct bw_policy_rec *r = &st.pol->recs[1 % BW_POLICY_RECS];
	atomic_store(&r->seq, 1);
	atomic_store(&r->writer, (uint64_t)getpid());
	bw_sys.nanosleep = sleep_count;
	errno = EDOM;
	BW_ASSERT_EQ(bw_livestore_push(&st, "x", 1, 0, 0, 0, 0), -EBUSY);
	BW_ASSERT_EQ(atomic_load(&n_sleep), 2000);
	BW_ASSERT_EQ(errno, EDOM);
	reset();
	bw_state_detach(&st);
}

static const struct bw_test tests[] = {
	BW_TEST(test_sys_defaults_keep_errno),
	BW_TEST(test_sys_state_attach_open_fails),
	BW_TEST(test_sys_state_attach_closes_every_fd),
	BW_TEST(test_sys_bulkhead_blocking_check),
	BW_TEST(test_sys_more_defaults_keep_errno),
	BW_TEST(test_sys_state_private_mmap_fails),
	BW_TEST(test_sys_state_file_faults),
	BW_TEST(test_sys_bulkhead_sock_ino),
	BW_TEST(test_sys_bulkhead_wait_futex),
	BW_TEST(test_sys_livestore_push_sleeps),
};

BW_TEST_MAIN(tests)
