/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_echo_server.c: the benches' peer, a one-thread epoll echo
 * server.  Runs without the shim (bench/run starts it, kills it at exit).
 * Prints the port it listens on, then echoes every byte it reads on every
 * connection and closes a connection at EOF or error.
 *
 *   bench_echo_server [ADDR [PORT]]      (default 127.0.0.1, port 0: any)
 */
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench/bench.h"

/* Events taken per epoll_wait: enough for the benches' few connections
 * at a time; more simply wait for the next call. */
#define ECHO_EVENTS_MAX 256

static void drop(int ep, int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
}

static void accept_all(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			close(fd);
	}
}

/* Echoes what fd has to read.  The benches never have more than a few
 * bytes in flight, so a short write means a dead peer. */
static void echo(int ep, int fd)
{
	char buf[4096];
	ssize_t r = read(fd, buf, sizeof(buf));
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0 || write(fd, buf, (size_t)r) != r)
		drop(ep, fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = bench_addr(argc > 1 ? argv[1] : "127.0.0.1",
					  argc > 2 ? argv[2] : "0");
	socklen_t len = sizeof(a);
	int one = 1;
	signal(SIGPIPE, SIG_IGN);
	int lfd =
		socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &len) < 0) {
		perror("bench_echo_server: listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("bench_echo_server: epoll");
		return 1;
	}
	printf("%u\n", ntohs(a.sin_port));
	fflush(stdout);
	struct epoll_event evs[ECHO_EVENTS_MAX];
	for (;;) {
		int n = epoll_wait(ep, evs, ECHO_EVENTS_MAX, -1);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == lfd)
				accept_all(ep, lfd);
			else
				echo(ep, evs[i].data.fd);
		}
		if (n < 0 && errno != EINTR) {
			perror("bench_echo_server: epoll_wait");
			return 1;
		}
	}
}
