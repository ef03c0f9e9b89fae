/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_async.c: the scheduling of non-blocking connects the shim
 * works on in the program's waits (shim/async.c): due times and their
 * order, a failure hidden and retried, the final error owed, epoll
 * registrations out of the kernel's set during a backoff and back after,
 * and cancellation on close, on a dup2 that replaces the fd, and in a fork
 * child.  Real sockets on loopback: a port bound but not listening
 * refuses every connect.  The hooks are not in this binary: the test calls
 * what they call (bw_connect, bw_async_pump, bw_async_result...).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim/async.h"
#include "shim/connect.h"
#include "shim/fd_table.h"
#include "shim/internal.h"
#include "shim/live.h"
#include "shim/real.h"
#include "tests/unit/bw_test.h"

/* shim/init.c defines it in the library. */
struct bw_global bw_g;

#define MS 1000000ull

/* For the helpers that return a value (BW_ASSERT returns from void). */
#define CHECK(c)                                                           \
	do {                                                               \
		if (!(c)) {                                                \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, \
				#c);                                       \
			abort();                                           \
		}                                                          \
	} while (0)

static int refusing = -1; /* bound, never listening */
static struct sockaddr_in dest;

static void setup(const char *policy)
{
	static bool once;
	struct bw_policy_error err;
	if (!once) {
		bw_real_bind();
		bw_clock_init();
		once = true;
		refusing = socket(AF_INET, SOCK_STREAM, 0);
		dest.sin_family = AF_INET;
		dest.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(refusing, (struct sockaddr *)&dest, sizeof(dest));
		socklen_t l = sizeof(dest);
		getsockname(refusing, (struct sockaddr *)&dest, &l);
	}
	if (bw_g.state.dests)
		bw_state_detach(&bw_g.state);
	memset(bw_policy_env(), 0, sizeof(*bw_policy_env()));
	BW_ASSERT_EQ(bw_policy_init(bw_policy_env(), NULL, &err), 0);
	BW_ASSERT_EQ(bw_policy_parse(bw_policy_env(), policy, strlen(policy),
				     "test", &err),
		     0);
	BW_ASSERT_EQ(bw_policy_finish(bw_policy_env()), 0);
	BW_ASSERT_EQ(bw_state_attach_private(&bw_g.state), 0);
	bw_g.log_level = -1; /* quiet */
	bw_g.active = true;
	atomic_store(&bw_g.ready, 1);
}

#define POLICY                                                          \
	"127.0.0.1 retry.attempts=4 retry.backoff=50ms retry.jitter=0 " \
	"retry.budget=100% retry.min_success=off breaker.failures=1000"

/* A non-blocking socket whose connect to the refusing port went async. */
static int start(struct bw_conn **out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK(fd >= 0);
	CHECK(bw_fd_track(fd) != NULL);
	CHECK(bw_connect(fd, (struct sockaddr *)&dest, sizeof(dest)) ==
	      -EINPROGRESS);
	*out = bw_fd_conn(fd);
	return fd;
}

/* Waits (really) for fd's attempt to end and hands the result to the
 * shim as a wait hook would.  Returns what the hook does with it. */
static int settle(int fd, struct bw_conn *c)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	CHECK(poll(&p, 1, 2000) == 1);
	return bw_async_result(c, p.revents & (POLLERR | POLLHUP),
			       p.revents & POLLOUT);
}

static void forget(int fd)
{
	struct bw_conn *a = bw_fd_conn(fd);
	if (a && atomic_load(&a->aphase))
		bw_async_fd_gone(a, fd);
	struct bw_conn *c = bw_fd_drop(fd);
	if (c) {
		if (atomic_load(&c->aphase))
			bw_async_cancel(c);
		bw_conn_free(c);
	}
	close(fd);
}

static void test_async_retry_schedule_and_final_error(void)
{
	setup(POLICY);
	struct bw_conn *c;
	int fd = start(&c);
	BW_ASSERT_EQ(atomic_load(&c->aphase), BW_ASYNC_ATTEMPT);
	BW_ASSERT_EQ(atomic_load(&bw_async_pending), 1);
	uint64_t want = 50 * MS;
	for (unsigned n = 1; n < 4; n++) {
		uint64_t t = bw_clock_ns();
		/* The refused attempt: hidden, a backoff due in 50, 100,
		 * 200 ms (jitter 0). */
		BW_ASSERT_EQ(settle(fd, c), BW_ASYNC_HIDE);
		BW_ASSERT_EQ(atomic_load(&c->aphase), BW_ASYNC_BACKOFF);
		BW_ASSERT(bw_async_hidden(c));
		uint64_t due = c->adue_ns;
		BW_ASSERT(due >= t + want && due <= bw_clock_ns() + want);
		/* Before it is due, a pump does nothing and names it. */
		BW_ASSERT_EQ(bw_async_pump(due - MS), due);
		BW_ASSERT_EQ(c->attempt, n);
		/* At its time, the next attempt. */
		bw_async_pump(due);
		BW_ASSERT_EQ(c->attempt, n + 1);
		BW_ASSERT_EQ(atomic_load(&c->aphase), BW_ASYNC_ATTEMPT);
		want *= 2;
	}
	/* The fourth attempt fails for good: shown with the error owed. */
	BW_ASSERT_EQ(settle(fd, c), BW_ASYNC_SHOW_ERR);
	BW_ASSERT_EQ(atomic_load(&c->aphase), BW_ASYNC_NONE);
	BW_ASSERT_EQ(c->pending_err, ECONNREFUSED);
	BW_ASSERT_EQ(atomic_load(&bw_async_pending), 0);
	BW_ASSERT_EQ(bw_async_pump(bw_clock_ns()), UINT64_MAX);
	forget(fd);
}

static void test_async_earliest_due_first(void)
{
	setup(POLICY);
	struct bw_conn *a, *b;
	int fa = start(&a);
	BW_ASSERT_EQ(settle(fa, a), BW_ASYNC_HIDE); /* due in 50 ms */
	int fb = start(&b);
	BW_ASSERT_EQ(settle(fb, b), BW_ASYNC_HIDE);
	BW_ASSERT(b->adue_ns > a->adue_ns);
	BW_ASSERT_EQ(bw_async_pump(bw_clock_ns()), a->adue_ns);
	/* a's attempt made: its connect.timeout is off, so b is next. */
	uint64_t bd = b->adue_ns;
	BW_ASSERT_EQ(bw_async_pump(a->adue_ns), bd);
	BW_ASSERT_EQ(a->attempt, 2);
	BW_ASSERT_EQ(b->attempt, 1);
	forget(fa);
	forget(fb);
	BW_ASSERT_EQ(atomic_load(&bw_async_pending), 0);
}

static void test_async_close_cancels(void)
{
	setup(POLICY);
	struct bw_conn *c;
	int fd = start(&c);
	BW_ASSERT_EQ(settle(fd, c), BW_ASYNC_HIDE);
	uint64_t due = c->adue_ns;
	forget(fd);
	BW_ASSERT_EQ(atomic_load(&bw_async_pending), 0);
	BW_ASSERT_EQ(atomic_load(&c->aphase), BW_ASYNC_NONE);
	/* Nothing left to do, no attempt made past the close. */
	BW_ASSERT_EQ(bw_async_pump(due + 1000 * MS), UINT64_MAX);
}

static void test_async_dup2_keeps_the_connection(void)
{
	setup(POLICY);
	struct bw_conn *c;
	int fd = start(&c);
	BW_ASSERT_EQ(settle(fd, c), BW_ASYNC_HIDE);
	/* The program dups the fd and closes the original: the shim goes
	 * on on the copy. */
	int fd2 = dup(fd);
	bw_fd_dup(fd, fd2);
	forget(fd);
	BW_ASSERT_EQ(c->afd, fd2);
	BW_ASSERT_EQ(atomic_load(&bw_async_pending), 1);
	bw_async_pump(c->adue_ns);
	BW_ASSERT_EQ(c->attempt, 2);
	BW_ASSERT_EQ(atomic_load(&c->aphase), BW_ASYNC_ATTEMPT);
	/* dup2 of something else onto the last fd: cancelled. */
	int other = socket(AF_INET, SOCK_DGRAM, 0);
	forget(fd2); /* what the dup2 hook does before the real dup2 */
	dup2(other, fd2);
	close(other);
	close(fd2);
	BW_ASSERT_EQ(atomic_load(&bw_async_pending), 0);
}

static void test_async_fork_child_drops_parents_work(void)
{
	setup(POLICY);
	struct bw_conn *c;
	int fd = start(&c);
	BW_ASSERT_EQ(settle(fd, c), BW_ASYNC_HIDE);
	pid_t pid = fork();
	if (pid == 0) {
		bw_async_fork_child();
		int bad = atomic_load(&bw_async_pending) != 0 ||
			  atomic_load(&c->aphase) != BW_ASYNC_NONE ||
			  bw_async_pump(c->adue_ns) != UINT64_MAX ||
			  c->attempt != 1;
		_exit(bad);
	}
	int st = 0;
	BW_ASSERT_EQ(waitpid(pid, &st, 0), pid);
	BW_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* The parent's work goes on. */
	BW_ASSERT_EQ(atomic_load(&bw_async_pending), 1);
	bw_async_pump(c->adue_ns);
	BW_ASSERT_EQ(c->attempt, 2);
	forget(fd);
}

static void test_async_epoll_registration_hidden_during_backoff(void)
{
	setup(POLICY);
	struct bw_conn *c;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	BW_ASSERT(bw_fd_track(fd) != NULL);
	c = bw_fd_conn(fd);
	int ep = epoll_create1(0);
	bw_async_epoll_new(ep);
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLET };
	ev.data.u64 = 0xfeed;
	BW_ASSERT_EQ(bw_async_epoll_ctl(c, ep, EPOLL_CTL_ADD, fd, &ev), 0);
	BW_ASSERT_EQ(bw_connect(fd, (struct sockaddr *)&dest, sizeof(dest)),
		     -EINPROGRESS);
	struct epoll_event out;
	BW_ASSERT_EQ(epoll_wait(ep, &out, 1, 2000), 1);
	BW_ASSERT(bw_async_by_data(ep, 0xfeed) == c);
	BW_ASSERT_EQ(bw_async_result(c, out.events & (EPOLLERR | EPOLLHUP),
				     out.events & EPOLLOUT),
		     BW_ASYNC_HIDE);
	/* Out of the kernel's set: the closed socket reports nothing. */
	BW_ASSERT_EQ(epoll_wait(ep, &out, 1, 20), 0);
	/* The program's MOD meanwhile is recorded, not refused. */
	ev.data.u64 = 0xbeef;
	BW_ASSERT_EQ(bw_async_epoll_ctl(c, ep, EPOLL_CTL_MOD, fd, &ev), 0);
	BW_ASSERT_EQ(bw_async_epoll_ctl(c, ep, EPOLL_CTL_ADD, fd, &ev),
		     -EEXIST);
	/* The next attempt puts it back, with the new data, armed. */
	bw_async_pump(c->adue_ns);
	BW_ASSERT_EQ(atomic_load(&c->aphase), BW_ASYNC_ATTEMPT);
	BW_ASSERT_EQ(epoll_wait(ep, &out, 1, 2000), 1);
	BW_ASSERT_EQ(out.data.u64, 0xbeef);
	forget(fd);
	forget(ep);
}

static const struct bw_test tests[] = {
	BW_TEST(test_async_retry_schedule_and_final_error),
	BW_TEST(test_async_earliest_due_first),
	BW_TEST(test_async_close_cancels),
	BW_TEST(test_async_dup2_keeps_the_connection),
	BW_TEST(test_async_fork_child_drops_parents_work),
	BW_TEST(test_async_epoll_registration_hidden_during_backoff),
};

BW_TEST_MAIN(tests)
