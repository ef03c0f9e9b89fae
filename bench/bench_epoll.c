/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_epoll.c: the ping-pong and connect loops of bench_pingpong.c
 * and bench_connect.c as an event loop does them: non-blocking sockets,
 * every wait in epoll_wait (what curl, nginx, libuv or asyncio do).  The
 * shim's wait and epoll_ctl hooks run on every iteration; an fd the shim
 * does not track (or an epoll fd holding none) should cost them one
 * branch (README, "event loops").
 *
 *   bench_epoll pingpong HOST PORT ITERATIONS
 *       one connection, EPOLLIN registered once (level-triggered); each
 *       round trip: send 1 byte, epoll_wait until readable, recv.
 *   bench_epoll connect HOST PORT ITERATIONS
 *       each cycle: socket(SOCK_NONBLOCK), epoll_ctl ADD EPOLLOUT,
 *       connect (EINPROGRESS), epoll_wait for EPOLLOUT, SO_ERROR, send 1
 *       byte, epoll_ctl MOD EPOLLIN, epoll_wait, recv, close.  One epoll
 *       fd for the whole loop, as an event loop keeps.
 *
 * After a warm-up, times every iteration and prints "MEDIAN_NS MEAN_NS"
 * (bench/run compares medians).  Honours BENCH_LOCKSTEP
 * (bench/bench_lockstep.c).
 */
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench/bench.h"

struct loop {
	int ep;
	int fd; /* pingpong: the connection */
	struct sockaddr_in addr;
};

/* Waits (no timeout) until fd reports one of want; 0, or -1 with errno
 * (the socket's error for EPOLLERR, ECONNRESET for a hang-up). */
static int wait_for(int ep, int fd, uint32_t want)
{
	struct epoll_event ev;
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0 || ev.data.fd != fd)
			continue;
		if (ev.events & want)
			return 0;
		if (ev.events & (EPOLLERR | EPOLLHUP)) {
			int e = 0;
			socklen_t l = sizeof(e);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
			errno = e ? e : ECONNRESET;
			return -1;
		}
	}
}

/* send 1 byte, wait until readable, recv it (again after EAGAIN). */
static int exchange(int ep, int fd)
{
	char c = 'e';
	if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
		return -1; /* 1 byte always fits an empty send buffer */
	for (;;) {
		if (wait_for(ep, fd, EPOLLIN) < 0)
			return -1;
		ssize_t r = recv(fd, &c, 1, 0);
		if (r == 1)
			return 0;
		if (r == 0) {
			errno = ECONNRESET; /* the peer closed */
			return -1;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -1;
	}
}

static int pingpong(void *arg)
{
	struct loop *l = arg;
	return exchange(l->ep, l->fd);
}

/* A non-blocking connect to l->addr on a new fd registered in l->ep with
 * events; the fd, or -1 with errno (the fd closed). */
static int open_conn(struct loop *l, uint32_t events)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct epoll_event ev = { .events = events, .data.fd = fd };
	int e = 0;
	socklen_t len = sizeof(e);
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		goto fail;
	if (connect(fd, (const struct sockaddr *)&l->addr, sizeof(l->addr)) <
		    0 &&
	    errno != EINPROGRESS)
		goto fail;
	if (wait_for(l->ep, fd, EPOLLOUT) < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		goto fail;
	if (e) {
		errno = e;
		goto fail;
	}
	return fd;
fail:
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

static int cycle(void *arg)
{
	struct loop *l = arg;
	int fd = open_conn(l, EPOLLOUT);
	if (fd < 0)
		return -1;
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	int rc = epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev);
	if (rc == 0)
		rc = exchange(l->ep, fd);
	int saved = errno;
	close(fd); /* leaves the epoll set with its last reference */
	errno = saved;
	return rc;
}

int main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[1], "pingpong") != 0 &&
			  strcmp(argv[1], "connect") != 0)) {
		fprintf(stderr, "usage: bench_epoll pingpong|connect HOST PORT "
				"ITERATIONS\n");
		return 2;
	}
	struct loop l = { .ep = -1, .fd = -1 };
	l.addr = bench_addr(argv[2], argv[3]);
	long n = bench_arg_long(argv[4], "iterations");
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	if (l.ep < 0) {
		perror("bench_epoll: epoll_create1");
		return 1;
	}
	if (strcmp(argv[1], "connect") == 0) {
		for (long i = 0; i < 20; i++)
			if (cycle(&l) < 0) {
				perror("bench_epoll: connect cycle");
				return 1;
			}
		return bench_timed_loop("bench_epoll connect", n, 1, cycle,
					&l) < 0;
	}
	int one = 1;
	l.fd = open_conn(&l, EPOLLOUT);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = l.fd };
	if (l.fd < 0 || epoll_ctl(l.ep, EPOLL_CTL_MOD, l.fd, &ev) < 0) {
		perror("bench_epoll: connect");
		return 1;
	}
	setsockopt(l.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (long i = 0; i < n / 10 + 200; i++)
		if (pingpong(&l) < 0) {
			perror("bench_epoll: exchange");
			return 1;
		}
	int rc = bench_timed_loop("bench_epoll pingpong", n, 1, pingpong, &l);
	close(l.fd);
	close(l.ep);
	return rc < 0;
}
