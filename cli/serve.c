/* SPDX-License-Identifier: MIT */
/*
 * cli/serve.c: `bulwark serve`: a small HTTP server for monitoring.
 * GET /metrics is `bulwark status --prometheus` of every --state given
 * (text format 0.0.4), GET /status the JSON of `bulwark status --json`,
 * GET /healthz "ok".  Owns: the listening socket, the connections and the
 * HTTP parsing.
 * Design: one thread, one ppoll loop, non-blocking sockets.  A request must
 * arrive whole within --timeout seconds and in at most 8 KiB, and its
 * answer must be taken within --timeout too; else the connection is
 * closed.  Every request reads the segments afresh as bulwark status
 * does (bw_cli_snap_take: atomic loads, never creating a segment; like
 * status it gives back the bulkhead slots of dead processes, lock-free):
 * nothing here takes a lock a shimmed program could wait on.  HTTP/1.0 and 1.1,
 * one request per connection (Connection: close).  SIGINT and SIGTERM end it
 * cleanly (status 0). Never: listens beyond loopback unless --listen says so;
 * creates a segment.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define SERVE_DEFAULT_ADDR "127.0.0.1"
#define SERVE_DEFAULT_PORT "9464"
#define SERVE_MAX_CONNS 64
#define SERVE_REQ_MAX 8192
#define SERVE_STATES_MAX 32
#define SERVE_TIMEOUT_DEFAULT_S 5.0

static const char usage[] =
	"Usage: bulwark serve [--state NAME]... [--listen [ADDR:]PORT] "
	"[--timeout S]\n"
	"\n"
	"Serves what the programs sharing the given states have learnt, over "
	"HTTP:\n"
	"\n"
	"  GET /metrics  the Prometheus text format (0.0.4) of every state, as\n"
	"                'bulwark status --prometheus' prints it; each sample\n"
	"                has the label state_name=\"NAME\"\n"
	"  GET /status   the JSON of 'bulwark status --json': with one state its\n"
	"                array; with several an object of arrays by state name;\n"
	"                /status?state=NAME gives that state's array\n"
	"  GET /healthz  'ok' while the server runs\n"
	"\n"
	"HEAD is answered too; other methods get 405, malformed requests 400,\n"
	"requests over 8 KiB 431, other paths 404, and a state whose segment is\n"
	"unusable 503.  One request per connection.  A state no program has "
	"used\n"
	"yet has no rows.  States are read as 'bulwark status' reads them: "
	"serving\n"
	"never delays a shimmed program.\n"
	"\n"
	"Options:\n"
	"  -s, --state NAME     a shared state to serve; repeat for several\n"
	"                       (default: $BULWARK_STATE, else 'default')\n"
	"  -l, --listen [ADDR:]PORT\n"
	"                       where to listen (default " SERVE_DEFAULT_ADDR
	":" SERVE_DEFAULT_PORT ");\n"
	"                       without ADDR, or with ':PORT', " SERVE_DEFAULT_ADDR
	" (loopback\n"
	"                       only); ADDR is an IPv4 address, [IPv6] or a "
	"host\n"
	"                       name; 0.0.0.0 (IPv4) or [::] (IPv6) for every\n"
	"                       interface; PORT 0"
	" picks a free port (printed at start)\n"
	"  -t, --timeout S      seconds a client has to send its request, and "
	"again\n"
	"                       to take the answer (default 5; 0.1 to 3600)\n"
	"  -h, --help           show this help\n"
	"\n"
	"It prints 'bulwark serve: listening on http://ADDR:PORT/' on standard\n"
	"error and runs until SIGINT or SIGTERM (exit status 0).\n"
	"\n"
	"Exit status: 0 stopped by a signal, 1 cannot listen (address in use,\n"
	"not permitted...), 2 bad usage.\n"
	"\n"
	"Examples:\n"
	"  bulwark serve --state api --listen 9464\n"
	"  bulwark serve --state api --state batch --listen 0.0.0.0:9464\n"
	"  curl -s http://127.0.0.1:9464/metrics\n";

enum conn_phase { PH_FREE, PH_READ, PH_WRITE };

struct conn {
	int fd;
	enum conn_phase phase;
	uint64_t deadline_ms;
	size_t inlen;
	char in[SERVE_REQ_MAX];
	char *out; /* malloc'ed answer */
	size_t outlen, outoff;
};

static volatile sig_atomic_t serve_stop;

static void on_stop(int sig)
{
	(void)sig;
	serve_stop = 1;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the listening socket ------------------------------------------------ */

/* "[ADDR:]PORT", ":PORT", "[v6]:PORT" into host and port.  Returns 0 or
 * -EINVAL. */
static int split_listen(const char *arg, char *host, size_t hcap, char *port,
			size_t pcap)
{
	const char *colon, *p;

	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');
		if (!close || close[1] != ':' || close == arg + 1)
			return -EINVAL;
		if ((size_t)(close - arg - 1) >= hcap)
			return -EINVAL;
		snprintf(host, hcap, "%.*s", (int)(close - arg - 1), arg + 1);
		p = close + 2;
	} else if ((colon = strrchr(arg, ':')) != NULL) {
		if (strchr(arg, ':') != colon) /* bare IPv6 without brackets */
			return -EINVAL;
		if ((size_t)(colon - arg) >= hcap)
			return -EINVAL;
		snprintf(host, hcap, "%.*s", (int)(colon - arg), arg);
		if (!host[0])
			snprintf(host, hcap, "%s", SERVE_DEFAULT_ADDR);
		p = colon + 1;
	} else {
		snprintf(host, hcap, "%s", SERVE_DEFAULT_ADDR);
		p = arg;
	}
	if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p) ||
	    atoi(p) > 65535)
		return -EINVAL;
	snprintf(port, pcap, "%.5s", p); /* at most 5 digits: checked above */
	return 0;
}

/* Binds and listens.  Returns the fd, or -1 after saying why. */
static int open_listener(const char *host, const char *port, char *shown,
			 size_t shown_cap)
{
	struct addrinfo hints, *res = NULL;
	int rc, fd = -1, err = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		bw_cli_err("serve", "cannot listen on %s:%s: %s", host, port,
			   gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int one = 1;
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				   sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 64) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		bw_cli_err("serve", "cannot listen on %s:%s: %s", host, port,
			   strerror(err ? err : EADDRNOTAVAIL));
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char a[INET6_ADDRSTRLEN] = "?";
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		ss.ss_family = AF_UNSPEC;
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(shown, shown_cap, "[%s]:%u", a, ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(shown, shown_cap, "%s:%u", a, ntohs(s4->sin_port));
	}
	return fd;
}

/* ---- answers ------------------------------------------------------------- */

struct served {
	const char *const *names;
	int n;
};

static const char *reason(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

/* Puts the whole answer (status line, headers, body unless head) into
 * c->out. */
static void answer(struct conn *c, int code, const char *type, const char *body,
		   size_t blen, bool head)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f) {
		c->out = NULL;
		c->outlen = 0;
		return;
	}
	fprintf(f,
		"HTTP/1.1 %d %s\r\n"
		"Content-Type: %s\r\n"
		"Content-Length: %zu\r\n"
		"Cache-Control: no-store\r\n"
		"%s"
		"Connection: close\r\n\r\n",
		code, reason(code), type, blen,
		code == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head && blen)
		fwrite(body, 1, blen, f);
	if (fclose(f) != 0) {
		free(buf);
		buf = NULL;
		len = 0;
	}
	c->out = buf;
	c->outlen = len;
	c->outoff = 0;
}

static void answer_text(struct conn *c, int code, const char *text, bool head)
{
	answer(c, code, "text/plain; charset=utf-8", text, strlen(text), head);
}

/* The value of parameter key in a query string, into out; 0 or -ENOENT. */
static int query_param(const char *query, const char *key, char *out,
		       size_t cap)
{
	size_t kl = strlen(key);

	for (const char *p = query; p && *p;) {
		const char *end = strchrnul(p, '&');
		if ((size_t)(end - p) > kl && !strncmp(p, key, kl) &&
		    p[kl] == '=') {
			size_t vl = (size_t)(end - p) - kl - 1;
			if (vl >= cap)
				return -ENOENT;
			memcpy(out, p + kl + 1, vl);
			out[vl] = '\0';
			return 0;
		}
		p = *end ? end + 1 : end;
	}
	return -ENOENT;
}

/* /metrics and /status: reads the states now, prints into a buffer. */
static void answer_states(struct conn *c, const struct served *sv, bool metrics,
			  const char *only, bool head)
{
	struct bw_cli_snap snaps[SERVE_STATES_MAX];
	char why[512] = "";
	int n = 0, bad = 0;

	for (int i = 0; i < sv->n; i++) {
		if (only && strcmp(only, sv->names[i]) != 0)
			continue;
		if (bw_cli_snap_take(NULL, sv->names[i], &snaps[n], why,
				     sizeof(why)) != BW_CLI_OK) {
			bad = 1;
			break;
		}
		n++;
	}
	/* Said once on standard error, again only when the reason changes
	 * (a scrape a second would repeat it every second). */
	static char last_why[512];
	if (bad) {
		for (int i = 0; i < n; i++)
			bw_cli_snap_drop(&snaps[i]);
		if (strcmp(why, last_why) != 0)
			bw_cli_err("serve", "%s", why);
		snprintf(last_why, sizeof(last_why), "%s", why);
		char text[600];
		snprintf(text, sizeof(text), "%s\n", why);
		answer_text(c, 503, text, head);
		return;
	}
	if (!only)
		last_why[0] = '\0';
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f) {
		if (metrics) {
			bw_cli_print_prometheus(f, snaps, (size_t)n);
		} else if (only || sv->n == 1) {
			bw_cli_print_json(f, &snaps[0]);
		} else {
			fputs("{", f);
			for (int i = 0; i < n; i++) {
				/* names are [A-Za-z0-9._-]: no escaping */
				fprintf(f, "%s\"%s\": ", i ? ",\n " : "",
					snaps[i].name);
				bw_cli_print_json(f, &snaps[i]);
			}
			fputs("}\n", f);
		}
	}
	for (int i = 0; i < n; i++)
		bw_cli_snap_drop(&snaps[i]);
	if (!f || fclose(f) != 0) {
		free(buf);
		answer_text(c, 500, "out of memory\n", head);
		return;
	}
	if (metrics)
		answer(c, 200, "text/plain; version=0.0.4; charset=utf-8", buf,
		       len, head);
	else
		answer(c, 200, "application/json", buf, len, head);
	free(buf);
}

static bool is_tchar(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch);
}

/* The request in c->in is complete (its head ends at c->in + headlen):
 * parses its request line and answers. */
static void handle(struct conn *c, const struct served *sv)
{
	char *line = c->in, *eol = strpbrk(line, "\r\n");
	char method[16], target[2048], version[16];

	if (!eol) {
		answer_text(c, 400, "bad request\n", false);
		return;
	}
	*eol = '\0';
	/* METHOD SP TARGET SP HTTP/1.x: exactly two single spaces */
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == line ||
	    sp2 == sp1 + 1 || (size_t)(sp1 - line) >= sizeof(method) ||
	    (size_t)(sp2 - sp1 - 1) >= sizeof(target) ||
	    strlen(sp2 + 1) >= sizeof(version)) {
		answer_text(c, 400, "bad request line\n", false);
		return;
	}
	snprintf(method, sizeof(method), "%.*s", (int)(sp1 - line), line);
	snprintf(target, sizeof(target), "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
	snprintf(version, sizeof(version), "%s", sp2 + 1);
	for (const char *m = method; *m; m++)
		if (!is_tchar(*m)) {
			answer_text(c, 400, "bad method\n", false);
			return;
		}
	if (strcmp(version, "HTTP/1.0") != 0 &&
	    strcmp(version, "HTTP/1.1") != 0) {
		answer_text(c, 400, "HTTP/1.0 or HTTP/1.1 only\n", false);
		return;
	}
	if (target[0] != '/') {
		answer_text(c, 400, "bad request target\n", false);
		return;
	}
	for (const unsigned char *t = (const unsigned char *)target; *t; t++)
		if (*t <= 0x20 || *t >= 0x7f) {
			answer_text(c, 400, "bad request target\n", false);
			return;
		}
	bool head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		answer_text(c, 405, "GET or HEAD only\n", false);
		return;
	}
	char *query = strchr(target, '?');
	if (query)
		*query++ = '\0';
	if (!strcmp(target, "/healthz")) {
		answer_text(c, 200, "ok\n", head);
	} else if (!strcmp(target, "/metrics")) {
		answer_states(c, sv, true, NULL, head);
	} else if (!strcmp(target, "/status")) {
		char only[80];
		if (query_param(query, "state", only, sizeof(only)) == 0) {
			for (int i = 0; i < sv->n; i++)
				if (!strcmp(only, sv->names[i])) {
					answer_states(c, sv, false, only, head);
					return;
				}
			answer_text(c, 404, "no such state served here\n",
				    head);
			return;
		}
		answer_states(c, sv, false, NULL, head);
	} else if (!strcmp(target, "/")) {
		answer_text(c, 200,
			    "bulwark serve: /metrics /status /healthz\n", head);
	} else {
		answer_text(c, 404, "not found: /metrics /status /healthz\n",
			    head);
	}
}

/* ---- connections --------------------------------------------------------- */

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->out);
	c->out = NULL;
	c->fd = -1;
	c->phase = PH_FREE;
	c->inlen = c->outlen = c->outoff = 0;
}

/* Where the request's head ends (after its blank line), or 0. */
static size_t head_end(const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] == '\n' && s[i + 1] == '\n')
			return i + 2;
		if (i + 3 < n && !memcmp(s + i, "\r\n\r\n", 4))
			return i + 4;
	}
	return 0;
}

static void start_write(struct conn *c, uint64_t timeout_ms)
{
	c->phase = PH_WRITE;
	c->deadline_ms = mono_ms() + timeout_ms;
	if (!c->out)
		conn_close(c);
}

static void conn_read(struct conn *c, const struct served *sv,
		      uint64_t timeout_ms)
{
	for (;;) {
		if (c->inlen == sizeof(c->in) - 1) {
			answer_text(c, 431, "request too large\n", false);
			start_write(c, timeout_ms);
			return;
		}
		ssize_t r = recv(c->fd, c->in + c->inlen,
				 sizeof(c->in) - 1 - c->inlen, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			/* closed or reset before a whole request */
			conn_close(c);
			return;
		}
		c->inlen += (size_t)r;
		c->in[c->inlen] = '\0';
		if (memchr(c->in, '\0', c->inlen)) {
			answer_text(c, 400, "bad request\n", false);
			start_write(c, timeout_ms);
			return;
		}
		if (head_end(c->in, c->inlen)) {
			handle(c, sv);
			start_write(c, timeout_ms);
			return;
		}
	}
}

static void conn_write(struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t w = send(c->fd, c->out + c->outoff,
				 c->outlen - c->outoff, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (w < 0) {
			conn_close(c);
			return;
		}
		c->outoff += (size_t)w;
	}
	shutdown(c->fd, SHUT_WR);
	conn_close(c);
}

static void accept_all(int lfd, struct conn *conns, uint64_t timeout_ms)
{
	for (;;) {
		int slot = -1;
		for (int i = 0; i < SERVE_MAX_CONNS; i++)
			if (conns[i].phase == PH_FREE) {
				slot = i;
				break;
			}
		if (slot < 0)
			return; /* the rest wait in the backlog */
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				bw_cli_warn("serve: %s", strerror(errno));
			return;
		}
		struct conn *c = &conns[slot];
		c->fd = fd;
		c->phase = PH_READ;
		c->inlen = 0;
		c->deadline_ms = mono_ms() + timeout_ms;
	}
}

static int serve_loop(int lfd, const struct served *sv, uint64_t timeout_ms)
{
	static struct conn conns[SERVE_MAX_CONNS];
	struct pollfd pfd[SERVE_MAX_CONNS + 1];
	int idx[SERVE_MAX_CONNS + 1];
	sigset_t block, during;

	for (int i = 0; i < SERVE_MAX_CONNS; i++) {
		conns[i].fd = -1;
		conns[i].phase = PH_FREE;
	}
	/* SIGINT/SIGTERM are delivered only inside ppoll: no lost wakeup. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &during);
	sigdelset(&during, SIGINT);
	sigdelset(&during, SIGTERM);

	while (!serve_stop) {
		int n = 0, nfree = 0;
		uint64_t now = mono_ms(), next = UINT64_MAX;
		for (int i = 0; i < SERVE_MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			if (c->phase == PH_FREE) {
				nfree++;
				continue;
			}
			if (now >= c->deadline_ms) {
				conn_close(c); /* too slow: dropped */
				nfree++;
				continue;
			}
			if (c->deadline_ms < next)
				next = c->deadline_ms;
			pfd[n].fd = c->fd;
			pfd[n].events = c->phase == PH_READ ? POLLIN : POLLOUT;
			pfd[n].revents = 0;
			idx[n++] = i;
		}
		if (nfree) {
			pfd[n].fd = lfd;
			pfd[n].events = POLLIN;
			pfd[n].revents = 0;
			idx[n++] = -1;
		}
		struct timespec ts, *tp = NULL;
		if (next != UINT64_MAX) {
			uint64_t wait = next - now;
			ts.tv_sec = (time_t)(wait / 1000);
			ts.tv_nsec = (long)(wait % 1000) * 1000000L;
			tp = &ts;
		}
		int r = ppoll(pfd, (nfds_t)n, tp, &during);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			bw_cli_err("serve", "poll: %s", strerror(errno));
			return BW_CLI_FAIL;
		}
		for (int k = 0; k < n && r > 0; k++) {
			if (!pfd[k].revents)
				continue;
			if (idx[k] < 0) {
				accept_all(lfd, conns, timeout_ms);
				continue;
			}
			struct conn *c = &conns[idx[k]];
			if (c->phase == PH_READ)
				conn_read(c, sv, timeout_ms);
			if (c->phase == PH_WRITE)
				conn_write(c);
		}
	}
	for (int i = 0; i < SERVE_MAX_CONNS; i++)
		if (conns[i].phase != PH_FREE)
			conn_close(&conns[i]);
	return BW_CLI_OK;
}

/* ---- the command --------------------------------------------------------- */

static int serve_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *names[SERVE_STATES_MAX];
	const char *listen_arg = SERVE_DEFAULT_ADDR ":" SERVE_DEFAULT_PORT;
	double timeout_s = SERVE_TIMEOUT_DEFAULT_S;
	int nnames = 0, c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:s:l:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (nnames == SERVE_STATES_MAX)
				return bw_cli_usage_error("serve",
							  "at most %d states",
							  SERVE_STATES_MAX);
			if (!strcmp(optarg, "private"))
				return bw_cli_usage_error(
					"serve",
					"state 'private' lives inside "
					"each process; there is nothing "
					"shared to serve");
			if (bw_cli_check_state("serve", optarg) != BW_CLI_OK)
				return BW_CLI_USAGE;
			for (int i = 0; i < nnames; i++)
				if (!strcmp(names[i], optarg))
					return bw_cli_usage_error(
						"serve",
						"state '%s' given twice",
						optarg);
			names[nnames++] = optarg;
			break;
		case 'l':
			listen_arg = optarg;
			break;
		case 't': {
			char *end;
			timeout_s = strtod(optarg, &end);
			if (end == optarg || *end || !(timeout_s >= 0.1) ||
			    timeout_s > 3600)
				return bw_cli_usage_error(
					"serve",
					"bad timeout '%s': seconds from 0.1 to "
					"3600",
					optarg);
			break;
		}
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_serve, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option("serve", argv, c);
		}
	}
	if (optind < argc)
		return bw_cli_usage_error("serve", "unexpected argument '%s'",
					  argv[optind]);
	if (nnames == 0) {
		const char *env = getenv("BULWARK_STATE");
		names[nnames++] = env && *env ? env : "default";
		if (!strcmp(names[0], "private"))
			return bw_cli_usage_error(
				"serve", "BULWARK_STATE=private: give --state");
		if (bw_cli_check_state("serve", names[0]) != BW_CLI_OK)
			return BW_CLI_USAGE;
	}
	char host[256], port[8], shown[300];
	if (split_listen(listen_arg, host, sizeof(host), port, sizeof(port)) <
	    0)
		return bw_cli_usage_error(
			"serve",
			"bad --listen '%s': [ADDR:]PORT, e.g. 9464, "
			"127.0.0.1:9464, [::1]:9464",
			listen_arg);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int lfd = open_listener(host, port, shown, sizeof(shown));
	if (lfd < 0)
		return BW_CLI_FAIL;
	fprintf(stderr, "bulwark serve: listening on http://%s/ (state%s",
		shown, nnames > 1 ? "s" : "");
	for (int i = 0; i < nnames; i++)
		fprintf(stderr, "%s%s", i ? ", " : " ", names[i]);
	fputs(")\n", stderr);
	struct served sv = { names, nnames };
	int rc = serve_loop(lfd, &sv, (uint64_t)(timeout_s * 1000.0));
	close(lfd);
	return rc;
}

const struct bw_cli_cmd bw_cli_cmd_serve = {
	.name = "serve",
	.main = serve_main,
	.summary = "serve /metrics, /status and /healthz over HTTP",
	.usage = usage,
};
