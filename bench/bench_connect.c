/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_connect.c: connection set-up costs.
 *
 *   bench_connect ok HOST PORT ITERATIONS
 *       socket + connect + one 1-byte exchange + close, in a loop, to a
 *       live echo server (directly or through a sidecar); times every
 *       cycle and prints "MEDIAN_NS MEAN_NS" (bench/run compares medians).
 *       Honours BENCH_LOCKSTEP (bench/bench_lockstep.c).
 *   bench_connect fail HOST PORT MAX_ATTEMPTS BUDGET_MS TIMEOUT_MS [WARMUP_MS]
 *       the time a program needs to learn that a destination is dead:
 *       from connect() until a failure is known (connect fails, or, through
 *       a sidecar that accepts for a dead backend, the 1-byte exchange
 *       fails or hits EOF).  socket() and close() are not timed.  One
 *       untimed attempt first, bounded by WARMUP_MS (default TIMEOUT_MS,
 *       0: none; it trips bulwark's breaker or marks the sidecar's server
 *       down), then attempts until MAX_ATTEMPTS or
 *       BUDGET_MS; SO_SNDTIMEO/SO_RCVTIMEO of TIMEOUT_MS bound a black
 *       hole, as a careful legacy program would.  Prints
 *       "MEDIAN_NS ATTEMPTS OUTCOME"; exits 3 if the destination answered.
 */
#include <sys/time.h>
#include <unistd.h>

#include "bench/bench.h"

/* Outcome of one attempt, worst last. */
enum outcome { OUT_REFUSED, OUT_CLOSED, OUT_TIMEOUT, OUT_OTHER, OUT_ALIVE };
static const char *const outcome_names[] = { "refused", "closed", "timeout",
					     "other-error", "alive" };

static int cycle(void *arg)
{
	const struct sockaddr_in *a = arg;
	char c = 'c';
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int rc = -1;
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0 &&
	    send(fd, &c, 1, 0) == 1) {
		ssize_t r = recv(fd, &c, 1, 0);
		if (r == 0)
			errno = ECONNRESET; /* the peer closed */
		rc = r == 1 ? 0 : -1;
	}
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

static int run_ok(struct sockaddr_in *a, long n)
{
	for (long i = 0; i < 20; i++)
		if (cycle(a) < 0) {
			perror("bench_connect: cycle");
			return 1;
		}
	return bench_timed_loop("bench_connect", n, 1, cycle, a) < 0;
}

static enum outcome classify(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return OUT_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return OUT_CLOSED;
	case EINPROGRESS:
	case EAGAIN:
	case ETIMEDOUT:
		return OUT_TIMEOUT;
	default:
		return OUT_OTHER;
	}
}

/* One attempt; *dt gets the time from connect() to the verdict. */
static enum outcome attempt(const struct sockaddr_in *a, long timeout_ms,
			    uint64_t *dt)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
			      .tv_usec = (timeout_ms % 1000) * 1000 };
	char c = 'f';
	enum outcome o;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*dt = 0;
		return OUT_OTHER;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint64_t t0 = bench_now_ns();
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0) {
		o = classify(errno);
	} else if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) {
		o = classify(errno);
	} else {
		ssize_t r = recv(fd, &c, 1, 0);
		o = r == 1 ? OUT_ALIVE : r == 0 ? OUT_CLOSED : classify(errno);
	}
	*dt = bench_now_ns() - t0;
	close(fd);
	return o;
}

static int run_fail(const struct sockaddr_in *a, long max, long budget_ms,
		    long timeout_ms, long warmup_ms)
{
	uint64_t *v = calloc((size_t)max + 1, sizeof(*v));
	uint64_t dt;
	enum outcome worst = OUT_REFUSED;
	long n = 0;
	if (!v)
		return 1;
	if (warmup_ms > 0) /* trips the breaker / marks the server down */
		attempt(a, warmup_ms, &dt);
	uint64_t end = bench_now_ns() + (uint64_t)budget_ms * 1000000ull;
	while (n < max && (n == 0 || bench_now_ns() < end)) {
		enum outcome o = attempt(a, timeout_ms, &v[n++]);
		if (o > worst)
			worst = o;
	}
	printf("%.2f %ld %s\n", bench_median(v, (size_t)n), n,
	       outcome_names[worst]);
	free(v);
	return worst == OUT_ALIVE ? 3 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "ok") == 0) {
		struct sockaddr_in a = bench_addr(argv[2], argv[3]);
		return run_ok(&a, bench_arg_long(argv[4], "iterations"));
	}
	if ((argc == 7 || argc == 8) && strcmp(argv[1], "fail") == 0) {
		struct sockaddr_in a = bench_addr(argv[2], argv[3]);
		long max = bench_arg_long(argv[4], "attempts");
		long timeout_ms = bench_arg_long(argv[6], "timeout");
		return run_fail(&a, max > 0 ? max : 1,
				bench_arg_long(argv[5], "budget"), timeout_ms,
				argc == 8 ? bench_arg_long(argv[7], "warm-up")
					  : timeout_ms);
	}
	fprintf(stderr,
		"usage: bench_connect ok HOST PORT ITERATIONS\n"
		"       bench_connect fail HOST PORT MAX_ATTEMPTS BUDGET_MS "
		"TIMEOUT_MS [WARMUP_MS]\n");
	return 2;
}
