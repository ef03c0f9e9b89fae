/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_write.c: 1-byte write() to /dev/null in a loop, an fd the
 * shim never tracks, so this is the cost of the hook's fast path (one load,
 * one branch, LESSONS 5).  Prints the mean ns per write of one timed loop;
 * bench/run runs it interleaved with and without the shim.
 *
 *   bench_write ITERATIONS
 */
#include <fcntl.h>
#include <unistd.h>

#include "bench/bench.h"

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: bench_write ITERATIONS\n");
		return 2;
	}
	long n = bench_arg_long(argv[1], "iterations");
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("bench_write: /dev/null");
		return 1;
	}
	char c = 'x';
	for (long i = 0; i < n / 10 + 1000; i++) /* warm caches and PLT */
		if (write(fd, &c, 1) != 1)
			return 1;
	uint64_t t0 = bench_now_ns();
	for (long i = 0; i < n; i++)
		if (write(fd, &c, 1) != 1) {
			perror("bench_write: write");
			return 1;
		}
	uint64_t dt = bench_now_ns() - t0;
	printf("%.2f\n", n ? (double)dt / (double)n : 0.0);
	close(fd);
	return 0;
}
