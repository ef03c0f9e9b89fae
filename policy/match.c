/* SPDX-License-Identifier: MIT */
/*
 * policy/match.c: which rule a TCP destination falls under (first match
 * wins, bulwark-policy(7)) and whether a resolved name belongs to a host rule.
 * Called from connect() and resolver hooks, signal handlers included:
 * AS-safe, no locks, no allocation, no locale (ASCII case folding only),
 * errno untouched.
 * I1: an IPv4-mapped IPv6 destination is matched as IPv4 (doc/design.md L10).
 */
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>

#include "policy/internal.h"

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> rest);
	return (a[bytes] & mask) == (b[bytes] & mask);
}

int bw_policy_match(const struct bw_policy *p, const struct sockaddr *sa,
		    socklen_t len, bool (*host_rule_hit)(void *ctx, int rule),
		    void *ctx)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff };
	uint8_t addr[16];
	int family;
	uint16_t port;
	sa_family_t af;

	if (!p || !sa || len < (socklen_t)sizeof(sa_family_t))
		return -1;
	/* Copies, not casts: the program's sockaddr may be unaligned. */
	memcpy(&af, (const char *)sa + offsetof(struct sockaddr, sa_family),
	       sizeof(af));
	if (af == AF_INET) {
		struct sockaddr_in in;
		if (len < (socklen_t)sizeof(in))
			return -1;
		memcpy(&in, sa, sizeof(in));
		family = AF_INET;
		memcpy(addr, &in.sin_addr, 4);
		port = ntohs(in.sin_port);
	} else if (af == AF_INET6) {
		struct sockaddr_in6 in6;
		if (len < (socklen_t)sizeof(in6))
			return -1;
		memcpy(&in6, sa, sizeof(in6));
		port = ntohs(in6.sin6_port);
		if (!memcmp(in6.sin6_addr.s6_addr, mapped, 12)) { /* I1 */
			family = AF_INET;
			memcpy(addr, in6.sin6_addr.s6_addr + 12, 4);
		} else {
			family = AF_INET6;
			memcpy(addr, in6.sin6_addr.s6_addr, 16);
		}
	} else {
		return -1;
	}

	int n = p->nrules < BW_POLICY_RULES_MAX ? p->nrules
						: BW_POLICY_RULES_MAX;
	for (int i = 0; i < n; i++) {
		const struct bw_match *m = &p->rules[i].match;
		if (port < m->port_lo || port > m->port_hi)
			continue;
		switch (m->kind) {
		case BW_MATCH_ANY:
			return i;
		case BW_MATCH_ADDR: {
			unsigned max = family == AF_INET ? 32 : 128;
			unsigned bits = m->prefix < max ? m->prefix : max;
			if (m->family == family &&
			    prefix_equal(m->addr, addr, bits))
				return i;
			break;
		}
		case BW_MATCH_HOST:
		case BW_MATCH_SUFFIX:
			if (host_rule_hit && host_rule_hit(ctx, i))
				return i;
			break;
		}
	}
	return -1;
}

bool bw_policy_name_matches(const struct bw_rule *r, const char *name)
{
	if (!r || !name)
		return false;
	if (r->match.kind != BW_MATCH_HOST && r->match.kind != BW_MATCH_SUFFIX)
		return false;
	const char *h = r->match.host;
	size_t hn = strnlen(h, BW_POLICY_HOST_MAX);
	size_t nn = strnlen(name, BW_POLICY_HOST_MAX + 1);
	if (nn && name[nn - 1] == '.')
		nn--; /* "example.com." is "example.com" */
	if (!hn || nn > BW_POLICY_HOST_MAX - 1)
		return false;
	if (r->match.kind == BW_MATCH_HOST) {
		if (nn != hn)
			return false;
	} else {
		/* "*.x": a.x and a.b.x, never x itself. */
		if (nn < hn + 2 || name[nn - hn - 1] != '.')
			return false;
		if (name[0] == '.')
			return false;
		name += nn - hn;
	}
	for (size_t i = 0; i < hn; i++)
		if (bw__lower(name[i]) != h[i])
			return false;
	return true;
}
