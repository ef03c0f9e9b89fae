/* SPDX-License-Identifier: MIT */
/*
 * shim/closing.h: settling the connection of a tracked fd that goes away
 * (shim/closing.c).
 */
#ifndef BW_SHIM_CLOSING_H
#define BW_SHIM_CLOSING_H

#include "core/state.h"

/* fd is going away (still open, or already closed): settles its
 * connection if fd was its last fd in this process: a pending connect
 * leaves the bulkhead's queue and counts as neither success nor failure,
 * a held slot is given back.  Keeps errno.  AS-safe: yes. */
void bw_conn_forget(int fd);

/*
 * Forgets the connections of destination d whose fd was closed without a
 * hook seeing it (a raw close system call), so their bulkhead slots and
 * queue places come back.  Call when d's bulkhead is full or a connect
 * waits in its queue.  Runs at most every 20 ms per process (a pass over
 * the fd table, one fcntl per connection of d holding a slot or a ticket);
 * returns how many it forgot.  A number reused by an fd made without a
 * hook (raw socket or open system calls too) is not noticed.  May change
 * errno (its callers are the connect path's, whose hooks keep it).
 * AS-safe: yes.
 */
unsigned bw_conn_reap(const struct bw_dest *d);

#endif
