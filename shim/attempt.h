/* SPDX-License-Identifier: MIT */
/*
 * shim/attempt.h: what one connect attempt needs on both the blocking path
 * (connect.c) and the non-blocking one (async.c): the AF_UNSPEC reset
 * between attempts, the peer address kept for the next attempt, and the
 * retry decision (shim/attempt.c).  Neither connect.c nor async.c is
 * included here: both call down into this file (doc/design.md, Layers).
 */
#ifndef BW_SHIM_ATTEMPT_H
#define BW_SHIM_ATTEMPT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shim/fd_table.h"

/* Aborts fd's connect attempt, or forgets its failure (connect
 * AF_UNSPEC): reconnectable, with no stale error for the next connect.
 * May change errno.  AS-safe: yes. */
void bw_attempt_dissolve(int fd);

/* Keeps sa (AF_INET or AF_INET6) in c, for the attempts made later in the
 * program's waits; bw_attempt_peer gives it back as a sockaddr (its
 * length).  AS-safe: yes. */
void bw_attempt_remember_peer(struct bw_conn *c, const struct sockaddr *sa);
socklen_t bw_attempt_peer(const struct bw_conn *c, struct sockaddr_storage *ss);

/* Whether attempt n of c, which failed with err (positive errno), is tried
 * again by retry.* (bulwark-policy(7)), and after which delay; logs retry
 * / retry_exhausted.  AS-safe: yes. */
bool bw_attempt_retry_after(struct bw_conn *c, unsigned n, int err,
			    uint64_t *delay_ns);

#endif
