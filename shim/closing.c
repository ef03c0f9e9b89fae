/* SPDX-License-Identifier: MIT */
/*
 * shim/closing.c: a tracked fd going away.  Either the program closes it
 * through the hooks (close, fclose, dup2/dup3 onto it, close_range,
 * closefrom), or it was closed behind the shim's back by a raw close
 * system call, which no hook sees: libuv closes every fd so
 * (uv__close_nocancel), and node is built on it.  Such a connection would
 * keep its bulkhead slot, or its place in the bulkhead's queue, until its
 * fd number came back from a hooked call; bw_conn_reap finds them when a
 * bulkhead they could be blocking is full.
 * Owns: bw_conn_forget, bw_conn_reap.  Never: allocates, blocks; nor
 * changes errno in bw_conn_forget (the close hooks' path).  Context: any
 * hook (AS-safe: atomics, fcntl).
 */
#include <fcntl.h>

#include "shim/async.h"
#include "shim/closing.h"
#include "shim/exchange.h"
#include "shim/fd_table.h"
#include "shim/hedge.h"
#include "shim/internal.h"
#include "shim/real.h"

void bw_conn_forget(int fd)
{
	/* Kept: the close hooks call this before their real call, which
	 * must see the program's errno (doc/design.md, Error convention). */
	int saved = errno;
	struct bw_conn *a = bw_fd_conn(fd);
	/* (In a vfork child nothing reads as tracked, fd_table.h: the
	 * parent's connect goes on.) */
	if (a && BW_UNLIKELY(atomic_load(&a->aphase)))
		bw_async_fd_gone(a, fd);
	struct bw_conn *c = bw_fd_drop(fd);
	if (c) {
		if (BW_UNLIKELY(atomic_load_explicit(&bw_hedge_nb_live,
						     memory_order_relaxed)))
			bw_hedge_nb_forget(c);
		/* A connect closed before it completed: a queued ticket
		 * leaves the queue; the settle below counts it as neither
		 * success nor failure (a Happy Eyeballs loser). */
		if (BW_UNLIKELY(atomic_load(&c->aphase)))
			bw_async_cancel(c);
		bw_io_settle(c, fd);
		bw_conn_free(c);
	}
	errno = saved;
}

/* Reaps run at most this often in a process: each costs a pass over the
 * fd table and one fcntl per connection of the destination that holds a
 * slot or waits for one, and a queued non-blocking connect asks every
 * 20 ms. */
#define BW_REAP_EVERY_NS (20ull * 1000000)

unsigned bw_conn_reap(const struct bw_dest *d)
{
	static _Atomic uint64_t last_ns;
	uint64_t now = bw_clock_ns(),
		 last = atomic_load_explicit(&last_ns, memory_order_relaxed);
	if (now - last < BW_REAP_EVERY_NS ||
	    !atomic_compare_exchange_strong(&last_ns, &last, now))
		return 0;
	unsigned n = 0;
	int high = bw_fd_high();
	for (int fd = 0; fd < high; fd++) {
		const struct bw_conn *c = bw_fd_conn(fd);
		if (!c || c->d != d || !(c->slot.kind || c->ticket.kind))
			continue;
		if (bw_real.fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		bw_conn_forget(fd);
		n++;
	}
	return n;
}
