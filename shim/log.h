/* SPDX-License-Identifier: MIT */
/*
 * shim/log.h: bulwark(1) DIAGNOSTICS log lines, logfmt, rate limited per event
 * and destination.  AS-safe: the formatter is our own and the line goes out in
 * one write(2).
 */
#ifndef BW_SHIM_LOG_H
#define BW_SHIM_LOG_H

#include <stddef.h>
#include <stdint.h>

enum { BW_LOG_OFF = 0, BW_LOG_ERROR, BW_LOG_WARN, BW_LOG_INFO, BW_LOG_DEBUG };

/* Notes what fd 2 is at the start of the process image: lines go to fd 2
 * only while it stays that file (and it is not an IP socket); a daemon
 * that closed it gets its own sockets there.  Until this runs, lines go
 * to fd 2 unchecked.  Called once, from bw__init (whose constructor keeps
 * errno).  May change errno. */
void bw_log_init(void);

/* Parses "off", "error", "warn", "info", "debug"; -1 if none of them. */
int bw_log_level_from_name(const char *s);

/*
 * Logs one event: "bulwark[PID]: level=L event=E dest=D " then fmt.  fmt
 * knows %s, %q (a logfmt value, quoted when it needs quotes), %d, %u, %ld,
 * %lu, %lld, %llu, %zu, %D (a uint64_t duration in ns: "250ms") and %%.
 * dest may be NULL.  Lines for one (event, dest) are limited to one a
 * second; the next line after a quiet spell says how many were dropped.
 * The line goes to BULWARK_LOG_FILE (opened non-blocking, no symbolic
 * link, a regular file, FIFO or character device) or to fd 2 while it is
 * still the program's standard error (bw_log_init); else it is dropped.
 */
void bw_log(int level, const char *event, const char *dest, const char *fmt,
	    ...);

/* Formats ns as the policy grammar spells a duration ("1.5s", "300ms"). */
size_t bw_log_duration(uint64_t ns, char *buf, size_t cap);

#endif
