/* SPDX-License-Identifier: MIT */
/*
 * shim/names.h: the address list of each resolved name, in the order the
 * resolver gave it, for hedged connects (bulwark-policy(7) hedge.delay): given
 * the address a program connects to, which address of the same name comes
 * next.  The resolver hooks record; the connect path reads.  Nothing is
 * recorded unless some rule (or the defaults) sets hedge.delay, so the
 * default policy pays nothing (bw_names_wanted).
 */
#ifndef BW_SHIM_NAMES_H
#define BW_SHIM_NAMES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Names remembered: the most recently resolved BW_NAMES_LISTS names with
 * two or more addresses (a name resolved again reuses its entry).  A legacy
 * program resolves a few dozen names; past 256 the oldest lists are
 * overwritten and their connects are simply not hedged. */
#define BW_NAMES_LISTS 256
/* Addresses kept per name, in resolver order; later ones are dropped (a
 * hedge only ever needs the next one; getaddrinfo caps its own answer at
 * a few dozen, and eight covers round-robin names with room). */
#define BW_NAMES_ADDRS 8

/* One name's answer being collected on the caller's stack. */
struct bw_names_batch {
	uint64_t name_hash;
	int n;
	uint8_t family[BW_NAMES_ADDRS];
	uint8_t addr[BW_NAMES_ADDRS][16];
};

/* Whether any rule or the defaults set hedge.delay > 0 (computed once the
 * policy is ready, then cached).  AS-safe: yes. */
bool bw_names_wanted(void);

/* Starts collecting the answer for name. */
void bw_names_begin(struct bw_names_batch *b, const char *name);
/* Adds one resolved address (AF_INET or AF_INET6; IPv4-mapped IPv6 as
 * IPv4, doc/design.md L10); duplicates (one per socket type in a getaddrinfo
 * answer), link-local IPv6 and addresses past BW_NAMES_ADDRS are ignored. */
void bw_names_add(struct bw_names_batch *b, const struct sockaddr *sa);
/* Publishes the list when it has two or more addresses.  Lock-free;
 * allocates nothing; a writer that loses a race for an entry drops its
 * list (the next resolution records it). */
void bw_names_commit(const struct bw_names_batch *b);

/*
 * The address after sa's in the most recent list holding sa (wrapping to
 * the first), with sa's port, written to *out (*outlen its size): true, or
 * false when sa belongs to no list of two or more addresses.  The result
 * may be of the other family.  AS-safe: yes (lock-free reads, bounded).
 */
bool bw_names_next(const struct sockaddr *sa, socklen_t len,
		   struct sockaddr_storage *out, socklen_t *outlen);

/* Forgets every list (unit tests). */
void bw_names_reset(void);

#endif
