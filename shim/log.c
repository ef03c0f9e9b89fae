/* SPDX-License-Identifier: MIT */
/*
 * shim/log.c: logfmt event lines (SPEC §6) and their rate limit.
 * Owns: bw_log*.  Never: allocates, uses stdio, holds an fd (the log file is
 * opened, written and closed per line; lines are rare by construction),
 * changes errno.  Context: any hook, signal handlers included (AS-safe).
 *
 * I1: one line is one write(2), so lines from many processes never mix.
 * I2: a (event, dest) pair logs at most once per second; others are counted
 *     and reported on the next line that gets out.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

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

static const char *const level_names[] = { "off", "error", "warn", "info",
					   "debug" };

int bw_log_level_from_name(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

struct out {
	char *p;
	size_t n, cap;
};

static void put(struct out *o, const char *s, size_t len)
{
	while (len-- && o->n + 1 < o->cap)
		o->p[o->n++] = *s++;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putu(struct out *o, unsigned long long v)
{
	char tmp[24];
	int i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(o, tmp + i, sizeof(tmp) - (size_t)i);
}

static void puti(struct out *o, long long v)
{
	if (v < 0) {
		put(o, "-", 1);
		putu(o, 0ull - (unsigned long long)v);
	} else {
		putu(o, (unsigned long long)v);
	}
}

/* A logfmt value: bare if it has no space, quote or '=', else quoted. */
static void putq(struct out *o, const char *s)
{
	if (s[0] && !strpbrk(s, " \"=\t\n")) {
		puts_(o, s);
		return;
	}
	put(o, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			put(o, "\\", 1);
		if (*s == '\n')
			put(o, "\\n", 2);
		else
			put(o, s, 1);
	}
	put(o, "\"", 1);
}

size_t bw_log_duration(uint64_t ns, char *buf, size_t cap)
{
	struct out o = { buf, 0, cap };
	static const struct {
		uint64_t ns;
		const char *unit;
	} units[] = { { 1000000000ull, "s" }, { 1000000ull, "ms" },
		      { 1000ull, "us" } };
	if (cap == 0)
		return 0;
	if (ns == 0) {
		puts_(&o, "0");
	} else {
		/* The largest unit not above ns, with one decimal at most
		 * (truncated): "60s", "1.5s", "250ms", as SPEC §6 shows. */
		size_t i = 0;
		while (i < 2 && ns < units[i].ns)
			i++;
		putu(&o, ns / units[i].ns);
		uint64_t tenth = ns % units[i].ns * 10 / units[i].ns;
		if (tenth) {
			put(&o, ".", 1);
			putu(&o, tenth);
		}
		puts_(&o, units[i].unit);
	}
	buf[o.n] = 0;
	return o.n;
}

/* vformat reads %ld as a long long: the same type on LP64 Linux. */
_Static_assert(sizeof(long) == sizeof(long long), "LP64 expected");

static void vformat(struct out *o, const char *fmt, va_list ap)
{
	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			put(o, f, 1);
			continue;
		}
		f++;
		int longs = 0;
		while (*f == 'l') {
			longs++;
			f++;
		}
		if (*f == 'z') {
			putu(o, va_arg(ap, size_t));
			continue;
		}
		switch (*f) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			puts_(o, s ? s : "-");
			break;
		}
		case 'q': {
			const char *s = va_arg(ap, const char *);
			putq(o, s ? s : "");
			break;
		}
		case 'd': /* %ld and %lld alike: see the assertion below */
			puti(o, longs ? va_arg(ap, long long)
				      : (long long)va_arg(ap, int));
			break;
		case 'u':
			putu(o, longs ? va_arg(ap, unsigned long long)
				      : (unsigned long long)va_arg(ap, unsigned));
			break;
		case 'D': {
			char d[32];
			bw_log_duration(va_arg(ap, uint64_t), d, sizeof(d));
			puts_(o, d);
			break;
		}
		case '%':
			put(o, "%", 1);
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
	uint64_t sec = bw_now_ns() / 1000000000ull + 1; /* never 0 */
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

static void emit(const char *line, size_t len)
{
	int fd = 2, own = 0;
	if (bw_g.log_file[0]) {
		fd = bw_real.open(bw_g.log_file,
				  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
				  0600);
		if (fd < 0)
			fd = 2;
		else
			own = 1;
	}
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
	int saved = errno;
	uint32_t dropped = 0;
	if (!limit_pass(event, dest, &dropped))
		goto out;
	char line[BW_LOG_LINE_MAX];
	struct out o = { line, 0, sizeof(line) - 1 };
	puts_(&o, "bulwark[");
	putu(&o, (unsigned long long)getpid());
	puts_(&o, "]: level=");
	puts_(&o, level_names[level]);
	puts_(&o, " event=");
	puts_(&o, event);
	if (dest) {
		puts_(&o, " dest=");
		putq(&o, dest);
	}
	if (fmt && fmt[0]) {
		va_list ap;
		va_start(ap, fmt);
		put(&o, " ", 1);
		vformat(&o, fmt, ap);
		va_end(ap);
	}
	if (dropped) {
		puts_(&o, " dropped=");
		putu(&o, dropped);
	}
	line[o.n++] = '\n';
	emit(line, o.n);
out:
	errno = saved;
}
