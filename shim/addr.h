/* SPDX-License-Identifier: MIT */
/*
 * shim/addr.h: the one reading of a TCP peer address that every module
 * shares (connect's destination key, the host-rule map, hedging's name
 * lists): IPv4-mapped IPv6 is IPv4 (doc/design.md L10).
 */
#ifndef BW_SHIM_ADDR_H
#define BW_SHIM_ADDR_H

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/*
 * The address of sa in out (16 bytes, zero-filled; 4 used for AF_INET)
 * and, when port is not NULL, its port in host order.  Returns AF_INET,
 * AF_INET6, or 0 for any other family.  The caller has checked that sa is
 * as long as its family says.  AS-safe: yes.
 */
static inline int bw_sa_addr(const struct sockaddr *sa, uint8_t out[16],
			     uint16_t *port)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff };
	memset(out, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(out, &in->sin_addr, 4);
		if (port)
			*port = ntohs(in->sin_port);
		return AF_INET;
	}
	if (sa->sa_family != AF_INET6)
		return 0;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	if (port)
		*port = ntohs(in6->sin6_port);
	if (memcmp(in6->sin6_addr.s6_addr, mapped, 12) == 0) {
		memcpy(out, in6->sin6_addr.s6_addr + 12, 4);
		return AF_INET;
	}
	memcpy(out, in6->sin6_addr.s6_addr, 16);
	return AF_INET6;
}

#endif
