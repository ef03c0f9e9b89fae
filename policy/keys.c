/* SPDX-License-Identifier: MIT */
/*
 * policy/keys.c: the table of every key of bulwark-policy(7) (name, type,
 * built-in default, field, range), the BULWARK_<KEY> overrides (bw_policy_init)
 * and the rule "*" they make when no rule is given (bw_policy_finish), the key
 * metadata and value printer, and the closest-key suggestion.
 * The defaults are text parsed by the same code as the policy, so the
 * documented default and the compiled one cannot drift apart.
 * Never: allocates, sets errno.  Context: the shim's constructor, the CLI.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "policy/internal.h"

#define F(field) offsetof(struct bw_settings, field)
#define MS 1000000ull
#define DMAX BW_POLICY_DURATION_MAX_NS
#define CMAX BW_POLICY_COUNT_MAX
#define OFF BW__K_OFF
#define OFFNEG (BW__K_OFF | BW__K_OFF_NEG)

const struct bw__key bw__keys[BW_KEY_COUNT] = {
	[BW_KEY_BREAKER] = { "breaker", BW__V_BOOL, "on", NULL, F(breaker_on),
			     0, 0, 0 },
	[BW_KEY_BREAKER_FAILURES] = { "breaker.failures", BW__V_COUNT, "5",
				      NULL, F(failures), OFF, 0, CMAX },
	[BW_KEY_BREAKER_RATE] = { "breaker.rate", BW__V_PERCENT, "off", NULL,
				  F(rate), OFFNEG, 0, 100 },
	[BW_KEY_BREAKER_WINDOW] = { "breaker.window", BW__V_WINDOW, "100", NULL,
				    0, 0, 0, 0 },
	[BW_KEY_BREAKER_MIN_CALLS] = { "breaker.min_calls", BW__V_COUNT, "20",
				       NULL, F(min_calls), 0, 0, CMAX },
	[BW_KEY_BREAKER_SLOW] = { "breaker.slow", BW__V_DURATION, "off", NULL,
				  F(slow_ns), OFF, 0, DMAX },
	[BW_KEY_BREAKER_SLOW_CALLS] = { "breaker.slow_calls", BW__V_COUNT, "10",
					NULL, F(slow_calls), OFF, 0, CMAX },
	[BW_KEY_BREAKER_SLOW_RATE] = { "breaker.slow_rate", BW__V_PERCENT,
				       "off", NULL, F(slow_rate), OFFNEG, 0,
				       100 },
	[BW_KEY_BREAKER_OPEN] = { "breaker.open", BW__V_DURATION, "60s", NULL,
				  F(open_ns), 0, 1000, DMAX },
	[BW_KEY_BREAKER_OPEN_MAX] = { "breaker.open_max", BW__V_DURATION, "0",
				      "= breaker.open", F(open_max_ns), 0, 0,
				      DMAX },
	[BW_KEY_BREAKER_PROBES] = { "breaker.probes", BW__V_COUNT, "1", NULL,
				    F(probes), 0, 1, CMAX },
	[BW_KEY_BREAKER_ERRNO] = { "breaker.errno", BW__V_ERRNO, "ECONNREFUSED",
				   NULL, F(breaker_errno), 0, 0, 0 },
	[BW_KEY_BULKHEAD_MAX] = { "bulkhead.max", BW__V_COUNT, "0", "0 (none)",
				  F(bulkhead_max), OFF, 0, CMAX },
	[BW_KEY_BULKHEAD_WAIT] = { "bulkhead.wait", BW__V_DURATION, "100ms",
				   NULL, F(bulkhead_wait_ns), 0, 0, DMAX },
	[BW_KEY_BULKHEAD_QUEUE] = { "bulkhead.queue", BW__V_COUNT, "0",
				    "0 (no limit)", F(bulkhead_queue), OFF, 0,
				    CMAX },
	[BW_KEY_BULKHEAD_SCOPE] = { "bulkhead.scope", BW__V_SCOPE, "shared",
				    NULL, F(bulkhead_scope), 0, 0, 0 },
	[BW_KEY_BULKHEAD_ERRNO] = { "bulkhead.errno", BW__V_ERRNO,
				    "ECONNREFUSED", NULL, F(bulkhead_errno), 0,
				    0, 0 },
	/* 100 attempts already means minutes of waiting at the default
	 * backoff; more is a typo. */
	[BW_KEY_RETRY_ATTEMPTS] = { "retry.attempts", BW__V_COUNT, "3", NULL,
				    F(retry_attempts), 0, 1, 100 },
	[BW_KEY_RETRY_BACKOFF] = { "retry.backoff", BW__V_DURATION, "100ms",
				   NULL, F(retry_backoff_ns), 0, 0, DMAX },
	[BW_KEY_RETRY_MAX_BACKOFF] = { "retry.max_backoff", BW__V_DURATION,
				       "10s", NULL, F(retry_max_backoff_ns), 0,
				       0, DMAX },
	[BW_KEY_RETRY_MULTIPLIER] = { "retry.multiplier", BW__V_FACTOR, "2",
				      NULL, F(retry_multiplier), 0, 1, 100 },
	[BW_KEY_RETRY_JITTER] = { "retry.jitter", BW__V_JITTER, "0.1", NULL, 0,
				  0, 0, 1 },
	[BW_KEY_RETRY_ON] = { "retry.on", BW__V_RETRY_ON,
			      "refused,timeout,unreachable", NULL, F(retry_on),
			      0, 0, 0 },
	[BW_KEY_RETRY_BUDGET] = { "retry.budget", BW__V_PERCENT, "20%", NULL,
				  F(retry_budget), 0, 0, 100 },
	[BW_KEY_RETRY_MIN_SUCCESS] = { "retry.min_success", BW__V_PERCENT,
				       "10%", NULL, F(retry_min_success), OFF,
				       0, 100 },
	[BW_KEY_RETRY_ADAPTIVE] = { "retry.adaptive", BW__V_BOOL, "off", NULL,
				    F(retry_adaptive), 0, 0, 0 },
	[BW_KEY_CONNECT_TIMEOUT] = { "connect.timeout", BW__V_DURATION, "off",
				     "0 (kernel's)", F(connect_timeout_ns), OFF,
				     0, DMAX },
	[BW_KEY_CONNECT_TIMEOUT_GROWTH] = { "connect.timeout_growth",
					    BW__V_GROWTH, "fixed", NULL,
					    F(connect_timeout_growth), 0, 0,
					    0 },
	[BW_KEY_IO_TIMEOUT] = { "io.timeout", BW__V_DURATION, "off", "0 (none)",
				F(io_timeout_ns), OFF, 0, DMAX },
	[BW_KEY_HEDGE_DELAY] = { "hedge.delay", BW__V_DURATION, "off",
				 "0 (off)", F(hedge_delay_ns), OFF, 0, DMAX },
	[BW_KEY_GROUP] = { "group", BW__V_GROUP, "none", NULL, F(group), 0, 0,
			   0 },
};

int bw_policy_nkeys(void)
{
	return BW_KEY_COUNT;
}

const char *bw_policy_key_name(int i)
{
	return (i >= 0 && i < BW_KEY_COUNT) ? bw__keys[i].name : NULL;
}

const char *bw_policy_key_default(int i)
{
	if (i < 0 || i >= BW_KEY_COUNT)
		return NULL;
	return bw__keys[i].shown ? bw__keys[i].shown : bw__keys[i].def;
}

int bw_policy_key_index(const char *name, size_t len)
{
	if (!name)
		return -1;
	for (int i = 0; i < BW_KEY_COUNT; i++) {
		const char *k = bw__keys[i].name;
		if (strlen(k) == len && memcmp(k, name, len) == 0)
			return i;
	}
	return -1;
}

size_t bw_policy_format_value(const struct bw_settings *s, int key, char *buf,
			      size_t cap)
{
	struct bw__buf b;

	bw__buf_init(&b, buf, cap);
	if (s && key >= 0 && key < BW_KEY_COUNT)
		bw__value_format(&bw__keys[key], s, &b);
	return b.len < cap ? b.len : (cap ? cap - 1 : 0);
}

/* Keys are at most this long; longer words are not misspellings of one. */
#define SUGGEST_MAX 40

/* Case-insensitive Levenshtein distance, two rows on the stack. */
static unsigned distance(const char *a, size_t na, const char *b, size_t nb)
{
	unsigned row[2][SUGGEST_MAX + 1];

	for (size_t j = 0; j <= nb; j++)
		row[0][j] = (unsigned)j;
	for (size_t i = 1; i <= na; i++) {
		unsigned *prev = row[(i - 1) & 1], *cur = row[i & 1];
		cur[0] = (unsigned)i;
		for (size_t j = 1; j <= nb; j++) {
			unsigned sub =
				prev[j - 1] + (bw__lower(a[i - 1]) != b[j - 1]);
			unsigned del = prev[j] + 1, ins = cur[j - 1] + 1;
			unsigned m = sub < del ? sub : del;
			cur[j] = m < ins ? m : ins;
		}
	}
	return row[na & 1][nb];
}

int bw__key_suggest(const char *s, size_t n)
{
	int best = -1;
	unsigned best_d = ~0u;

	if (!n || n > SUGGEST_MAX)
		return -1;
	for (int i = 0; i < BW_KEY_COUNT; i++) {
		const char *k = bw__keys[i].name;
		size_t nk = strlen(k);
		unsigned d = distance(s, n, k, nk);
		/* Up to a quarter of the key wrong, at least 2 edits. */
		unsigned limit = nk / 4 > 2 ? (unsigned)(nk / 4) : 2;
		if (d <= limit && d < best_d) {
			best = i;
			best_d = d;
		}
	}
	if (best >= 0)
		return best;
	/* "failures" for "breaker.failures": the part after the dot, when
	 * exactly one key ends that way. */
	for (int i = 0; i < BW_KEY_COUNT; i++) {
		const char *dot = strchr(bw__keys[i].name, '.');
		if (!dot || strlen(dot + 1) != n)
			continue;
		if (distance(s, n, dot + 1, n) != 0)
			continue;
		if (best >= 0)
			return -1; /* "timeout": connect. or io.? */
		best = i;
	}
	return best;
}

/* "breaker.failures" -> "BULWARK_BREAKER_FAILURES". */
static void env_name(const char *key, char *out, size_t cap)
{
	struct bw__buf b;

	bw__buf_init(&b, out, cap);
	bw__buf_puts(&b, "BULWARK_");
	for (; *key; key++) {
		char c = *key;
		if (c == '.')
			c = '_';
		else if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		bw__buf_putc(&b, c);
	}
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int bw_policy_init(struct bw_policy *p, bw_getenv_fn getenv_fn,
		   struct bw_policy_error *err)
{
	char why[160];
	struct bw__buf wb;

	if (!p)
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	if (err)
		memset(err, 0, sizeof(*err));
	for (int i = 0; i < BW_KEY_COUNT; i++) {
		const struct bw__key *k = &bw__keys[i];
		bw__buf_init(&wb, why, sizeof(why));
		if (bw__value_parse(k, k->def, strlen(k->def), &p->defaults,
				    &wb))
			return -EINVAL; /* a bad table: caught by the tests */
	}
	if (!getenv_fn)
		return 0;
	for (int i = 0; i < BW_KEY_COUNT; i++) {
		const struct bw__key *k = &bw__keys[i];
		char name[64];
		env_name(k->name, name, sizeof(name));
		const char *v = getenv_fn(name);
		if (!v)
			continue;
		/* Values from a shell often carry stray blanks. */
		size_t n = strnlen(v, BW_POLICY_FILE_MAX);
		while (n && is_space(*v)) {
			v++;
			n--;
		}
		while (n && is_space(v[n - 1]))
			n--;
		if (!n)
			continue; /* VAR= means unset, as in most tools */
		bw__buf_init(&wb, why, sizeof(why));
		if (bw__value_parse(k, v, n, &p->defaults, &wb)) {
			if (err) {
				struct bw__buf mb;
				memcpy(err->origin, "env", 4);
				bw__buf_init(&mb, err->msg, sizeof(err->msg));
				bw__buf_puts(&mb, name);
				bw__buf_puts(&mb, ": bad value ");
				bw__buf_quote(&mb, v, n, 40);
				bw__buf_puts(&mb, " for ");
				bw__buf_puts(&mb, k->name);
				bw__buf_puts(&mb, ": ");
				bw__buf_puts(&mb, why);
			}
			return -EINVAL;
		}
		p->env_mask |= 1ull << i;
	}
	return 0;
}

int bw_policy_finish(struct bw_policy *p)
{
	struct bw_policy_error e;

	if (!p)
		return -EINVAL;
	if (p->nrules > 0 || !p->env_mask)
		return 0;
	/* The rule "*" with every setting from p->defaults, which hold the
	 * BULWARK_<KEY> values: check shows them as "# env". */
	return bw_policy_parse(p, "*", 1, "env", &e);
}
