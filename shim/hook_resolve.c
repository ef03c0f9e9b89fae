/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_resolve.c: getaddrinfo and gethostbyname* are watched, never
 * changed: the addresses a name resolved to are recorded for host rules
 * (bulwark-policy(7)), and, under hedge.delay, as the name's ordered list
 * (names.h).  Owns: those exported symbols.  Never: alters a result or its
 * errno/h_errno.  AS-safe: no (the resolvers are not either).
 */
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

#include "shim/fd_table.h"
#include "shim/hostmap.h"
#include "shim/internal.h"
#include "shim/names.h"
#include "shim/real.h"

/* Not in a vfork child: the maps it would write are its parent's. */
static bool watching(const char *name)
{
	return name &&
	       atomic_load_explicit(&bw_g.ready, memory_order_acquire) &&
	       bw_g.active && (bw_live_host_rules() || bw_names_wanted()) &&
	       !bw_fd_borrowed();
}

/* Records sa for host rules and, under hedge.delay, in b (names.h). */
static void record(const char *name, const struct sockaddr *sa,
		   struct bw_names_batch *b)
{
	if (bw_live_host_rules())
		bw_hostmap_record(name, sa);
	if (b)
		bw_names_add(b, sa);
}

static void record_hostent(const char *name, const struct hostent *h)
{
	struct bw_names_batch batch, *b = NULL;
	if (!h || !h->h_addr_list)
		return;
	if (bw_names_wanted()) {
		b = &batch;
		bw_names_begin(b, name);
	}
	for (char **a = h->h_addr_list; *a; a++) {
		struct sockaddr_in6 in6;
		struct sockaddr_in in;
		memset(&in, 0, sizeof(in));
		memset(&in6, 0, sizeof(in6));
		if (h->h_addrtype == AF_INET && h->h_length == 4) {
			in.sin_family = AF_INET;
			memcpy(&in.sin_addr, *a, 4);
			record(name, (struct sockaddr *)&in, b);
		} else if (h->h_addrtype == AF_INET6 && h->h_length == 16) {
			in6.sin6_family = AF_INET6;
			memcpy(&in6.sin6_addr, *a, 16);
			record(name, (struct sockaddr *)&in6, b);
		}
	}
	if (b)
		bw_names_commit(b);
}

static void record_addrinfo(const char *name, const struct addrinfo *res)
{
	struct bw_names_batch batch, *b = NULL;
	if (bw_names_wanted()) {
		b = &batch;
		bw_names_begin(b, name);
	}
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (ai->ai_addr)
			record(name, ai->ai_addr, b);
	if (b)
		bw_names_commit(b);
}

BW_EXPORT int getaddrinfo(const char *node, const char *serv,
			  const struct addrinfo *hints, struct addrinfo **res)
{
	int rc = bw_real.getaddrinfo(node, serv, hints, res);
	if (rc == 0 && res && watching(node))
		BW_KEEP_ERRNO(record_addrinfo(node, *res));
	return rc;
}

BW_EXPORT struct hostent *gethostbyname(const char *name)
{
	struct hostent *h = bw_real.gethostbyname(name);
	if (h && watching(name))
		BW_KEEP_ERRNO(record_hostent(name, h));
	return h;
}

BW_EXPORT struct hostent *gethostbyname2(const char *name, int af)
{
	struct hostent *h = bw_real.gethostbyname2(name, af);
	if (h && watching(name))
		BW_KEEP_ERRNO(record_hostent(name, h));
	return h;
}

BW_EXPORT int gethostbyname_r(const char *name, struct hostent *ret, char *buf,
			      size_t len, struct hostent **result, int *herr)
{
	int rc = bw_real.gethostbyname_r(name, ret, buf, len, result, herr);
	if (rc == 0 && result && *result && watching(name))
		BW_KEEP_ERRNO(record_hostent(name, *result));
	return rc;
}

BW_EXPORT int gethostbyname2_r(const char *name, int af, struct hostent *ret,
			       char *buf, size_t len, struct hostent **result,
			       int *herr)
{
	int rc =
		bw_real.gethostbyname2_r(name, af, ret, buf, len, result, herr);
	if (rc == 0 && result && *result && watching(name))
		BW_KEEP_ERRNO(record_hostent(name, *result));
	return rc;
}
