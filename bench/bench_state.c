/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_state.c: the shared state at scale.  Links shim/state.c
 * directly (private memory, no segment) and compares, per call, the cost
 * of what a hook does for a destination (bw_state_get, then one counter
 * increment):
 *   one:  1 destination in the table, 1 thread calling;
 *   many: DESTS destinations in the table, THREADS threads calling, each
 *         walking a hot set of HOT of them.
 * Per-call cost is thread CPU time (CLOCK_THREAD_CPUTIME_ID) over calls,
 * so that 64 threads on 2 cores are charged their own work, contention
 * included, and not each other's waiting.  The two run interleaved,
 * ROUNDS times; each round prints "one NS" and "many NS".
 *
 *   bench_state ROUNDS CALLS [THREADS [HOT [DESTS]]]
 *       (defaults 64 threads, 1000 hot, 10000 destinations)
 */
#include <pthread.h>
#include <stdatomic.h>

#include "bench/bench.h"
#include "shim/state.h"

#define STATE_THREADS_MAX 1024

struct worker {
	pthread_t tid;
	struct bw_state *st;
	const struct bw_dest_key *keys; /* the hot set */
	long nkeys, start, calls;
	pthread_barrier_t *go;
	uint64_t cpu_ns;
	long misses; /* bw_state_get returned NULL */
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Destination i: 10.(i >> 16).(i >> 8).(i & 255):443.  Keys only, never
 * contacted. */
static void make_key(long i, struct bw_dest_key *k, char *label, size_t cap)
{
	memset(k, 0, sizeof(*k));
	k->family = AF_INET;
	k->port = 443;
	k->addr[0] = 10;
	k->addr[1] = (uint8_t)(i >> 16);
	k->addr[2] = (uint8_t)(i >> 8);
	k->addr[3] = (uint8_t)i;
	snprintf(label, cap, "10.%u.%u.%u:443", k->addr[1], k->addr[2],
		 k->addr[3]);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	long j = w->start;
	pthread_barrier_wait(w->go);
	uint64_t t0 = thread_cpu_ns();
	for (long i = 0; i < w->calls; i++) {
		struct bw_dest *d = bw_state_get(w->st, &w->keys[j], "", "");
		if (d)
			atomic_fetch_add_explicit(&d->total_calls, 1,
						  memory_order_relaxed);
		else
			w->misses++;
		if (++j == w->nkeys)
			j = 0;
	}
	w->cpu_ns = thread_cpu_ns() - t0;
	return NULL;
}

/* Runs nthreads workers over keys; returns CPU ns per call, or -1. */
static double run(struct bw_state *st, const struct bw_dest_key *keys,
		  long nkeys, int nthreads, long calls, long *misses)
{
	static struct worker w[STATE_THREADS_MAX];
	pthread_barrier_t go;
	uint64_t cpu = 0;
	long total = 0;
	pthread_barrier_init(&go, NULL, (unsigned)nthreads);
	for (int t = 0; t < nthreads; t++) {
		w[t] = (struct worker){ .st = st, .keys = keys, .nkeys = nkeys,
					.start = (t * 37L) % nkeys,
					.calls = calls / nthreads, .go = &go };
		if (pthread_create(&w[t].tid, NULL, work, &w[t]) != 0)
			return -1;
	}
	for (int t = 0; t < nthreads; t++) {
		pthread_join(w[t].tid, NULL);
		cpu += w[t].cpu_ns;
		total += w[t].calls;
		*misses += w[t].misses;
	}
	pthread_barrier_destroy(&go);
	return total ? (double)cpu / (double)total : -1;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 6) {
		fprintf(stderr, "usage: bench_state ROUNDS CALLS [THREADS [HOT "
				"[DESTS]]]\n");
		return 2;
	}
	long rounds = bench_arg_long(argv[1], "rounds");
	long calls = bench_arg_long(argv[2], "calls");
	long nthreads = argc > 3 ? bench_arg_long(argv[3], "threads") : 64;
	long hot = argc > 4 ? bench_arg_long(argv[4], "hot") : 1000;
	long dests = argc > 5 ? bench_arg_long(argv[5], "dests") : 10000;
	if (nthreads < 1 || nthreads > STATE_THREADS_MAX || hot < 1 ||
	    dests < hot || dests >= BW_STATE_SLOTS) {
		fprintf(stderr, "bench_state: need 1 <= THREADS <= %d, "
				"1 <= HOT <= DESTS < %d\n",
			STATE_THREADS_MAX, BW_STATE_SLOTS);
		return 2;
	}
	struct bw_state one, many;
	struct bw_dest_key *all = calloc((size_t)dests, sizeof(*all));
	struct bw_dest_key *hotkeys = calloc((size_t)hot, sizeof(*hotkeys));
	char label[BW_STATE_LABEL_MAX];
	long misses = 0;
	if (!all || !hotkeys || bw_state_attach_private(&one) < 0 ||
	    bw_state_attach_private(&many) < 0) {
		fprintf(stderr, "bench_state: no memory for the state\n");
		return 1;
	}
	for (long i = 0; i < dests; i++) {
		make_key(i, &all[i], label, sizeof(label));
		if (!bw_state_get(&many, &all[i], label, "*")) {
			fprintf(stderr, "bench_state: table full at %ld\n", i);
			return 1;
		}
		if (i == 0 && !bw_state_get(&one, &all[0], label, "*"))
			return 1;
	}
	/* The hot set is spread over the whole key range. */
	for (long i = 0; i < hot; i++)
		hotkeys[i] = all[i * (dests / hot)];
	fprintf(stderr, "bench_state: %ld destinations in the table, %ld hot, "
			"%ld threads, %ld calls a round\n",
		dests, hot, nthreads, calls);
	for (long r = 0; r < rounds; r++) {
		double a = run(&one, all, 1, 1, calls, &misses);
		double b = run(&many, hotkeys, hot, (int)nthreads, calls,
			       &misses);
		if (a < 0 || b < 0) {
			fprintf(stderr, "bench_state: cannot start threads\n");
			return 1;
		}
		printf("one %.2f\nmany %.2f\n", a, b);
		fflush(stdout);
	}
	if (misses) {
		fprintf(stderr, "bench_state: %ld lookups returned NULL\n",
			misses);
		return 1;
	}
	return 0;
}
