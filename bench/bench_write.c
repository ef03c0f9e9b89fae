/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_write.c: 1-byte write() to /dev/null in a loop, an fd the
 * shim never tracks, so this is the cost of the hook's fast path (one load,
 * one branch, LESSONS 5).  Times the loop in blocks of BLOCK writes
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

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: bench_write ITERATIONS [BLOCK]\n");
		return 2;
	}
	long n = bench_arg_long(argv[1], "iterations");
	long block = argc == 3 ? bench_arg_long(argv[2], "block") : 1000;
	if (block < 1)
		block = 1;
	long nb = n / block > 0 ? n / block : 1;
	uint64_t *v = calloc((size_t)nb, sizeof(*v));
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (!v || fd < 0) {
		perror("bench_write: /dev/null");
		return 1;
	}
	char c = 'x';
	for (long i = 0; i < n / 10 + 1000; i++) /* warm caches and PLT */
		if (write(fd, &c, 1) != 1)
			return 1;
	struct bench_lockstep ls = bench_lockstep_open();
	uint64_t sum = 0;
	for (long b = 0; b < nb; b++) {
		if (bench_lockstep_take(&ls) < 0) {
			fprintf(stderr, "bench_write: lockstep ring broken\n");
			return 1;
		}
		uint64_t t0 = bench_now_ns();
		for (long i = 0; i < block; i++)
			if (write(fd, &c, 1) != 1) {
				perror("bench_write: write");
				return 1;
			}
		v[b] = bench_now_ns() - t0;
		bench_lockstep_pass(&ls);
		sum += v[b];
	}
	printf("%.2f %.2f\n", bench_median(v, (size_t)nb) / (double)block,
	       (double)sum / (double)nb / (double)block);
	free(v);
	close(fd);
	return 0;
}
