/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_pingpong.c: 1-byte request/response round trips on one
 * loopback TCP connection (send then recv, the exchange SPEC §4 counts as
 * one call).  The peer is bench_echo_server, directly or through a sidecar.
 * Prints the mean ns per round trip of one timed loop, after a warm-up.
 *
 *   bench_pingpong HOST PORT ITERATIONS
 */
#include <netinet/tcp.h>
#include <unistd.h>

#include "bench/bench.h"

static int exchange(int fd)
{
	char c = 'p';
	if (send(fd, &c, 1, 0) != 1)
		return -1;
	return recv(fd, &c, 1, 0) == 1 ? 0 : -1;
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
		if (exchange(fd) < 0)
			goto fail;
	uint64_t t0 = bench_now_ns();
	for (long i = 0; i < n; i++)
		if (exchange(fd) < 0)
			goto fail;
	uint64_t dt = bench_now_ns() - t0;
	printf("%.2f\n", n ? (double)dt / (double)n : 0.0);
	close(fd);
	return 0;
fail:
	perror("bench_pingpong: exchange");
	return 1;
}
