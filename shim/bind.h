/* SPDX-License-Identifier: MIT */
/*
 * shim/bind.h: destination binding: the rule and destination a connect
 * belongs to (shim/bind.c).  Used by the connect path (connect.c) and the
 * hedged connects (hedge.c), which rebind to the winner's address.
 */
#ifndef BW_SHIM_BIND_H
#define BW_SHIM_BIND_H

#include <sys/socket.h>

#include "shim/fd_table.h"

/* Binds c to the rule and destination of sa (first match, bulwark-policy(7);
 * the rule's group, if any; no rule: observed).  Returns 0, or 1 when
 * nothing applies there (a rule says off, or no room in the state).
 * AS-safe: yes. */
int bw_bind(struct bw_conn *c, const struct sockaddr *sa, socklen_t len);

#endif
