/* SPDX-License-Identifier: MIT */
/*
 * policy/value.c: parsers and printers for every value type of
 * bulwark-policy(7) Values (durations, percents, counts, windows, factors,
 * jitter, errno names, retry.on lists, scope, growth, group names) and
 * state-name checks.  Values are byte ranges, not C strings: they may hold
 * anything, NULs included.  Never: allocates, uses strtod/strtol (locale,
 * errno), reads outside [v, v + n).  Context: any; the shim's constructor calls
 * it.
 */
#include <errno.h>
#include <string.h>

#include "policy/internal.h"

/* Fixed-point numbers: 9 decimals, integer part capped so that
 * int * 10^9 fits comfortably in 64 bits. */
#define FIX_DECIMALS 9
#define FIX_ONE 1000000000ull
#define FIX_INT_MAX 1000000000ull

#define FIELD(s, k, type) ((type *)(void *)((char *)(s) + (k)->off))

static bool eq(const char *v, size_t n, const char *word)
{
	size_t i = 0;

	for (; i < n && word[i]; i++)
		if (bw__lower(v[i]) != word[i])
			return false;
	return i == n && !word[i];
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Reads digits [ "." digits ] from v[0..n) into *fix (value * 10^9).
 * Returns the bytes used (0: no number there), or -ERANGE when too large.
 * Fraction digits past the ninth are checked and dropped.
 */
static long read_fixed(const char *v, size_t n, uint64_t *fix)
{
	size_t i = 0;
	uint64_t ip = 0, fp = 0, scale = FIX_ONE;

	while (i < n && is_digit(v[i])) {
		ip = ip * 10 + (uint64_t)(v[i] - '0');
		if (ip > FIX_INT_MAX)
			return -ERANGE;
		i++;
	}
	if (i == 0)
		return 0;
	if (i < n && v[i] == '.') {
		size_t j = i + 1;
		while (j < n && is_digit(v[j])) {
			if (scale > 1) {
				scale /= 10;
				fp += (uint64_t)(v[j] - '0') * scale;
			}
			j++;
		}
		if (j == i + 1)
			return 0; /* "1." is not a number */
		i = j;
	}
	*fix = ip * FIX_ONE + fp;
	return (long)i;
}

static void say_range(struct bw__buf *why, const char *what, uint64_t lo,
		      uint64_t hi)
{
	bw__buf_puts(why, what);
	bw__buf_puts(why, " must be between ");
	bw__buf_putu(why, lo);
	bw__buf_puts(why, " and ");
	bw__buf_putu(why, hi);
}

static int bad(struct bw__buf *why, const char *text)
{
	bw__buf_puts(why, text);
	return -EINVAL;
}

/* A whole number in [lo, hi]. */
static int parse_count(const char *v, size_t n, uint64_t lo, uint64_t hi,
		       uint64_t *out, struct bw__buf *why)
{
	uint64_t x = 0;

	if (n && v[0] == '-')
		return bad(why, "must not be negative");
	if (!n)
		return bad(why, "expected a whole number");
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(v[i]))
			return bad(why, "expected a whole number");
		x = x * 10 + (uint64_t)(v[i] - '0');
		if (x > hi) {
			say_range(why, "the number", lo, hi);
			return -EINVAL;
		}
	}
	if (x < lo) {
		say_range(why, "the number", lo, hi);
		return -EINVAL;
	}
	*out = x;
	return 0;
}

static const struct {
	const char *name;
	uint64_t ns;
} units[] = {
	{ "h", 3600000000000ull }, { "m", 60000000000ull },
	{ "s", 1000000000ull },	   { "ms", 1000000ull },
	{ "us", 1000ull },
};

#define NUNITS (sizeof(units) / sizeof(units[0]))

/* number unit | "0", within [lo, hi] ns. */
static int parse_duration(const char *v, size_t n, uint64_t lo, uint64_t hi,
			  uint64_t *out, struct bw__buf *why)
{
	uint64_t fix = 0;
	long used;

	if (n && v[0] == '-')
		return bad(why, "must not be negative");
	used = read_fixed(v, n, &fix);
	if (used == -ERANGE)
		goto range;
	if (used <= 0)
		return bad(why, "expected a duration such as 250ms, 1.5s or 0");
	if ((size_t)used == n) {
		if (fix != 0)
			return bad(why, "a duration needs a unit: us, ms, s, "
					"m or h (e.g. 250ms)");
		*out = 0;
		goto check;
	}
	for (size_t u = 0; u < NUNITS; u++) {
		if (!eq(v + used, n - (size_t)used, units[u].name))
			continue;
		uint64_t unit = units[u].ns;
		uint64_t ip = fix / FIX_ONE, fp = fix % FIX_ONE;
		if (ip > hi / unit)
			goto range;
		/* fp < 10^9 and unit / 1000 <= 3.6 * 10^9: no overflow. */
		uint64_t ns = ip * unit + fp * (unit / 1000) / 1000000;
		if (fix && !ns)
			return bad(why, "shorter than 1ns");
		*out = ns;
		goto check;
	}
	return bad(why, "unknown unit; use us, ms, s, m or h (e.g. 250ms)");
check:
	if (*out >= lo && *out <= hi)
		return 0;
range:
	bw__buf_puts(why, "must be between ");
	bw__format_duration(why, lo);
	bw__buf_puts(why, " and ");
	bw__format_duration(why, hi);
	return -EINVAL;
}

/* A decimal in [lo, hi] (whole-number bounds); with percent, number% (or
 * a bare 0) in [lo, hi] percent, as a fraction. */
static int parse_fixed_in(const char *v, size_t n, uint64_t lo, uint64_t hi,
			  bool percent, double *out, struct bw__buf *why)
{
	uint64_t fix = 0;
	long used;

	if (n && v[0] == '-')
		return bad(why, "must not be negative");
	used = read_fixed(v, n, &fix);
	if (used == -ERANGE)
		goto range;
	bool whole = used > 0 && (size_t)used == n;
	bool with_sign = used > 0 && (size_t)used == n - 1 && v[n - 1] == '%';
	if (percent && !with_sign && !(whole && fix == 0))
		return bad(why, "expected a percent such as 50% or 12.5%");
	if (!percent && !whole)
		return bad(why, "expected a number such as 2 or 1.5");
	if (fix > hi * FIX_ONE || fix < lo * FIX_ONE)
		goto range;
	*out = (double)fix / (double)FIX_ONE / (percent ? 100.0 : 1.0);
	return 0;
range:
	if (!percent) {
		say_range(why, "the number", lo, hi);
		return -EINVAL;
	}
	bw__buf_puts(why, "must be between ");
	bw__buf_putu(why, lo);
	bw__buf_puts(why, "% and ");
	bw__buf_putu(why, hi);
	bw__buf_puts(why, "%");
	return -EINVAL;
}

static int parse_retry_on(const char *v, size_t n, uint32_t *out,
			  struct bw__buf *why)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} classes[] = {
		{ "refused", BW_RETRY_ON_REFUSED },
		{ "timeout", BW_RETRY_ON_TIMEOUT },
		{ "unreachable", BW_RETRY_ON_UNREACHABLE },
		{ "reset", BW_RETRY_ON_RESET },
	};
	uint32_t mask = 0;
	size_t i = 0;

	if (eq(v, n, "none") || eq(v, n, "off")) {
		*out = 0;
		return 0;
	}
	for (;;) {
		size_t j = i;
		while (j < n && v[j] != ',')
			j++;
		size_t c = 0;
		for (; c < sizeof(classes) / sizeof(classes[0]); c++)
			if (eq(v + i, j - i, classes[c].name))
				break;
		if (c == sizeof(classes) / sizeof(classes[0])) {
			bw__buf_puts(why,
				     j == i ? "empty class" : "unknown class ");
			if (j > i)
				bw__buf_quote(why, v + i, j - i, 24);
			bw__buf_puts(why,
				     "; expected a comma-separated list of "
				     "refused, timeout, unreachable, "
				     "reset (or none)");
			return -EINVAL;
		}
		mask |= classes[c].bit;
		if (j == n)
			break;
		i = j + 1;
	}
	*out = mask;
	return 0;
}

int bw__check_name(const char *s, size_t n)
{
	if (n < 1 || n > BW_POLICY_NAME_MAX - 1)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      is_digit(c) || c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

int bw_policy_check_state_name(const char *name)
{
	if (!name)
		return -EINVAL;
	return bw__check_name(name, strnlen(name, BW_POLICY_NAME_MAX));
}

int bw__value_parse(const struct bw__key *k, const char *v, size_t n,
		    struct bw_settings *s, struct bw__buf *why)
{
	uint64_t u = 0;
	double d = 0;
	int rc;

	if (!n)
		return bad(why, "missing value");
	if ((k->flags & BW__K_OFF) && eq(v, n, "off")) {
		switch (k->type) {
		case BW__V_PERCENT:
			*FIELD(s, k, double) = (k->flags & BW__K_OFF_NEG) ? -1.0
									  : 0.0;
			return 0;
		case BW__V_DURATION:
			*FIELD(s, k, uint64_t) = 0;
			return 0;
		case BW__V_COUNT:
			*FIELD(s, k, uint32_t) = 0;
			return 0;
		default:
			break;
		}
	}
	switch (k->type) {
	case BW__V_BOOL:
		if (eq(v, n, "on") || eq(v, n, "true") || eq(v, n, "1"))
			*FIELD(s, k, bool) = true;
		else if (eq(v, n, "off") || eq(v, n, "false") || eq(v, n, "0"))
			*FIELD(s, k, bool) = false;
		else
			return bad(why, "expected on or off");
		return 0;
	case BW__V_COUNT:
		rc = parse_count(v, n, k->min, k->max, &u, why);
		if (!rc)
			*FIELD(s, k, uint32_t) = (uint32_t)u;
		return rc;
	case BW__V_PERCENT:
		rc = parse_fixed_in(v, n, k->min, k->max, true, &d, why);
		if (rc)
			return rc;
		/* A zero threshold for an optional rate means off. */
		if (d == 0 && (k->flags & BW__K_OFF_NEG))
			d = -1.0;
		*FIELD(s, k, double) = d;
		return 0;
	case BW__V_DURATION:
		rc = parse_duration(v, n, k->min, k->max, &u, why);
		if (!rc)
			*FIELD(s, k, uint64_t) = u;
		return rc;
	case BW__V_WINDOW: {
		bool dur = false;
		for (size_t i = 0; i < n; i++)
			dur |= !is_digit(v[i]);
		if (!dur) {
			rc = parse_count(v, n, 1, BW_POLICY_COUNT_MAX, &u, why);
			if (rc)
				return rc;
			s->window_calls = (uint32_t)u;
			s->window_ns = 0;
			return 0;
		}
		rc = parse_duration(v, n, 1000000, BW_POLICY_DURATION_MAX_NS,
				    &u, why);
		if (rc) {
			bw__buf_puts(why, " (a window is a number of calls "
					  "or a duration)");
			return rc;
		}
		s->window_calls = 0;
		s->window_ns = u;
		return 0;
	}
	case BW__V_FACTOR:
		rc = parse_fixed_in(v, n, k->min, k->max, false, &d, why);
		if (!rc)
			*FIELD(s, k, double) = d;
		return rc;
	case BW__V_JITTER:
		if (eq(v, n, "full")) {
			s->retry_jitter = 1.0;
			s->retry_jitter_full = true;
			return 0;
		}
		rc = parse_fixed_in(v, n, 0, 1, false, &d, why);
		if (rc) {
			bw__buf_puts(why, ", or full");
			return rc;
		}
		s->retry_jitter = d;
		s->retry_jitter_full = false;
		return 0;
	case BW__V_ERRNO: {
		int e = bw_policy_errno_from_name(v, n);
		if (e <= 0)
			return bad(why, "unknown errno name; expected a name "
					"such as ECONNREFUSED");
		*FIELD(s, k, int) = e;
		return 0;
	}
	case BW__V_RETRY_ON:
		return parse_retry_on(v, n, FIELD(s, k, uint32_t), why);
	case BW__V_SCOPE:
		if (eq(v, n, "shared"))
			*FIELD(s, k, enum bw_scope) = BW_SCOPE_SHARED;
		else if (eq(v, n, "process"))
			*FIELD(s, k, enum bw_scope) = BW_SCOPE_PROCESS;
		else
			return bad(why, "expected shared or process");
		return 0;
	case BW__V_GROWTH:
		if (eq(v, n, "fixed"))
			*FIELD(s, k, enum bw_growth) = BW_GROWTH_FIXED;
		else if (eq(v, n, "linear"))
			*FIELD(s, k, enum bw_growth) = BW_GROWTH_LINEAR;
		else
			return bad(why, "expected fixed or linear");
		return 0;
	case BW__V_GROUP: {
		char *g = FIELD(s, k, char);
		if (eq(v, n, "none") || eq(v, n, "off")) {
			g[0] = '\0';
			return 0;
		}
		if (bw__check_name(v, n))
			return bad(why, "a group name is 1 to 64 letters, "
					"digits, '.', '_' or '-'");
		memcpy(g, v, n);
		g[n] = '\0';
		return 0;
	}
	}
	return bad(why, "internal error: unknown value type");
}

void bw__format_duration(struct bw__buf *b, uint64_t ns)
{
	if (!ns) {
		bw__buf_putc(b, '0');
		return;
	}
	/* Whole minutes or hours from two up ("2m", "90m"; "60s", not
	 * "1m"), else the largest of s, ms, us that shows the value exactly
	 * with at most 3 decimals; "us" always does (1ns = 0.001us). */
	for (size_t u = 0; u < NUNITS; u++) {
		uint64_t unit = units[u].ns;
		if (unit > 1000000000ull) {
			if (ns % unit || ns < 2 * unit)
				continue;
		} else if (u + 1 < NUNITS &&
			   (ns < unit || ns % (unit / 1000))) {
			continue;
		}
		bw__buf_fixed(b, ns / (unit / 1000), 3);
		bw__buf_puts(b, units[u].name);
		return;
	}
}

/* A fraction as a decimal with up to 6 places ("0.1", "2"). */
static void format_decimal(struct bw__buf *b, double d)
{
	if (d < 0)
		d = 0;
	bw__buf_fixed(b, (uint64_t)(d * 1e6 + 0.5), 6);
}

void bw__value_format(const struct bw__key *k, const struct bw_settings *s,
		      struct bw__buf *b)
{
	const char *name;

	switch (k->type) {
	case BW__V_BOOL:
		bw__buf_puts(b, *FIELD(s, k, bool) ? "on" : "off");
		return;
	case BW__V_COUNT:
		bw__buf_putu(b, *FIELD(s, k, uint32_t));
		return;
	case BW__V_PERCENT: {
		double d = *FIELD(s, k, double);
		if ((k->flags & BW__K_OFF) && d <= 0) {
			bw__buf_puts(b, "off");
			return;
		}
		format_decimal(b, d * 100);
		bw__buf_putc(b, '%');
		return;
	}
	case BW__V_DURATION: {
		uint64_t ns = *FIELD(s, k, uint64_t);
		if (k - bw__keys == BW_KEY_BREAKER_OPEN_MAX && !ns)
			ns = s->open_ns;
		if ((k->flags & BW__K_OFF) && !ns)
			bw__buf_puts(b, "off");
		else
			bw__format_duration(b, ns);
		return;
	}
	case BW__V_WINDOW:
		if (s->window_ns)
			bw__format_duration(b, s->window_ns);
		else
			bw__buf_putu(b, s->window_calls);
		return;
	case BW__V_FACTOR:
		format_decimal(b, *FIELD(s, k, double));
		return;
	case BW__V_JITTER:
		if (s->retry_jitter_full)
			bw__buf_puts(b, "full");
		else
			format_decimal(b, s->retry_jitter);
		return;
	case BW__V_ERRNO:
		name = bw_policy_errno_name(*FIELD(s, k, int));
		if (name) {
			bw__buf_puts(b, name);
		} else {
			bw__buf_puts(b, "errno ");
			bw__buf_puti(b, *FIELD(s, k, int));
		}
		return;
	case BW__V_RETRY_ON: {
		static const char *const names[] = { "refused", "timeout",
						     "unreachable", "reset" };
		uint32_t m = *FIELD(s, k, uint32_t);
		bool first = true;
		for (unsigned i = 0; i < 4; i++) {
			if (!(m & (1u << i)))
				continue;
			if (!first)
				bw__buf_putc(b, ',');
			bw__buf_puts(b, names[i]);
			first = false;
		}
		if (first)
			bw__buf_puts(b, "none");
		return;
	}
	case BW__V_SCOPE:
		bw__buf_puts(b, *FIELD(s, k, enum bw_scope) == BW_SCOPE_PROCESS
					? "process"
					: "shared");
		return;
	case BW__V_GROWTH:
		bw__buf_puts(b, *FIELD(s, k, enum bw_growth) == BW_GROWTH_LINEAR
					? "linear"
					: "fixed");
		return;
	case BW__V_GROUP: {
		const char *g = FIELD(s, k, const char);
		size_t n = strnlen(g, BW_POLICY_NAME_MAX);
		if (n)
			bw__buf_putn(b, g, n);
		else
			bw__buf_puts(b, "none");
		return;
	}
	}
}
