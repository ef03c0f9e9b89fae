/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * probe/bulwark_trace.h: what the kernel side (bulwark_trace.bpf.c) and
 * the loader (bulwark_trace.c) share.  Every name carries a bwt_/BWT_
 * prefix: vmlinux.h defines many.
 */
#ifndef BULWARK_TRACE_H
#define BULWARK_TRACE_H

#define BWT_COMM_LEN 16
#define BWT_LABEL_LEN 64
#define BWT_HIST_SLOTS 27 /* log2 buckets of microseconds: up to ~67 s */
#define BWT_MAX_DESTS 16384

enum bwt_op {
	BWT_OP_CONNECT = 0,   /* unused: a connect is its handshake */
	BWT_OP_EXCHANGE = 1,  /* first send after idle -> first data back */
	BWT_OP_HANDSHAKE = 2, /* TCP SYN_SENT -> ESTABLISHED or CLOSE: the
			       * connect's latency, blocking or not */
	BWT_OP_BREAKER = 3,   /* shim: breaker transition (USDT) */
	BWT_OP_REJECT = 4,    /* shim: breaker or bulkhead refusal (USDT) */
	BWT_OP_RETRY = 5,     /* shim: connect retry (USDT) */
	BWT_OP_MAX = 6,
};

/* Where a measurement comes from. */
enum bwt_src {
	BWT_SRC_SYSCALL = 0, /* unused: no syscall tracepoint any more */
	BWT_SRC_SHIM = 1,    /* the shim's USDT probes: rare events */
	BWT_SRC_SOCK = 2,    /* socket-layer tracepoints: every call */
};

/* A destination as the kernel sees it: small, a cheap hash key. */
struct bwt_addr {
	unsigned short family; /* AF_INET, AF_INET6 */
	unsigned short dport;  /* host order */
	unsigned char addr[16];
};

/* A destination in an event: an address and port (the same first fields
 * as struct bwt_addr), or the shim's label. */
struct bwt_dest {
	unsigned short family; /* AF_INET, AF_INET6, 0: label only */
	unsigned short dport;  /* host order */
	unsigned char addr[16];
	char label[BWT_LABEL_LEN]; /* shim's destination label, or "" */
};

struct bwt_hist_key {
	struct bwt_addr dest;
	unsigned int op;  /* enum bwt_op */
	unsigned int src; /* enum bwt_src */
};

/* Per destination and op, over the whole trace: the kernel never clears
 * it (the loader prints the difference from its last look).  Beside the
 * log2 histogram, what --suggest needs and a histogram cannot give: the
 * slowest call and the failure pattern (runs of failures, and whether a
 * success ended them). */
struct bwt_hist {
	unsigned long long slots[BWT_HIST_SLOTS];
	unsigned long long failed;
	unsigned long long sum_ns;
	unsigned long long max_ns;    /* slowest call */
	unsigned long long run;	      /* failures in a row, now */
	unsigned long long run_t0_ns; /* when the run began */
	unsigned long long max_run;   /* longest run of failures */
	unsigned long long recovered; /* runs a success ended */
	unsigned long long max_recovered_run;
	unsigned long long max_recover_ns; /* first failure -> success */
	/* Handshakes only: connections established and not yet closed by
	 * the program, now and at most. */
	long long open;
	unsigned long long peak;
};

struct bwt_event {
	unsigned long long ts_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	unsigned long long delta_ns;
	unsigned long long arg_ns; /* retry: delay before the next attempt */
	unsigned int pid;
	unsigned int op;  /* enum bwt_op */
	unsigned int src; /* enum bwt_src */
	int err;	  /* 0 ok, else a positive errno, -1 failed (shim) */
	int arg;	  /* retry: attempt number; breaker: 1 open... */
	char comm[BWT_COMM_LEN];
	char what[24]; /* breaker_open, reject_open, reject_bulkhead... */
	struct bwt_dest dest;
};

/* Indexes of the counters array map. */
enum bwt_counter {
	BWT_CNT_DROPPED = 0, /* ring buffer full: slow-call events lost */
	BWT_CNT_MAPFULL = 1, /* histogram or state map full */
	BWT_CNT_MAX = 2,
};

#endif
