/* SPDX-License-Identifier: MIT */
/*
 * policy/describe.c: the text `bulwark check` prints for a valid policy:
 * each compiled rule with its origin, its match as written and as
 * understood, then every key with its effective value, marked "# rule" or
 * "# env" when it is not the built-in default; then the defaults a rule
 * starts from, and what happens to destinations no rule matches (observed
 * only).
 * Never: allocates.  Context: the CLI and the fuzzer; not a hot path.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "policy/internal.h"

/* Column where "# rule" / "# env" notes start. */
#define NOTE_COL 36

static void describe_match(struct bw__buf *b, const struct bw_match *m)
{
	char a[INET6_ADDRSTRLEN];

	switch (m->kind) {
	case BW_MATCH_ANY:
		bw__buf_puts(b, "any address");
		break;
	case BW_MATCH_HOST:
		bw__buf_puts(b, "addresses the program resolves for ");
		bw__buf_putn(b, m->host, strnlen(m->host, sizeof(m->host)));
		break;
	case BW_MATCH_SUFFIX:
		bw__buf_puts(b, "addresses the program resolves for any "
				"subdomain of ");
		bw__buf_putn(b, m->host, strnlen(m->host, sizeof(m->host)));
		break;
	case BW_MATCH_ADDR:
		if (!inet_ntop(m->family == AF_INET6 ? AF_INET6 : AF_INET,
			       m->addr, a, sizeof(a)))
			memcpy(a, "?", 2);
		bw__buf_puts(b, m->family == AF_INET6 ? "IPv6 " : "IPv4 ");
		bw__buf_puts(b, a);
		bw__buf_putc(b, '/');
		bw__buf_putu(b, m->prefix);
		break;
	}
	if (m->port_lo == 0 && m->port_hi == 65535) {
		bw__buf_puts(b, ", every port");
	} else if (m->port_lo == m->port_hi) {
		bw__buf_puts(b, ", port ");
		bw__buf_putu(b, m->port_lo);
	} else {
		bw__buf_puts(b, ", ports ");
		bw__buf_putu(b, m->port_lo);
		bw__buf_putc(b, '-');
		bw__buf_putu(b, m->port_hi);
	}
}

static void describe_settings(struct bw__buf *b, const struct bw_settings *s,
			      uint64_t rule_mask, uint64_t env_mask)
{
	for (int k = 0; k < BW_KEY_COUNT; k++) {
		size_t line = b->len;
		bw__buf_puts(b, "    ");
		bw__buf_puts(b, bw__keys[k].name);
		bw__buf_putc(b, '=');
		bw__value_format(&bw__keys[k], s, b);
		if (rule_mask & (1ull << k)) {
			bw__buf_pad(b, line, NOTE_COL);
			bw__buf_puts(b, "# rule");
		} else if (env_mask & (1ull << k)) {
			bw__buf_pad(b, line, NOTE_COL);
			bw__buf_puts(b, "# env");
		}
		bw__buf_putc(b, '\n');
	}
}

size_t bw_policy_describe(const struct bw_policy *p, char *buf, size_t cap)
{
	struct bw__buf b;

	bw__buf_init(&b, buf, cap);
	if (!p)
		return 0;
	int n = p->nrules < BW_POLICY_RULES_MAX ? p->nrules
						: BW_POLICY_RULES_MAX;
	for (int i = 0; i < n; i++) {
		const struct bw_rule *r = &p->rules[i];
		bw__buf_puts(&b, "rule ");
		bw__buf_putu(&b, (uint64_t)i + 1);
		bw__buf_puts(&b, " (");
		bw__buf_putn(&b, r->origin,
			     strnlen(r->origin, sizeof(r->origin)));
		bw__buf_putc(&b, ':');
		bw__buf_putu(&b, (uint64_t)(r->line > 0 ? r->line : 0));
		bw__buf_puts(&b, "): ");
		bw__buf_putn(&b, r->text, strnlen(r->text, sizeof(r->text)));
		if (r->off)
			bw__buf_puts(&b, " off");
		bw__buf_puts(&b, "\n    # ");
		describe_match(&b, &r->match);
		bw__buf_putc(&b, '\n');
		if (r->off)
			bw__buf_puts(&b, "    # off: nothing applied, "
					 "nothing counted\n");
		else
			describe_settings(&b, &r->s, r->set_mask, p->env_mask);
		bw__buf_putc(&b, '\n');
	}
	if (!n)
		bw__buf_puts(&b, "no rules: every destination is observed "
				 "only (its calls counted and shown by "
				 "status; nothing refused, retried, delayed "
				 "or logged)\n\n");
	bw__buf_puts(&b, "defaults (where every rule starts; a bare rule "
			 "applies them all):\n");
	describe_settings(&b, &p->defaults, 0, p->env_mask);
	if (n)
		bw__buf_puts(&b, "\ndestinations no rule matches: observed "
				 "only (counted, nothing applied)\n");
	return b.len;
}
