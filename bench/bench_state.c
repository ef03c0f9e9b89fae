/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_state.c: the shim's per-call cost at scale.  Links the shim's
 * non-hook modules directly (private state, no segment, no system calls)
 * and times two things, each in two cases:
 *
 *   call:   what the send and recv hooks do around the real call on a
 *           tracked connection (fd -> connection, exchange start, then
 *           the exchange's accounting: counters, breaker, USDT probe
 *           check), with the policy `* breaker.failures=5 bulkhead.max=64
 *           retry.attempts=3`.  Reported per intercepted call (an exchange
 *           is two: send, recv).  This is what every call pays.
 *   lookup: bw_state_get plus one counter increment: what a connect pays
 *           to find its destination (once per connection, never per call).
 *
 *   one:  1 destination in the table, 1 thread, 1 connection;
 *   many: DESTS destinations in the table, THREADS threads, each working
 *         through CONNS connections of its own to destinations drawn
 *         from a hot set of HOT (so several threads share a destination).
 *
 * Cost is thread CPU time (CLOCK_THREAD_CPUTIME_ID) over calls, so that 64
 * threads on 2 cores are charged their own work, contention and cache
 * misses included, and not each other's waiting.  The cases run
 * interleaved, ROUNDS times; each round prints "call_one NS",
 * "call_many NS", "lookup_one NS" and "lookup_many NS".
 *
 *   bench_state ROUNDS CALLS [THREADS [HOT [DESTS [CONNS]]]]
 *       (defaults 64 threads, 1000 hot, 10000 destinations, 32 conns)
 */
#include <pthread.h>
#include <stdatomic.h>

#include "bench/bench.h"
#include "core/state.h"
#include "shim/exchange.h"
#include "shim/fd_table.h"
#include "shim/internal.h"

#define STATE_THREADS_MAX 1024
#define STATE_CONNS_MAX 256
/* Fake fd numbers: the exchange path never makes a system call on them. */
#define FD_ONE 100
#define FD_MANY 1000
#define POLICY "* breaker.failures=5 bulkhead.max=64 retry.attempts=3"

/* The shim's configuration: shim/init.c defines it in the library, from
 * the environment; here main sets up the part the exchange path reads. */
struct bw_global bw_g;
struct worker {
	pthread_t tid;
	struct bw_state *st;
	const struct bw_dest_key *keys; /* lookup: the hot set */
	long nkeys;
	const int *fds; /* call: this thread's connections */
	long nfds;
	long start, calls;
	pthread_barrier_t *go;
	uint64_t cpu_ns;
	long misses; /* lookups that returned NULL, untracked fds */
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

/* One exchange as the hooks see it around send() and recv() returning 1
 * byte each (SEND_TRACKED and RECV_TRACKED in shim/hook_io.c, minus the
 * real calls). */
static int exchange(int fd)
{
	struct bw_conn *c = bw_fd_conn(fd);
	if (!c)
		return -1;
	uint64_t t0 = bw_io_before_send(c);
	bw_io_sent(c, fd, 1, 0, t0);
	c = bw_fd_conn(fd);
	if (!c)
		return -1;
	bw_io_received(c, fd, 1, 0, 1, 0);
	return 0;
}

static void *work_call(void *arg)
{
	struct worker *w = arg;
	long j = w->start % w->nfds;
	pthread_barrier_wait(w->go);
	uint64_t t0 = thread_cpu_ns();
	for (long i = 0; i < w->calls; i += 2) {
		if (exchange(w->fds[j]) < 0)
			w->misses++;
		if (++j == w->nfds)
			j = 0;
	}
	w->cpu_ns = thread_cpu_ns() - t0;
	return NULL;
}

static void *work_lookup(void *arg)
{
	struct worker *w = arg;
	long j = w->start % w->nkeys;
	pthread_barrier_wait(w->go);
	uint64_t t0 = thread_cpu_ns();
	for (long i = 0; i < w->calls; i++) {
		struct bw_dest *d = bw_state_get(w->st, &w->keys[j], "", "");
		if (d)
			atomic_fetch_add_explicit(&d->successful_calls, 1,
						  memory_order_relaxed);
		else
			w->misses++;
		if (++j == w->nkeys)
			j = 0;
	}
	w->cpu_ns = thread_cpu_ns() - t0;
	return NULL;
}

/* Runs nthreads copies of fn (workers prepared in w); returns CPU ns per
 * call, or -1. */
static double run(struct worker *w, int nthreads, void *(*fn)(void *),
		  long *misses)
{
	pthread_barrier_t go;
	uint64_t cpu = 0;
	long total = 0;
	pthread_barrier_init(&go, NULL, (unsigned)nthreads);
	for (int t = 0; t < nthreads; t++) {
		w[t].go = &go;
		w[t].misses = 0;
		if (pthread_create(&w[t].tid, NULL, fn, &w[t]) != 0)
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

/* A tracked, established connection on fake fd to d, as bw_connect leaves
 * one (shim/connect.c), without the network. */
static int connect_fake(int fd, struct bw_state *st, struct bw_dest *d)
{
	struct bw_conn *c = bw_fd_track(fd);
	uint32_t i = bw_state_index(st, d);
	if (!c || i >= BW_STATE_SLOTS)
		return -1;
	c->rule = 0;
	c->d = d;
	c->ten = bw_state_ten(st, i); /* d is used only while it holds it */
	c->phase = BW_PHASE_IDLE;
	atomic_store(&c->state, BW_CONN_ESTABLISHED);
	return 0;
}

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static int setup_policy(void)
{
	struct bw_policy_error err;
	if (bw_policy_init(bw_policy_env(), NULL, &err) < 0 ||
	    bw_policy_parse(bw_policy_env(), POLICY, strlen(POLICY), "policy",
			    &err) < 0)
		return -1;
	bw_g.active = true;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 7) {
		fprintf(stderr, "usage: bench_state ROUNDS CALLS [THREADS [HOT "
				"[DESTS [CONNS]]]]\n");
		return 2;
	}
	long rounds = bench_arg_long(argv[1], "rounds");
	long calls = bench_arg_long(argv[2], "calls");
	long nthreads = argc > 3 ? bench_arg_long(argv[3], "threads") : 64;
	long hot = argc > 4 ? bench_arg_long(argv[4], "hot") : 1000;
	long dests = argc > 5 ? bench_arg_long(argv[5], "dests") : 10000;
	long conns = argc > 6 ? bench_arg_long(argv[6], "conns") : 32;
	if (nthreads < 1 || nthreads > STATE_THREADS_MAX || hot < 1 ||
	    dests < hot || dests >= BW_STATE_SLOTS || conns < 1 ||
	    conns > STATE_CONNS_MAX ||
	    FD_MANY + nthreads * conns >= BW_FD_TABLE_MAX) {
		fprintf(stderr,
			"bench_state: need 1 <= THREADS <= %d, "
			"1 <= HOT <= DESTS < %d, 1 <= CONNS <= %d\n",
			STATE_THREADS_MAX, BW_STATE_SLOTS, STATE_CONNS_MAX);
		return 2;
	}
	static struct worker w1, wn[STATE_THREADS_MAX];
	struct bw_state one, many;
	struct bw_dest_key *all = calloc((size_t)dests, sizeof(*all));
	struct bw_dest_key *hotkeys = calloc((size_t)hot, sizeof(*hotkeys));
	int *fds = calloc((size_t)(nthreads * conns), sizeof(*fds));
	char label[BW_STATE_LABEL_MAX];
	long misses = 0;
	int rc = 1;
	if (!all || !hotkeys || !fds || bw_state_attach_private(&one) < 0 ||
	    bw_state_attach_private(&many) < 0) {
		fprintf(stderr, "bench_state: no memory for the state\n");
		goto out;
	}
	if (setup_policy() < 0) {
		fprintf(stderr, "bench_state: policy '%s' rejected\n", POLICY);
		goto out;
	}
	struct bw_dest *d1 = NULL;
	for (long i = 0; i < dests; i++) {
		make_key(i, &all[i], label, sizeof(label));
		if (!bw_state_get(&many, &all[i], label, "*")) {
			fprintf(stderr, "bench_state: table full at %ld\n", i);
			goto out;
		}
		if (i == 0 && !(d1 = bw_state_get(&one, &all[0], label, "*")))
			goto out;
	}
	/* The hot set is spread over the whole key range; each thread's
	 * connections go to destinations drawn from it at random. */
	for (long i = 0; i < hot; i++)
		hotkeys[i] = all[i * (dests / hot)];
	uint32_t seed = 0x9e3779b9u;
	for (long i = 0; i < nthreads * conns; i++) {
		const struct bw_dest_key *k = &hotkeys[xorshift(&seed) % hot];
		fds[i] = FD_MANY + (int)i;
		if (connect_fake(fds[i], &many, bw_state_find(&many, k)) < 0)
			goto out;
	}
	if (connect_fake(FD_ONE, &one, d1) < 0)
		goto out;
	static const int fd_one = FD_ONE;
	fprintf(stderr,
		"bench_state: %ld destinations in the table, %ld hot, "
		"%ld threads x %ld connections, %ld calls a round\n",
		dests, hot, nthreads, conns, calls);
	for (long r = 0; r < rounds; r++) {
		/* call: bw_g.state is the state the dests index. */
		w1 = (struct worker){ .fds = &fd_one,
				      .nfds = 1,
				      .calls = calls };
		bw_g.state = one;
		double a = run(&w1, 1, work_call, &misses);
		for (int t = 0; t < nthreads; t++)
			wn[t] = (struct worker){ .fds = fds + t * conns,
						 .nfds = conns,
						 .start = t * 7L,
						 .calls = calls / nthreads };
		bw_g.state = many;
		double b = run(wn, (int)nthreads, work_call, &misses);
		/* lookup */
		w1 = (struct worker){
			.st = &one, .keys = all, .nkeys = 1, .calls = calls
		};
		double c = run(&w1, 1, work_lookup, &misses);
		for (int t = 0; t < nthreads; t++)
			wn[t] = (struct worker){ .st = &many,
						 .keys = hotkeys,
						 .nkeys = hot,
						 .start = (t * 37L) % hot,
						 .calls = calls / nthreads };
		double d = run(wn, (int)nthreads, work_lookup, &misses);
		if (a < 0 || b < 0 || c < 0 || d < 0) {
			fprintf(stderr, "bench_state: cannot start threads\n");
			goto out;
		}
		printf("call_one %.2f\ncall_many %.2f\nlookup_one %.2f\n"
		       "lookup_many %.2f\n",
		       a, b, c, d);
		fflush(stdout);
	}
	if (misses) {
		fprintf(stderr,
			"bench_state: %ld calls missed their "
			"connection or destination\n",
			misses);
		goto out;
	}
	/* The accounting really ran: every exchange was counted. */
	uint64_t counted = atomic_load(&d1->exchange_calls);
	if (counted == 0) {
		fprintf(stderr, "bench_state: no exchange was recorded\n");
		goto out;
	}
	rc = 0;
out:
	free(all);
	free(hotkeys);
	free(fds);
	return rc;
}
