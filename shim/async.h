/* SPDX-License-Identifier: MIT */
/*
 * shim/async.h: non-blocking connects the shim manages inside the
 * program's own waits (retries, bulkhead queue, connect.timeout), and the
 * program's epoll registrations they need.  Design: shim/async.c.
 * Every bw_async_* may change errno; the hooks that call them keep the
 * program's (doc/design.md, Error convention).
 */
#ifndef BW_SHIM_ASYNC_H
#define BW_SHIM_ASYNC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "shim/fd_table.h"

/* Connections in an async phase in this process.  Zero: every wait hook
 * is one load and one branch before the real call. */
extern _Atomic uint32_t bw_async_pending;

static inline bool bw_async_idle(void)
{
	return atomic_load_explicit(&bw_async_pending, memory_order_relaxed) ==
	       0;
}

/* How often a queued connect looks at its bulkhead again (a slot freed by
 * another process wakes no one in this one): the latency bound of the
 * README. */
#define BW_ASYNC_QUEUE_LOOK_NS (20ull * 1000000)

/*
 * connect.c hands a non-blocking connect of c on fd over: phase ATTEMPT
 * (a real connect returned EINPROGRESS; deadline_ns: its connect.timeout,
 * 0 none), BACKOFF (the attempt failed at once and is retried at
 * deadline_ns; the socket was dissolved) or QUEUED (the bulkhead queued
 * it: c->ticket).  Returns 0, or -ENOSPC when the async set is full (the
 * caller goes on as without the shim's help).  AS-safe: yes.
 */
int bw_async_enter(struct bw_conn *c, int fd, int phase, uint64_t due_ns);

/* Runs the due work of every async connection (start a due attempt, abort
 * one past its connect.timeout, look at the bulkhead for a queued one).
 * Returns the earliest time more work is due, UINT64_MAX if none. */
uint64_t bw_async_pump(uint64_t now_ns);

/* What a wait hook does with a result of c's fd. */
enum { BW_ASYNC_SHOW = 0, BW_ASYNC_HIDE = 1, BW_ASYNC_SHOW_ERR = 2 };
/* A wait reported events on c's fd (err: an error or hang-up bit; out:
 * writable).  Settles an attempt that ended: success, or a failure that
 * is retried (BW_ASYNC_HIDE) or final (BW_ASYNC_SHOW_ERR, the error owed
 * through SO_ERROR, connect, send or receive). */
int bw_async_result(struct bw_conn *c, bool err, bool out);
/* Whether c's fd must stay out of a poll/select set now (BACKOFF,
 * QUEUED: the dissolved socket would report POLLOUT|POLLHUP). */
static inline bool bw_async_hidden(const struct bw_conn *c)
{
	uint8_t p = atomic_load_explicit(&c->aphase, memory_order_acquire);
	return p == BW_ASYNC_BACKOFF || p == BW_ASYNC_QUEUED;
}
/* The async connection registered in epfd with data, NULL if none. */
struct bw_conn *bw_async_by_data(int epfd, uint64_t data);

/* The program's connect() on an async connection (HAProxy's way of
 * learning the outcome): -EALREADY while in progress, then 0/-EISCONN or
 * the final -errno; or BW_ASYNC_SETTLED when the async phase is over with
 * no error owed: the caller (connect.c) makes the connect the usual way.
 * async.c never calls connect.c.  May change errno. */
enum { BW_ASYNC_SETTLED = 1 };
int bw_async_connect(struct bw_conn *c, int fd, const struct sockaddr *sa,
		     socklen_t len);
/* The program read SO_ERROR (*v, as the kernel answered) on an async
 * connection: *v becomes what it must see. */
void bw_async_sockerr(struct bw_conn *c, int fd, int *v);
/* Before a send or receive on an async connection: 0 to make the call,
 * or -errno to return (EAGAIN while in progress, the final error). */
int bw_async_io(struct bw_conn *c, int fd);

/* A send or receive on an async connection failed with err: when it is
 * the attempt's failure, -errno to return instead (EAGAIN: retried; the
 * final error), accounted here; else 0 (the call's own result). */
int bw_async_io_failed(struct bw_conn *c, int err);

/* The program's epoll_ctl on c's fd (tracked): recorded, and kept from
 * the kernel while the registrations are hidden.  0 or -errno. */
int bw_async_epoll_ctl(struct bw_conn *c, int epfd, int op, int fd,
		       struct epoll_event *ev);
/* A new epoll fd (epoll_create*): tracked so that its registrations can
 * be told from those of a later epoll fd with the same number. */
void bw_async_epoll_new(int epfd);

/* Takes c's fds out of, and back into, every epoll set of the program
 * that holds them (with the program's events and data; re-arms
 * EPOLLONESHOT and EPOLLET).  For hedging: hide, dup3 the winner onto
 * the fd, show.  Caller holds nothing; AS-safe. */
void bw_async_ep_hide(struct bw_conn *c);
void bw_async_ep_show(struct bw_conn *c);

/* fd, one of c's fds, is being closed or replaced (dup2/dup3 onto it,
 * close_range): when it was the one the shim connects on, another fd of c
 * takes over; with none left, c's async work is cancelled (bw_async_cancel).
 */
void bw_async_fd_gone(struct bw_conn *c, int fd);
/* c's last fd goes: a queued ticket leaves the queue, c leaves the async
 * set.  Its attempt is then settled by the close (neither success nor
 * failure unless it completed).  AS-safe: yes. */
void bw_async_cancel(struct bw_conn *c);
/* In a fork child: the parent goes on with its pending connects; the
 * child drops them from its own view (they pass through untouched). */
void bw_async_fork_child(void);

#endif
