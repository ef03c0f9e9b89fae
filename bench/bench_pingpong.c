/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_pingpong.c: 1-byte request/response round trips on one
 * loopback TCP connection (send then recv, the exchange bulwark-policy(7) CALLS
 * counts as one call).  The peer is bench_echo_server, directly or through a
 * sidecar.  After a warm-up, times every round trip of the loop and prints
 * "MEDIAN_NS MEAN_NS".  The median is the number bench/run compares: a
 * hypervisor's or a timer's occasional stall lands on a few round trips
 * and moves the mean, not the median.  Honours BENCH_LOCKSTEP
 * (bench/bench_lockstep.c).
 *
 *   bench_pingpong HOST PORT ITERATIONS
 */
#include <netinet/tcp.h>
#include <unistd.h>

#include "bench/bench.h"

static int exchange(void *arg)
{
	int fd = *(int *)arg;
	char c = 'p';
	if (send(fd, &c, 1, 0) != 1)
		return -1;
	ssize_t r = recv(fd, &c, 1, 0);
	if (r == 0)
		errno = ECONNRESET; /* the peer closed */
	return r == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: bench_pingpong HOST PORT ITERATIONS\n");
		return 2;
	}
	struct sockaddr_in a = bench_addr(argv[1], argv[2]);
	long n = bench_arg_long(argv[3], "iterations");
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("bench_pingpong: connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (long i = 0; i < n / 10 + 200; i++)
		if (exchange(&fd) < 0) {
			perror("bench_pingpong: exchange");
			return 1;
		}
	int rc = bench_timed_loop("bench_pingpong", n, 1, exchange, &fd);
	close(fd);
	return rc < 0;
}
