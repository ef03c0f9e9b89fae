/* SPDX-License-Identifier: MIT */
/*
 * shim/hostmap.h: which host rules each resolved address belongs to.  The
 * resolver hooks record, for every address a name resolved to, the host
 * rules (a name in bulwark-policy(7) Matches) whose name matches; connect asks
 * which of them hold for its address.  Nothing is recorded when the policy has
 * no host rules.
 */
#ifndef BW_SHIM_HOSTMAP_H
#define BW_SHIM_HOSTMAP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy/policy.h"

/* Addresses remembered.  A legacy program resolves a few dozen names; 4096
 * addresses leave room for round-robin names.  When full, new addresses
 * are not recorded and host rules miss them (the defaults apply). */
#define BW_HOSTMAP_SLOTS 4096

struct bw_hostmask {
	uint64_t w[(BW_POLICY_RULES_MAX + 63) / 64];
};

/* Records that name resolved to sa (AF_INET or AF_INET6).  AS-safe: yes,
 * lock-free (resolver hooks are not AS-safe anyway). */
void bw_hostmap_record(const char *name, const struct sockaddr *sa);

/* The host rules recorded for the address (family, 4 or 16 bytes in network
 * order); false when none.  AS-safe: yes. */
bool bw_hostmap_lookup(int family, const uint8_t *addr, struct bw_hostmask *m);

/* bw_policy_match's host_rule_hit callback; ctx is a bw_hostmask. */
bool bw_hostmap_hit(void *ctx, int rule);

#endif
