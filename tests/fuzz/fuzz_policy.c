/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_policy.c: libFuzzer target for the policy language.
 * Input: bytes; the first byte picks an environment (none, good BULWARK_*
 * values, a bad one) and the rest is the policy text, also parsed a second
 * time as a "file" appended to the first.  A valid policy is then printed
 * (whole and truncated) and matched against a few IPv4/IPv6/mapped
 * destinations with a resolver that says yes to some host rules.
 * Checks beyond "no crash": describe's length is stable, errors carry a
 * line and column for policy/file origins, and matches are in range.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *env_mode;

static const char *fuzz_getenv(const char *name)
{
	if (!env_mode)
		return NULL;
	if (!strcmp(env_mode, "good")) {
		if (!strcmp(name, "BULWARK_BREAKER_FAILURES"))
			return "7";
		if (!strcmp(name, "BULWARK_BREAKER_OPEN_MAX"))
			return "5m";
		if (!strcmp(name, "BULWARK_RETRY_JITTER"))
			return "full";
		return NULL;
	}
	if (!strcmp(name, "BULWARK_RETRY_BUDGET"))
		return "150%";
	return NULL;
}

static bool hit_odd(void *ctx, int rule)
{
	(void)ctx;
	return rule & 1;
}

static void check(int cond)
{
	if (!cond)
		abort();
}

static void match_some(const struct bw_policy *p)
{
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	static const char *const v4[] = { "10.1.2.3", "127.0.0.1",
					  "192.168.1.1", "0.0.0.0" };
	static const char *const v6[] = { "::1", "2001:db8::1",
					  "::ffff:10.1.2.3", "fe80::1" };
	static const uint16_t ports[] = { 1, 80, 6379, 65535 };

	for (int i = 0; i < 4; i++) {
		s4.sin_port = htons(ports[i]);
		inet_pton(AF_INET, v4[i], &s4.sin_addr);
		int r = bw_policy_match(p, (struct sockaddr *)&s4, sizeof(s4),
					hit_odd, NULL);
		check(r >= -1 && r < p->nrules);
		s6.sin6_port = htons(ports[3 - i]);
		inet_pton(AF_INET6, v6[i], &s6.sin6_addr);
		r = bw_policy_match(p, (struct sockaddr *)&s6, sizeof(s6), NULL,
				    NULL);
		check(r >= -1 && r < p->nrules);
	}
	for (int i = 0; i < p->nrules; i++) {
		bw_policy_name_matches(&p->rules[i], "db.svc.local");
		bw_policy_name_matches(&p->rules[i], p->rules[i].match.host);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bw_policy p;
	static char out[1 << 20], small[97], line[512];
	struct bw_policy_error err;

	if (!size)
		return 0;
	env_mode = data[0] % 3 == 0 ? NULL : data[0] % 3 == 1 ? "good" : "bad";
	data++;
	size--;
	int rc = bw_policy_init(&p, fuzz_getenv, &err);
	if (rc) {
		check(!strcmp(err.origin, "env"));
		bw_policy_error_format(&err, line, sizeof(line));
		return 0;
	}
	rc = bw_policy_parse(&p, (const char *)data, size, "policy", &err);
	if (!rc)
		rc = bw_policy_parse(&p, (const char *)data, size, "file",
				     &err);
	if (rc) {
		check(rc == -EINVAL || rc == -E2BIG);
		check(err.line >= 1 && err.col >= 1);
		check(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
		size_t n = bw_policy_error_format(&err, line, sizeof(line));
		check(n == strlen(line));
		return 0;
	}
	check(bw_policy_finish(&p) == 0);
	check(p.nrules > 0 || !p.env_mask);
	size_t n = bw_policy_describe(&p, out, sizeof(out));
	check(n < sizeof(out) && n == strlen(out));
	check(bw_policy_describe(&p, small, sizeof(small)) == n);
	check(strlen(small) == (n < sizeof(small) ? n : sizeof(small) - 1));
	match_some(&p);
	return 0;
}
