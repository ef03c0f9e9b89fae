/* SPDX-License-Identifier: MIT */
/*
 * policy/text.h: the bounded text builder (policy/text.c), for the policy's
 * messages and printers and for the shim's log lines and labels.  AS-safe:
 * no allocation, no printf, no locale.  Names are bw__ (doc/design.md H2).
 */
#ifndef BW_POLICY_TEXT_H
#define BW_POLICY_TEXT_H

#include <stddef.h>
#include <stdint.h>

/*
 * A bounded text builder.  Writes at most cap - 1 bytes plus a NUL, and
 * counts in len the length the whole text would have, like snprintf.
 * No libc printf: it must not allocate and must not depend on the locale.
 */
struct bw__buf {
	char *p;
	size_t cap;
	size_t len;
};

void bw__buf_init(struct bw__buf *b, char *p, size_t cap);
void bw__buf_putc(struct bw__buf *b, char c);
void bw__buf_putn(struct bw__buf *b, const char *s, size_t n);
void bw__buf_puts(struct bw__buf *b, const char *s);
void bw__buf_putu(struct bw__buf *b, uint64_t v);
void bw__buf_puti(struct bw__buf *b, long long v);
/* v / 10^decimals, without trailing zeros in the fraction ("1.5", "2"). */
void bw__buf_fixed(struct bw__buf *b, uint64_t v, unsigned decimals);
/* 'text' between quotes, non-printable bytes as \xNN, cut at max bytes
 * with "..." so an error message never drowns in a huge token. */
void bw__buf_quote(struct bw__buf *b, const char *s, size_t n, size_t max);
/* Pads with spaces up to column col of the current line. */
void bw__buf_pad(struct bw__buf *b, size_t line_start, size_t col);
/* The bytes b holds now: len, or cap - 1 once the text was cut. */
static inline size_t bw__buf_used(const struct bw__buf *b)
{
	return b->len < b->cap ? b->len : (b->cap ? b->cap - 1 : 0);
}

#endif
