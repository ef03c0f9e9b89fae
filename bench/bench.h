/* SPDX-License-Identifier: MIT */
/*
 * bench/bench.h: what every bench program shares: the clock, argument
 * parsing, a median, and the one-number output bench/run reads.
 * Header-only so each bench_*.c builds on its own (bench/run compiles them
 * without the shim's objects, so no bulwark constructor runs inside them).
 */
#ifndef BW_BENCH_BENCH_H
#define BW_BENCH_BENCH_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A positive count from argv, or exits with status 2. */
static inline long bench_arg_long(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 0) {
		fprintf(stderr, "bench: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

/* An IPv4 loopback (or any literal) address and port.  Exits 2 if bad. */
static inline struct sockaddr_in bench_addr(const char *host, const char *port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)bench_arg_long(port, "port"));
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "bench: bad IPv4 address '%s'\n", host);
		exit(2);
	}
	return a;
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Median of n values (sorts v in place); 0 for n == 0. */
static inline double bench_median(uint64_t *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), bench_cmp_u64);
	return n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

#endif
