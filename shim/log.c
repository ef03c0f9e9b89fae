/* SPDX-License-Identifier: MIT */
/*
 * shim/log.c: logfmt event lines (bulwark(1) DIAGNOSTICS) and their rate limit.
 * Owns: bw_log*.  Never: allocates, uses stdio, holds an fd (the log file is
 * opened, written and closed per line; lines are rare by construction),
 * changes errno, blocks on the log file, writes into a file the program
 * uses.  Context: any hook, signal handlers included (AS-safe).
 *
 * I1: one line is one write(2), so lines from many processes never mix.
 * I2: a (event, dest) pair logs at most once per second; others are counted
 *     and reported on the next line that gets out.  Except policy_applied:
 *     one line per pushed generation (shim/live.c), bounded by the pushes,
 *     each naming its own generation.
 * I3: a line goes to fd 2 only while fd 2 is still the standard error the
 *     process image started with (same device and inode), and that is not
 *     an IP socket (an inetd-style service's fd 2 is its client).  A daemon
 *     that closed fd 2 gets its next socket or file there: a line written
 *     to it would go into its connection (a redis client once got "-ERR
 *     unknown command 'bulwark[...]:'") or into its data (an append-only
 *     file, even).  Those lines are dropped: BULWARK_LOG_FILE keeps them.
 * I4: BULWARK_LOG_FILE is opened non-blocking and without following a
 *     symbolic link, and written only when it is a regular file, a FIFO or
 *     a character device: a FIFO nobody reads fails the open (ENXIO) instead
 *     of hanging the program.  A line that cannot go there is dropped, never
 *     sent to fd 2 instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/text.h"
#include "shim/internal.h"
#include "shim/log.h"
#include "shim/real.h"

#define BW_LOG_LINE_MAX 1024
/* Rate-limit slots; a hash collision only merges two limits. */
#define BW_LOG_LIMIT_SLOTS 256

struct limit {
	_Atomic uint64_t key;
	_Atomic uint64_t sec;
	_Atomic uint32_t dropped;
};
static struct limit limits[BW_LOG_LIMIT_SLOTS];

/* fd 2 as the process image started with it (I3); see bw_log_init. */
static struct {
	dev_t dev;
	ino_t ino;
	bool known; /* bw_log_init ran */
	bool open;  /* fd 2 was open, and not an IP socket */
} err0;

static const char *const level_names[] = { "off", "error", "warn", "info",
					   "debug" };

int bw_log_level_from_name(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

/* A logfmt value: bare if it has no space, quote or '=', else quoted. */
static void putq(struct bw__buf *o, const char *s)
{
	if (s[0] && !strpbrk(s, " \"=\t\n")) {
		bw__buf_puts(o, s);
		return;
	}
	bw__buf_putc(o, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			bw__buf_putc(o, '\\');
		if (*s == '\n')
			bw__buf_putn(o, "\\n", 2);
		else
			bw__buf_putc(o, *s);
	}
	bw__buf_putc(o, '"');
}

size_t bw_log_duration(uint64_t ns, char *buf, size_t cap)
{
	static const struct {
		uint64_t ns;
		const char *unit;
	} units[] = { { 1000000000ull, "s" },
		      { 1000000ull, "ms" },
		      { 1000ull, "us" } };
	struct bw__buf o;
	bw__buf_init(&o, buf, cap);
	if (ns == 0) {
		bw__buf_puts(&o, "0");
	} else {
		/* The largest unit not above ns, with one decimal at most
		 * (truncated): "60s", "1.5s", "250ms", as
		 * bulwark(1) DIAGNOSTICS shows. */
		size_t i = 0;
		while (i < 2 && ns < units[i].ns)
			i++;
		bw__buf_putu(&o, ns / units[i].ns);
		uint64_t tenth = ns % units[i].ns * 10 / units[i].ns;
		if (tenth) {
			bw__buf_putc(&o, '.');
			bw__buf_putu(&o, tenth);
		}
		bw__buf_puts(&o, units[i].unit);
	}
	return bw__buf_used(&o);
}

/* vformat reads %ld as a long long: the same type on LP64 Linux. */
_Static_assert(sizeof(long) == sizeof(long long), "LP64 expected");

static void vformat(struct bw__buf *o, const char *fmt, va_list ap)
{
	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			bw__buf_putn(o, f, 1);
			continue;
		}
		f++;
		int longs = 0;
		while (*f == 'l') {
			longs++;
			f++;
		}
		if (*f == 'z') {
			bw__buf_putu(o, va_arg(ap, size_t));
			continue;
		}
		switch (*f) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			bw__buf_puts(o, s ? s : "-");
			break;
		}
		case 'q': {
			const char *s = va_arg(ap, const char *);
			putq(o, s ? s : "");
			break;
		}
		case 'd': /* %ld and %lld alike: see the assertion below */
			bw__buf_puti(o, longs ? va_arg(ap, long long)
					      : (long long)va_arg(ap, int));
			break;
		case 'u':
			bw__buf_putu(o, longs ? va_arg(ap, unsigned long long)
					      : (unsigned long long)va_arg(
							ap, unsigned));
			break;
		case 'D': {
			char d[32];
			bw_log_duration(va_arg(ap, uint64_t), d, sizeof(d));
			bw__buf_puts(o, d);
			break;
		}
		case '%':
			bw__buf_putc(o, '%');
			break;
		default:
			return; /* unknown directive: stop, never guess */
		}
	}
}

static uint64_t limit_key(const char *event, const char *dest)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *s = event; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (const char *s = dest ? dest : ""; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h | 1;
}

/* Whether this line may go out now (I2); *dropped gets the count of lines
 * held back since the last one. */
static int limit_pass(const char *event, const char *dest, uint32_t *dropped)
{
	uint64_t key = limit_key(event, dest);
	struct limit *l = &limits[key % BW_LOG_LIMIT_SLOTS];
	uint64_t sec = bw_clock_ns() / 1000000000ull + 1; /* never 0 */
	uint64_t old = atomic_load(&l->sec);
	if (atomic_load(&l->key) != key) {
		atomic_store(&l->key, key);
		atomic_store(&l->dropped, 0);
	} else if (old == sec ||
		   !atomic_compare_exchange_strong(&l->sec, &old, sec)) {
		atomic_fetch_add(&l->dropped, 1);
		return 0;
	}
	atomic_store(&l->sec, sec);
	*dropped = atomic_exchange(&l->dropped, 0);
	return 1;
}

static bool is_inet_socket(int fd)
{
	int dom = 0;
	socklen_t len = sizeof(dom);
	return bw_real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 &&
	       (dom == AF_INET || dom == AF_INET6);
}

void bw_log_init(void)
{
	struct stat sb;
	err0.open = fstat(2, &sb) == 0 &&
		    !(S_ISSOCK(sb.st_mode) && is_inet_socket(2));
	if (err0.open) {
		err0.dev = sb.st_dev;
		err0.ino = sb.st_ino;
	}
	err0.known = true;
}

/* Whether a line may go to fd 2 now (I3): one fstat, on a path that runs
 * only for a line that passed its rate limit. */
static bool stderr_ours(void)
{
	struct stat sb;
	if (!err0.known)
		return true; /* no process start seen (unit tests) */
	if (fstat(2, &sb) < 0)
		return false;
	return err0.open && sb.st_dev == err0.dev && sb.st_ino == err0.ino;
}

/* The log file, opened for one line (I4), or -1. */
static int open_log_file(void)
{
	int fd = bw_real.open(bw_g.log_file,
			      O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK |
				      O_NOFOLLOW | O_CLOEXEC,
			      0600);
	if (fd < 0)
		return -1;
	struct stat sb;
	if (fstat(fd, &sb) == 0 &&
	    (S_ISREG(sb.st_mode) || S_ISFIFO(sb.st_mode) ||
	     S_ISCHR(sb.st_mode)))
		return fd;
	bw_real.close(fd); /* a block device, or fstat failed */
	return -1;
}

static void emit(const char *line, size_t len)
{
	int fd = 2;
	bool own = bw_g.log_file[0] != 0;
	if (own) {
		fd = open_log_file(); /* may be 2, when fd 2 was closed */
		if (fd < 0)
			return;
	} else if (!stderr_ours()) {
		return;
	}
	/* Non-blocking for the log file: a full FIFO or a stopped tty
	 * drops the rest of the line (a FIFO takes a line of at most
	 * PIPE_BUF bytes whole or not at all). */
	while (len > 0) {
		ssize_t w = bw_real.write(fd, line, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		line += w;
		len -= (size_t)w;
	}
	if (own)
		bw_real.close(fd);
}

void bw_log(int level, const char *event, const char *dest, const char *fmt,
	    ...)
{
	if (level > bw_g.log_level || level <= BW_LOG_OFF)
		return;
	/* Kept by hand: any context logs (signal handlers, a hook between
	 * its real call and its return), none of them expecting errno to
	 * change. */
	int saved = errno;
	uint32_t dropped = 0;
	if (strcmp(event, "policy_applied") != 0 &&
	    !limit_pass(event, dest, &dropped))
		goto out;
	char line[BW_LOG_LINE_MAX];
	struct bw__buf o; /* room kept for the newline */
	bw__buf_init(&o, line, sizeof(line) - 1);
	bw__buf_puts(&o, "bulwark[");
	bw__buf_putu(&o, (uint64_t)getpid());
	bw__buf_puts(&o, "]: level=");
	bw__buf_puts(&o, level_names[level]);
	bw__buf_puts(&o, " event=");
	bw__buf_puts(&o, event);
	if (dest) {
		bw__buf_puts(&o, " dest=");
		putq(&o, dest);
	}
	if (fmt && fmt[0]) {
		va_list ap;
		va_start(ap, fmt);
		bw__buf_putc(&o, ' ');
		vformat(&o, fmt, ap);
		va_end(ap);
	}
	if (dropped) {
		bw__buf_puts(&o, " dropped=");
		bw__buf_putu(&o, dropped);
	}
	size_t n = bw__buf_used(&o);
	line[n++] = '\n';
	emit(line, n);
out:
	errno = saved;
}
