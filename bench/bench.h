/* SPDX-License-Identifier: MIT */
/*
 * bench/bench.h: what every bench program shares: the clock, argument
 * parsing, a median, the lockstep token, and the timed loop whose output
 * bench/run reads.
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
#include <unistd.h>

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

/*
 * Lockstep (bench/bench_lockstep.c): when BENCH_LOCKSTEP="R,W" is set, a
 * latency bench takes the token from fd R before each timed iteration and
 * hands it on through fd W after it, taking turns with the other variants.
 * BENCH_LOCKSTEP_SETTLE_US (default 0) is a pause before handing it on:
 * the work an iteration leaves behind in other processes (a server or a
 * sidecar closing its side of a connection) then runs while we sleep, not
 * inside the next variant's timed iteration.  Without BENCH_LOCKSTEP both
 * calls do nothing.
 */
struct bench_lockstep {
	int rfd, wfd;
	struct timespec settle;
};

static inline struct bench_lockstep bench_lockstep_open(void)
{
	struct bench_lockstep l = { -1, -1, { 0, 0 } };
	const char *e = getenv("BENCH_LOCKSTEP");
	const char *us = getenv("BENCH_LOCKSTEP_SETTLE_US");
	if (e && sscanf(e, "%d,%d", &l.rfd, &l.wfd) != 2)
		l.rfd = l.wfd = -1;
	if (us) {
		long v = bench_arg_long(us, "BENCH_LOCKSTEP_SETTLE_US");
		l.settle.tv_sec = v / 1000000;
		l.settle.tv_nsec = (v % 1000000) * 1000;
	}
	return l;
}

/* Waits for the token: 0, or -1 when the ring is broken. */
static inline int bench_lockstep_take(const struct bench_lockstep *l)
{
	char t;
	if (l->rfd < 0)
		return 0;
	for (;;) {
		ssize_t r = read(l->rfd, &t, 1);
		if (r == 1)
			return 0;
		if (r == 0 || errno != EINTR)
			return -1;
	}
}

/* Hands the token on, after the settling pause if any. */
static inline void bench_lockstep_pass(const struct bench_lockstep *l)
{
	char t = 't';
	if (l->wfd < 0)
		return;
	if (l->settle.tv_sec || l->settle.tv_nsec)
		nanosleep(&l->settle, NULL);
	while (write(l->wfd, &t, 1) < 0 && errno == EINTR)
		;
}

/*
 * The timed loop every latency bench runs: n iterations of fn(arg), each
 * timed alone (and taking its turn when BENCH_LOCKSTEP is set), then
 * "MEDIAN_NS MEAN_NS" on standard output, divided by per (an iteration of
 * bench_write is a block of per writes).  Returns 0, or -1 with a message
 * on standard error when an iteration failed (fn returned < 0, errno set)
 * or the lockstep ring broke: the caller exits 1.
 */
static inline int bench_timed_loop(const char *name, long n, long per,
				   int (*fn)(void *), void *arg)
{
	uint64_t *v = calloc((size_t)n + 1, sizeof(*v));
	uint64_t sum = 0;
	struct bench_lockstep ls = bench_lockstep_open();
	if (!v) {
		fprintf(stderr, "%s: no memory\n", name);
		return -1;
	}
	for (long i = 0; i < n; i++) {
		if (bench_lockstep_take(&ls) < 0) {
			fprintf(stderr, "%s: lockstep ring broken\n", name);
			free(v);
			return -1;
		}
		uint64_t t0 = bench_now_ns();
		if (fn(arg) < 0) {
			fprintf(stderr, "%s: %s\n", name, strerror(errno));
			free(v);
			return -1;
		}
		v[i] = bench_now_ns() - t0;
		bench_lockstep_pass(&ls);
		sum += v[i];
	}
	double d = (double)(per > 0 ? per : 1);
	double mean = n ? (double)sum / (double)n : 0.0;
	printf("%.2f %.2f\n", bench_median(v, (size_t)n) / d, mean / d);
	free(v);
	return 0;
}

#endif
