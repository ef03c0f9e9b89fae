/* SPDX-License-Identifier: MIT */
/*
 * shim/pgo/train.c: the training run of the shim's profile-guided build
 * (Makefile, "profile-guided build").  The shim's cost on a connection is
 * its code coming back into the CPU's caches (bench/results): a profile
 * lets the compiler lay out what programs run on every connection as one
 * straight path and move the rest aside.
 *
 *   train LIB
 *
 * Starts an echo server (a child, without the shim) and a refused port
 * on loopback, then runs itself again with LIB (built with
 * -fprofile-generate) preloaded and does what programs under bulwark do
 * most: connect + exchange + close loops (IPv4, and IPv6 where the
 * machine has ::1), a long ping-pong (with each
 * of the calls that send and receive), name lookups, non-blocking
 * connects finished by poll, reads and writes on an fd bulwark does not
 * track, and connects to a dead destination until its breaker opens and
 * refuses them.  LIB writes its profile when the run exits.
 *
 * Exits 0 when every step did what it should, 1 otherwise (the Makefile
 * then builds the shim without a profile).  Never leaves loopback; a 30 s
 * alarm bounds the run; the state segment it made is removed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define LOOPS 1500   /* connect + exchange + close */
#define LOOPS6 300   /* the same to ::1, when there is one */
#define PINGS 1500   /* send/recv on one connection */
#define NONBLOCK 300 /* non-blocking connects */
#define WRITES 3000  /* writes to /dev/null */
#define REFUSED 300  /* connects to the dead destination */

static int fail(const char *what)
{
	fprintf(stderr, "train: %s: %s\n", what, strerror(errno));
	return 1;
}

static struct sockaddr_in loopback(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static struct sockaddr_in6 loopback6(unsigned port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6,
				  .sin6_port = htons((uint16_t)port),
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	return a;
}

/* A socket bound to a free loopback port (IPv4, or ::1 with v6);
 * listening when asked.  -1 when there is none (a machine without IPv6
 * has no ::1). */
static int bound(int v6, int listening, unsigned *port)
{
	struct sockaddr_storage ss;
	socklen_t len = v6 ? sizeof(struct sockaddr_in6)
			   : sizeof(struct sockaddr_in);
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);

	if (v6)
		*(struct sockaddr_in6 *)&ss = loopback6(0);
	else
		*(struct sockaddr_in *)&ss = loopback(0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    (listening && listen(fd, 64) < 0) ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			 : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* The echo server: one connection at a time, from either listener
 * (l6 -1: IPv4 only), until killed. */
static void serve(int l4, int l6)
{
	char buf[512];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(30);
	for (;;) {
		struct pollfd p[2] = { { .fd = l4, .events = POLLIN },
				       { .fd = l6, .events = POLLIN } };
		ssize_t n;
		int fd;

		if (poll(p, l6 >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		fd = accept(p[0].revents ? l4 : l6, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (write(fd, buf, (size_t)n) != n)
				break;
		close(fd);
	}
}

static int exchange(int fd)
{
	char c = 'x';

	return send(fd, &c, 1, 0) == 1 && recv(fd, &c, 1, 0) == 1 ? 0 : -1;
}

/* The preloaded half: every step must go as it does without the shim,
 * except the dead destination, which the breaker refuses once open. */
static int run(unsigned port, unsigned port6, unsigned dead)
{
	struct sockaddr_in live = loopback(port), gone = loopback(dead);
	struct sockaddr_in6 live6 = loopback6(port6);
	const struct sockaddr *lsa = (const struct sockaddr *)&live;
	int fd, i;

	for (i = 0; i < LOOPS; i++) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, lsa, sizeof(live)) < 0 ||
		    exchange(fd) < 0)
			return fail("connect loop");
		close(fd);
	}
	for (i = 0; port6 && i < LOOPS6; i++) {
		fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 ||
		    connect(fd, (struct sockaddr *)&live6, sizeof(live6)) < 0 ||
		    exchange(fd) < 0)
			return fail("connect loop, IPv6");
		close(fd);
	}

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, lsa, sizeof(live)) < 0)
		return fail("ping-pong connect");
	for (i = 0; i < PINGS; i++) {
		char c = 'p';
		struct iovec v = { .iov_base = &c, .iov_len = 1 };
		struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
		if (exchange(fd) < 0 || write(fd, &c, 1) != 1 ||
		    read(fd, &c, 1) != 1)
			return fail("ping-pong");
		if (i % 4 == 0 &&
		    (sendto(fd, &c, 1, 0, NULL, 0) != 1 ||
		     recvfrom(fd, &c, 1, 0, NULL, NULL) != 1 ||
		     writev(fd, &v, 1) != 1 || readv(fd, &v, 1) != 1 ||
		     sendmsg(fd, &m, 0) != 1 || recvmsg(fd, &m, 0) != 1))
			return fail("ping-pong, other calls");
	}
	close(fd);

	/* A program that looks its server up first. */
	for (i = 0; i < NONBLOCK; i++) {
		struct addrinfo hint = { .ai_family = AF_INET,
					 .ai_socktype = SOCK_STREAM,
					 .ai_flags = AI_NUMERICHOST },
				*ai = NULL;
		if (getaddrinfo("127.0.0.1", NULL, &hint, &ai) != 0 || !ai)
			return fail("getaddrinfo");
		freeaddrinfo(ai);
	}

	for (i = 0; i < NONBLOCK; i++) {
		struct pollfd p;
		int err = 0;
		socklen_t len = sizeof(err);

		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    0);
		if (fd < 0)
			return fail("socket");
		if (connect(fd, lsa, sizeof(live)) < 0 && errno != EINPROGRESS)
			return fail("non-blocking connect");
		p = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&p, 1, 5000) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
			return fail("non-blocking connect: poll");
		p.events = POLLIN;
		if (send(fd, "n", 1, 0) != 1 || poll(&p, 1, 5000) != 1)
			return fail("non-blocking exchange");
		char c;
		if (recv(fd, &c, 1, 0) != 1)
			return fail("non-blocking exchange");
		close(fd);
	}

	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("/dev/null");
	for (i = 0; i < WRITES; i++) {
		char c;
		if (write(fd, "w", 1) != 1 || read(fd, &c, 1) != 0)
			return fail("/dev/null");
	}
	close(fd);

	for (i = 0; i < REFUSED; i++) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return fail("socket");
		if (connect(fd, (struct sockaddr *)&gone, sizeof(gone)) == 0 ||
		    errno != ECONNREFUSED)
			return fail("dead destination: not refused");
		close(fd);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "--run") == 0) {
		unsigned port = (unsigned)atoi(argv[2]);
		unsigned port6 = (unsigned)atoi(argv[3]);
		unsigned dead = (unsigned)atoi(argv[4]);
		pid_t server = (pid_t)atoi(argv[5]);
		int rc = run(port, port6, dead);
		char seg[96];

		kill(server, SIGKILL);
		waitpid(server, NULL, 0);
		snprintf(seg, sizeof(seg), "/dev/shm/bulwark-%u-%s",
			 (unsigned)getuid(), getenv("BULWARK_STATE"));
		unlink(seg);
		return rc;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: train LIB\n");
		return 2;
	}

	unsigned port, port6 = 0, dead;
	int lfd = bound(0, 1, &port), dfd = bound(0, 0, &dead);
	int l6 = bound(1, 1, &port6);
	if (lfd < 0 || dfd < 0)
		return fail("loopback");
	pid_t server = fork();
	if (server < 0)
		return fail("fork");
	if (server == 0)
		serve(lfd, l6);
	close(lfd);
	if (l6 >= 0)
		close(l6);
	alarm(30); /* kept across exec */

	/* dfd stays open across exec: the dead port stays ours. */
	char policy[192], state[64], preload[4096], a1[16], a2[16], a3[16],
		a4[16];
	snprintf(policy, sizeof(policy),
		 "BULWARK_POLICY=127.0.0.1:%u breaker.failures=2 "
		 "breaker.open=60s retry.attempts=1; * breaker.failures=5 "
		 "bulkhead.max=64 retry.attempts=3",
		 dead);
	snprintf(state, sizeof(state), "BULWARK_STATE=pgo-train-%d",
		 (int)getpid());
	if (snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", argv[1]) >=
	    (int)sizeof(preload)) {
		errno = ENAMETOOLONG;
		fail("LIB");
		kill(server, SIGKILL);
		return 1;
	}
	snprintf(a1, sizeof(a1), "%u", port);
	snprintf(a2, sizeof(a2), "%u", port6);
	snprintf(a3, sizeof(a3), "%u", dead);
	snprintf(a4, sizeof(a4), "%d", (int)server);

	/* The user's environment without LD_PRELOAD and BULWARK_* (their
	 * settings are not the training's), and the training's own. */
	size_t n = 0, k = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 5, sizeof(*env));
	if (!env)
		return fail("calloc");
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "BULWARK_", 8) != 0 &&
		    strncmp(*e, "LD_PRELOAD=", 11) != 0)
			env[k++] = *e;
	env[k++] = preload;
	env[k++] = policy;
	env[k++] = state;
	env[k++] = "BULWARK_LOG=off";
	char *args[] = { argv[0], "--run", a1, a2, a3, a4, NULL };
	execve("/proc/self/exe", args, env);
	fail("exec");
	free(env);
	kill(server, SIGKILL);
	return 1;
}
