/* SPDX-License-Identifier: MIT */
/*
 * policy/parse.c: the grammar of bulwark-policy(7) (bw_policy_parse) and the
 * destination syntax of a rule's first word (names, *.suffix, IPv4[/n],
 * [IPv6[/n]], ports).  One pass over a byte range, no recursion, no
 * allocation: the shim compiles BULWARK_POLICY in its constructor.
 * I1: every read of text is at an index < len (text need not end in NUL,
 *     may hold NULs).
 * I2: a rule's settings start as p->defaults; the rule's own keys apply on
 *     top (bulwark-policy(7) Precedence: rule, then BULWARK_<KEY>, then
 *     built-in).
 * Never: allocates, sets errno.  Context: constructor, CLI, fuzzer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "policy/internal.h"

/* Where the parser is: for error positions. */
struct cursor {
	const char *text;
	size_t len;
	size_t line_start; /* offset of the current line's first byte */
	int line;
	const char *origin;
	struct bw_policy_error *err;
};

/* Starts an error message at text offset at. */
static struct bw__buf err_start(const struct cursor *c, size_t at)
{
	struct bw__buf b;
	struct bw_policy_error *e = c->err;

	struct bw__buf o;

	bw__buf_init(&o, e->origin, sizeof(e->origin));
	bw__buf_puts(&o, c->origin);
	bw__buf_init(&b, e->msg, sizeof(e->msg));
	e->line = c->line;
	e->col = (int)(at - c->line_start) + 1;
	return b;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* ---- destinations ------------------------------------------------------ */

/* port | port-port | "*", into lo..hi.  Returns NULL or the reason. */
static const char *parse_ports(const char *s, size_t n, uint16_t *lo,
			       uint16_t *hi)
{
	uint32_t v[2] = { 0, 0 };
	int k = 0;
	size_t digits = 0;

	if (n == 1 && s[0] == '*') {
		*lo = 0;
		*hi = 65535;
		return NULL;
	}
	if (!n)
		return "missing port after ':'";
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '-' && k == 0 && digits) {
			k = 1;
			digits = 0;
			continue;
		}
		if (!is_digit(s[i]))
			return "bad port: expected a number, a range "
			       "such as 8000-8099, or *";
		v[k] = v[k] * 10 + (uint32_t)(s[i] - '0');
		if (v[k] > 65535)
			return "port out of range (1-65535)";
		digits++;
	}
	if (!digits)
		return "bad port range: expected such as 8000-8099";
	if (k == 0)
		v[1] = v[0];
	if (v[0] == 0 || v[1] == 0)
		return "port out of range (1-65535)";
	if (v[0] > v[1])
		return "bad port range: the first port is larger than the last";
	*lo = (uint16_t)v[0];
	*hi = (uint16_t)v[1];
	return NULL;
}

/* Strict dotted quad: four 0-255 fields, no leading zeros (inet_aton's
 * "010" would be octal, a trap). */
static const char *parse_ipv4(const char *s, size_t n, uint8_t out[4])
{
	size_t i = 0;

	for (int f = 0; f < 4; f++) {
		uint32_t v = 0;
		size_t start = i;
		while (i < n && is_digit(s[i]) && i - start < 4)
			v = v * 10 + (uint32_t)(s[i++] - '0');
		if (i == start || i - start > 3 || v > 255)
			return "bad IPv4 address";
		if (i - start > 1 && s[start] == '0')
			return "bad IPv4 address: leading zero (octal?)";
		out[f] = (uint8_t)v;
		if (f < 3) {
			if (i >= n || s[i] != '.')
				return "bad IPv4 address";
			i++;
		}
	}
	return i == n ? NULL : "bad IPv4 address";
}

static const char *parse_prefix(const char *s, size_t n, unsigned max,
				uint8_t *out)
{
	unsigned v = 0;

	if (!n || n > 3)
		return "bad prefix length";
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return "bad prefix length";
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return max == 32 ? "prefix length out of range (0-32)"
				 : "prefix length out of range (0-128)";
	*out = (uint8_t)v;
	return NULL;
}

/* Clears the bits past the prefix: 10.1.2.3/8 is 10.0.0.0/8. */
static void mask_addr(uint8_t *a, unsigned bytes, unsigned prefix)
{
	for (unsigned i = 0; i < bytes; i++) {
		unsigned bit = i * 8;
		if (bit >= prefix)
			a[i] = 0;
		else if (prefix - bit < 8)
			a[i] &= (uint8_t)(0xff00u >> (prefix - bit));
	}
}

static const char *parse_name(const char *s, size_t n, char *out)
{
	size_t label = 0;
	bool numeric_label = true;

	if (n && s[n - 1] == '.')
		n--; /* "host." is "host" */
	if (!n)
		return "empty host name";
	if (n > BW_POLICY_HOST_MAX - 3)
		return "host name too long (most 253 characters)";
	for (size_t i = 0; i < n; i++) {
		char c = bw__lower(s[i]);
		if (c == '.') {
			if (!label)
				return "bad host name: empty label";
			label = 0;
			numeric_label = true;
		} else if ((c >= 'a' && c <= 'z') || is_digit(c) || c == '-' ||
			   c == '_') {
			if (++label > 63)
				return "bad host name: a label is longer "
				       "than 63 characters";
			numeric_label &= is_digit(c);
		} else {
			return "bad host name: use letters, digits, '-', "
			       "'_' and '.'";
		}
		out[i] = c;
	}
	out[n] = '\0';
	if (numeric_label)
		return "bad host name: the last label is numeric (not a "
		       "valid IPv4 address either)";
	return NULL;
}

/* Compiles the first word of a rule.  Returns NULL, or the reason with
 * *bad_at set to the offending offset within the word. */
static const char *parse_match(const char *s, size_t n, struct bw_match *m,
			       size_t *bad_at)
{
	const char *why;
	size_t host_n = n, ports_at = n;

	*bad_at = 0;
	m->port_lo = 0;
	m->port_hi = 65535;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '=')
			return "a rule starts with a destination, not a "
			       "setting (rules end at ';' or a newline)";

	if (s[0] == '[') {
		size_t close = 1;
		while (close < n && s[close] != ']')
			close++;
		if (close == n)
			return "missing ']' after IPv6 address";
		size_t slash = 1;
		while (slash < close && s[slash] != '/')
			slash++;
		char tmp[INET6_ADDRSTRLEN + 1];
		size_t an = slash - 1;
		if (!an || an >= sizeof(tmp)) {
			*bad_at = 1;
			return "bad IPv6 address";
		}
		memcpy(tmp, s + 1, an);
		tmp[an] = '\0';
		m->family = AF_INET6;
		if (inet_pton(AF_INET6, tmp, m->addr) != 1) {
			*bad_at = 1;
			return "bad IPv6 address";
		}
		m->prefix = 128;
		if (slash < close) {
			why = parse_prefix(s + slash + 1, close - slash - 1,
					   128, &m->prefix);
			if (why) {
				*bad_at = slash + 1;
				return why;
			}
		}
		mask_addr(m->addr, 16, m->prefix);
		m->kind = BW_MATCH_ADDR;
		/* ::ffff:a.b.c.d/n: connections are matched as IPv4
		 * (doc/design.md L10), so the rule is an IPv4 rule. */
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
						    0, 0, 0, 0, 0xff, 0xff };
		if (m->prefix >= 96 && !memcmp(m->addr, mapped, 12)) {
			m->family = AF_INET;
			memmove(m->addr, m->addr + 12, 4);
			memset(m->addr + 4, 0, 12);
			m->prefix = (uint8_t)(m->prefix - 96);
		}
		if (close + 1 == n)
			return NULL;
		if (s[close + 1] != ':') {
			*bad_at = close + 1;
			return "expected ':' and ports after ']'";
		}
		why = parse_ports(s + close + 2, n - close - 2, &m->port_lo,
				  &m->port_hi);
		if (why)
			*bad_at = close + 2;
		return why;
	}

	size_t colons = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ':') {
			colons++;
			host_n = i;
			ports_at = i + 1;
		}
	}
	if (colons > 1)
		return "an IPv6 address goes in brackets, e.g. [::1]:443";
	if (colons) {
		why = parse_ports(s + ports_at, n - ports_at, &m->port_lo,
				  &m->port_hi);
		if (why) {
			*bad_at = ports_at;
			return why;
		}
	}
	if (host_n == 1 && s[0] == '*') {
		m->kind = BW_MATCH_ANY;
		return NULL;
	}
	if (host_n >= 2 && s[0] == '*' && s[1] == '.') {
		m->kind = BW_MATCH_SUFFIX;
		*bad_at = 2;
		return parse_name(s + 2, host_n - 2, m->host);
	}
	/* Digits, dots and at most one '/': an IPv4 address or CIDR. */
	size_t slash = host_n;
	bool ipish = host_n > 0;
	for (size_t i = 0; i < host_n; i++) {
		if (s[i] == '/' && slash == host_n)
			slash = i;
		else if (!is_digit(s[i]) && s[i] != '.')
			ipish = false;
	}
	if (slash < host_n && !ipish)
		return "bad address: a '/' prefix needs an IPv4 address (or "
		       "[IPv6/prefix])";
	if (ipish) {
		m->kind = BW_MATCH_ADDR;
		m->family = AF_INET;
		memset(m->addr, 0, sizeof(m->addr));
		m->prefix = 32;
		why = parse_ipv4(s, slash, m->addr);
		if (why)
			return why;
		if (slash < host_n) {
			why = parse_prefix(s + slash + 1, host_n - slash - 1,
					   32, &m->prefix);
			if (why) {
				*bad_at = slash + 1;
				return why;
			}
		}
		mask_addr(m->addr, 4, m->prefix);
		return NULL;
	}
	m->kind = BW_MATCH_HOST;
	return parse_name(s, host_n, m->host);
}

/* ---- rules ------------------------------------------------------------- */

/* Applies the end of a rule: derived values and cross-key defaults. */
static void finish_rule(struct bw_rule *r)
{
	/* open_max: 0 or below open means "= breaker.open"
	 * (bulwark-policy(7)). */
	if (r->s.open_max_ns < r->s.open_ns)
		r->s.open_max_ns = r->s.open_ns;
}

static int setting(const struct cursor *c, struct bw_rule *r, bool *seen_off,
		   size_t at, size_t n)
{
	const char *t = c->text + at;
	size_t eqpos = 0;
	struct bw__buf b;

	while (eqpos < n && t[eqpos] != '=')
		eqpos++;
	if (eqpos == n) {
		if (n == 3 && !memcmp(t, "off", 3)) {
			if (*seen_off) {
				b = err_start(c, at);
				bw__buf_puts(&b, "'off' given twice");
				return -EINVAL;
			}
			*seen_off = true;
			r->off = true;
			return 0;
		}
		b = err_start(c, at);
		int k = bw_policy_key_index(t, n);
		if (k >= 0) {
			bw__buf_puts(&b, "missing value: write ");
			bw__buf_puts(&b, bw__keys[k].name);
			bw__buf_puts(&b, "=VALUE");
			return -EINVAL;
		}
		bw__buf_puts(&b, "expected key=value or 'off', got ");
		bw__buf_quote(&b, t, n, 40);
		k = bw__key_suggest(t, n);
		if (k < 0 && n <= 4) {
			char lower[4];
			for (size_t i = 0; i < n; i++)
				lower[i] = bw__lower(t[i]);
			if (n == 3 && !memcmp(lower, "off", 3)) {
				bw__buf_puts(&b, "; did you mean 'off'?");
				return -EINVAL;
			}
		}
		if (k >= 0) {
			bw__buf_puts(&b, "; did you mean '");
			bw__buf_puts(&b, bw__keys[k].name);
			bw__buf_puts(&b, "=...'?");
		}
		return -EINVAL;
	}
	int k = bw_policy_key_index(t, eqpos);
	if (k < 0) {
		b = err_start(c, at);
		if (!eqpos) {
			bw__buf_puts(&b, "missing key before '='");
			return -EINVAL;
		}
		bw__buf_puts(&b, "unknown key ");
		bw__buf_quote(&b, t, eqpos, 40);
		int s = bw__key_suggest(t, eqpos);
		if (s >= 0) {
			bw__buf_puts(&b, "; did you mean '");
			bw__buf_puts(&b, bw__keys[s].name);
			bw__buf_puts(&b, "'?");
		}
		return -EINVAL;
	}
	if (r->set_mask & (1ull << k)) {
		b = err_start(c, at);
		bw__buf_puts(&b, "duplicate key '");
		bw__buf_puts(&b, bw__keys[k].name);
		bw__buf_puts(&b, "' in this rule");
		return -EINVAL;
	}
	char why[160];
	struct bw__buf wb;
	bw__buf_init(&wb, why, sizeof(why));
	if (bw__value_parse(&bw__keys[k], t + eqpos + 1, n - eqpos - 1, &r->s,
			    &wb)) {
		b = err_start(c, at + eqpos + 1);
		if (eqpos + 1 == n) {
			bw__buf_puts(&b, "missing value for ");
			bw__buf_puts(&b, bw__keys[k].name);
			return -EINVAL;
		}
		bw__buf_puts(&b, "bad value ");
		bw__buf_quote(&b, t + eqpos + 1, n - eqpos - 1, 40);
		bw__buf_puts(&b, " for ");
		bw__buf_puts(&b, bw__keys[k].name);
		bw__buf_puts(&b, ": ");
		bw__buf_puts(&b, why);
		return -EINVAL;
	}
	r->set_mask |= 1ull << k;
	return 0;
}

static int begin_rule(struct bw_policy *p, const struct cursor *c, size_t at,
		      size_t n)
{
	struct bw__buf b;
	size_t bad_at;

	if (p->nrules >= BW_POLICY_RULES_MAX) {
		b = err_start(c, at);
		bw__buf_puts(&b, "too many rules (most ");
		bw__buf_putu(&b, BW_POLICY_RULES_MAX);
		bw__buf_puts(&b, ")");
		return -E2BIG;
	}
	struct bw_rule *r = &p->rules[p->nrules];
	memset(r, 0, sizeof(*r));
	r->s = p->defaults; /* I2 */
	r->line = c->line;
	{
		struct bw__buf o;
		bw__buf_init(&o, r->origin, sizeof(r->origin));
		bw__buf_puts(&o, c->origin);
	}
	const char *why = parse_match(c->text + at, n, &r->match, &bad_at);
	if (why) {
		b = err_start(c, at + bad_at);
		bw__buf_puts(&b, why);
		bw__buf_puts(&b, ": ");
		bw__buf_quote(&b, c->text + at, n, 60);
		return -EINVAL;
	}
	/* The text as written, cut with "..." to fit. */
	size_t tn = n < sizeof(r->text) ? n : sizeof(r->text) - 1;
	memcpy(r->text, c->text + at, tn);
	r->text[tn] = '\0';
	if (tn < n)
		memcpy(r->text + tn - 3, "...", 3);
	p->nrules++;
	return 0;
}

int bw_policy_parse(struct bw_policy *p, const char *text, size_t len,
		    const char *origin, struct bw_policy_error *err)
{
	struct bw_policy_error dummy;
	struct cursor c = {
		text, len, 0, 1, origin ? origin : "policy", err ? err : &dummy
	};
	struct bw_rule *r = NULL;
	bool seen_off = false;
	size_t i = 0;
	int rc;

	memset(c.err, 0, sizeof(*c.err));
	if (!p || (!text && len))
		return -EINVAL;
	while (i < len) {
		char ch = text[i];
		if (ch == '\n' || ch == ';') {
			if (r)
				finish_rule(r);
			r = NULL;
			i++;
			if (ch == '\n') {
				c.line++;
				c.line_start = i;
			}
			continue;
		}
		if (is_blank(ch)) {
			i++;
			continue;
		}
		if (ch == '#') {
			while (i < len && text[i] != '\n')
				i++;
			continue;
		}
		size_t start = i;
		while (i < len) {
			unsigned char u = (unsigned char)text[i];
			if (u == '\n' || u == ';' || u == '#' ||
			    is_blank((char)u))
				break;
			if (u < 0x20 || u == 0x7f) {
				struct bw__buf b = err_start(&c, i);
				bw__buf_puts(&b,
					     "unexpected control character ");
				bw__buf_quote(&b, text + i, 1, 1);
				return -EINVAL;
			}
			i++;
		}
		if (!r) {
			rc = begin_rule(p, &c, start, i - start);
			if (rc)
				return rc;
			r = &p->rules[p->nrules - 1];
			seen_off = false;
			if (r->match.kind == BW_MATCH_HOST ||
			    r->match.kind == BW_MATCH_SUFFIX)
				p->has_host_rules = true;
		} else {
			rc = setting(&c, r, &seen_off, start, i - start);
			if (rc)
				return rc;
		}
	}
	if (r)
		finish_rule(r);
	return 0;
}

size_t bw_policy_error_format(const struct bw_policy_error *err, char *buf,
			      size_t cap)
{
	struct bw__buf b;

	bw__buf_init(&b, buf, cap);
	bw__buf_puts(&b, "bulwark: ");
	if (err) {
		bw__buf_putn(&b, err->origin,
			     strnlen(err->origin, sizeof(err->origin)));
		if (err->line > 0) {
			bw__buf_putc(&b, ':');
			bw__buf_puti(&b, err->line);
			bw__buf_putc(&b, ':');
			bw__buf_puti(&b, err->col);
		}
		bw__buf_puts(&b, ": ");
		bw__buf_putn(&b, err->msg, strnlen(err->msg, sizeof(err->msg)));
	}
	return b.len < cap ? b.len : (cap ? cap - 1 : 0);
}
