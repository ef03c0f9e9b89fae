/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_lockstep.c: runs several variants of a latency bench in
 * lockstep, one iteration each in turn, so that every variant sees the
 * same machine.  On a shared VM the speed of a loopback round trip drifts
 * by tens of percent from one second to the next (the host's other
 * tenants, the vCPU moving between cores); run one after the other, two
 * variants measure two different machines.  Taking turns iteration by
 * iteration, they measure the same one.
 *
 *   bench_lockstep -- NAME OUTFILE CMD [ARG...] ';' NAME OUTFILE CMD ... ';'
 *
 * Starts every CMD (execvp; "env VAR=VALUE prog" sets a variant's
 * environment) with its standard output on OUTFILE and BENCH_LOCKSTEP=
 * "R,W" in its environment: two pipe fds of a ring through all the
 * variants.  A bench that honours it (bench_pingpong, bench_connect ok)
 * warms up, then for each timed iteration reads one token byte from R,
 * runs and times the iteration, and writes the token to W, the next
 * variant's R; the token starts at the first variant.  The token's
 * passing is outside every timed region.
 *
 * Exits 0 once every variant exited 0; otherwise kills the rest (a variant
 * that dies would hold the token forever), says which failed, exits 1.
 * Gives up after BENCH_LOCKSTEP_TIMEOUT seconds (default 300).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

#define LOCKSTEP_MAX 16

struct variant {
	const char *name, *out;
	char **argv;
	pid_t pid;
	int status;
};

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
}

/* Splits argv (after "--") into variants at each ";".  Returns the count,
 * or -1 with a message. */
static int parse(int argc, char **argv, struct variant *v)
{
	int n = 0, i = 0;
	while (i < argc) {
		if (n == LOCKSTEP_MAX) {
			fprintf(stderr,
				"bench_lockstep: more than %d variants\n",
				LOCKSTEP_MAX);
			return -1;
		}
		int start = i;
		while (i < argc && strcmp(argv[i], ";") != 0)
			i++;
		if (i - start < 3) {
			fprintf(stderr,
				"bench_lockstep: variant %d needs NAME "
				"OUTFILE CMD\n",
				n + 1);
			return -1;
		}
		v[n].name = argv[start];
		v[n].out = argv[start + 1];
		v[n].argv = &argv[start + 2];
		if (i < argc)
			argv[i++] = NULL; /* ends this variant's argv */
		n++;
	}
	return n;
}

static void start(struct variant *v, int rfd, int wfd)
{
	char ring[32];
	int out = open(v->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		perror(v->out);
		_exit(127);
	}
	snprintf(ring, sizeof(ring), "%d,%d", rfd, wfd);
	if (dup2(out, STDOUT_FILENO) < 0 || fcntl(rfd, F_SETFD, 0) < 0 ||
	    fcntl(wfd, F_SETFD, 0) < 0 || setenv("BENCH_LOCKSTEP", ring, 1)) {
		perror("bench_lockstep: child set-up");
		_exit(127);
	}
	signal(SIGPIPE, SIG_DFL);
	execvp(v->argv[0], v->argv);
	fprintf(stderr, "bench_lockstep: %s: %s\n", v->argv[0],
		strerror(errno));
	_exit(127);
}

int main(int argc, char **argv)
{
	struct variant v[LOCKSTEP_MAX];
	int ring[LOCKSTEP_MAX][2];
	if (argc < 2 || strcmp(argv[1], "--") != 0) {
		fprintf(stderr, "usage: bench_lockstep -- NAME OUTFILE CMD "
				"[ARG...] ';' NAME OUTFILE CMD ...\n");
		return 2;
	}
	int n = parse(argc - 2, argv + 2, v);
	if (n < 1)
		return 2;
	const char *to = getenv("BENCH_LOCKSTEP_TIMEOUT");
	unsigned timeout = to ? (unsigned)bench_arg_long(to, "timeout") : 300;

	/* ring[k] feeds variant k: variant k reads ring[k][0] and writes
	 * ring[k + 1][1].  We keep every end open until all have exited, so
	 * that the last tokens, written to variants already done, never
	 * fail. */
	for (int k = 0; k < n; k++)
		if (pipe2(ring[k], O_CLOEXEC) < 0) {
			perror("bench_lockstep: pipe");
			return 1;
		}
	signal(SIGPIPE, SIG_IGN);
	for (int k = 0; k < n; k++) {
		v[k].status = -1;
		v[k].pid = fork();
		if (v[k].pid < 0) {
			perror("bench_lockstep: fork");
			return 1;
		}
		if (v[k].pid == 0)
			start(&v[k], ring[k][0], ring[(k + 1) % n][1]);
	}
	struct sigaction sa = { .sa_handler = on_alarm };
	sigaction(SIGALRM, &sa, NULL);
	alarm(timeout);
	char token = 't';
	if (write(ring[0][1], &token, 1) != 1)
		perror("bench_lockstep: first token");

	int left = n, failed = 0;
	while (left > 0) {
		int st;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0) {
			if (errno == EINTR && !timed_out)
				continue;
			break; /* timed out, or no children left */
		}
		for (int k = 0; k < n; k++) {
			if (v[k].pid != p)
				continue;
			v[k].status = st;
			left--;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				failed = 1;
		}
		if (failed)
			break;
	}
	if (left > 0) {
		for (int k = 0; k < n; k++)
			if (v[k].status == -1)
				kill(v[k].pid, SIGKILL);
		while (waitpid(-1, NULL, 0) > 0)
			;
		failed = 1;
	}
	for (int k = 0; k < n; k++) {
		if (v[k].status == -1)
			fprintf(stderr, "bench_lockstep: %s: %s\n", v[k].name,
				timed_out ? "timed out, killed"
					  : "killed (another variant failed)");
		else if (!WIFEXITED(v[k].status) ||
			 WEXITSTATUS(v[k].status) != 0)
			fprintf(stderr, "bench_lockstep: %s: %s %d\n",
				v[k].name,
				WIFEXITED(v[k].status) ? "exit status"
						       : "killed by signal",
				WIFEXITED(v[k].status)
					? WEXITSTATUS(v[k].status)
					: WTERMSIG(v[k].status));
	}
	return failed;
}
