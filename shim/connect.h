/* SPDX-License-Identifier: MIT */
/*
 * shim/connect.h: the connect path: which destination and rule a connect
 * belongs to, and the accounting of its attempt.  The policies that act on
 * a connect (breaker, bulkhead, retries) hang off bw_connect.
 */
#ifndef BW_SHIM_CONNECT_H
#define BW_SHIM_CONNECT_H

#include <sys/socket.h>

/* connect(2) for a fd the fast path could not pass through.  Returns
 * libc's value with libc's errno for an allowed call.  AS-safe: yes. */
int bw_connect(int fd, const struct sockaddr *sa, socklen_t len);

/* Whether a socket(2) call creates something bulwark tracks. */
static inline int bw_connect_tracks(int domain, int type, int proto)
{
	return (domain == AF_INET || domain == AF_INET6) &&
	       (type & 0xf) == SOCK_STREAM && (proto == 0 || proto == 6);
}

#endif
