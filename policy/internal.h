/* SPDX-License-Identifier: MIT */
/*
 * policy/internal.h: what the policy files share and nobody else uses: the
 * key table (keys.c) and the value parsers and printers (value.c); the
 * text builder they write with is policy/text.h.  Names are bw__
 * (doc/design.md H2).  Nothing here allocates or touches errno.
 */
#ifndef BW_POLICY_INTERNAL_H
#define BW_POLICY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"
#include "policy/text.h"

/* ASCII only: the locale must not change how a policy reads. */
static inline char bw__lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

enum bw__vtype {
	BW__V_BOOL,	/* on | off (bool) */
	BW__V_COUNT,	/* whole number (uint32_t) */
	BW__V_PERCENT,	/* number% (double fraction) */
	BW__V_WINDOW,	/* count or duration (window_calls / window_ns) */
	BW__V_DURATION, /* number unit | 0 (uint64_t ns) */
	BW__V_FACTOR,	/* decimal >= 1 (double) */
	BW__V_JITTER,	/* decimal in [0, 1] | full */
	BW__V_ERRNO,	/* E* name (int) */
	BW__V_RETRY_ON, /* class list (uint32_t mask) */
	BW__V_SCOPE,	/* shared | process (enum bw_scope) */
	BW__V_GROWTH,	/* fixed | linear (enum bw_growth) */
	BW__V_GROUP,	/* a name, or none (char[]) */
};

/* Key flags. */
#define BW__K_OFF 1u	 /* "off" accepted: 0, or -1 for a rate */
#define BW__K_OFF_NEG 2u /* off is stored as -1 (rates) */

struct bw__key {
	const char *name;
	enum bw__vtype type;
	const char *def;   /* built-in default, parsed by bw_policy_init */
	const char *shown; /* default as documented, if it differs */
	size_t off;	   /* offsetof(struct bw_settings, field) */
	unsigned flags;
	uint64_t min, max; /* counts, durations (ns), percents (%) */
};

extern const struct bw__key bw__keys[BW_KEY_COUNT];

/* Closest key to a misspelt one, or -1 when none is close. */
int bw__key_suggest(const char *s, size_t n);

/*
 * Parses value v (n bytes) for key k into s.  Returns 0, or -EINVAL with
 * the reason ("expected a duration such as 250ms") written to why.
 */
int bw__value_parse(const struct bw__key *k, const char *v, size_t n,
		    struct bw_settings *s, struct bw__buf *why);
void bw__value_format(const struct bw__key *k, const struct bw_settings *s,
		      struct bw__buf *b);
/* Formats a duration in the largest unit that keeps it exact ("1.5s"). */
void bw__format_duration(struct bw__buf *b, uint64_t ns);

/* Whether bytes s[0..n) are a valid group / state name. */
int bw__check_name(const char *s, size_t n);

#endif
