/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_policy.c: the policy language (policy/): every key type
 * with good and bad values, error positions and suggestions, comments,
 * files, precedence (rule > BULWARK_<KEY> > built-in), the printer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "policy/policy.h"
#include "tests/unit/bw_test.h"

#define NS 1ull
#define US 1000ull
#define MS 1000000ull
#define SEC 1000000000ull

static struct bw_policy P;
static struct bw_policy_error E;
static char ERRLINE[512];

/* A fake environment: NULL-terminated name/value pairs. */
static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
	for (const char *const *e = fake_env; e && e[0]; e += 2)
		if (!strcmp(e[0], name))
			return e[1];
	return NULL;
}

/* Compiles text (after init with the fake environment); formats any error
 * into ERRLINE. */
static int compile(const char *text)
{
	int rc = bw_policy_init(&P, fake_getenv, &E);
	if (!rc)
		rc = bw_policy_parse(&P, text, strlen(text), "policy", &E);
	bw_policy_error_format(&E, ERRLINE, sizeof(ERRLINE));
	return rc;
}

/* Compiles "* KEY=VALUE" and returns rc. */
static int set1(const char *key, const char *value)
{
	char buf[256];
	size_t kn = strlen(key), vn = strlen(value);
	if (kn + vn + 4 > sizeof(buf))
		return -999;
	memcpy(buf, "* ", 2);
	memcpy(buf + 2, key, kn);
	buf[2 + kn] = '=';
	memcpy(buf + 3 + kn, value, vn + 1);
	return compile(buf);
}

static const struct bw_settings *S0(void)
{
	return &P.rules[0].s;
}

/* The formatted effective value of key for rule 0. */
static const char *fmt0(int key)
{
	static char buf[128];
	bw_policy_format_value(S0(), key, buf, sizeof(buf));
	return buf;
}

static void test_policy_builtin_defaults(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(bw_policy_init(&P, NULL, &E), 0);
	const struct bw_settings *s = &P.defaults;
	BW_ASSERT_EQ(P.nrules, 0);
	BW_ASSERT(s->breaker_on);
	BW_ASSERT_EQ(s->failures, 5);
	BW_ASSERT(s->rate < 0);
	BW_ASSERT_EQ(s->window_calls, 100);
	BW_ASSERT_EQ(s->window_ns, 0);
	BW_ASSERT_EQ(s->min_calls, 20);
	BW_ASSERT_EQ(s->slow_ns, 0);
	BW_ASSERT_EQ(s->slow_calls, 10);
	BW_ASSERT(s->slow_rate < 0);
	BW_ASSERT_EQ(s->open_ns, 60 * SEC);
	BW_ASSERT_EQ(s->open_max_ns, 0);
	BW_ASSERT_EQ(s->probes, 1);
	BW_ASSERT_EQ(s->breaker_errno, ECONNREFUSED);
	BW_ASSERT_EQ(s->bulkhead_max, 0);
	BW_ASSERT_EQ(s->bulkhead_wait_ns, 100 * MS);
	BW_ASSERT_EQ(s->bulkhead_queue, 0);
	BW_ASSERT_EQ(s->bulkhead_scope, BW_SCOPE_SHARED);
	BW_ASSERT_EQ(s->bulkhead_errno, ECONNREFUSED);
	BW_ASSERT_EQ(s->retry_attempts, 3);
	BW_ASSERT_EQ(s->retry_backoff_ns, 100 * MS);
	BW_ASSERT_EQ(s->retry_max_backoff_ns, 10 * SEC);
	BW_ASSERT_NEAR(s->retry_multiplier, 2.0, 1e-9);
	BW_ASSERT_NEAR(s->retry_jitter, 0.1, 1e-9);
	BW_ASSERT(!s->retry_jitter_full);
	BW_ASSERT_EQ(s->retry_on, BW_RETRY_ON_REFUSED | BW_RETRY_ON_TIMEOUT |
					  BW_RETRY_ON_UNREACHABLE);
	BW_ASSERT_NEAR(s->retry_budget, 0.20, 1e-9);
	BW_ASSERT_NEAR(s->retry_min_success, 0.10, 1e-9);
	BW_ASSERT(!s->retry_adaptive);
	BW_ASSERT_EQ(s->connect_timeout_ns, 0);
	BW_ASSERT_EQ(s->connect_timeout_growth, BW_GROWTH_FIXED);
	BW_ASSERT_EQ(s->io_timeout_ns, 0);
	BW_ASSERT_EQ(s->hedge_delay_ns, 0);
	BW_ASSERT_STR(s->group, "");
	BW_ASSERT_EQ(P.env_mask, 0);
}

static void test_policy_key_metadata(void)
{
	BW_ASSERT_EQ(bw_policy_nkeys(), 31);
	BW_ASSERT_EQ(bw_policy_nkeys(), BW_KEY_COUNT);
	BW_ASSERT_STR(bw_policy_key_name(BW_KEY_BREAKER_FAILURES),
		      "breaker.failures");
	BW_ASSERT_STR(bw_policy_key_name(BW_KEY_GROUP), "group");
	BW_ASSERT_STR(bw_policy_key_default(BW_KEY_BREAKER_OPEN), "60s");
	BW_ASSERT_STR(bw_policy_key_default(BW_KEY_RETRY_ON),
		      "refused,timeout,unreachable");
	BW_ASSERT_STR(bw_policy_key_default(BW_KEY_BREAKER_OPEN_MAX),
		      "= breaker.open");
	BW_ASSERT(bw_policy_key_name(-1) == NULL);
	BW_ASSERT(bw_policy_key_name(BW_KEY_COUNT) == NULL);
	BW_ASSERT(bw_policy_key_default(BW_KEY_COUNT) == NULL);
	for (int i = 0; i < bw_policy_nkeys(); i++) {
		const char *n = bw_policy_key_name(i);
		BW_ASSERT(n != NULL);
		BW_ASSERT(bw_policy_key_default(i) != NULL);
		BW_ASSERT_EQ(bw_policy_key_index(n, strlen(n)), i);
		for (int j = 0; j < i; j++)
			BW_ASSERT(strcmp(n, bw_policy_key_name(j)) != 0);
	}
	BW_ASSERT_EQ(bw_policy_key_index("breaker.failure", 15), -1);
	BW_ASSERT_EQ(bw_policy_key_index("breaker.failuresX", 16),
		     BW_KEY_BREAKER_FAILURES);
}

static void test_policy_durations(void)
{
	static const struct {
		const char *text;
		uint64_t ns;
	} good[] = {
		{ "250ms", 250 * MS },
		{ "1.5s", 1500 * MS },
		{ "0", 0 },
		{ "2m", 120 * SEC },
		{ "1h", 3600 * SEC },
		{ "10us", 10 * US },
		{ "0.5ms", 500 * US },
		{ "1.25h", 4500 * SEC },
		{ "0.001us", 1 * NS },
		{ "007s", 7 * SEC },
		{ "0s", 0 },
		{ "576h", 576 * 3600 * SEC },
		{ "1.5US", 1500 * NS },
		{ "1.0000000001s", SEC },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc = set1("retry.backoff", good[i].text);
		if (rc)
			BW_FAIL_("%s: %s", good[i].text, ERRLINE);
		BW_ASSERT_EQ(S0()->retry_backoff_ns, good[i].ns);
	}
	static const char *const bad[] = {
		"10",  "-1s", "1.s",   ".5s",	      "5x",
		"5ss", "25d", "577h",  "1e3s",	      "99999999999999999999s",
		"s",   "1 s", "0x10s", "0.0000001us", "1,5s",
		"+1s", "1.5", "ms",    "1..5s",	      "10msx",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = set1("retry.backoff", bad[i]);
		if (rc != -EINVAL)
			BW_FAIL_("'%s' accepted (rc %d)", bad[i], rc);
	}
	BW_ASSERT_EQ(set1("retry.backoff", "10"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "needs a unit") != NULL);
	BW_ASSERT_EQ(set1("retry.backoff", "-1s"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "negative") != NULL);
	BW_ASSERT_EQ(set1("retry.backoff", "25d"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "unknown unit") != NULL);
	BW_ASSERT_EQ(set1("retry.backoff", "600h"), -EINVAL);
	BW_ASSERT_STR(E.msg, "bad value '600h' for retry.backoff: must be "
			     "between 0 and 576h");
	/* breaker.open must be positive. */
	BW_ASSERT_EQ(set1("breaker.open", "0"), -EINVAL);
	BW_ASSERT_EQ(set1("breaker.open", "30s"), 0);
	BW_ASSERT_EQ(S0()->open_ns, 30 * SEC);
}

static void test_policy_duration_printing_round_trips(void)
{
	static const char *const texts[] = { "250ms",	   "1.5s", "2m",
					     "1.5h",	   "10us", "0.001us",
					     "1234.567us", "90s",  "59m",
					     "1h" };
	static const char *const want[] = { "250ms",	  "1.5s", "2m",
					    "90m",	  "10us", "0.001us",
					    "1234.567us", "90s",  "59m",
					    "60m" };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		BW_ASSERT_EQ(set1("bulkhead.wait", texts[i]), 0);
		BW_ASSERT_STR(fmt0(BW_KEY_BULKHEAD_WAIT), want[i]);
	}
	BW_ASSERT_EQ(set1("bulkhead.wait", "0"), 0);
	BW_ASSERT_STR(fmt0(BW_KEY_BULKHEAD_WAIT), "0");
	BW_ASSERT_EQ(set1("connect.timeout", "0"), 0);
	BW_ASSERT_STR(fmt0(BW_KEY_CONNECT_TIMEOUT), "off");
}

static void test_policy_percents(void)
{
	BW_ASSERT_EQ(set1("breaker.rate", "50%"), 0);
	BW_ASSERT_NEAR(S0()->rate, 0.5, 1e-12);
	BW_ASSERT_STR(fmt0(BW_KEY_BREAKER_RATE), "50%");
	BW_ASSERT_EQ(set1("breaker.rate", "12.5%"), 0);
	BW_ASSERT_NEAR(S0()->rate, 0.125, 1e-12);
	BW_ASSERT_STR(fmt0(BW_KEY_BREAKER_RATE), "12.5%");
	BW_ASSERT_EQ(set1("breaker.rate", "100%"), 0);
	BW_ASSERT_NEAR(S0()->rate, 1.0, 1e-12);
	BW_ASSERT_EQ(set1("breaker.rate", "off"), 0);
	BW_ASSERT(S0()->rate < 0);
	BW_ASSERT_STR(fmt0(BW_KEY_BREAKER_RATE), "off");
	/* A zero threshold for an optional rate is off. */
	BW_ASSERT_EQ(set1("breaker.rate", "0%"), 0);
	BW_ASSERT(S0()->rate < 0);
	BW_ASSERT_EQ(set1("breaker.slow_rate", "30%"), 0);
	BW_ASSERT_NEAR(S0()->slow_rate, 0.3, 1e-12);
	BW_ASSERT_EQ(set1("retry.budget", "0%"), 0);
	BW_ASSERT_NEAR(S0()->retry_budget, 0.0, 1e-12);
	BW_ASSERT_EQ(set1("retry.budget", "0"), 0);
	BW_ASSERT_EQ(set1("retry.min_success", "off"), 0);
	BW_ASSERT_NEAR(S0()->retry_min_success, 0.0, 1e-12);
	BW_ASSERT_STR(fmt0(BW_KEY_RETRY_MIN_SUCCESS), "off");
	BW_ASSERT_EQ(set1("retry.min_success", "25%"), 0);
	BW_ASSERT_NEAR(S0()->retry_min_success, 0.25, 1e-12);

	static const char *const bad[] = {
		"101%", "50",  "-5%",  "%",	   "50%%",
		"5 %",	"abc", "1e2%", "100.001%", "99999999999999%"
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (set1("breaker.rate", bad[i]) != -EINVAL)
			BW_FAIL_("'%s' accepted", bad[i]);
	BW_ASSERT_EQ(set1("breaker.rate", "101%"), -EINVAL);
	BW_ASSERT_STR(E.msg, "bad value '101%' for breaker.rate: must be "
			     "between 0% and 100%");
	/* "off" only where the key is optional. */
	BW_ASSERT_EQ(set1("retry.budget", "off"), -EINVAL);
}

static void test_policy_counts(void)
{
	BW_ASSERT_EQ(set1("breaker.failures", "3"), 0);
	BW_ASSERT_EQ(S0()->failures, 3);
	BW_ASSERT_EQ(set1("breaker.failures", "0"), 0);
	BW_ASSERT_EQ(S0()->failures, 0);
	BW_ASSERT_EQ(set1("breaker.failures", "off"), 0);
	BW_ASSERT_EQ(S0()->failures, 0);
	BW_ASSERT_EQ(set1("breaker.failures", "1000000"), 0);
	BW_ASSERT_EQ(S0()->failures, 1000000);
	BW_ASSERT_EQ(set1("bulkhead.max", "8"), 0);
	BW_ASSERT_EQ(S0()->bulkhead_max, 8);
	BW_ASSERT_EQ(set1("bulkhead.queue", "4"), 0);
	BW_ASSERT_EQ(S0()->bulkhead_queue, 4);
	BW_ASSERT_EQ(set1("breaker.min_calls", "0"), 0);
	BW_ASSERT_EQ(set1("breaker.slow_calls", "7"), 0);
	BW_ASSERT_EQ(S0()->slow_calls, 7);
	BW_ASSERT_EQ(set1("retry.attempts", "1"), 0);
	BW_ASSERT_EQ(S0()->retry_attempts, 1);
	BW_ASSERT_EQ(set1("breaker.probes", "2"), 0);
	BW_ASSERT_EQ(S0()->probes, 2);

	static const char *const bad[] = {
		"abc", "-1", "1.5", "1000001", "99999999999999999999999",
		"3x",  " 3", "0x3", "+3"
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (set1("breaker.failures", bad[i]) != -EINVAL)
			BW_FAIL_("'%s' accepted", bad[i]);
	BW_ASSERT_EQ(set1("breaker.probes", "0"), -EINVAL);
	BW_ASSERT_STR(E.msg, "bad value '0' for breaker.probes: the number "
			     "must be between 1 and 1000000");
	BW_ASSERT_EQ(set1("retry.attempts", "0"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.attempts", "101"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.attempts", "off"), -EINVAL);
	BW_ASSERT_EQ(set1("breaker.failures", "-1"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "negative") != NULL);
}

static void test_policy_window(void)
{
	BW_ASSERT_EQ(set1("breaker.window", "50"), 0);
	BW_ASSERT_EQ(S0()->window_calls, 50);
	BW_ASSERT_EQ(S0()->window_ns, 0);
	BW_ASSERT_STR(fmt0(BW_KEY_BREAKER_WINDOW), "50");
	BW_ASSERT_EQ(set1("breaker.window", "60s"), 0);
	BW_ASSERT_EQ(S0()->window_calls, 0);
	BW_ASSERT_EQ(S0()->window_ns, 60 * SEC);
	BW_ASSERT_STR(fmt0(BW_KEY_BREAKER_WINDOW), "60s");
	BW_ASSERT_EQ(set1("breaker.window", "0"), -EINVAL);
	BW_ASSERT_EQ(set1("breaker.window", "0s"), -EINVAL);
	BW_ASSERT_EQ(set1("breaker.window", "1.5"), -EINVAL);
	BW_ASSERT_EQ(set1("breaker.window", "lots"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "number of calls or a duration") != NULL);
}

static void test_policy_errno_values(void)
{
	BW_ASSERT_EQ(set1("breaker.errno", "EHOSTUNREACH"), 0);
	BW_ASSERT_EQ(S0()->breaker_errno, EHOSTUNREACH);
	BW_ASSERT_STR(fmt0(BW_KEY_BREAKER_ERRNO), "EHOSTUNREACH");
	BW_ASSERT_EQ(set1("bulkhead.errno", "eagain"), 0);
	BW_ASSERT_EQ(S0()->bulkhead_errno, EAGAIN);
	BW_ASSERT_EQ(set1("bulkhead.errno", "EWOULDBLOCK"), 0);
	BW_ASSERT_STR(fmt0(BW_KEY_BULKHEAD_ERRNO), "EAGAIN");
	BW_ASSERT_EQ(set1("breaker.errno", "ECONNREFUSEDX"), -EINVAL);
	BW_ASSERT_EQ(set1("breaker.errno", "111"), -EINVAL);
	BW_ASSERT_EQ(set1("breaker.errno", "E"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "unknown errno name") != NULL);

	BW_ASSERT_EQ(bw_policy_errno_from_name("ETIMEDOUT", 9), ETIMEDOUT);
	BW_ASSERT_EQ(bw_policy_errno_from_name("ETIMEDOUTX", 9), ETIMEDOUT);
	BW_ASSERT_EQ(bw_policy_errno_from_name("ETIMEDOU", 8), -1);
	BW_ASSERT_EQ(bw_policy_errno_from_name(NULL, 3), -1);
	BW_ASSERT_EQ(bw_policy_errno_from_name("", 0), -1);
	BW_ASSERT_STR(bw_policy_errno_name(ECONNRESET), "ECONNRESET");
	BW_ASSERT_STR(bw_policy_errno_name(EOPNOTSUPP), "EOPNOTSUPP");
	BW_ASSERT(bw_policy_errno_name(0) == NULL);
	BW_ASSERT(bw_policy_errno_name(-5) == NULL);
	/* Every name round-trips for the common network errors. */
	static const int nets[] = { ECONNREFUSED,  ETIMEDOUT,  ENETUNREACH,
				    EHOSTUNREACH,  ECONNRESET, ECONNABORTED,
				    EPIPE,	   EAGAIN,     EINPROGRESS,
				    EADDRNOTAVAIL, EACCES,     EPERM,
				    ENOBUFS,	   EMFILE,     EINTR };
	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
		const char *n = bw_policy_errno_name(nets[i]);
		BW_ASSERT(n != NULL);
		BW_ASSERT_EQ(bw_policy_errno_from_name(n, strlen(n)), nets[i]);
	}
}

static void test_policy_factors_and_jitter(void)
{
	BW_ASSERT_EQ(set1("retry.multiplier", "1.5"), 0);
	BW_ASSERT_NEAR(S0()->retry_multiplier, 1.5, 1e-12);
	BW_ASSERT_STR(fmt0(BW_KEY_RETRY_MULTIPLIER), "1.5");
	BW_ASSERT_EQ(set1("retry.multiplier", "1"), 0);
	BW_ASSERT_EQ(set1("retry.multiplier", "0.5"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.multiplier", "101"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.multiplier", "2x"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.jitter", "0.25"), 0);
	BW_ASSERT_NEAR(S0()->retry_jitter, 0.25, 1e-12);
	BW_ASSERT(!S0()->retry_jitter_full);
	BW_ASSERT_STR(fmt0(BW_KEY_RETRY_JITTER), "0.25");
	BW_ASSERT_EQ(set1("retry.jitter", "full"), 0);
	BW_ASSERT(S0()->retry_jitter_full);
	BW_ASSERT_STR(fmt0(BW_KEY_RETRY_JITTER), "full");
	BW_ASSERT_EQ(set1("retry.jitter", "0"), 0);
	BW_ASSERT_NEAR(S0()->retry_jitter, 0.0, 1e-12);
	BW_ASSERT_EQ(set1("retry.jitter", "1"), 0);
	BW_ASSERT_EQ(set1("retry.jitter", "1.01"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.jitter", "-0.1"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.jitter", "half"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "or full") != NULL);
}

static void test_policy_retry_on(void)
{
	BW_ASSERT_EQ(set1("retry.on", "refused"), 0);
	BW_ASSERT_EQ(S0()->retry_on, BW_RETRY_ON_REFUSED);
	BW_ASSERT_EQ(set1("retry.on", "reset,timeout"), 0);
	BW_ASSERT_EQ(S0()->retry_on, BW_RETRY_ON_RESET | BW_RETRY_ON_TIMEOUT);
	BW_ASSERT_STR(fmt0(BW_KEY_RETRY_ON), "timeout,reset");
	BW_ASSERT_EQ(set1("retry.on", "refused,timeout,unreachable,reset"), 0);
	BW_ASSERT_EQ(S0()->retry_on, 15);
	BW_ASSERT_EQ(set1("retry.on", "refused,refused"), 0);
	BW_ASSERT_EQ(S0()->retry_on, BW_RETRY_ON_REFUSED);
	BW_ASSERT_EQ(set1("retry.on", "none"), 0);
	BW_ASSERT_EQ(S0()->retry_on, 0);
	BW_ASSERT_STR(fmt0(BW_KEY_RETRY_ON), "none");
	static const char *const bad[] = {
		"refused,,timeout", "refused,",	       ",",	"bogus",
		"refused,eperm",    "refused timeout", "EACCES"
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (set1("retry.on", bad[i]) != -EINVAL)
			BW_FAIL_("'%s' accepted", bad[i]);
	BW_ASSERT_EQ(set1("retry.on", "refused,eperm"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "unknown class 'eperm'") != NULL);
}

static void test_policy_words(void)
{
	BW_ASSERT_EQ(set1("breaker", "off"), 0);
	BW_ASSERT(!S0()->breaker_on);
	BW_ASSERT_EQ(set1("breaker", "on"), 0);
	BW_ASSERT(S0()->breaker_on);
	BW_ASSERT_EQ(set1("breaker", "maybe"), -EINVAL);
	BW_ASSERT_EQ(set1("retry.adaptive", "on"), 0);
	BW_ASSERT(S0()->retry_adaptive);
	BW_ASSERT_EQ(set1("bulkhead.scope", "process"), 0);
	BW_ASSERT_EQ(S0()->bulkhead_scope, BW_SCOPE_PROCESS);
	BW_ASSERT_STR(fmt0(BW_KEY_BULKHEAD_SCOPE), "process");
	BW_ASSERT_EQ(set1("bulkhead.scope", "global"), -EINVAL);
	BW_ASSERT_EQ(set1("connect.timeout_growth", "linear"), 0);
	BW_ASSERT_EQ(S0()->connect_timeout_growth, BW_GROWTH_LINEAR);
	BW_ASSERT_EQ(set1("connect.timeout_growth", "exponential"), -EINVAL);
	BW_ASSERT_EQ(set1("group", "db-pool_1.a"), 0);
	BW_ASSERT_STR(S0()->group, "db-pool_1.a");
	BW_ASSERT_STR(fmt0(BW_KEY_GROUP), "db-pool_1.a");
	BW_ASSERT_EQ(set1("group", "none"), 0);
	BW_ASSERT_STR(S0()->group, "");
	BW_ASSERT_STR(fmt0(BW_KEY_GROUP), "none");
	BW_ASSERT_EQ(set1("group", "a/b"), -EINVAL);
	char g[80];
	memset(g, 'g', 64);
	g[64] = '\0';
	BW_ASSERT_EQ(set1("group", g), 0);
	BW_ASSERT_EQ(strlen(S0()->group), 64);
	g[64] = 'g';
	g[65] = '\0';
	BW_ASSERT_EQ(set1("group", g), -EINVAL);
}

static void test_policy_optional_keys_accept_off(void)
{
	static const int keys[] = {
		BW_KEY_BREAKER_RATE,	  BW_KEY_BREAKER_SLOW,
		BW_KEY_BREAKER_SLOW_RATE, BW_KEY_HEDGE_DELAY,
		BW_KEY_CONNECT_TIMEOUT,	  BW_KEY_IO_TIMEOUT,
		BW_KEY_RETRY_MIN_SUCCESS,
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *k = bw_policy_key_name(keys[i]);
		if (set1(k, "off"))
			BW_FAIL_("%s=off: %s", k, ERRLINE);
		BW_ASSERT_STR(fmt0(keys[i]), "off");
	}
	BW_ASSERT_EQ(set1("breaker.slow", "200ms"), 0);
	BW_ASSERT_EQ(S0()->slow_ns, 200 * MS);
	BW_ASSERT_EQ(set1("hedge.delay", "50ms"), 0);
	BW_ASSERT_EQ(S0()->hedge_delay_ns, 50 * MS);
	BW_ASSERT_EQ(set1("io.timeout", "5s"), 0);
	BW_ASSERT_EQ(S0()->io_timeout_ns, 5 * SEC);
	BW_ASSERT_EQ(set1("connect.timeout", "2s"), 0);
	BW_ASSERT_EQ(S0()->connect_timeout_ns, 2 * SEC);
	BW_ASSERT_EQ(set1("breaker.open", "off"), -EINVAL);
}

/* Every key's printed value parses back to the same printed value. */
static void test_policy_every_value_round_trips(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(compile("* breaker.rate=33.3% breaker.window=90s "
			     "breaker.slow=1.5s retry.jitter=full "
			     "retry.on=reset group=g1 bulkhead.max=3"),
		     0);
	struct bw_settings orig = P.rules[0].s;
	for (int k = 0; k < BW_KEY_COUNT; k++) {
		char v[128], again[128];
		bw_policy_format_value(&orig, k, v, sizeof(v));
		if (set1(bw_policy_key_name(k), v))
			BW_FAIL_("%s=%s: %s", bw_policy_key_name(k), v,
				 ERRLINE);
		bw_policy_format_value(S0(), k, again, sizeof(again));
		BW_ASSERT_STR(again, v);
	}
	/* Truncation: always NUL-terminated, length of what fits. */
	char small[4];
	size_t n = bw_policy_format_value(&orig, BW_KEY_RETRY_ON, small,
					  sizeof(small));
	BW_ASSERT_EQ(n, 3);
	BW_ASSERT_STR(small, "res");
	BW_ASSERT_EQ(bw_policy_format_value(&orig, 99, small, sizeof(small)),
		     0);
}

static void test_policy_unknown_key_suggests(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(compile("# cache\n\nredis:6379   breaker.failure=3\n"),
		     -EINVAL);
	BW_ASSERT_STR(E.origin, "policy");
	BW_ASSERT_EQ(E.line, 3);
	BW_ASSERT_EQ(E.col, 14);
	BW_ASSERT_STR(E.msg, "unknown key 'breaker.failure'; did you mean "
			     "'breaker.failures'?");
	BW_ASSERT_STR(ERRLINE, "bulwark: policy:3:14: unknown key "
			       "'breaker.failure'; did you mean "
			       "'breaker.failures'?");
	BW_ASSERT_EQ(compile("* retry.attemps=2"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "did you mean 'retry.attempts'?") != NULL);
	BW_ASSERT_EQ(compile("* Breaker.Open=1s"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "did you mean 'breaker.open'?") != NULL);
	BW_ASSERT_EQ(compile("* failures=3"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "did you mean 'breaker.failures'?") != NULL);
	/* Ambiguous or far away: no guess. */
	BW_ASSERT_EQ(compile("* timeout=3s"), -EINVAL);
	BW_ASSERT_STR(E.msg, "unknown key 'timeout'");
	BW_ASSERT_EQ(compile("* colour=blue"), -EINVAL);
	BW_ASSERT_STR(E.msg, "unknown key 'colour'");
	BW_ASSERT_EQ(E.col, 3);
}

static void test_policy_setting_errors(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(compile("* breaker.failures=3 breaker.failures=4"),
		     -EINVAL);
	BW_ASSERT_EQ(E.col, 22);
	BW_ASSERT_STR(E.msg, "duplicate key 'breaker.failures' in this rule");
	BW_ASSERT_EQ(compile("* breaker.failures"), -EINVAL);
	BW_ASSERT_STR(E.msg, "missing value: write breaker.failures=VALUE");
	BW_ASSERT_EQ(compile("* breaker.failures="), -EINVAL);
	BW_ASSERT_STR(E.msg, "missing value for breaker.failures");
	BW_ASSERT_EQ(E.col, 20);
	BW_ASSERT_EQ(compile("* =3"), -EINVAL);
	BW_ASSERT_STR(E.msg, "missing key before '='");
	BW_ASSERT_EQ(compile("* of"), -EINVAL);
	BW_ASSERT_EQ(compile("* OFF"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "did you mean 'off'?") != NULL);
	BW_ASSERT_EQ(compile("* off off"), -EINVAL);
	BW_ASSERT_EQ(compile("* breaker.failures=3x"), -EINVAL);
	BW_ASSERT_EQ(E.col, 20);
	BW_ASSERT_STR(E.msg, "bad value '3x' for breaker.failures: expected "
			     "a whole number");
	/* The same key in two rules is fine. */
	BW_ASSERT_EQ(compile("a breaker.failures=3; b breaker.failures=4"), 0);
	BW_ASSERT_EQ(P.rules[1].s.failures, 4);
	/* A setting on its own line is a rule without a destination. */
	BW_ASSERT_EQ(compile("redis:6379\n  breaker.failures=3\n"), -EINVAL);
	BW_ASSERT_EQ(E.line, 2);
	BW_ASSERT_EQ(E.col, 3);
	BW_ASSERT(strstr(E.msg, "starts with a destination") != NULL);
}

static void test_policy_off_rules(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(compile("localhost off; * retry.attempts=1"), 0);
	BW_ASSERT_EQ(P.nrules, 2);
	BW_ASSERT(P.rules[0].off);
	BW_ASSERT(!P.rules[1].off);
	BW_ASSERT_EQ(P.rules[1].s.retry_attempts, 1);
	BW_ASSERT_EQ(P.rules[1].set_mask, 1ull << BW_KEY_RETRY_ATTEMPTS);
}

static void test_policy_comments_blank_lines_and_separators(void)
{
	fake_env = NULL;
	const char *text = "# a policy file\r\n"
			   "\r\n"
			   "redis.internal:6379 breaker.failures=3 # cache\r\n"
			   "   ;;  ; \t\n"
			   "10.0.0.0/8:5432 breaker.rate=50%;* retry.attempts=1"
			   "   # last; not a rule\n"
			   "# trailing comment without newline";
	BW_ASSERT_EQ(compile(text), 0);
	BW_ASSERT_EQ(P.nrules, 3);
	BW_ASSERT_STR(P.rules[0].text, "redis.internal:6379");
	BW_ASSERT_EQ(P.rules[0].line, 3);
	BW_ASSERT_EQ(P.rules[0].s.failures, 3);
	BW_ASSERT_STR(P.rules[1].text, "10.0.0.0/8:5432");
	BW_ASSERT_EQ(P.rules[1].line, 5);
	BW_ASSERT_STR(P.rules[2].text, "*");
	BW_ASSERT_EQ(P.rules[2].line, 5);
	BW_ASSERT_EQ(P.rules[2].s.retry_attempts, 1);
	BW_ASSERT_EQ(compile(""), 0);
	BW_ASSERT_EQ(P.nrules, 0);
	BW_ASSERT_EQ(compile(" ;\n;# x\n\n"), 0);
	BW_ASSERT_EQ(P.nrules, 0);
	/* The bulwark-policy(7) EXAMPLES policy. */
	BW_ASSERT_EQ(compile("redis.internal:6379 breaker.failures=3 "
			     "breaker.open=30s bulkhead.max=8;\n"
			     "                10.0.0.0/8:5432     "
			     "breaker.rate=50% breaker.window=60s "
			     "retry.attempts=4;\n"
			     "                *                   "
			     "retry.attempts=1"),
		     0);
	BW_ASSERT_EQ(P.nrules, 3);
	BW_ASSERT_EQ(P.rules[0].s.bulkhead_max, 8);
	BW_ASSERT_EQ(P.rules[0].s.open_ns, 30 * SEC);
	BW_ASSERT_EQ(P.rules[1].s.window_ns, 60 * SEC);
	BW_ASSERT_EQ(P.rules[1].s.retry_attempts, 4);
	BW_ASSERT_EQ(P.rules[2].line, 3);
}

static void test_policy_precedence_rule_env_builtin(void)
{
	static const char *const env[] = { "BULWARK_BREAKER_FAILURES",
					   "7",
					   "BULWARK_RETRY_ON",
					   " reset ",
					   "BULWARK_BULKHEAD_MAX",
					   "",
					   "BULWARK_POLICY",
					   "ignored",
					   NULL };
	fake_env = env;
	BW_ASSERT_EQ(compile("a breaker.failures=3\nb retry.attempts=2"), 0);
	BW_ASSERT_EQ(P.defaults.failures, 7);
	BW_ASSERT_EQ(P.defaults.retry_on, BW_RETRY_ON_RESET);
	BW_ASSERT_EQ(P.defaults.bulkhead_max, 0); /* empty: unset */
	BW_ASSERT_EQ(P.env_mask, (1ull << BW_KEY_BREAKER_FAILURES) |
					 (1ull << BW_KEY_RETRY_ON));
	BW_ASSERT_EQ(P.rules[0].s.failures, 3);	      /* rule */
	BW_ASSERT_EQ(P.rules[1].s.failures, 7);	      /* env */
	BW_ASSERT_EQ(P.rules[1].s.retry_attempts, 2); /* rule */
	BW_ASSERT_EQ(P.rules[0].s.retry_attempts, 3); /* built-in */
	BW_ASSERT_EQ(P.rules[0].s.retry_on, BW_RETRY_ON_RESET);
	fake_env = NULL;
}

static void test_policy_bad_env_value(void)
{
	static const char *const env[] = { "BULWARK_BREAKER_OPEN", "soon",
					   NULL };
	fake_env = env;
	BW_ASSERT_EQ(bw_policy_init(&P, fake_getenv, &E), -EINVAL);
	BW_ASSERT_STR(E.origin, "env");
	BW_ASSERT_EQ(E.line, 0);
	BW_ASSERT(strstr(E.msg, "BULWARK_BREAKER_OPEN") != NULL);
	BW_ASSERT(strstr(E.msg, "'soon'") != NULL);
	bw_policy_error_format(&E, ERRLINE, sizeof(ERRLINE));
	BW_ASSERT(
		!strncmp(ERRLINE, "bulwark: env: BULWARK_BREAKER_OPEN: ", 36));
	static const char *const env2[] = { "BULWARK_RETRY_ATTEMPTS", "0",
					    NULL };
	fake_env = env2;
	BW_ASSERT_EQ(bw_policy_init(&P, fake_getenv, &E), -EINVAL);
	BW_ASSERT(strstr(E.msg, "BULWARK_RETRY_ATTEMPTS") != NULL);
	fake_env = NULL;
}

static void test_policy_open_max_follows_open(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(compile("a breaker.open=10s; b breaker.open=10s "
			     "breaker.open_max=5m; c breaker.open_max=1s; "
			     "d breaker.open_max=0"),
		     0);
	BW_ASSERT_EQ(P.rules[0].s.open_max_ns, 10 * SEC);
	BW_ASSERT_EQ(P.rules[1].s.open_max_ns, 300 * SEC);
	BW_ASSERT_EQ(P.rules[2].s.open_max_ns, 60 * SEC);
	BW_ASSERT_EQ(P.rules[3].s.open_max_ns, 60 * SEC);
	char v[32];
	bw_policy_format_value(&P.defaults, BW_KEY_BREAKER_OPEN_MAX, v,
			       sizeof(v));
	BW_ASSERT_STR(v, "60s");
	/* An env open_max still yields to a rule's longer open. */
	static const char *const env[] = { "BULWARK_BREAKER_OPEN_MAX", "2m",
					   NULL };
	fake_env = env;
	BW_ASSERT_EQ(compile("a breaker.open=5m; b breaker.open=1s"), 0);
	BW_ASSERT_EQ(P.rules[0].s.open_max_ns, 300 * SEC);
	BW_ASSERT_EQ(P.rules[1].s.open_max_ns, 120 * SEC);
	fake_env = NULL;
}

static void test_policy_matches_compile(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(compile("Redis.Internal.:6379; *.svc.local; "
			     "10.1.2.3/8:8000-8099; 192.168.1.7:*; "
			     "[2001:db8::1/32]:443; [::1]; "
			     "[::ffff:10.0.0.0/104]:80; *:25; 127.0.0.1"),
		     0);
	const struct bw_rule *r = P.rules;
	BW_ASSERT_EQ(P.nrules, 9);
	BW_ASSERT(P.has_host_rules);
	BW_ASSERT_EQ(r[0].match.kind, BW_MATCH_HOST);
	BW_ASSERT_STR(r[0].match.host, "redis.internal");
	BW_ASSERT_STR(r[0].text, "Redis.Internal.:6379");
	BW_ASSERT_EQ(r[0].match.port_lo, 6379);
	BW_ASSERT_EQ(r[0].match.port_hi, 6379);
	BW_ASSERT_EQ(r[1].match.kind, BW_MATCH_SUFFIX);
	BW_ASSERT_STR(r[1].match.host, "svc.local");
	BW_ASSERT_EQ(r[1].match.port_lo, 0);
	BW_ASSERT_EQ(r[1].match.port_hi, 65535);
	BW_ASSERT_EQ(r[2].match.kind, BW_MATCH_ADDR);
	BW_ASSERT_EQ(r[2].match.family, AF_INET);
	BW_ASSERT_EQ(r[2].match.prefix, 8);
	BW_ASSERT_EQ(r[2].match.addr[0], 10);
	BW_ASSERT_EQ(r[2].match.addr[1], 0); /* masked */
	BW_ASSERT_EQ(r[2].match.port_lo, 8000);
	BW_ASSERT_EQ(r[2].match.port_hi, 8099);
	BW_ASSERT_EQ(r[3].match.kind, BW_MATCH_ADDR);
	BW_ASSERT_EQ(r[3].match.prefix, 32);
	BW_ASSERT_EQ(r[3].match.addr[3], 7);
	BW_ASSERT_EQ(r[3].match.port_hi, 65535);
	BW_ASSERT_EQ(r[4].match.family, AF_INET6);
	BW_ASSERT_EQ(r[4].match.prefix, 32);
	BW_ASSERT_EQ(r[4].match.addr[0], 0x20);
	BW_ASSERT_EQ(r[4].match.addr[15], 0); /* masked */
	BW_ASSERT_EQ(r[4].match.port_lo, 443);
	BW_ASSERT_EQ(r[5].match.family, AF_INET6);
	BW_ASSERT_EQ(r[5].match.prefix, 128);
	BW_ASSERT_EQ(r[5].match.addr[15], 1);
	BW_ASSERT_EQ(r[6].match.family, AF_INET); /* mapped */
	BW_ASSERT_EQ(r[6].match.prefix, 8);
	BW_ASSERT_EQ(r[6].match.addr[0], 10);
	BW_ASSERT_EQ(r[7].match.kind, BW_MATCH_ANY);
	BW_ASSERT_EQ(r[7].match.port_lo, 25);
	BW_ASSERT_EQ(r[8].match.kind, BW_MATCH_ADDR); /* literal host */
	BW_ASSERT_EQ(r[8].match.addr[0], 127);
	BW_ASSERT_EQ(compile("10.0.0.0/8; *"), 0);
	BW_ASSERT(!P.has_host_rules);
}

static void test_policy_match_errors(void)
{
	static const struct {
		const char *text;
		int col;
		const char *msg;
	} bad[] = {
		{ "[::1", 1, "missing ']'" },
		{ "::1", 1, "in brackets" },
		{ "2001:db8::1:443", 1, "in brackets" },
		{ "[::1]443", 6, "expected ':'" },
		{ "[zz::1]", 2, "bad IPv6 address" },
		{ "[]", 2, "bad IPv6 address" },
		{ "[::1/129]", 6, "out of range" },
		{ "256.1.1.1", 1, "bad IPv4" },
		{ "01.2.3.4", 1, "leading zero" },
		{ "10.0.0", 1, "bad IPv4" },
		{ "10.0.0.0.1", 1, "bad IPv4" },
		{ "10.0.0.0/33", 10, "out of range" },
		{ "10.0.0.0/", 10, "bad prefix" },
		{ "host/8", 1, "needs an IPv4" },
		{ "redis:0", 7, "out of range" },
		{ "redis:70000", 7, "out of range" },
		{ "redis:90-80", 7, "larger than" },
		{ "redis:", 7, "missing port" },
		{ "redis:80-", 7, "bad port range" },
		{ "redis:-80", 7, "bad port" },
		{ "redis:http", 7, "bad port" },
		{ "a..b", 1, "empty label" },
		{ ":80", 1, "empty host" },
		{ "*.", 3, "empty host" },
		{ "bad!host", 1, "bad host name" },
		{ "x.123", 1, "numeric" },
		{ "a=b", 1, "starts with a destination" },
	};
	fake_env = NULL;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64];
		memcpy(text, "  ", 2);
		strcpy(text + 2, bad[i].text);
		if (compile(text) != -EINVAL) {
			BW_FAIL_("'%s' accepted", bad[i].text);
		}
		if (E.line != 1 || E.col != bad[i].col + 2 ||
		    !strstr(E.msg, bad[i].msg))
			BW_FAIL_("'%s': got %s", bad[i].text, ERRLINE);
	}
	char label[80];
	memset(label, 'a', 64);
	label[64] = '\0';
	BW_ASSERT_EQ(compile(label), -EINVAL);
	BW_ASSERT(strstr(E.msg, "longer than 63") != NULL);
}

static void test_policy_hostile_bytes(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(bw_policy_init(&P, NULL, &E), 0);
	static const char nul[] = "* breaker.failures=3\0 x";
	BW_ASSERT_EQ(bw_policy_parse(&P, nul, sizeof(nul) - 1, "policy", &E),
		     -EINVAL);
	BW_ASSERT_EQ(E.col, 21);
	BW_ASSERT(strstr(E.msg, "control character '\\x00'") != NULL);
	/* Not NUL-terminated: the parser stops at len. */
	char raw[8] = { '*', ' ', 'b', 'r', 'e', 'a', 'k', 'X' };
	BW_ASSERT_EQ(bw_policy_init(&P, NULL, &E), 0);
	BW_ASSERT_EQ(bw_policy_parse(&P, raw, 1, "policy", &E), 0);
	BW_ASSERT_EQ(P.nrules, 1);
	/* A huge token: error, message bounded, text cut. */
	static char big[100000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	BW_ASSERT_EQ(compile(big), -EINVAL);
	BW_ASSERT(strlen(E.msg) < sizeof(E.msg));
	BW_ASSERT(strstr(E.msg, "...") != NULL);
	memcpy(big, "* ", 2);
	BW_ASSERT_EQ(compile(big), -EINVAL);
	BW_ASSERT(strstr(E.msg, "expected key=value") != NULL);
	memcpy(big, "* retry.backoff=", 16);
	memset(big + 16, '9', 5000);
	BW_ASSERT_EQ(compile(big), -EINVAL);
	/* High bytes in a host name. */
	BW_ASSERT_EQ(compile("h\xc3\xa9llo:80"), -EINVAL);
	BW_ASSERT(strstr(E.msg, "\\xc3\\xa9") != NULL);
	/* NULL arguments. */
	BW_ASSERT_EQ(bw_policy_parse(NULL, "x", 1, "policy", &E), -EINVAL);
	BW_ASSERT_EQ(bw_policy_init(&P, NULL, NULL), 0);
	BW_ASSERT_EQ(bw_policy_parse(&P, NULL, 0, NULL, NULL), 0);
	BW_ASSERT_EQ(bw_policy_parse(&P, "* x", 3, NULL, NULL), -EINVAL);
}

static void test_policy_long_match_text_is_cut(void)
{
	char host[200];
	fake_env = NULL;
	memset(host, 'h', sizeof(host));
	for (int i = 50; i < 190; i += 50)
		host[i] = '.';
	host[sizeof(host) - 1] = '\0';
	BW_ASSERT_EQ(compile(host), 0);
	BW_ASSERT_EQ(strlen(P.rules[0].text), sizeof(P.rules[0].text) - 1);
	BW_ASSERT(strstr(P.rules[0].text, "...") != NULL);
	BW_ASSERT_EQ(strlen(P.rules[0].match.host), 199);
	/* 253 is the longest name. */
	char h2[300];
	memset(h2, 'a', sizeof(h2));
	for (int i = 60; i < 290; i += 60)
		h2[i] = '.';
	h2[254] = '\0';
	BW_ASSERT_EQ(compile(h2), -EINVAL);
	BW_ASSERT(strstr(E.msg, "too long") != NULL);
	h2[253] = '\0';
	BW_ASSERT_EQ(compile(h2), 0);
}

static void test_policy_too_many_rules(void)
{
	static char text[BW_POLICY_RULES_MAX * 4 + 16];
	size_t n = 0;
	fake_env = NULL;
	for (int i = 0; i < BW_POLICY_RULES_MAX; i++) {
		memcpy(text + n, "a;\n", 3);
		n += 3;
	}
	text[n] = '\0';
	BW_ASSERT_EQ(compile(text), 0);
	BW_ASSERT_EQ(P.nrules, BW_POLICY_RULES_MAX);
	memcpy(text + n, "b", 2);
	BW_ASSERT_EQ(compile(text), -E2BIG);
	BW_ASSERT_EQ(E.line, BW_POLICY_RULES_MAX + 1);
	BW_ASSERT(strstr(E.msg, "too many rules") != NULL);
}

static void test_policy_string_then_file(void)
{
	fake_env = NULL;
	BW_ASSERT_EQ(bw_policy_init(&P, NULL, &E), 0);
	const char *s = "a retry.attempts=2";
	const char *f = "# file\nb retry.attempts=5\nc bogus=1\n";
	BW_ASSERT_EQ(bw_policy_parse(&P, s, strlen(s), "policy", &E), 0);
	BW_ASSERT_EQ(bw_policy_parse(&P, f, strlen(f), "file", &E), -EINVAL);
	BW_ASSERT_STR(E.origin, "file");
	BW_ASSERT_EQ(E.line, 3);
	BW_ASSERT_EQ(E.col, 3);
	bw_policy_error_format(&E, ERRLINE, sizeof(ERRLINE));
	BW_ASSERT_STR(ERRLINE, "bulwark: file:3:3: unknown key 'bogus'");
	BW_ASSERT_EQ(bw_policy_init(&P, NULL, &E), 0);
	BW_ASSERT_EQ(bw_policy_parse(&P, s, strlen(s), "policy", &E), 0);
	BW_ASSERT_EQ(bw_policy_parse(&P, f, 26, "file", &E), 0);
	BW_ASSERT_EQ(P.nrules, 2);
	BW_ASSERT_STR(P.rules[0].origin, "policy");
	BW_ASSERT_STR(P.rules[1].origin, "file");
	BW_ASSERT_EQ(P.rules[1].line, 2);
	BW_ASSERT_EQ(P.rules[1].s.retry_attempts, 5);
}

static void test_policy_error_format(void)
{
	struct bw_policy_error e = { "policy", 3, 14, "boom" };
	char buf[64];
	BW_ASSERT_EQ(bw_policy_error_format(&e, buf, sizeof(buf)),
		     strlen("bulwark: policy:3:14: boom"));
	BW_ASSERT_STR(buf, "bulwark: policy:3:14: boom");
	char tiny[10];
	BW_ASSERT_EQ(bw_policy_error_format(&e, tiny, sizeof(tiny)), 9);
	BW_ASSERT_STR(tiny, "bulwark: ");
	BW_ASSERT_EQ(bw_policy_error_format(&e, NULL, 0), 0);
}

static void test_policy_describe(void)
{
	static const char *const env[] = { "BULWARK_RETRY_BUDGET", "30%",
					   NULL };
	static char out[64 * 1024];
	fake_env = env;
	BW_ASSERT_EQ(compile("redis:6379 breaker.failures=3\n"
			     "10.0.0.0/8:5432 off\n[::1]:80-90"),
		     0);
	size_t n = bw_policy_describe(&P, out, sizeof(out));
	BW_ASSERT_EQ(n, strlen(out));
	BW_ASSERT(strstr(out, "rule 1 (policy:1): redis:6379\n") != NULL);
	BW_ASSERT(strstr(out, "    # addresses the program resolves for "
			      "redis, port 6379\n") != NULL);
	BW_ASSERT(strstr(out, "    breaker.failures=3") != NULL);
	BW_ASSERT(strstr(out, "# rule\n") != NULL);
	BW_ASSERT(strstr(out, "    retry.budget=30%") != NULL);
	BW_ASSERT(strstr(out, "# env\n") != NULL);
	BW_ASSERT(strstr(out, "rule 2 (policy:2): 10.0.0.0/8:5432 off\n"
			      "    # IPv4 10.0.0.0/8, port 5432\n"
			      "    # off: nothing applied") != NULL);
	BW_ASSERT(strstr(out, "# IPv6 ::1/128, ports 80-90\n") != NULL);
	BW_ASSERT(strstr(out,
			 "defaults (where every rule starts; a bare "
			 "rule applies them all):\n"
			 "    breaker=on\n    breaker.failures=5\n") != NULL);
	BW_ASSERT(strstr(out, "destinations no rule matches: observed only") !=
		  NULL);
	for (int k = 0; k < BW_KEY_COUNT; k++) {
		char want[64];
		size_t kn = strlen(bw_policy_key_name(k));
		memcpy(want, "\n    ", 5);
		memcpy(want + 5, bw_policy_key_name(k), kn);
		memcpy(want + 5 + kn, "=", 2);
		BW_ASSERT(strstr(out, want) != NULL);
	}
	/* Truncated output keeps the full length and a NUL. */
	char small[32];
	BW_ASSERT_EQ(bw_policy_describe(&P, small, sizeof(small)), n);
	BW_ASSERT_EQ(strlen(small), sizeof(small) - 1);
	BW_ASSERT_EQ(bw_policy_describe(&P, NULL, 0), n);
	fake_env = NULL;
	BW_ASSERT_EQ(compile(""), 0);
	BW_ASSERT(bw_policy_describe(&P, out, sizeof(out)) > 0);
	BW_ASSERT(strstr(out, "no rules: every destination is observed "
			      "only") != NULL);
	BW_ASSERT(strstr(out, "# env") == NULL);
}

/* No rules: nothing applies anywhere (every destination observed only);
 * no rules but BULWARK_<KEY> variables: they act as the one rule "*";
 * rules and variables: the variables are only defaults. */
static void test_policy_finish_env_rule(void)
{
	static const char *const env[] = { "BULWARK_BREAKER_FAILURES", "2",
					   NULL };
	struct sockaddr_in in = { .sin_family = AF_INET,
				  .sin_port = htons(80) };
	in.sin_addr.s_addr = htonl(0x7f000001);

	fake_env = NULL;
	BW_ASSERT_EQ(compile(""), 0);
	BW_ASSERT_EQ(bw_policy_finish(&P), 0);
	BW_ASSERT_EQ(P.nrules, 0);
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)&in, sizeof(in),
				     NULL, NULL),
		     -1);

	fake_env = env;
	BW_ASSERT_EQ(compile(""), 0);
	BW_ASSERT_EQ(bw_policy_finish(&P), 0);
	BW_ASSERT_EQ(P.nrules, 1);
	BW_ASSERT_STR(P.rules[0].origin, "env");
	BW_ASSERT_STR(P.rules[0].text, "*");
	BW_ASSERT_EQ(P.rules[0].match.kind, BW_MATCH_ANY);
	BW_ASSERT(!P.rules[0].off);
	BW_ASSERT_EQ(P.rules[0].set_mask, 0);
	BW_ASSERT_EQ(P.rules[0].s.failures, 2);	      /* env */
	BW_ASSERT_EQ(P.rules[0].s.retry_attempts, 3); /* built-in */
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)&in, sizeof(in),
				     NULL, NULL),
		     0);
	BW_ASSERT_EQ(bw_policy_finish(&P), 0); /* twice: still one rule */
	BW_ASSERT_EQ(P.nrules, 1);

	/* Rules given: the variables are defaults, nothing is added, and a
	 * destination the rules do not match stays unmatched. */
	BW_ASSERT_EQ(compile("10.0.0.0/8 breaker.failures=1"), 0);
	BW_ASSERT_EQ(bw_policy_finish(&P), 0);
	BW_ASSERT_EQ(P.nrules, 1);
	BW_ASSERT_STR(P.rules[0].origin, "policy");
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)&in, sizeof(in),
				     NULL, NULL),
		     -1);
	fake_env = NULL;
	BW_ASSERT_EQ(bw_policy_finish(NULL), -EINVAL);
}

/* A bare match is a rule with every default (built-in, or BULWARK_<KEY>). */
static void test_policy_bare_rule(void)
{
	static const char *const env[] = { "BULWARK_RETRY_BACKOFF", "7ms",
					   NULL };
	fake_env = env;
	BW_ASSERT_EQ(compile("*"), 0);
	BW_ASSERT_EQ(P.nrules, 1);
	BW_ASSERT_EQ(P.rules[0].set_mask, 0);
	BW_ASSERT(P.rules[0].s.breaker_on);
	BW_ASSERT_EQ(P.rules[0].s.failures, 5);
	BW_ASSERT_EQ(P.rules[0].s.retry_attempts, 3);
	BW_ASSERT_EQ(P.rules[0].s.retry_backoff_ns, 7000000ull);
	BW_ASSERT_EQ(P.rules[0].s.open_ns, P.defaults.open_ns);
	BW_ASSERT_EQ(P.rules[0].s.retry_budget, P.defaults.retry_budget);
	BW_ASSERT_EQ(compile("127.0.0.1:80;*"), 0);
	BW_ASSERT_EQ(P.nrules, 2);
	BW_ASSERT_EQ(P.rules[0].set_mask, 0);
	fake_env = NULL;
}

static void test_policy_check_state_name(void)
{
	BW_ASSERT_EQ(bw_policy_check_state_name("default"), 0);
	BW_ASSERT_EQ(bw_policy_check_state_name("a.b_c-D9"), 0);
	BW_ASSERT_EQ(bw_policy_check_state_name("private"), 0);
	BW_ASSERT_EQ(bw_policy_check_state_name(""), -EINVAL);
	BW_ASSERT_EQ(bw_policy_check_state_name(NULL), -EINVAL);
	BW_ASSERT_EQ(bw_policy_check_state_name("a/b"), -EINVAL);
	BW_ASSERT_EQ(bw_policy_check_state_name("a b"), -EINVAL);
	BW_ASSERT_EQ(bw_policy_check_state_name("caf\xc3\xa9"), -EINVAL);
	char n[80];
	memset(n, 'x', 64);
	n[64] = '\0';
	BW_ASSERT_EQ(bw_policy_check_state_name(n), 0);
	n[64] = 'x';
	n[65] = '\0';
	BW_ASSERT_EQ(bw_policy_check_state_name(n), -EINVAL);
}

static const struct bw_test tests[] = {
	BW_TEST(test_policy_builtin_defaults),
	BW_TEST(test_policy_key_metadata),
	BW_TEST(test_policy_durations),
	BW_TEST(test_policy_duration_printing_round_trips),
	BW_TEST(test_policy_percents),
	BW_TEST(test_policy_counts),
	BW_TEST(test_policy_window),
	BW_TEST(test_policy_errno_values),
	BW_TEST(test_policy_factors_and_jitter),
	BW_TEST(test_policy_retry_on),
	BW_TEST(test_policy_words),
	BW_TEST(test_policy_optional_keys_accept_off),
	BW_TEST(test_policy_every_value_round_trips),
	BW_TEST(test_policy_unknown_key_suggests),
	BW_TEST(test_policy_setting_errors),
	BW_TEST(test_policy_off_rules),
	BW_TEST(test_policy_comments_blank_lines_and_separators),
	BW_TEST(test_policy_precedence_rule_env_builtin),
	BW_TEST(test_policy_bad_env_value),
	BW_TEST(test_policy_open_max_follows_open),
	BW_TEST(test_policy_matches_compile),
	BW_TEST(test_policy_match_errors),
	BW_TEST(test_policy_hostile_bytes),
	BW_TEST(test_policy_long_match_text_is_cut),
	BW_TEST(test_policy_too_many_rules),
	BW_TEST(test_policy_string_then_file),
	BW_TEST(test_policy_error_format),
	BW_TEST(test_policy_describe),
	BW_TEST(test_policy_finish_env_rule),
	BW_TEST(test_policy_bare_rule),
	BW_TEST(test_policy_check_state_name),
};

BW_TEST_MAIN(tests)
