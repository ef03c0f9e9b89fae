/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_match.c: bw_policy_match and bw_policy_name_matches:
 * IPv4, IPv6, CIDR prefixes, ports, IPv4-mapped IPv6, first match wins,
 * host and suffix rules through the resolver callback, bad addresses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "policy/policy.h"
#include "tests/unit/bw_test.h"

static struct bw_policy P;
static struct bw_policy_error E;

static int compile(const char *text)
{
	int rc = bw_policy_init(&P, NULL, &E);
	if (!rc)
		rc = bw_policy_parse(&P, text, strlen(text), "policy", &E);
	if (rc)
		fprintf(stderr, "# %s: %d:%d %s\n", text, E.line, E.col, E.msg);
	return rc;
}

/* Matches "a.b.c.d" or "v6" at port with no resolver knowledge. */
static int match_with(const char *ip, unsigned port, bool (*hit)(void *, int),
		      void *ctx)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
			return -100;
		return bw_policy_match(&P, (struct sockaddr *)s6, sizeof(*s6),
				       hit, ctx);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
		return -100;
	return bw_policy_match(&P, (struct sockaddr *)s4, sizeof(*s4), hit,
			       ctx);
}

static int match(const char *ip, unsigned port)
{
	return match_with(ip, port, NULL, NULL);
}

static void test_match_ipv4_exact_and_cidr(void)
{
	BW_ASSERT_EQ(compile("10.1.2.3; 10.0.0.0/8; 192.168.0.0/16; "
			     "172.16.0.0/12"),
		     0);
	BW_ASSERT_EQ(match("10.1.2.3", 80), 0);
	BW_ASSERT_EQ(match("10.1.2.4", 80), 1);
	BW_ASSERT_EQ(match("10.255.255.255", 1), 1);
	BW_ASSERT_EQ(match("11.0.0.0", 80), -1);
	BW_ASSERT_EQ(match("192.168.44.1", 80), 2);
	BW_ASSERT_EQ(match("192.169.0.1", 80), -1);
	BW_ASSERT_EQ(match("172.31.255.255", 80), 3);
	BW_ASSERT_EQ(match("172.32.0.0", 80), -1);
	BW_ASSERT_EQ(match("172.15.255.255", 80), -1);
}

static void test_match_odd_prefixes(void)
{
	BW_ASSERT_EQ(compile("10.0.0.128/25; 0.0.0.0/0:9"), 0);
	BW_ASSERT_EQ(match("10.0.0.128", 1), 0);
	BW_ASSERT_EQ(match("10.0.0.255", 1), 0);
	BW_ASSERT_EQ(match("10.0.0.127", 1), -1);
	BW_ASSERT_EQ(match("10.0.0.127", 9), 1);
	BW_ASSERT_EQ(match("1.2.3.4", 9), 1);
	/* /0 covers IPv4 only, not IPv6. */
	BW_ASSERT_EQ(match("2001:db8::1", 9), -1);
	BW_ASSERT_EQ(compile("1.2.3.4/31"), 0);
	BW_ASSERT_EQ(match("1.2.3.5", 1), 0);
	BW_ASSERT_EQ(match("1.2.3.6", 1), -1);
}

static void test_match_ports(void)
{
	BW_ASSERT_EQ(compile("127.0.0.1:6379; 127.0.0.1:8000-8099; "
			     "127.0.0.1:*"),
		     0);
	BW_ASSERT_EQ(match("127.0.0.1", 6379), 0);
	BW_ASSERT_EQ(match("127.0.0.1", 6380), 2);
	BW_ASSERT_EQ(match("127.0.0.1", 8000), 1);
	BW_ASSERT_EQ(match("127.0.0.1", 8099), 1);
	BW_ASSERT_EQ(match("127.0.0.1", 8100), 2);
	BW_ASSERT_EQ(match("127.0.0.1", 7999), 2);
	BW_ASSERT_EQ(match("127.0.0.2", 6379), -1);
	BW_ASSERT_EQ(compile("*:443; *:1-1024"), 0);
	BW_ASSERT_EQ(match("8.8.8.8", 443), 0);
	BW_ASSERT_EQ(match("::1", 443), 0);
	BW_ASSERT_EQ(match("8.8.8.8", 22), 1);
	BW_ASSERT_EQ(match("8.8.8.8", 1025), -1);
	BW_ASSERT_EQ(compile("1.2.3.4:65535"), 0);
	BW_ASSERT_EQ(match("1.2.3.4", 65535), 0);
	BW_ASSERT_EQ(match("1.2.3.4", 65534), -1);
}

static void test_match_ipv6(void)
{
	BW_ASSERT_EQ(compile("[::1]:6379; [2001:db8::/32]; [fe80::/10]:22"), 0);
	BW_ASSERT_EQ(match("::1", 6379), 0);
	BW_ASSERT_EQ(match("::1", 6380), -1);
	BW_ASSERT_EQ(match("2001:db8:ffff::5", 1), 1);
	BW_ASSERT_EQ(match("2001:db9::5", 1), -1);
	BW_ASSERT_EQ(match("fe80::1", 22), 2);
	BW_ASSERT_EQ(match("febf::1", 22), 2);
	BW_ASSERT_EQ(match("fec0::1", 22), -1);
	/* An IPv6 rule never matches an IPv4 destination. */
	BW_ASSERT_EQ(match("127.0.0.1", 6379), -1);
	BW_ASSERT_EQ(compile("[::/0]"), 0);
	BW_ASSERT_EQ(match("2a00::1", 1), 0);
	BW_ASSERT_EQ(match("1.1.1.1", 1), -1);
}

static void test_match_mapped_ipv6_is_ipv4(void)
{
	BW_ASSERT_EQ(compile("10.0.0.0/8:5432; [::ffff:192.168.0.0/112]"), 0);
	BW_ASSERT_EQ(match("::ffff:10.9.8.7", 5432), 0);
	BW_ASSERT_EQ(match("::ffff:10.9.8.7", 5433), -1);
	BW_ASSERT_EQ(match("::ffff:11.9.8.7", 5432), -1);
	/* The mapped rule compiled as 192.168.0.0/16: plain IPv4 hits. */
	BW_ASSERT_EQ(match("192.168.3.4", 1), 1);
	BW_ASSERT_EQ(match("::ffff:192.168.3.4", 1), 1);
	/* Not mapped: ::10.9.8.7 (compatible form) stays IPv6. */
	BW_ASSERT_EQ(match("::10.9.8.7", 5432), -1);
}

static void test_match_first_match_wins(void)
{
	BW_ASSERT_EQ(compile("10.0.0.5:80 retry.attempts=1; "
			     "10.0.0.0/8 retry.attempts=2; "
			     "* retry.attempts=4; 10.0.0.6 off"),
		     0);
	BW_ASSERT_EQ(match("10.0.0.5", 80), 0);
	BW_ASSERT_EQ(match("10.0.0.5", 81), 1);
	BW_ASSERT_EQ(match("10.0.0.6", 80), 1); /* rule 3 is shadowed */
	BW_ASSERT_EQ(match("9.9.9.9", 80), 2);
	BW_ASSERT_EQ(match("::1", 80), 2);
	BW_ASSERT_EQ(P.rules[match("9.9.9.9", 80)].s.retry_attempts, 4);
	BW_ASSERT_EQ(compile("10.0.0.6 off; *"), 0);
	BW_ASSERT_EQ(match("10.0.0.6", 1), 0);
	BW_ASSERT(P.rules[0].off);
	BW_ASSERT_EQ(compile(""), 0);
	BW_ASSERT_EQ(match("10.0.0.6", 1), -1);
}

/* The resolver's knowledge: rule indices hit for this destination. */
struct hits {
	unsigned mask;
	int asked;
};

static bool hit(void *ctx, int rule)
{
	struct hits *h = ctx;
	h->asked |= 1 << rule;
	return (h->mask >> rule) & 1;
}

static void test_match_host_rules_use_the_resolver(void)
{
	BW_ASSERT_EQ(compile("redis.internal:6379; *.svc.local; 10.0.0.0/8"),
		     0);
	struct hits h = { 0, 0 };
	BW_ASSERT_EQ(match_with("10.1.1.1", 6379, hit, &h), 2);
	BW_ASSERT_EQ(h.asked, 3); /* both host rules were asked */
	h = (struct hits){ 1, 0 };
	BW_ASSERT_EQ(match_with("10.1.1.1", 6379, hit, &h), 0);
	/* A host rule's ports still apply: not asked off its port. */
	h = (struct hits){ 1, 0 };
	BW_ASSERT_EQ(match_with("10.1.1.1", 6380, hit, &h), 2);
	BW_ASSERT_EQ(h.asked, 2);
	h = (struct hits){ 2, 0 };
	BW_ASSERT_EQ(match_with("192.0.2.1", 443, hit, &h), 1);
	/* No resolver: host rules never match. */
	BW_ASSERT_EQ(match("192.0.2.1", 6379), -1);
}

static void test_match_literal_host_is_an_address(void)
{
	BW_ASSERT_EQ(compile("127.0.0.1:6379"), 0);
	BW_ASSERT_EQ(P.rules[0].match.kind, BW_MATCH_ADDR);
	BW_ASSERT(!P.has_host_rules);
	BW_ASSERT_EQ(match("127.0.0.1", 6379), 0);
	BW_ASSERT_EQ(match("::ffff:127.0.0.1", 6379), 0);
}

static void test_match_bad_sockaddrs(void)
{
	BW_ASSERT_EQ(compile("*"), 0);
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr un = { .sa_family = AF_UNIX };
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)&s4, sizeof(s4),
				     NULL, NULL),
		     0);
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)&s4, sizeof(s4) - 1,
				     NULL, NULL),
		     -1);
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)&s6, sizeof(s6) - 1,
				     NULL, NULL),
		     -1);
	BW_ASSERT_EQ(bw_policy_match(&P, &un, sizeof(un), NULL, NULL), -1);
	BW_ASSERT_EQ(bw_policy_match(&P, NULL, 16, NULL, NULL), -1);
	BW_ASSERT_EQ(bw_policy_match(NULL, (struct sockaddr *)&s4, sizeof(s4),
				     NULL, NULL),
		     -1);
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)&s4, 1, NULL, NULL),
		     -1);
	/* An unaligned sockaddr is fine. */
	static unsigned char raw[sizeof(s4) + 1];
	memcpy(raw + 1, &s4, sizeof(s4));
	BW_ASSERT_EQ(bw_policy_match(&P, (struct sockaddr *)(void *)(raw + 1),
				     sizeof(s4), NULL, NULL),
		     0);
}

static void test_match_name_matches_host(void)
{
	BW_ASSERT_EQ(compile("Redis.Internal; *.svc.local; 10.0.0.1; *"), 0);
	const struct bw_rule *host = &P.rules[0];
	BW_ASSERT(bw_policy_name_matches(host, "redis.internal"));
	BW_ASSERT(bw_policy_name_matches(host, "REDIS.internal"));
	BW_ASSERT(bw_policy_name_matches(host, "redis.internal."));
	BW_ASSERT(!bw_policy_name_matches(host, "redis.internal.."));
	BW_ASSERT(!bw_policy_name_matches(host, "redis.internals"));
	BW_ASSERT(!bw_policy_name_matches(host, "xredis.internal"));
	BW_ASSERT(!bw_policy_name_matches(host, "a.redis.internal"));
	BW_ASSERT(!bw_policy_name_matches(host, "redis"));
	BW_ASSERT(!bw_policy_name_matches(host, ""));
	BW_ASSERT(!bw_policy_name_matches(host, NULL));
	BW_ASSERT(!bw_policy_name_matches(NULL, "redis.internal"));
}

static void test_match_name_matches_suffix(void)
{
	BW_ASSERT_EQ(compile("*.svc.local; 10.0.0.1; *"), 0);
	const struct bw_rule *suf = &P.rules[0];
	BW_ASSERT(bw_policy_name_matches(suf, "db.svc.local"));
	BW_ASSERT(bw_policy_name_matches(suf, "a.b.svc.local"));
	BW_ASSERT(bw_policy_name_matches(suf, "DB.SVC.LOCAL."));
	BW_ASSERT(!bw_policy_name_matches(suf, "svc.local"));
	BW_ASSERT(!bw_policy_name_matches(suf, "svc.local."));
	BW_ASSERT(!bw_policy_name_matches(suf, ".svc.local"));
	BW_ASSERT(!bw_policy_name_matches(suf, "xsvc.local"));
	BW_ASSERT(!bw_policy_name_matches(suf, "db.svc.locals"));
	BW_ASSERT(!bw_policy_name_matches(suf, "db.svc.local.x"));
	/* Address and any rules never match names. */
	BW_ASSERT(!bw_policy_name_matches(&P.rules[1], "10.0.0.1"));
	BW_ASSERT(!bw_policy_name_matches(&P.rules[2], "anything"));
	/* A very long name is refused without reading past it. */
	static char longname[1000];
	memset(longname, 'a', sizeof(longname) - 1);
	memcpy(longname + sizeof(longname) - 11, ".svc.local", 11);
	BW_ASSERT(!bw_policy_name_matches(suf, longname));
}

static const struct bw_test tests[] = {
	BW_TEST(test_match_ipv4_exact_and_cidr),
	BW_TEST(test_match_odd_prefixes),
	BW_TEST(test_match_ports),
	BW_TEST(test_match_ipv6),
	BW_TEST(test_match_mapped_ipv6_is_ipv4),
	BW_TEST(test_match_first_match_wins),
	BW_TEST(test_match_host_rules_use_the_resolver),
	BW_TEST(test_match_literal_host_is_an_address),
	BW_TEST(test_match_bad_sockaddrs),
	BW_TEST(test_match_name_matches_host),
	BW_TEST(test_match_name_matches_suffix),
};

BW_TEST_MAIN(tests)
