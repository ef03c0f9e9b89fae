/* SPDX-License-Identifier: MIT */
/*
 * policy/text.c: the bounded text builder (policy/text.h) behind error
 * messages, values, bulwark check output and the shim's log lines and
 * destination labels.
 * Never: allocates, calls printf (which may allocate and follows the
 * locale), writes past cap.  Context: any, signal handlers included.
 */
#include <stdbool.h>

#include "policy/text.h"

void bw__buf_init(struct bw__buf *b, char *p, size_t cap)
{
	b->p = p;
	b->cap = p ? cap : 0;
	b->len = 0;
	if (b->cap)
		b->p[0] = '\0';
}

void bw__buf_putc(struct bw__buf *b, char c)
{
	if (b->len < b->cap && b->cap - b->len > 1) {
		b->p[b->len] = c;
		b->p[b->len + 1] = '\0';
	}
	b->len++;
}

void bw__buf_putn(struct bw__buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bw__buf_putc(b, s[i]);
}

void bw__buf_puts(struct bw__buf *b, const char *s)
{
	while (*s)
		bw__buf_putc(b, *s++);
}

void bw__buf_putu(struct bw__buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	bw__buf_putn(b, tmp + i, sizeof(tmp) - i);
}

void bw__buf_puti(struct bw__buf *b, long long v)
{
	if (v < 0) {
		bw__buf_putc(b, '-');
		bw__buf_putu(b, (uint64_t)0 - (uint64_t)v);
	} else {
		bw__buf_putu(b, (uint64_t)v);
	}
}

void bw__buf_fixed(struct bw__buf *b, uint64_t v, unsigned decimals)
{
	uint64_t scale = 1;

	for (unsigned i = 0; i < decimals; i++)
		scale *= 10;
	bw__buf_putu(b, v / scale);
	uint64_t frac = v % scale;
	if (!frac)
		return;
	while (frac % 10 == 0) {
		frac /= 10;
		decimals--;
		scale /= 10;
	}
	bw__buf_putc(b, '.');
	for (uint64_t d = scale / 10; d; d /= 10)
		bw__buf_putc(b, (char)('0' + (frac / d) % 10));
}

void bw__buf_quote(struct bw__buf *b, const char *s, size_t n, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	bool cut = n > max;

	if (cut)
		n = max;
	bw__buf_putc(b, '\'');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\') {
			bw__buf_putc(b, '\\');
			bw__buf_putc(b, 'x');
			bw__buf_putc(b, hex[c >> 4]);
			bw__buf_putc(b, hex[c & 15]);
		} else {
			bw__buf_putc(b, (char)c);
		}
	}
	if (cut)
		bw__buf_puts(b, "...");
	bw__buf_putc(b, '\'');
}

void bw__buf_pad(struct bw__buf *b, size_t line_start, size_t col)
{
	do
		bw__buf_putc(b, ' ');
	while (b->len - line_start < col);
}
