/* SPDX-License-Identifier: MIT */
/*
 * shim/assert.h: BW_INVARIANT(cond, "I3"), the shim's runtime check of an
 * invariant named in the top comment of the file that owns it (fd_table.c
 * I1-I3, the bw_conn transitions of fd_table.h, async.c's phases).
 *
 * Active only when BW_DEBUG is defined: the sanitizer and TSan unit-test
 * builds and `make DEBUG=1`.  The release shim compiles every BW_INVARIANT to
 * nothing (cond is not evaluated: no code on the hot path).  A failure
 * writes one line, "bulwark: assert FILE:LINE INVARIANT: COND", with a raw
 * write system call to fd 2 (AS-safe: no stdio, no malloc, not the shim's
 * own write hook) and aborts.  Never use it on data read from the shared
 * segment: another process may have written anything there; such values
 * are counted as corruption and rebuilt instead (core/bulkhead.c).
 */
#ifndef BW_SHIM_ASSERT_H
#define BW_SHIM_ASSERT_H

#ifdef BW_DEBUG
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((noreturn, cold, noinline)) static void
bw_assert_fail(const char *file, int line, const char *inv, const char *cond)
{
	char buf[512];
	size_t n = 0;
	const char *parts[] = {
		"bulwark: assert ", file, ":", NULL, " ", inv, ": ", cond, "\n"
	};
	char num[12];
	int k = sizeof(num);
	unsigned u = line > 0 ? (unsigned)line : 0;
	num[--k] = 0;
	do
		num[--k] = (char)('0' + u % 10);
	while ((u /= 10) && k > 0);
	parts[3] = &num[k];
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		size_t l = strlen(parts[i]);
		if (l > sizeof(buf) - 1 - n)
			l = sizeof(buf) - 1 - n;
		memcpy(buf + n, parts[i], l);
		n += l;
	}
	buf[sizeof(buf) - 2] = '\n'; /* ends the line when cut short */
	(void)syscall(SYS_write, 2, buf, n);
	abort();
}

#define BW_INVARIANT(cond, inv)        \
	(__builtin_expect(!!(cond), 1) \
		 ? (void)0             \
		 : bw_assert_fail(__FILE__, __LINE__, inv, #cond))
#else
/* Not evaluated; sizeof keeps the variables it names used. */
#define BW_INVARIANT(cond, inv) ((void)sizeof(!(cond)))
#endif

#endif
