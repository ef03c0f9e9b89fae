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
 * most: connect + exchange + close loops, a long ping-pong (with each
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

#define LOOPS 1500    /* connect + exchange + close */
#define PINGS 1500    /* send/recv on one connection */
#define NONBLOCK 300  /* non-blocking connects */
#define WRITES 3000   /* writes to /dev/null */
#define REFUSED 300   /* connects to the dead destination */

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

/* A socket bound to a free loopback port; listening when asked. */
static int bound(int listening, unsigned *port)
{
	struct sockaddr_in a = loopback(0);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (listening && listen(fd, 64) < 0) ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

/* The echo server: one connection at a time, until killed. */
static void serve(int lfd)
{
	char buf[512];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(30);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		ssize_t n;

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
static int run(unsigned port, unsigned dead)
{
	struct sockaddr_in live = loopback(port), gone = loopback(dead);
	const struct sockaddr *lsa = (const struct sockaddr *)&live;
	int fd, i;

	for (i = 0; i < LOOPS; i++) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, lsa, sizeof(live)) < 0 ||
		    exchange(fd) < 0)
			return fail("connect loop");
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
	if (argc == 5 && strcmp(argv[1], "--run") == 0) {
		unsigned port = (unsigned)atoi(argv[2]);
		unsigned dead = (unsigned)atoi(argv[3]);
		pid_t server = (pid_t)atoi(argv[4]);
		int rc = run(port, dead);
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

	unsigned port, dead;
	int lfd = bound(1, &port), dfd = bound(0, &dead);
	if (lfd < 0 || dfd < 0)
		return fail("loopback");
	pid_t server = fork();
	if (server < 0)
		return fail("fork");
	if (server == 0)
		serve(lfd);
	close(lfd);
	alarm(30); /* kept across exec */

	/* dfd stays open across exec: the dead port stays ours. */
	char policy[160], state[48], a1[16], a2[16], a3[16];
	snprintf(policy, sizeof(policy),
		 "127.0.0.1:%u breaker.failures=2 breaker.open=60s "
		 "retry.attempts=1; * breaker.failures=5 bulkhead.max=64 "
		 "retry.attempts=3",
		 dead);
	snprintf(state, sizeof(state), "pgo-train-%d", (int)getpid());
	snprintf(a1, sizeof(a1), "%u", port);
	snprintf(a2, sizeof(a2), "%u", dead);
	snprintf(a3, sizeof(a3), "%d", (int)server);
	/* The user's BULWARK_* settings are not the training's. */
	for (int again = 1; again;) {
		again = 0;
		for (char **e = environ; *e; e++) {
			if (strncmp(*e, "BULWARK_", 8) != 0)
				continue;
			char name[128];
			size_t n = strcspn(*e, "=");
			if (n >= sizeof(name))
				continue;
			memcpy(name, *e, n);
			name[n] = '\0';
			unsetenv(name); /* environ changed: look again */
			again = 1;
			break;
		}
	}
	if (setenv("LD_PRELOAD", argv[1], 1) < 0 ||
	    setenv("BULWARK_POLICY", policy, 1) < 0 ||
	    setenv("BULWARK_STATE", state, 1) < 0 ||
	    setenv("BULWARK_LOG", "off", 1) < 0)
		return fail("setenv");
	execl("/proc/self/exe", argv[0], "--run", a1, a2, a3, (char *)NULL);
	fail("exec");
	kill(server, SIGKILL);
	return 1;
}
