/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_write.c: 1-byte write() to /dev/null in a loop, an fd the
 * shim never tracks, so this is the cost of the hook's fast path (one load,
 * one branch, doc/design.md L5).  Times the loop in blocks of BLOCK writes
 * (default 1000) and prints "MEDIAN_NS MEAN_NS" per write, the median over
 * blocks; a block is one iteration for BENCH_LOCKSTEP
 * (bench/bench_lockstep.c), so that bench/run can run it in lockstep with
 * a twin without the token's passing weighing on 300 ns writes.
 *
 *   bench_write ITERATIONS [BLOCK]
 */
#include <fcntl.h>
#include <unistd.h>

#include "bench/bench.h"

struct block {
	int fd;
	long writes;
};

static int write_block(void *arg)
{
	const struct block *b = arg;
	char c = 'x';
	for (long i = 0; i < b->writes; i++)
		if (write(b->fd, &c, 1) != 1)
			return -1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: bench_write ITERATIONS [BLOCK]\n");
		return 2;
	}
	long n = bench_arg_long(argv[1], "iterations");
	struct block b = { -1, argc == 3 ? bench_arg_long(argv[2], "block")
					 : 1000 };
	if (b.writes < 1)
		b.writes = 1;
	b.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (b.fd < 0) {
		perror("bench_write: /dev/null");
		return 1;
	}
	struct block warm = { b.fd, n / 10 + 1000 }; /* caches and PLT */
	int rc = write_block(&warm);
	if (rc == 0)
		rc = bench_timed_loop("bench_write",
				      n / b.writes > 0 ? n / b.writes : 1,
				      b.writes, write_block, &b);
	else
		perror("bench_write: write");
	close(b.fd);
	return rc < 0;
}
