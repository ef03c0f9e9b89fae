/* SPDX-License-Identifier: MIT */
/*
 * cli/common.c: helpers every bulwark subcommand shares: messages, the
 * policy loader (run, check), state-name checks and DEST parsing (reset,
 * force).  Owns: bw_cli_* of cli.h outside the subcommands.
 * Never: exits the process; callers turn the returned status into one.
 * Context: the bulwark command only (plain single-threaded program).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "cli/cli.h"

static int read_file(const char *path, char **out, size_t *len);
static int parse_port(const char *s, uint16_t *port);
static void add_key(struct bw_cli_dest *d, const struct bw_dest_key *k);
static void key_from_sockaddr(const struct sockaddr *sa, uint16_t port,
			      struct bw_dest_key *k);

/* ---- messages ------------------------------------------------------------ */

/* "bulwark CMD: " (or "bulwark: ", "bulwark: warning: ") and the message,
 * without the newline, after what stdout holds so far. */
static void vsay(const char *cmd, const char *what, const char *fmt, va_list ap)
{
	fflush(stdout);
	if (cmd)
		fprintf(stderr, "bulwark %s: %s", cmd, what);
	else
		fprintf(stderr, "bulwark: %s", what);
	vfprintf(stderr, fmt, ap);
}

void bw_cli_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(cmd, "", fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void bw_cli_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(NULL, "warning: ", fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int bw_cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(cmd, "", fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "\nTry 'bulwark %s --help'.\n", cmd);
	else
		fputs("\nTry 'bulwark --help'.\n", stderr);
	return BW_CLI_USAGE;
}

int bw_cli_bad_option(const char *cmd, char **argv, int c)
{
	const char *opt = argv[optind - 1];

	if (c == ':')
		return bw_cli_usage_error(cmd, "option '%s' needs an argument",
					  opt);
	if (optopt && opt[0] == '-' && opt[1] != '-')
		return bw_cli_usage_error(cmd, "unknown option '-%c'", optopt);
	return bw_cli_usage_error(cmd, "unknown option '%s'", opt);
}

void bw_cli_print_usage(const struct bw_cli_cmd *cmd, FILE *f)
{
	fputs(cmd->usage, f);
}

/* ---- environment and files ----------------------------------------------- */

const char *bw_cli_getenv(const char *name)
{
	return getenv(name);
}

int bw_cli_exe_dir(char *buf, size_t cap)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	if (n < 0)
		return -errno;
	path[n] = '\0';
	char *slash = strrchr(path, '/');
	if (!slash)
		return -ENOENT;
	if (slash == path)
		slash++; /* the binary lives in "/" */
	*slash = '\0';
	if ((size_t)snprintf(buf, cap, "%s", path) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* read_file's result for a path that is not a regular file. */
#define NOT_REGULAR (-100000)

/* Reads a whole policy file, at most BW_POLICY_FILE_MAX bytes, as the shim
 * does: opened non-blocking (a FIFO must not hang), a symbolic link not
 * followed (-ELOOP), anything but a regular file refused (NOT_REGULAR).
 * Returns 0 with *out malloc'ed, or -errno (-EFBIG when too large). */
static int read_file(const char *path, char **out, size_t *len)
{
	int rc = 0;
	char *buf = NULL;
	size_t used = 0;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = NOT_REGULAR;
		goto out;
	}
	buf = malloc(BW_POLICY_FILE_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + used, BW_POLICY_FILE_MAX + 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used > BW_POLICY_FILE_MAX) {
			rc = -EFBIG;
			goto out;
		}
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static void print_policy_error(const struct bw_policy_error *err, int rc)
{
	if (err->msg[0]) {
		char line[512];
		bw_policy_error_format(err, line, sizeof(line));
		fflush(stdout);
		fprintf(stderr, "%s\n", line);
	} else if (rc == -E2BIG) {
		bw_cli_err(NULL, "policy: more than %d rules",
			   BW_POLICY_RULES_MAX);
	} else {
		bw_cli_err(NULL, "policy: %s", strerror(-rc));
	}
}

int bw_cli_load_policy(const char *cmd, const char *text, const char *path,
		       struct bw_policy **out)
{
	struct bw_policy_error err;
	struct bw_policy *p = calloc(1, sizeof(*p));
	char *file = NULL;
	size_t file_len = 0;
	int rc, status = BW_CLI_USAGE;

	if (!p) {
		bw_cli_err(cmd, "out of memory");
		return BW_CLI_FAIL;
	}
	memset(&err, 0, sizeof(err));
	rc = bw_policy_init(p, bw_cli_getenv, &err);
	if (rc < 0) {
		print_policy_error(&err, rc);
		goto out;
	}
	if (text) {
		memset(&err, 0, sizeof(err));
		rc = bw_policy_parse(p, text, strlen(text), "policy", &err);
		if (rc < 0) {
			print_policy_error(&err, rc);
			goto out;
		}
	}
	if (path) {
		rc = read_file(path, &file, &file_len);
		if (rc == NOT_REGULAR || rc == -ELOOP) {
			bw_cli_err(cmd, "policy file '%s': %s", path,
				   rc == NOT_REGULAR
					   ? "not a regular file"
					   : "a symbolic link (not followed)");
			goto out;
		}
		if (rc < 0) {
			bw_cli_err(cmd, "cannot read policy file '%s': %s",
				   path,
				   rc == -EFBIG
					   ? "larger than the 256 KiB limit"
					   : strerror(-rc));
			goto out;
		}
		memset(&err, 0, sizeof(err));
		rc = bw_policy_parse(p, file, file_len, "file", &err);
		if (rc < 0) {
			print_policy_error(&err, rc);
			goto out;
		}
	}
	/* No rules but BULWARK_<KEY> variables: the rule '*', as the shim
	 * does. */
	rc = bw_policy_finish(p);
	if (rc < 0) {
		print_policy_error(&err, rc);
		goto out;
	}
	*out = p;
	p = NULL;
	status = BW_CLI_OK;
out:
	free(file);
	free(p);
	return status;
}

/* ---- state --------------------------------------------------------------- */

int bw_cli_check_state(const char *cmd, const char *name)
{
	if (bw_policy_check_state_name(name) < 0)
		return bw_cli_usage_error(
			cmd,
			"bad state name '%s': use 1 to 64 letters, digits, "
			"'.', '_' or '-'",
			name);
	return BW_CLI_OK;
}

int bw_cli_state_exists(const char *name, char *path, size_t cap)
{
	struct stat sb;
	int rc = bw_state_path(name, (unsigned)getuid(), path, cap);

	if (rc < 0)
		return rc;
	if (lstat(path, &sb) < 0)
		return errno == ENOENT ? 0 : 1; /* let attach say why */
	return 1;
}

void bw_cli_state_unusable(const char *cmd, const char *name, const char *path,
			   const char *why, int rc)
{
	if (why && why[0]) /* names the file already */
		bw_cli_err(cmd, "state '%s' is not usable: %s", name, why);
	else if (path && path[0])
		bw_cli_err(cmd, "state '%s' (%s) is not usable: %s", name, path,
			   strerror(-rc));
	else
		bw_cli_err(cmd, "state '%s' is not usable: %s", name,
			   strerror(-rc));
}

/* ---- destinations -------------------------------------------------------- */

static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (const char *c = s; *c; c++) {
		if (!isdigit((unsigned char)*c))
			return -EINVAL;
		v = v * 10 + (unsigned long)(*c - '0');
		if (v > 65535)
			return -ERANGE;
	}
	if (v == 0)
		return -ERANGE;
	*port = (uint16_t)v;
	return 0;
}

/* IPv4-mapped IPv6 becomes IPv4, as the shim matches it
 * (bulwark-policy(7) Matches). */
static void key_from_sockaddr(const struct sockaddr *sa, uint16_t port,
			      struct bw_dest_key *k)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff };

	memset(k, 0, sizeof(*k));
	k->port = port;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		k->family = AF_INET;
		memcpy(k->addr, &in->sin_addr, 4);
		return;
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	if (memcmp(in6->sin6_addr.s6_addr, mapped, 12) == 0) {
		k->family = AF_INET;
		memcpy(k->addr, in6->sin6_addr.s6_addr + 12, 4);
		return;
	}
	k->family = AF_INET6;
	memcpy(k->addr, in6->sin6_addr.s6_addr, 16);
}

void bw_cli_key_label(const struct bw_dest_key *k, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	if (k->family == AF_INET) {
		inet_ntop(AF_INET, k->addr, ip, sizeof(ip));
		snprintf(buf, cap, "%s:%u", ip, (unsigned)k->port);
	} else if (k->family == AF_INET6) {
		inet_ntop(AF_INET6, k->addr, ip, sizeof(ip));
		snprintf(buf, cap, "[%s]:%u", ip, (unsigned)k->port);
	} else {
		snprintf(buf, cap, "(group)");
	}
}

/* Adds k unless already there or the list is full. */
static void add_key(struct bw_cli_dest *d, const struct bw_dest_key *k)
{
	for (int i = 0; i < d->nkeys; i++)
		if (memcmp(&d->keys[i], k, sizeof(*k)) == 0)
			return;
	if (d->nkeys >= BW_CLI_DEST_MAX)
		return;
	d->keys[d->nkeys] = *k;
	bw_cli_key_label(k, d->labels[d->nkeys], sizeof(d->labels[0]));
	d->nkeys++;
}

int bw_cli_dest_parse(const char *cmd, const char *text,
		      struct bw_cli_dest *out)
{
	char host[BW_POLICY_HOST_MAX];
	const char *colon, *port_s;
	uint16_t port;
	struct bw_dest_key k;

	memset(out, 0, sizeof(*out));
	if (!*text)
		return bw_cli_usage_error(cmd, "empty destination");
	colon = strrchr(text, ':');
	if (!colon) {
		/* No port: a group name (bulwark-policy(7) group), or an
		 * address someone forgot the port of. */
		struct in6_addr a6;
		if (inet_pton(AF_INET, text, &a6) == 1 ||
		    inet_pton(AF_INET6, text, &a6) == 1)
			return bw_cli_usage_error(
				cmd,
				"'%s' has no port: write ip:port or "
				"[ipv6]:port",
				text);
		out->is_group = true;
		return BW_CLI_OK;
	}

	size_t hlen;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return bw_cli_usage_error(
				cmd, "bad destination '%s': write [ipv6]:port",
				text);
		hlen = (size_t)(close - text - 1);
		port_s = close + 2;
	} else {
		if (memchr(text, ':', (size_t)(colon - text)))
			return bw_cli_usage_error(
				cmd,
				"bad destination '%s': put an IPv6 address "
				"in brackets, [ipv6]:port",
				text);
		hlen = (size_t)(colon - text);
		port_s = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return bw_cli_usage_error(cmd, "bad destination '%s'", text);
	memcpy(host, text + (text[0] == '['), hlen);
	host[hlen] = '\0';
	if (parse_port(port_s, &port) < 0)
		return bw_cli_usage_error(
			cmd, "bad port '%s' in '%s': use 1 to 65535", port_s,
			text);

	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
	memset(&in4, 0, sizeof(in4));
	memset(&in6, 0, sizeof(in6));
	if (text[0] == '[') {
		in6.sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &in6.sin6_addr) != 1)
			return bw_cli_usage_error(cmd, "bad IPv6 address '%s'",
						  host);
		key_from_sockaddr((struct sockaddr *)&in6, port, &k);
		add_key(out, &k);
		return BW_CLI_OK;
	}
	if (inet_pton(AF_INET, host, &in4.sin_addr) == 1) {
		in4.sin_family = AF_INET;
		key_from_sockaddr((struct sockaddr *)&in4, port, &k);
		add_key(out, &k);
		return BW_CLI_OK;
	}

	/* A host name: every address it resolves to, as the program's
	 * connects would have used them. */
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int grc = getaddrinfo(host, NULL, &hints, &res);
	if (grc != 0) {
		bw_cli_err(cmd, "cannot resolve '%s': %s", host,
			   grc == EAI_SYSTEM ? strerror(errno)
					     : gai_strerror(grc));
		return BW_CLI_FAIL;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		key_from_sockaddr(ai->ai_addr, port, &k);
		add_key(out, &k);
	}
	freeaddrinfo(res);
	if (out->nkeys == 0) {
		bw_cli_err(cmd, "'%s' has no IPv4 or IPv6 address", host);
		return BW_CLI_FAIL;
	}
	return BW_CLI_OK;
}

int bw_cli_dest_find(struct bw_state *st, const struct bw_cli_dest *d,
		     const char *text, struct bw_dest **found, int cap)
{
	int n = 0;

	for (int i = 0; i < d->nkeys && n < cap; i++) {
		struct bw_dest *x = bw_state_find(st, &d->keys[i]);
		if (x)
			found[n++] = x;
	}
	if (n > 0)
		return n;
	/* By label: a group, or whatever status printed.  O(slots), fine
	 * for an operator command. */
	for (uint32_t i = 0; i < BW_STATE_SLOTS && n < cap; i++) {
		char label[BW_STATE_LABEL_MAX];
		struct bw_dest *x = bw_state_slot(st, i);
		if (!x)
			continue;
		bw_state_label(x, label, sizeof(label));
		if (strcmp(label, text) == 0)
			found[n++] = x;
	}
	return n;
}

/* ---- files replaced at once (status --output) ---------------------------- */

FILE *bw_cli_atomic_open(const char *cmd, const char *path, char *tmp,
			 size_t cap)
{
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path + 1) : 0;
	const char *base = slash ? slash + 1 : path;

	if (!*base) {
		bw_cli_err(cmd, "%s: a file name is needed, not a directory",
			   path);
		return NULL;
	}
	/* A dot file beside it: the textfile collector reads *.prom only. */
	if ((size_t)snprintf(tmp, cap, "%.*s.%s.tmp.%ld", dirlen, path, base,
			     (long)getpid()) >= cap) {
		bw_cli_err(cmd, "%s: name too long", path);
		return NULL;
	}
	int fd = open(tmp,
		      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		      0644);
	if (fd < 0) {
		bw_cli_err(cmd, "cannot create %s: %s", tmp, strerror(errno));
		return NULL;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		bw_cli_err(cmd, "%s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
	}
	return f;
}

int bw_cli_atomic_commit(const char *cmd, FILE *f, const char *tmp,
			 const char *path, bool ok)
{
	bool written = fflush(f) == 0 && !ferror(f) && fsync(fileno(f)) == 0;
	int err = errno;

	if (fclose(f) != 0 && written) {
		written = false;
		err = errno;
	}
	if (ok && !written)
		bw_cli_err(cmd, "cannot write %s: %s", tmp, strerror(err));
	if (!ok || !written) {
		unlink(tmp);
		return BW_CLI_FAIL;
	}
	if (rename(tmp, path) < 0) {
		bw_cli_err(cmd, "cannot rename %s to %s: %s", tmp, path,
			   strerror(errno));
		unlink(tmp);
		return BW_CLI_FAIL;
	}
	return BW_CLI_OK;
}

/* ---- the shim's file ----------------------------------------------------- */

static bool is_file(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int bw_cli_find_shim(const char *cmd, char *out, size_t cap)
{
	char dir[PATH_MAX], cand[3][PATH_MAX + 64];
	const char *env = getenv("BULWARK_LIB");
	int n = 0;

	if (env && *env) {
		if (!is_file(env)) {
			bw_cli_err(cmd, "BULWARK_LIB=%s: no such file", env);
			return -ENOENT;
		}
		if (!realpath(env, out))
			snprintf(out, cap, "%s", env);
		return 0;
	}
	if (bw_cli_exe_dir(dir, sizeof(dir)) < 0) {
		bw_cli_err(cmd, "cannot find libbulwark.so: /proc/self/exe "
				"is unreadable; set BULWARK_LIB");
		return -ENOENT;
	}
	snprintf(cand[n++], sizeof(cand[0]), "%s/libbulwark.so", dir);
#ifdef BW_MULTIARCH
	if (BW_MULTIARCH[0])
		snprintf(cand[n++], sizeof(cand[0]),
			 "%s/../lib/%s/bulwark/libbulwark.so", dir,
			 BW_MULTIARCH);
#endif
	snprintf(cand[n++], sizeof(cand[0]), "%s/../lib/bulwark/libbulwark.so",
		 dir);
	for (int i = 0; i < n; i++) {
		char real[PATH_MAX];
		if (!is_file(cand[i]))
			continue;
		if (!realpath(cand[i], real))
			continue;
		if ((size_t)snprintf(out, cap, "%s", real) >= cap)
			continue;
		return 0;
	}
	bw_cli_err(cmd,
		   "cannot find libbulwark.so (looked for %s%s%s and %s); "
		   "build it with make or set BULWARK_LIB",
		   cand[0], n > 2 ? ", " : "", n > 2 ? cand[1] : "",
		   cand[n - 1]);
	return -ENOENT;
}
