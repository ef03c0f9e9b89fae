/* SPDX-License-Identifier: MIT */
/*
 * shim/attempt.c: the pieces of a connect attempt that the blocking path
 * (connect.c) and the non-blocking one (async.c) share: the AF_UNSPEC
 * reset that leaves a socket reconnectable after a failed or aborted
 * attempt (doc/design.md L7), the peer address kept for the attempts made
 * later in the program's waits, and the retry decision with its jitter.
 * Both callers include attempt.h; this file includes neither of them, so
 * the connect path's dependencies go one way (doc/design.md, Layers).
 * Owns: bw_attempt_*.  Never: allocates, waits, changes a socket's mode.
 * Context: the connect hook and any wait or I/O hook (AS-safe: plain
 * system calls, atomics, AS-safe logging).
 */
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "core/breaker.h"
#include "core/retry.h"
#include "shim/attempt.h"
#include "shim/internal.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/usdt.h"

/* Aborts fd's connect attempt, or forgets its failure: the socket can
 * connect again, and no stale error (ECONNABORTED) answers the next
 * connect.  connect(2) with AF_UNSPEC; aborting an attempt still in
 * SYN_SENT leaves ECONNRESET in the socket's error, which is ours (the
 * caller decided the outcome): read away, so neither the program's
 * SO_ERROR nor its next call sees it. */
void bw_attempt_dissolve(int fd)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	int e = 0;
	socklen_t l = sizeof(e);
	bw_real.connect(fd, &unspec, sizeof(unspec));
	bw_real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
}

/* Keeps the address of a connect, for the retries made in the program's
 * waits (shim/async.c). */
void bw_attempt_remember_peer(struct bw_conn *c, const struct sockaddr *sa)
{
	memset(&c->peer, 0, sizeof(c->peer));
	c->peer.family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		c->peer.port = in->sin_port;
		memcpy(c->peer.addr, &in->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)sa;
		c->peer.port = in6->sin6_port;
		c->peer.scope = in6->sin6_scope_id;
		memcpy(c->peer.addr, &in6->sin6_addr, 16);
	}
}

socklen_t bw_attempt_peer(const struct bw_conn *c, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (c->peer.family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = c->peer.port;
		memcpy(&in->sin_addr, c->peer.addr, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = c->peer.port;
	in6->sin6_scope_id = c->peer.scope;
	memcpy(&in6->sin6_addr, c->peer.addr, 16);
	return sizeof(*in6);
}

/* Seed of the retry jitter, taken from the clock at the first retry. */
static _Atomic uint64_t jitter_seed;

/*
 * After failed attempt n (errno err) of a connect: whether to try
 * again, and the delay, by retry.* (bulwark-policy(7)): never once the breaker
 * is open, never for an errno outside retry.on, within retry.attempts, the
 * budget and retry.min_success.  Logs retry / retry_exhausted.
 */
bool bw_attempt_retry_after(struct bw_conn *c, unsigned n, int err,
			    uint64_t *delay_ns)
{
	struct bw_dest *d = bw_state_live(c->d, c->ten);
	const struct bw_settings *s = bw_settings_for(c->rule);
	uint64_t now = bw_clock_ns();
	char label[BW_STATE_LABEL_MAX];

	if (!d || s->retry_attempts <= 1 || !bw_retry_retryable(s, err))
		return false;
	if (atomic_load_explicit(&d->forced, memory_order_relaxed) ==
		    BW_FORCE_OPEN ||
	    bw_breaker_view(d, now, NULL) != BW_BREAKER_CLOSED)
		return false;
	int v = bw_retry_decide(d, s, n, err, now);
	bw_state_label(d, label, sizeof(label));
	if (v != BW_RETRY_ALLOW) {
		bw_log(BW_LOG_WARN, "retry_exhausted", label,
		       "attempts=%u errno=%s reason=%s", n,
		       bw_policy_errno_name(err), bw_retry_verdict_name(v));
		return false;
	}
	if (!atomic_load_explicit(&jitter_seed, memory_order_relaxed))
		atomic_store(&jitter_seed, bw_clock_ns());
	/* The pid, spread over all bits, keeps forked children apart. */
	uint64_t rnd = bw_retry_rand(&jitter_seed) ^
		       ((uint64_t)getpid() * 0x9e3779b97f4a7c15ull);
	*delay_ns = bw_retry_delay_ns(s, n, err,
				      bw_retry_success_rate(d, s, now), rnd);
	bw_log(BW_LOG_INFO, "retry", label, "attempt=%u delay=%D errno=%s",
	       n + 1, *delay_ns, bw_policy_errno_name(err));
	BW_USDT_RETRY(d, n + 1, err, *delay_ns);
	return true;
}
