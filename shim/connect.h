/* SPDX-License-Identifier: MIT */
/*
 * shim/connect.h: the connect path: which destination and rule a connect
 * belongs to, and the accounting of its attempt.  The policies that act on
 * a connect (breaker, bulkhead, retries) hang off bw_connect.
 */
#ifndef BW_SHIM_CONNECT_H
#define BW_SHIM_CONNECT_H

#include <sys/socket.h>

#include "shim/fd_table.h"

/* connect(2) for a fd the fast path could not pass through.  Returns
 * libc's value with libc's errno for an allowed call.  AS-safe: yes. */
int bw_connect(int fd, const struct sockaddr *sa, socklen_t len);

/*
 * A non-blocking connect of c failed with err, and the program is learning
 * it now (its getsockopt(SO_ERROR)).  Retries it by retry.* on the same fd
 * before the program sees the failure: each retry waits its backoff, then
 * for its own attempt (at most connect.timeout, else
 * BW_CONNECT_RESUME_WAIT_NS), so the program's thread (an event loop) is
 * held for the retry delays and the attempts, never longer.  Returns the
 * SO_ERROR value to report: 0 once a retry connected, else the last
 * error.  Keeps errno.  AS-safe: yes.
 */
int bw_connect_resume(struct bw_conn *c, int fd, int err);

/*
 * poll reported an error on c's fd while its non-blocking connect was in
 * progress: the connect failed.  Reads the error (the program has not
 * seen it yet) and retries by retry.*, sleeping the backoff, but only when
 * that backoff ends by deadline_ns (the end of the program's poll; or
 * UINT64_MAX): returns 1 when a new attempt is under way (the caller hides
 * this poll result and polls on), else 0, and the failure is kept in
 * c->pending_err for the program's own SO_ERROR read, send or receive.
 * Keeps errno.
 */
int bw_connect_poll_failed(struct bw_conn *c, int fd, uint64_t deadline_ns);

/*
 * sendto/sendmsg with MSG_FASTOPEN and an address is an implicit connect
 * (LESSONS 3): before the real call, binds c's destination and admits the
 * attempt (breaker, bulkhead) as connect does.  Returns 0 to go on, or
 * -errno when it is refused (nothing reaches the network).  Not retried:
 * the call carries data.  AS-safe: yes.
 */
int bw_connect_fastopen(struct bw_conn *c, int fd, const struct sockaddr *sa,
			socklen_t len);

/* How long a retry made inside bw_connect_resume waits for its attempt
 * when connect.timeout is not set: long enough for any refusal or answer
 * from a live network, short enough that a dead one holds an event loop
 * one second per attempt at most. */
#define BW_CONNECT_RESUME_WAIT_NS 1000000000ull

/* Binds c to the rule and destination of sa (first match, SPEC §3; the
 * rule's group, if any).  Returns 0, or 1 when nothing applies there (a
 * rule says off, or no room in the state).  Internal to connect.c and
 * hedge.c.  AS-safe: yes. */
int bw__connect_bind(struct bw_conn *c, const struct sockaddr *sa,
		     socklen_t len);

/* Whether a socket(2) call creates something bulwark tracks. */
static inline int bw_connect_tracks(int domain, int type, int proto)
{
	return (domain == AF_INET || domain == AF_INET6) &&
	       (type & 0xf) == SOCK_STREAM && (proto == 0 || proto == 6);
}

#endif
