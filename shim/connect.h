/* SPDX-License-Identifier: MIT */
/*
 * shim/connect.h: the connect path: the attempts of a connect and their
 * accounting (which destination and rule it belongs to: shim/bind.h).  The
 * policies that act on a connect (breaker, bulkhead, retries) hang off
 * bw_connect.
 */
#ifndef BW_SHIM_CONNECT_H
#define BW_SHIM_CONNECT_H

#include <sys/socket.h>

#include "shim/fd_table.h"

/* connect(2) for a fd the fast path could not pass through.  Returns 0 or
 * -errno (an allowed call: the real connect's result, bw_sysret); the
 * connect hook converts it and keeps the program's errno on success.
 * May change errno.  AS-safe: yes. */
int bw_connect(int fd, const struct sockaddr *sa, socklen_t len);

/*
 * sendto/sendmsg with MSG_FASTOPEN and an address is an implicit connect
 * (doc/design.md L3): before the real call, binds c's destination and admits
 * the attempt (breaker, bulkhead) as connect does.  Returns 0 to go on, or
 * -errno when it is refused (nothing reaches the network).  Not retried:
 * the call carries data.  May change errno (the send hooks keep the
 * program's).  AS-safe: yes.
 */
int bw_connect_fastopen(struct bw_conn *c, int fd, const struct sockaddr *sa,
			socklen_t len);

/* Whether a socket(2) call creates something bulwark tracks. */
static inline int bw_connect_tracks(int domain, int type, int proto)
{
	return (domain == AF_INET || domain == AF_INET6) &&
	       (type & 0xf) == SOCK_STREAM && (proto == 0 || proto == 6);
}

#endif
