// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * probe/bulwark_trace.bpf.c: the kernel side of `bulwark trace` (see
 * man/bulwark.1).  Measures connects and request/response exchanges per
 * destination and aggregates them into log2 histograms in a map; only
 * calls slower than targ_min_ns, and the shim's rare events, go through
 * the ring buffer.
 *
 * Cheap while attached: every per-call hook is a socket-layer tracepoint,
 * so a system call that is not a TCP send or receive (a write to a file, a
 * pipe, a Unix socket) runs no program of ours at all, and no syscall
 * tracepoint is attached (one would slow every system call on the machine).
 *   - sock:inet_sock_set_state (tp_btf, else the classic tracepoint): a
 *     connect starts (CLOSE -> SYN_SENT, in the caller's context: the -p /
 *     -- CMD filter is applied once here, and the connection enters the
 *     conns map), the handshake ends
 *     (SYN_SENT -> ESTABLISHED or CLOSE: the connect's latency, blocking or
 *     not, and its errno), the program closes it (FIN_WAIT1, LAST_ACK: no
 *     longer open for the bulkhead peak), it ends (CLOSE).
 *   - sock:sock_send_length / sock:sock_recv_length (same choice): on a
 *     connection of ours, the first send after idle starts an exchange and
 *     the first receive that returns data (or EOF, or an error) ends it; a
 *     reset while waiting ends it as failed.  Another TCP socket costs one
 *     hash lookup, another socket nothing more.
 *   - USDT probes of the shim (libbulwark.so): only its rare events,
 *     breaker transitions, rejections and retries.  Its calls are measured
 *     by the tracepoints above like any other program's.
 * A finished call costs one hash lookup: its histogram, which also keeps
 * what `--suggest` needs (the slowest call, the failure pattern; for
 * handshakes, the connections open at once).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "bulwark_trace.h"

#define BWT_AF_INET 2
#define BWT_AF_INET6 10
#define BWT_EINTR 4
#define BWT_EAGAIN 11
#define BWT_ECONNRESET 104
#define BWT_ETIMEDOUT 110
#define BWT_ECONNREFUSED 111
#define BWT_ERESTARTSYS 512
#define BWT_MSG_PEEK 2
#define BWT_TCP_ESTABLISHED 1
#define BWT_TCP_SYN_SENT 2
#define BWT_TCP_FIN_WAIT1 4
#define BWT_TCP_CLOSE 7
#define BWT_TCP_LAST_ACK 9

const volatile __u32 targ_tgid = 0;	 /* -p PID: only this process */
const volatile bool targ_follow = false; /* -- CMD: tgids map, + forks */
const volatile __u64 targ_min_ns = 0;	 /* --slow */
const volatile __u16 targ_family = 0;	 /* --dest: 0 any address */
const volatile __u16 targ_dport = 0;	 /* --dest: 0 any port */
const volatile __u8 targ_daddr[16] = {};

enum bwt_phase { BWT_PH_IDLE = 0, BWT_PH_SENT = 1, BWT_PH_CONNECTING = 2 };

/* A connection of a traced process, in the conns map by its struct
 * sock *. */
struct bwt_conn {
	struct bwt_addr dest;
	__u64 t0_ns; /* connect or exchange start */
	__u32 pid;   /* the connecting process */
	__u32 phase;
	__u32 open; /* counted in its destination's open connections */
	char comm[BWT_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct bwt_conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BWT_MAX_DESTS);
	__type(key, struct bwt_hist_key);
	__type(value, struct bwt_hist);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BWT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static const struct bwt_hist zero_hist;

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Whether the current process is one we trace at all. */
static __always_inline bool traced(__u32 tgid)
{
	if (targ_tgid && tgid != targ_tgid)
		return false;
	if (targ_follow && !bpf_map_lookup_elem(&tgids, &tgid))
		return false;
	return true;
}

static __always_inline bool dest_wanted(const struct bwt_addr *d)
{
	if (targ_dport && d->dport != targ_dport)
		return false;
	if (!targ_family)
		return true;
	if (d->family != targ_family)
		return false;
	int n = targ_family == BWT_AF_INET ? 4 : 16;
	for (int i = 0; i < 16; i++)
		if (i < n && d->addr[i] != targ_daddr[i])
			return false;
	return true;
}

static __always_inline __u32 log2_slot(__u64 delta_us)
{
	__u32 slot = 0;
	while (delta_us > 1 && slot < BWT_HIST_SLOTS - 1) {
		delta_us >>= 1;
		slot++;
	}
	return slot;
}

/* One call into its histogram and failure pattern: one hash lookup.
 * The counts are atomic (exact under load); the pattern's fields race
 * only between calls to one destination ending at the same instant on two
 * CPUs, where a lost update changes no suggestion. */
static __always_inline struct bwt_hist *hist_add(const struct bwt_hist_key *key,
						 __u64 delta_ns, bool failed)
{
	struct bwt_hist *h = bpf_map_lookup_elem(&hists, key);
	if (!h) {
		if (bpf_map_update_elem(&hists, key, &zero_hist, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&hists, key)) {
			count(BWT_CNT_MAPFULL);
			return NULL;
		}
		h = bpf_map_lookup_elem(&hists, key);
		if (!h)
			return NULL;
	}
	__u32 slot = log2_slot(delta_ns / 1000);
	if (slot < BWT_HIST_SLOTS)
		__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, delta_ns);
	if (delta_ns > h->max_ns)
		h->max_ns = delta_ns;
	if (failed) {
		__sync_fetch_and_add(&h->failed, 1);
		if (!h->run)
			h->run_t0_ns = bpf_ktime_get_ns() - delta_ns;
		h->run++;
		if (h->run > h->max_run)
			h->max_run = h->run;
	} else if (h->run) {
		/* Failures that a success ended: transient. */
		__u64 took = bpf_ktime_get_ns() - h->run_t0_ns;
		h->recovered++;
		if (h->run > h->max_recovered_run)
			h->max_recovered_run = h->run;
		if (took > h->max_recover_ns)
			h->max_recover_ns = took;
		h->run = 0;
	}
	return h;
}

/* Reserves an event in the ring buffer, or counts it as dropped. */
static __always_inline struct bwt_event *event_new(__u32 op, __u32 src)
{
	struct bwt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(BWT_CNT_DROPPED);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->op = op;
	e->src = src;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/* One finished call: into its histogram and the destination's stats, and
 * out as an event if slow.  c: the connection, whose process an event
 * names when the call ended outside it (a handshake ends in softirq). */
static __always_inline struct bwt_hist *record(const struct bwt_conn *c,
					       __u32 op, bool in_process,
					       __u64 delta_ns, int err)
{
	struct bwt_hist_key key = {
		.dest = c->dest,
		.op = op,
		.src = BWT_SRC_SOCK,
	};
	struct bwt_hist *h = hist_add(&key, delta_ns, err != 0);

	if (delta_ns < targ_min_ns)
		return h;
	struct bwt_event *e = event_new(op, BWT_SRC_SOCK);
	if (!e)
		return h;
	if (!in_process) {
		e->pid = c->pid;
		__builtin_memcpy(e->comm, c->comm, sizeof(e->comm));
	}
	e->delta_ns = delta_ns;
	e->err = err;
	__builtin_memcpy(&e->dest, &c->dest, sizeof(c->dest));
	bpf_ringbuf_submit(e, 0);
	return h;
}

/* ---- connections: sock:inet_sock_set_state ------------------------------ */

/* The program closed an established connection: one fewer open. */
static __always_inline void conn_closed(const struct bwt_conn *c)
{
	struct bwt_hist_key key = {
		.dest = c->dest,
		.op = BWT_OP_HANDSHAKE,
		.src = BWT_SRC_SOCK,
	};
	struct bwt_hist *h = bpf_map_lookup_elem(&hists, &key);
	if (h && h->open > 0)
		__sync_fetch_and_add(&h->open, -1);
}

/* The connection of sk, or NULL: a hash lookup, preallocated (socket
 * storage would make a miss cheaper, but measured slower on the connect
 * loop: two allocations per connection, freed through RCU). */
static __always_inline struct bwt_conn *conn_get(struct sock *sk)
{
	__u64 key = (__u64)sk;
	return bpf_map_lookup_elem(&conns, &key);
}

static __always_inline void on_state(struct sock *sk, int oldstate,
				     int newstate, bool btf)
{
	struct bwt_conn *c;

	if (newstate == BWT_TCP_SYN_SENT) {
		/* In connect(): the current task is the caller. */
		__u64 id = bpf_get_current_pid_tgid();
		__u32 tgid = id >> 32;
		struct bwt_addr d = {};
		if (!traced(tgid))
			return;
		/* tp_btf: direct loads; classic: a helper call each. */
		if (btf) {
			d.family = sk->__sk_common.skc_family;
			d.dport = bpf_ntohs(sk->__sk_common.skc_dport);
			if (d.family == BWT_AF_INET) {
				__u32 a = sk->__sk_common.skc_daddr;
				__builtin_memcpy(d.addr, &a, 4);
			} else {
				for (int i = 0; i < 4; i++) {
					__u32 a = sk->__sk_common.skc_v6_daddr
							  .in6_u.u6_addr32[i];
					__builtin_memcpy(d.addr + 4 * i, &a, 4);
				}
			}
		} else {
			d.family = BPF_CORE_READ(sk, __sk_common.skc_family);
			d.dport = bpf_ntohs(
				BPF_CORE_READ(sk, __sk_common.skc_dport));
			if (d.family == BWT_AF_INET) {
				__u32 a = BPF_CORE_READ(sk,
							__sk_common.skc_daddr);
				__builtin_memcpy(d.addr, &a, 4);
			} else {
				BPF_CORE_READ_INTO(
					&d.addr, sk,
					__sk_common.skc_v6_daddr.in6_u.u6_addr8);
			}
		}
		if (!dest_wanted(&d))
			return;
		struct bwt_conn v = {
			.dest = d,
			.pid = tgid,
			.phase = BWT_PH_CONNECTING,
		};
		__u64 key = (__u64)sk;
		bpf_get_current_comm(v.comm, sizeof(v.comm));
		v.t0_ns = bpf_ktime_get_ns();
		bpf_map_update_elem(&conns, &key, &v, BPF_ANY);
		return;
	}
	if (oldstate != BWT_TCP_SYN_SENT && newstate != BWT_TCP_CLOSE &&
	    newstate != BWT_TCP_FIN_WAIT1 && newstate != BWT_TCP_LAST_ACK)
		return;
	c = conn_get(sk);
	if (!c)
		return;
	/* The program closed it (FIN_WAIT1, LAST_ACK) or it ended: no
	 * longer open as a bulkhead counts, though the kernel may keep the
	 * socket a little longer. */
	if (c->open &&
	    (newstate == BWT_TCP_FIN_WAIT1 || newstate == BWT_TCP_LAST_ACK ||
	     newstate == BWT_TCP_CLOSE)) {
		c->open = 0;
		conn_closed(c);
	}
	if (oldstate == BWT_TCP_SYN_SENT && c->phase == BWT_PH_CONNECTING) {
		int err = 0;
		if (newstate != BWT_TCP_ESTABLISHED) {
			err = btf ? sk->sk_err : BPF_CORE_READ(sk, sk_err);
			/* Closed before established with no error: the
			 * program gave up waiting (its own timeout). */
			if (!err)
				err = BWT_ETIMEDOUT;
		}
		struct bwt_hist *h = record(c, BWT_OP_HANDSHAKE, false,
					    bpf_ktime_get_ns() - c->t0_ns, err);
		c->phase = BWT_PH_IDLE;
		if (h && !err) {
			/* Open from now until the program closes it. */
			__s64 open = __sync_fetch_and_add(&h->open, 1) + 1;
			if (open > (__s64)h->peak)
				h->peak = open;
			c->open = 1;
		}
	}
	if (newstate == BWT_TCP_CLOSE && c->phase == BWT_PH_SENT) {
		/* Reset while waiting for the answer: the receive that
		 * follows finds the connection gone, so the exchange fails
		 * here.  Closed without an error, the program gave up on it
		 * (or wanted no answer): not counted. */
		int err = btf ? sk->sk_err : BPF_CORE_READ(sk, sk_err);
		if (err)
			record(c, BWT_OP_EXCHANGE, false,
			       bpf_ktime_get_ns() - c->t0_ns, err);
	}
	if (newstate == BWT_TCP_CLOSE) {
		__u64 key = (__u64)sk;
		bpf_map_delete_elem(&conns, &key);
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(bwt_state_btf, struct sock *sk, int oldstate, int newstate)
{
	on_state((struct sock *)sk, oldstate, newstate, true);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int bwt_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	on_state((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate,
		 false);
	return 0;
}

/* ---- exchanges: sock:sock_send_length, sock:sock_recv_length ------------ */

/* A send on a tracked connection starts an exchange unless one is
 * running; a failed send ends one as failed. */
static __always_inline void on_send(struct sock *sk, int ret)
{
	struct bwt_conn *c = conn_get(sk);

	if (!c)
		return;
	if (ret >= 0) {
		if (c->phase != BWT_PH_SENT) {
			c->t0_ns = bpf_ktime_get_ns();
			c->phase = BWT_PH_SENT;
		}
		return;
	}
	if (ret == -BWT_EAGAIN || ret == -BWT_EINTR || ret == -BWT_ERESTARTSYS)
		return;
	record(c, BWT_OP_EXCHANGE, true,
	       c->phase == BWT_PH_SENT ? bpf_ktime_get_ns() - c->t0_ns : 0,
	       -ret);
	c->phase = BWT_PH_IDLE;
}

/* A receive on a connection waiting for its answer ends the exchange:
 * data, EOF (a failed exchange) or an error. */
static __always_inline void on_recv(struct sock *sk, int ret, int flags)
{
	struct bwt_conn *c;

	if (flags & BWT_MSG_PEEK)
		return;
	if (ret == -BWT_EAGAIN || ret == -BWT_EINTR || ret == -BWT_ERESTARTSYS)
		return;
	c = conn_get(sk);
	if (!c || c->phase != BWT_PH_SENT)
		return;
	c->phase = BWT_PH_IDLE;
	record(c, BWT_OP_EXCHANGE, true, bpf_ktime_get_ns() - c->t0_ns,
	       ret > 0	  ? 0
	       : ret == 0 ? BWT_ECONNRESET
			  : -ret);
}

/* tp_btf: sk is a trusted pointer, read directly (no helper call); a
 * TCP socket that is not ours costs one hash lookup, another socket
 * nothing more than the tracepoint itself. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(bwt_send_btf, struct sock *sk, int ret, int flags)
{
	if (sk && sk->sk_protocol == IPPROTO_TCP)
		on_send(sk, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(bwt_recv_btf, struct sock *sk, int ret, int flags)
{
	if (sk && sk->sk_protocol == IPPROTO_TCP)
		on_recv(sk, ret, flags);
	return 0;
}

SEC("tracepoint/sock/sock_send_length")
int bwt_send_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	if (ctx->protocol == IPPROTO_TCP)
		on_send((struct sock *)ctx->sk, ctx->ret);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int bwt_recv_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	if (ctx->protocol == IPPROTO_TCP)
		on_recv((struct sock *)ctx->sk, ctx->ret, ctx->flags);
	return 0;
}

/* ---- -- CMD: follow the children ---------------------------------------- */

SEC("raw_tp/sched_process_fork")
int BPF_PROG(bwt_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;

	if (ptgid != ctgid && bpf_map_lookup_elem(&tgids, &ptgid))
		bpf_map_update_elem(&tgids, &ctgid, &one, BPF_ANY);
	return 0;
}

/* ---- USDT probes of the shim (shim/usdt.h): rare events only ------------ */

/* Breaker transitions, rejections, retries: each one an event. */
static __always_inline int shim_event(__u32 op, const char *label,
				      const char *what, int arg, int err,
				      __u64 arg_ns)
{
	struct bwt_event *e;

	if (!traced(bpf_get_current_pid_tgid() >> 32))
		return 0;
	e = event_new(op, BWT_SRC_SHIM);
	if (!e)
		return 0;
	bpf_probe_read_user_str(e->dest.label, sizeof(e->dest.label), label);
	if (what)
		bpf_probe_read_user_str(e->what, sizeof(e->what), what);
	else
		__builtin_memcpy(e->what, "retry", 6);
	e->arg = arg;
	e->err = err;
	e->arg_ns = arg_ns;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("usdt")
int BPF_USDT(bwt_usdt_breaker, const char *label, const char *what)
{
	return shim_event(BWT_OP_BREAKER, label, what, 0, 0, 0);
}

SEC("usdt")
int BPF_USDT(bwt_usdt_reject, const char *label, const char *what, int err)
{
	return shim_event(BWT_OP_REJECT, label, what, 0, err, 0);
}

SEC("usdt")
int BPF_USDT(bwt_usdt_retry, const char *label, int attempt, int err,
	     __u64 delay_ns)
{
	return shim_event(BWT_OP_RETRY, label, NULL, attempt, err, delay_ns);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
