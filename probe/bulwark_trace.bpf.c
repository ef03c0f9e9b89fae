// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * probe/bulwark_trace.bpf.c: the kernel side of `bulwark trace` (SPEC §8).
 * Measures connects and request/response exchanges per destination and
 * aggregates them into log2 histograms in a map; only calls slower than
 * targ_min_ns, and the shim's rare events, go through the ring buffer.
 *
 * Hooks (the loader picks them at run time, see bulwark_trace.c):
 *   - USDT probes of the shim (libbulwark.so): its logical calls, breaker
 *     transitions, rejections, retries.  A process seen there is marked
 *     "shimmed" and its syscalls are no longer measured (no double count).
 *   - syscall tracepoints: connect, and send/recv on the sockets this
 *     program saw connect, for processes without the shim (static too).
 *   - sock:inet_sock_set_state (tp_btf, else the classic tracepoint): TCP
 *     handshake time, SYN_SENT -> ESTABLISHED.
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
#define BWT_EINPROGRESS 115
#define BWT_ERESTARTSYS 512
#define BWT_TCP_ESTABLISHED 1
#define BWT_TCP_SYN_SENT 2
#define BWT_TCP_CLOSE 7

const volatile __u32 targ_tgid = 0;	  /* -p PID: only this process */
const volatile bool targ_follow = false;  /* -- CMD: tgids map, + forks */
const volatile __u64 targ_min_ns = 0;	  /* --slow */
const volatile __u16 targ_family = 0;	  /* --dest: 0 any address */
const volatile __u16 targ_dport = 0;	  /* --dest: 0 any port */
const volatile __u8 targ_daddr[16] = {};

enum bwt_phase { BWT_PH_IDLE = 0, BWT_PH_SENT = 1, BWT_PH_CONNECTING = 2 };

struct bwt_sock_key {
	__u32 tgid;
	__u32 fd;
};

struct bwt_sock {
	struct bwt_dest dest;
	__u64 t0_ns;
	__u32 phase;
};

struct bwt_connect {
	struct bwt_dest dest;
	__u64 t0_ns;
	__u32 fd;
};

struct bwt_syn {
	__u64 t0_ns;
	__u32 pid;
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
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} shimmed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tid */
	__type(value, struct bwt_connect);
} connects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct bwt_sock_key);
	__type(value, struct bwt_sock);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tid */
	__type(value, __u32); /* fd */
} reads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); /* struct sock * */
	__type(value, struct bwt_syn);
} syns SEC(".maps");

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

/* Scratch: keys and values too big for the 512-byte stack together. */
struct bwt_scratch {
	struct bwt_hist_key key;
	struct bwt_sock sock;
	struct bwt_connect conn;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bwt_scratch);
} scratch SEC(".maps");

static const struct bwt_hist zero_hist;

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline struct bwt_scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
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

/* ... and whether its syscalls are measured: not when the shim's own
 * probes already report its calls. */
static __always_inline bool traced_sys(__u32 tgid)
{
	return traced(tgid) && !bpf_map_lookup_elem(&shimmed, &tgid);
}

static __always_inline bool dest_wanted(const struct bwt_dest *d)
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

static __always_inline void hist_add(struct bwt_hist_key *key, __u64 delta_ns,
				     bool failed)
{
	struct bwt_hist *h = bpf_map_lookup_elem(&hists, key);
	if (!h) {
		if (bpf_map_update_elem(&hists, key, &zero_hist, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&hists, key)) {
			count(BWT_CNT_MAPFULL);
			return;
		}
		h = bpf_map_lookup_elem(&hists, key);
		if (!h)
			return;
	}
	__u32 slot = log2_slot(delta_ns / 1000);
	if (slot < BWT_HIST_SLOTS)
		__sync_fetch_and_add(&h->slots[slot], 1);
	if (failed)
		__sync_fetch_and_add(&h->failed, 1);
	__sync_fetch_and_add(&h->sum_ns, delta_ns);
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

/* One finished call: into its histogram, and out as an event if slow. */
static __always_inline void record(struct bwt_hist_key *key, __u64 delta_ns,
				   int err)
{
	hist_add(key, delta_ns, err != 0);
	if (delta_ns < targ_min_ns)
		return;
	struct bwt_event *e = event_new(key->op, key->src);
	if (!e)
		return;
	e->delta_ns = delta_ns;
	e->err = err;
	__builtin_memcpy(&e->dest, &key->dest, sizeof(e->dest));
	bpf_ringbuf_submit(e, 0);
}

/* ---- syscall tracepoints ---------------------------------------------- */

SEC("tracepoint/syscalls/sys_enter_connect")
int bwt_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id, tgid = id >> 32;
	const void *uaddr = (const void *)ctx->args[1];
	struct bwt_scratch *s;
	__u16 family = 0;

	if (!traced_sys(tgid) || !uaddr)
		return 0;
	if (bpf_probe_read_user(&family, sizeof(family), uaddr))
		return 0;
	if (family != BWT_AF_INET && family != BWT_AF_INET6)
		return 0;
	s = get_scratch();
	if (!s)
		return 0;
	__builtin_memset(&s->conn, 0, sizeof(s->conn));
	s->conn.dest.family = family;
	if (family == BWT_AF_INET) {
		struct sockaddr_in sin = {};
		bpf_probe_read_user(&sin, sizeof(sin), uaddr);
		s->conn.dest.dport = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(s->conn.dest.addr, &sin.sin_addr, 4);
	} else {
		struct sockaddr_in6 sin6 = {};
		bpf_probe_read_user(&sin6, sizeof(sin6), uaddr);
		s->conn.dest.dport = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(s->conn.dest.addr, &sin6.sin6_addr, 16);
	}
	if (!dest_wanted(&s->conn.dest))
		return 0;
	s->conn.fd = ctx->args[0];
	s->conn.t0_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&connects, &tid, &s->conn, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int bwt_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id;
	long ret = ctx->ret;
	struct bwt_connect *c = bpf_map_lookup_elem(&connects, &tid);
	struct bwt_scratch *s;

	if (!c)
		return 0;
	s = get_scratch();
	if (!s)
		goto out;
	if (ret == 0 || ret == -BWT_EINPROGRESS) {
		struct bwt_sock_key sk = { .tgid = id >> 32, .fd = c->fd };
		__builtin_memcpy(&s->sock.dest, &c->dest, sizeof(c->dest));
		s->sock.t0_ns = c->t0_ns;
		s->sock.phase = ret ? BWT_PH_CONNECTING : BWT_PH_IDLE;
		bpf_map_update_elem(&socks, &sk, &s->sock, BPF_ANY);
	}
	/* A non-blocking connect's wait happens in poll: its time is the
	 * handshake's (sock:inet_sock_set_state). */
	if (ret == -BWT_EINPROGRESS || ret == -BWT_EINTR ||
	    ret == -BWT_ERESTARTSYS)
		goto out;
	__builtin_memset(&s->key, 0, sizeof(s->key));
	__builtin_memcpy(&s->key.dest, &c->dest, sizeof(c->dest));
	s->key.op = BWT_OP_CONNECT;
	s->key.src = BWT_SRC_SYSCALL;
	record(&s->key, bpf_ktime_get_ns() - c->t0_ns, ret < 0 ? -ret : 0);
out:
	bpf_map_delete_elem(&connects, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int bwt_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct bwt_sock_key sk = { .tgid = tgid, .fd = ctx->args[0] };

	if (traced_sys(tgid))
		bpf_map_delete_elem(&socks, &sk);
	return 0;
}

/* A send on a tracked socket starts an exchange unless one is running. */
static __always_inline int on_send(__u32 fd)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct bwt_sock_key sk = { .tgid = tgid, .fd = fd };
	struct bwt_sock *s;

	if (!traced_sys(tgid))
		return 0;
	s = bpf_map_lookup_elem(&socks, &sk);
	if (s && s->phase != BWT_PH_SENT) {
		s->t0_ns = bpf_ktime_get_ns();
		s->phase = BWT_PH_SENT;
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int bwt_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return on_send(ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int bwt_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return on_send(ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int bwt_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return on_send(ctx->args[0]);
}

/* A receive on a socket waiting for its answer: remember the fd for the
 * exit. */
static __always_inline int on_recv_enter(__u32 fd)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id, tgid = id >> 32;
	struct bwt_sock_key sk = { .tgid = tgid, .fd = fd };
	struct bwt_sock *s;

	if (!traced_sys(tgid))
		return 0;
	s = bpf_map_lookup_elem(&socks, &sk);
	if (s && s->phase == BWT_PH_SENT)
		bpf_map_update_elem(&reads, &tid, &fd, BPF_ANY);
	return 0;
}

static __always_inline int on_recv_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id;
	__u32 *fd = bpf_map_lookup_elem(&reads, &tid);
	struct bwt_scratch *scr;
	struct bwt_sock *s;

	if (!fd)
		return 0;
	struct bwt_sock_key sk = { .tgid = id >> 32, .fd = *fd };
	bpf_map_delete_elem(&reads, &tid);
	if (ret == -BWT_EAGAIN || ret == -BWT_EINTR || ret == -BWT_ERESTARTSYS)
		return 0;
	s = bpf_map_lookup_elem(&socks, &sk);
	scr = get_scratch();
	if (!s || !scr || s->phase != BWT_PH_SENT)
		return 0;
	s->phase = BWT_PH_IDLE;
	__builtin_memset(&scr->key, 0, sizeof(scr->key));
	__builtin_memcpy(&scr->key.dest, &s->dest, sizeof(s->dest));
	scr->key.op = BWT_OP_EXCHANGE;
	scr->key.src = BWT_SRC_SYSCALL;
	/* EOF before any answer is a failed exchange too. */
	record(&scr->key, bpf_ktime_get_ns() - s->t0_ns,
	       ret > 0 ? 0 : ret == 0 ? 104 /* ECONNRESET-like */ : -ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int bwt_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return on_recv_enter(ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int bwt_enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	return on_recv_enter(ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int bwt_enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	return on_recv_enter(ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_exit_read")
int bwt_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return on_recv_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int bwt_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return on_recv_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int bwt_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return on_recv_exit(ctx->ret);
}

/* ---- TCP handshake: sock:inet_sock_set_state ---------------------------- */

static __always_inline void on_state(struct sock *sk, int oldstate,
				     int newstate)
{
	__u64 key = (__u64)sk;
	struct bwt_scratch *scr;
	struct bwt_syn *syn;

	if (newstate == BWT_TCP_SYN_SENT) {
		/* In connect(): the current task is the caller. */
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		struct bwt_syn v = { .t0_ns = bpf_ktime_get_ns(), .pid = tgid };
		if (!traced(tgid))
			return;
		bpf_get_current_comm(v.comm, sizeof(v.comm));
		bpf_map_update_elem(&syns, &key, &v, BPF_ANY);
		return;
	}
	if (oldstate != BWT_TCP_SYN_SENT)
		return;
	syn = bpf_map_lookup_elem(&syns, &key);
	if (!syn)
		return;
	scr = get_scratch();
	if (!scr)
		goto out;
	__builtin_memset(&scr->key, 0, sizeof(scr->key));
	struct bwt_dest *d = &scr->key.dest;
	d->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	d->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (d->family == BWT_AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(d->addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO(&d->addr, sk,
				   __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	if (!dest_wanted(d))
		goto out;
	scr->key.op = BWT_OP_HANDSHAKE;
	scr->key.src = BWT_SRC_SOCK;
	__u64 delta_ns = bpf_ktime_get_ns() - syn->t0_ns;
	int err = newstate == BWT_TCP_ESTABLISHED ? 0 : BPF_CORE_READ(sk, sk_err);
	if (newstate != BWT_TCP_ESTABLISHED && !err)
		err = 111; /* ECONNREFUSED: closed before established */
	hist_add(&scr->key, delta_ns, err != 0);
	if (delta_ns >= targ_min_ns) {
		struct bwt_event *e = event_new(BWT_OP_HANDSHAKE, BWT_SRC_SOCK);
		if (e) {
			/* Finished in softirq: the caller is the SYN's. */
			e->pid = syn->pid;
			__builtin_memcpy(e->comm, syn->comm, sizeof(e->comm));
			e->delta_ns = delta_ns;
			e->err = err;
			__builtin_memcpy(&e->dest, d, sizeof(*d));
			bpf_ringbuf_submit(e, 0);
		}
	}
out:
	bpf_map_delete_elem(&syns, &key);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(bwt_state_btf, struct sock *sk, int oldstate, int newstate)
{
	on_state(sk, oldstate, newstate);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int bwt_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	on_state((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate);
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

/* ---- USDT probes of the shim (shim/usdt.h) ------------------------------ */

static __always_inline bool shim_traced(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;

	if (!traced(tgid))
		return false;
	bpf_map_update_elem(&shimmed, &tgid, &one, BPF_ANY);
	return true;
}

static __always_inline int shim_call(__u32 op, const char *label,
				     __u64 latency_ns, int failed)
{
	struct bwt_scratch *scr;

	if (!shim_traced())
		return 0;
	scr = get_scratch();
	if (!scr)
		return 0;
	__builtin_memset(&scr->key, 0, sizeof(scr->key));
	bpf_probe_read_user_str(scr->key.dest.label,
				sizeof(scr->key.dest.label), label);
	scr->key.op = op;
	scr->key.src = BWT_SRC_SHIM;
	record(&scr->key, latency_ns, failed ? -1 : 0);
	return 0;
}

SEC("usdt")
int BPF_USDT(bwt_usdt_init)
{
	shim_traced();
	return 0;
}

SEC("usdt")
int BPF_USDT(bwt_usdt_connect, const char *label, __u64 latency_ns,
	     int failed)
{
	return shim_call(BWT_OP_CONNECT, label, latency_ns, failed);
}

SEC("usdt")
int BPF_USDT(bwt_usdt_exchange, const char *label, __u64 latency_ns,
	     int failed)
{
	return shim_call(BWT_OP_EXCHANGE, label, latency_ns, failed);
}

/* Breaker transitions, rejections, retries: rare, each one an event. */
static __always_inline int shim_event(__u32 op, const char *label,
				      const char *what, int arg, int err,
				      __u64 arg_ns)
{
	struct bwt_event *e;

	if (!shim_traced())
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
