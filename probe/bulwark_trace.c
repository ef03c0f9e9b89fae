// SPDX-License-Identifier: MIT
/*
 * probe/bulwark_trace.c: the loader of `bulwark trace` (man/bulwark.1),
 * the program build/bulwark-trace that `bulwark trace ARGS` execs.  Loads
 * bulwark_trace.bpf.c, picks its hooks by run-time feature probes (tp_btf
 * or classic socket tracepoints, USDT in the shim for its rare events),
 * prints slow calls as they come and log2 histograms every interval, and
 * with --suggest, at the end, a policy derived from what it saw (suggest
 * below).  Links are fd-based and nothing is pinned: whatever way this
 * process ends, the kernel detaches every program.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "bulwark_trace.h"
#include "bulwark_trace.skel.h"

#define MAX_SHIM_PATHS 4

static struct env {
	pid_t pid;
	unsigned long long min_ns;
	unsigned long long interval_ns;
	unsigned long long duration_ns;
	bool json;
	bool suggest;
	const char *suggest_file; /* --suggest=FILE, else standard output */
	bool verbose;
	char **cmd;
	const char *shim;
	bool has_dest;
	int dest_family;
	unsigned char dest_addr[16];
	unsigned dest_port;
	char dest_text[128]; /* the address as given, for shim labels */
} env = {
	.min_ns = 10ull * 1000 * 1000,
};

static volatile sig_atomic_t exiting;
static FILE *suggest_out; /* --suggest's policy, when not stdout itself */

static unsigned long long mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}
static const char *const op_names[BWT_OP_MAX] = {
	"connect", "exchange", "handshake", "breaker", "reject", "retry",
};
static const char *const src_names[] = { "syscall", "shim", "sock" };

static const char usage[] =
	"Usage: bulwark trace [-p PID | -- CMD [ARGS...]] [--slow DURATION]\n"
	"                     [--interval DURATION] [-d DURATION] [--json]\n"
	"                     [--dest ADDR[:PORT]] [--suggest[=FILE]]\n"
	"\n"
	"  -p, --pid PID           trace one process (default: every process)\n"
	"  -- CMD [ARGS...]        start CMD, trace it and its children, stop\n"
	"                          when it exits\n"
	"  -s, --slow DURATION     print calls slower than this (default 10ms;\n"
	"                          units ns us ms s m h, bare: ms)\n"
	"  -i, --interval DURATION print the histograms every DURATION, e.g. 5s,\n"
	"                          500ms (bare number: seconds; default: only\n"
	"                          at exit)\n"
	"  -d, --duration DURATION stop after DURATION (bare number: seconds)\n"
	"      --suggest[=FILE]    at the end, print a policy for the\n"
	"                          destinations seen, each value with the\n"
	"                          observation behind it, to FILE or standard\n"
	"                          output (the trace's own report then goes to\n"
	"                          standard error, unless --json)\n"
	"      --dest ADDR[:PORT]  only this destination ([v6]:port, :port)\n"
	"      --shim PATH         libbulwark.so whose USDT probes to attach\n"
	"                          (default: beside this program, LD_PRELOAD,\n"
	"                          and the shim mapped by -p PID)\n"
	"  -j, --json              one JSON object per line\n"
	"  -v, --verbose           libbpf's messages\n"
	"  -h, --help              this help\n"
	"\n"
	"Needs root (CAP_BPF and CAP_PERFMON), kernel BTF and tracefs.\n"
	"\n"
	"Exit status: 0 done, 1 cannot trace (privileges, BTF, tracefs or a\n"
	"program that would not load), 2 bad usage.\n";

static void die_usage(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "bulwark trace: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s", usage);
	exit(2);
}

/* A duration with a unit (ns us ms s m h); a bare number is bare_mul ns. */
static int parse_duration_ns(const char *s, unsigned long long *out,
			     double bare_mul)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0 || !isfinite(v) ||
	    isspace((unsigned char)*s))
		return -1;
	double mul = bare_mul;
	if (!*end)
		mul = bare_mul;
	else if (!strcmp(end, "ns"))
		mul = 1;
	else if (!strcmp(end, "us"))
		mul = 1e3;
	else if (!strcmp(end, "ms"))
		mul = 1e6;
	else if (!strcmp(end, "s"))
		mul = 1e9;
	else if (!strcmp(end, "m"))
		mul = 60e9;
	else if (!strcmp(end, "h"))
		mul = 3600e9;
	else
		return -1;
	if (v * mul > 1e19)
		return -1;
	*out = (unsigned long long)(v * mul);
	return 0;
}

static int parse_dest(const char *arg)
{
	char host[128];
	const char *port = NULL;

	if (strlen(arg) >= sizeof(host))
		return -1;
	if (arg[0] == '[') {
		const char *rb = strchr(arg, ']');
		if (!rb)
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(rb - arg - 1),
			 arg + 1);
		if (rb[1] == ':')
			port = rb + 2;
		else if (rb[1])
			return -1;
	} else {
		const char *c = strchr(arg, ':');
		if (c && strchr(c + 1, ':')) /* bare IPv6 */
			c = NULL;
		snprintf(host, sizeof(host), "%.*s",
			 c ? (int)(c - arg) : (int)strlen(arg), arg);
		if (c)
			port = c + 1;
	}
	if (port) {
		char *end;
		long p = strtol(port, &end, 10);
		if (*end || p <= 0 || p > 65535)
			return -1;
		env.dest_port = p;
	}
	snprintf(env.dest_text, sizeof(env.dest_text), "%s", host);
	if (host[0]) {
		if (inet_pton(AF_INET, host, env.dest_addr) == 1) {
			env.dest_family = AF_INET;
		} else if (inet_pton(AF_INET6, host, env.dest_addr) == 1) {
			env.dest_family = AF_INET6;
		} else {
			struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
			struct addrinfo *res;
			if (getaddrinfo(host, NULL, &hints, &res))
				return -1;
			env.dest_family = res->ai_family;
			if (res->ai_family == AF_INET)
				memcpy(env.dest_addr,
				       &((struct sockaddr_in *)res->ai_addr)
						->sin_addr,
				       4);
			else
				memcpy(env.dest_addr,
				       &((struct sockaddr_in6 *)res->ai_addr)
						->sin6_addr,
				       16);
			freeaddrinfo(res);
		}
	}
	env.has_dest = true;
	return 0;
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "slow", required_argument, NULL, 's' },
		{ "interval", required_argument, NULL, 'i' },
		{ "duration", required_argument, NULL, 'd' },
		{ "dest", required_argument, NULL, 'D' },
		{ "shim", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "suggest", optional_argument, NULL, 'G' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	char *end;

	while ((c = getopt_long(argc, argv, "+p:s:i:d:jvh", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'p':
			env.pid = strtol(optarg, &end, 10);
			if (*end || env.pid <= 0)
				die_usage("bad pid: %s", optarg);
			break;
		case 's':
			if (parse_duration_ns(optarg, &env.min_ns, 1e6))
				die_usage("bad duration: %s", optarg);
			break;
		case 'i':
			if (parse_duration_ns(optarg, &env.interval_ns, 1e9) ||
			    env.interval_ns < 1000000)
				die_usage("bad interval: %s (at least 1ms)",
					  optarg);
			break;
		case 'd':
			if (parse_duration_ns(optarg, &env.duration_ns, 1e9) ||
			    !env.duration_ns)
				die_usage("bad duration: %s", optarg);
			break;
		case 'G':
			env.suggest = true;
			if (optarg && !*optarg)
				die_usage("--suggest=: empty file name");
			env.suggest_file = optarg;
			break;
		case 'D':
			if (parse_dest(optarg))
				die_usage("bad destination: %s", optarg);
			break;
		case 'S':
			env.shim = optarg;
			break;
		case 'j':
			env.json = true;
			break;
		case 'v':
			env.verbose = true;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			die_usage("bad option");
		}
	}
	if (optind < argc)
		env.cmd = argv + optind;
	if (env.cmd && env.pid)
		die_usage("-p and -- CMD exclude each other");
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt,
			va_list args)
{
	if (level == LIBBPF_DEBUG && !env.verbose)
		return 0;
	if (!env.verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

/* ---- preconditions ------------------------------------------------------ */

static unsigned long long cap_eff(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long caps = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "CapEff:", 7))
			caps = strtoull(line + 7, NULL, 16);
	fclose(f);
	return caps;
}

static const char *tracefs_dir(void)
{
	static const char *const dirs[] = { "/sys/kernel/tracing",
					    "/sys/kernel/debug/tracing" };
	for (size_t i = 0; i < 2; i++) {
		char p[128];
		snprintf(p, sizeof(p), "%s/events", dirs[i]);
		if (access(p, F_OK) == 0)
			return dirs[i];
	}
	return NULL;
}

static int check_preconditions(void)
{
	unsigned long long caps = cap_eff();
	bool admin = caps & (1ull << 21); /* CAP_SYS_ADMIN */
	bool bpf = admin || (caps & (1ull << 39));
	bool perfmon = admin || (caps & (1ull << 38));

	if (!bpf || !perfmon) {
		fprintf(stderr,
			"bulwark trace: needs root, or CAP_BPF and CAP_PERFMON "
			"(missing:%s%s); try: sudo bulwark trace ...\n",
			bpf ? "" : " CAP_BPF", perfmon ? "" : " CAP_PERFMON");
		return -1;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(stderr,
			"bulwark trace: this kernel has no BTF "
			"(/sys/kernel/btf/vmlinux: %s); it needs "
			"CONFIG_DEBUG_INFO_BTF=y\n",
			strerror(errno));
		return -1;
	}
	if (!tracefs_dir()) {
		fprintf(stderr,
			"bulwark trace: tracefs is not mounted (no "
			"/sys/kernel/tracing/events); mount it with: mount -t "
			"tracefs nodev /sys/kernel/tracing\n");
		return -1;
	}
	return 0;
}

static bool tracepoint_exists(const char *cat, const char *name)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/events/%s/%s", tracefs_dir(), cat, name);
	return access(p, F_OK) == 0;
}

static bool btf_has_type(const char *name)
{
	struct btf *btf = btf__load_vmlinux_btf();
	bool ok;
	if (!btf)
		return false;
	ok = btf__find_by_name(btf, name) >= 0;
	btf__free(btf);
	return ok;
}

/* ---- finding the shim --------------------------------------------------- */

static char shim_paths[MAX_SHIM_PATHS][PATH_MAX];
static int n_shim_paths;

static void add_shim_path(const char *p)
{
	struct stat st, o;
	if (n_shim_paths >= MAX_SHIM_PATHS || stat(p, &st))
		return;
	for (int i = 0; i < n_shim_paths; i++)
		if (!stat(shim_paths[i], &o) && o.st_ino == st.st_ino &&
		    o.st_dev == st.st_dev)
			return;
	snprintf(shim_paths[n_shim_paths++], PATH_MAX, "%s", p);
}

/* The libbulwark.so that pid maps, into out; 0 or -1. */
static int mapped_shim(pid_t pid, char *out, size_t cap)
{
	char p[64], line[PATH_MAX + 128];
	FILE *f;
	int rc = -1;

	snprintf(p, sizeof(p), "/proc/%d/maps", (int)pid);
	f = fopen(p, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *path = strchr(line, '/');
		if (!path || !strstr(path, "libbulwark"))
			continue;
		path[strcspn(path, "\n")] = 0;
		if (strstr(path, " (deleted)"))
			continue;
		snprintf(out, cap, "/proc/%d/root%s", (int)pid, path);
		rc = 0;
		break;
	}
	fclose(f);
	return rc;
}

static void find_shims(void)
{
	char exe[PATH_MAX], p[PATH_MAX + 32];
	ssize_t n;

	if (env.shim)
		add_shim_path(env.shim);
	if (env.pid && !mapped_shim(env.pid, p, sizeof(p)))
		add_shim_path(p);
	const char *pre = getenv("LD_PRELOAD");
	if (pre) {
		char buf[4096];
		snprintf(buf, sizeof(buf), "%s", pre);
		for (char *save, *t = strtok_r(buf, ": ", &save); t;
		     t = strtok_r(NULL, ": ", &save))
			if (strstr(t, "libbulwark"))
				add_shim_path(t);
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(p, sizeof(p), "%s/libbulwark.so", exe);
			add_shim_path(p);
			snprintf(p, sizeof(p),
				 "%s/../lib/bulwark/libbulwark.so", exe);
			add_shim_path(p);
		}
	}
}

/* ---- what --suggest works from ----------------------------------------- */

/* The last look at each histogram (the kernel's run over the whole
 * trace: an interval prints the difference), and the shim's events per
 * destination label. */
struct acc {
	struct bwt_hist_key key;
	struct bwt_hist h;    /* at the last print */
	struct bwt_hist next; /* this print's, until acc_commit */
	bool seen;
};
static struct acc *accs;
static size_t n_accs, cap_accs;

/* An open-addressing index of accs by key: a system-wide trace may see
 * thousands of destinations, looked up every interval.  The kernel's map
 * holds at most BWT_MAX_DESTS keys; the index has 4 slots for each. */
#define ACC_SLOTS (4 * BWT_MAX_DESTS)
static int acc_slot[ACC_SLOTS]; /* index into accs + 1, 0: empty */

static size_t acc_hash(const struct bwt_hist_key *k)
{
	const unsigned char *p = (const unsigned char *)k;
	unsigned long long h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return (size_t)(h % ACC_SLOTS);
}

/* The acc of key k, or NULL; *slot: where it is or would go. */
static struct acc *acc_lookup(const struct bwt_hist_key *k, size_t *slot)
{
	size_t i = acc_hash(k);
	for (size_t n = 0; n < ACC_SLOTS; n++, i = (i + 1) % ACC_SLOTS) {
		if (!acc_slot[i]) {
			*slot = i;
			return NULL;
		}
		struct acc *a = &accs[acc_slot[i] - 1];
		if (!memcmp(&a->key, k, sizeof(*k))) {
			*slot = i;
			return a;
		}
	}
	*slot = ACC_SLOTS;
	return NULL;
}

/* Records h as key's newest look; returns the previous one, or NULL. */
static const struct bwt_hist *acc_update(const struct bwt_hist_key *k,
					 const struct bwt_hist *h)
{
	size_t slot;
	struct acc *a = acc_lookup(k, &slot);

	if (!a) {
		if (slot >= ACC_SLOTS || n_accs >= ACC_SLOTS / 2)
			return NULL;
		if (n_accs == cap_accs) {
			size_t cap = cap_accs ? 2 * cap_accs : 64;
			struct acc *n = realloc(accs, cap * sizeof(*accs));
			if (!n)
				return NULL;
			accs = n;
			cap_accs = cap;
		}
		a = &accs[n_accs++];
		memset(a, 0, sizeof(*a));
		a->key = *k;
		acc_slot[slot] = (int)n_accs;
	}
	a->next = *h;
	a->seen = true;
	return &a->h;
}

static void acc_commit(void)
{
	for (size_t i = 0; i < n_accs; i++)
		if (accs[i].seen)
			accs[i].h = accs[i].next;
}

static const struct bwt_hist *acc_find(const struct bwt_addr *d, unsigned op)
{
	struct bwt_hist_key k = { .dest = *d, .op = op, .src = BWT_SRC_SOCK };
	size_t slot;
	struct acc *a = acc_lookup(&k, &slot);
	return a && a->seen ? &a->h : NULL;
}

struct shimev {
	char label[BWT_LABEL_LEN];
	unsigned long long breaker_open, reject_open, reject_bulkhead, retry;
};
static struct shimev *shimevs;
static size_t n_shimevs;

static void shimev_add(const struct bwt_event *e)
{
	struct shimev *s = NULL;

	if (!env.suggest)
		return;
	for (size_t i = 0; i < n_shimevs; i++)
		if (!strncmp(shimevs[i].label, e->dest.label, BWT_LABEL_LEN))
			s = &shimevs[i];
	if (!s) {
		struct shimev *n =
			realloc(shimevs, (n_shimevs + 1) * sizeof(*shimevs));
		if (!n)
			return;
		shimevs = n;
		s = &shimevs[n_shimevs++];
		memset(s, 0, sizeof(*s));
		memcpy(s->label, e->dest.label, BWT_LABEL_LEN);
		s->label[BWT_LABEL_LEN - 1] = 0;
	}
	if (e->op == BWT_OP_RETRY)
		s->retry++;
	else if (!strcmp(e->what, "breaker_open"))
		s->breaker_open++;
	else if (!strcmp(e->what, "reject_open"))
		s->reject_open++;
	else if (!strcmp(e->what, "reject_bulkhead"))
		s->reject_bulkhead++;
}

/* ---- output ------------------------------------------------------------- */

static void dest_str(const struct bwt_dest *d, char *out, size_t cap);

/* An address and port as a policy rule matches it: 10.0.0.1:80, [::1]:80. */
static void addr_str(const struct bwt_addr *a, char *out, size_t cap)
{
	struct bwt_dest d = { .family = a->family, .dport = a->dport };
	memcpy(d.addr, a->addr, sizeof(d.addr));
	dest_str(&d, out, cap);
}

static void dest_str(const struct bwt_dest *d, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];

	if (d->label[0]) {
		snprintf(out, cap, "%s", d->label);
	} else if (d->family == AF_INET) {
		inet_ntop(AF_INET, d->addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, d->dport);
	} else if (d->family == AF_INET6) {
		inet_ntop(AF_INET6, d->addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, d->dport);
	} else {
		snprintf(out, cap, "?");
	}
}

/* --dest for the shim's labels, which the kernel side cannot compare. */
static bool label_wanted(const char *label)
{
	if (!env.has_dest || !label[0])
		return true;
	if (env.dest_port) {
		const char *c = strrchr(label, ':');
		if (!c || (unsigned)atoi(c + 1) != env.dest_port)
			return false;
	}
	if (env.dest_text[0]) {
		char a[INET6_ADDRSTRLEN] = "";
		inet_ntop(env.dest_family, env.dest_addr, a, sizeof(a));
		const char *l = label[0] == '[' ? label + 1 : label;
		size_t n1 = strlen(env.dest_text), n2 = strlen(a);
		if (strncmp(l, env.dest_text, n1) && (!n2 || strncmp(l, a, n2)))
			return false;
	}
	return true;
}

static void json_fstr(FILE *f, const char *s)
{
	putc('"', f);
	for (; *s; s++) {
		unsigned char ch = *s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			putc(ch, f);
	}
	putc('"', f);
}

static void json_str(const char *s)
{
	json_fstr(stdout, s);
}

static const char *result_str(int err, char *buf, size_t cap)
{
	if (err == 0)
		return "ok";
	if (err < 0)
		return "failed";
	const char *n = strerrorname_np(err);
	snprintf(buf, cap, "%s", n ? n : "error");
	return buf;
}

static unsigned long long mono_to_real_offset_ns(void)
{
	struct timespec m, r;
	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_REALTIME, &r);
	return (r.tv_sec - m.tv_sec) * 1000000000ull + r.tv_nsec - m.tv_nsec;
}

static int handle_event(void *ctx, void *data, size_t len)
{
	const struct bwt_event *e = data;
	char dest[BWT_LABEL_LEN + 64], tbuf[32], rbuf[32],
		comm[BWT_COMM_LEN + 1];
	unsigned long long real_ns = e->ts_ns + mono_to_real_offset_ns();
	time_t secs = real_ns / 1000000000ull;
	struct tm tm;

	(void)ctx;
	if (len < sizeof(*e) || e->op >= BWT_OP_MAX)
		return 0;
	if (!label_wanted(e->dest.label))
		return 0;
	if (e->op >= BWT_OP_BREAKER)
		shimev_add(e);
	localtime_r(&secs, &tm);
	strftime(tbuf, sizeof(tbuf), "%H:%M:%S", &tm);
	snprintf(comm, sizeof(comm), "%s", e->comm);
	dest_str(&e->dest, dest, sizeof(dest));
	const char *res = result_str(e->err, rbuf, sizeof(rbuf));
	bool shim_ev = e->op >= BWT_OP_BREAKER;

	if (env.json) {
		printf("{\"type\":\"%s\",\"time\":\"%s.%03llu\",\"ts_ns\":%llu,"
		       "\"pid\":%u,\"comm\":",
		       shim_ev ? "event" : "slow", tbuf,
		       real_ns / 1000000ull % 1000, e->ts_ns, e->pid);
		json_str(comm);
		printf(",\"op\":\"%s\",\"src\":\"%s\",\"dest\":",
		       op_names[e->op], src_names[e->src % 3]);
		json_str(dest);
		if (shim_ev) {
			printf(",\"event\":");
			json_str(e->what);
			if (e->op == BWT_OP_REJECT || e->op == BWT_OP_RETRY)
				printf(",\"errno\":\"%s\"", res);
			if (e->op == BWT_OP_RETRY)
				printf(",\"attempt\":%d,\"delay_us\":%llu",
				       e->arg, e->arg_ns / 1000);
		} else {
			printf(",\"latency_us\":%llu,\"latency_ns\":%llu,"
			       "\"result\":\"%s\"",
			       e->delta_ns / 1000, e->delta_ns, res);
		}
		printf("}\n");
	} else if (shim_ev) {
		char extra[96] = "";
		if (e->op == BWT_OP_REJECT)
			snprintf(extra, sizeof(extra), " errno=%s", res);
		else if (e->op == BWT_OP_RETRY)
			snprintf(extra, sizeof(extra),
				 " attempt=%d errno=%s delay=%.3fms", e->arg,
				 res, e->arg_ns / 1e6);
		printf("%s.%03llu %-7u %-15s %-9s %-28s %10s  %s%s\n", tbuf,
		       real_ns / 1000000ull % 1000, e->pid, comm,
		       op_names[e->op], dest, "-", e->what, extra);
	} else {
		printf("%s.%03llu %-7u %-15s %-9s %-28s %10.3f  %s\n", tbuf,
		       real_ns / 1000000ull % 1000, e->pid, comm,
		       op_names[e->op], dest, e->delta_ns / 1e6, res);
	}
	fflush(stdout);
	return 0;
}

static void print_stars(unsigned long long val, unsigned long long max,
			int width)
{
	int n = max ? (int)(val * width / max) : 0;
	bool more = val > max;
	if (n > width)
		n = width;
	for (int i = 0; i < n; i++)
		putchar('*');
	for (int i = n; i < width; i++)
		putchar(' ');
	if (more)
		putchar('+');
}

static void print_hist(const struct bwt_hist_key *k, const struct bwt_hist *h)
{
	char dest[BWT_LABEL_LEN + 64];
	unsigned long long total = 0, max = 0;
	int last = -1;

	for (int i = 0; i < BWT_HIST_SLOTS; i++) {
		total += h->slots[i];
		if (h->slots[i] > max)
			max = h->slots[i];
		if (h->slots[i])
			last = i;
	}
	if (!total || k->op >= BWT_OP_MAX)
		return;
	addr_str(&k->dest, dest, sizeof(dest));
	if (env.json) {
		printf("{\"type\":\"hist\",\"op\":\"%s\",\"src\":\"%s\","
		       "\"dest\":",
		       op_names[k->op], src_names[k->src % 3]);
		json_str(dest);
		printf(",\"count\":%llu,\"failed\":%llu,\"avg_us\":%llu,"
		       "\"buckets\":[",
		       total, h->failed, h->sum_ns / total / 1000);
		for (int i = 0; i <= last; i++)
			printf("%s{\"lo_us\":%llu,\"hi_us\":%llu,\"count\":%llu}",
			       i ? "," : "", i ? 1ull << i : 0ull,
			       (1ull << (i + 1)) - 1, h->slots[i]);
		printf("]}\n");
		return;
	}
	printf("\n%s %s (%s): count %llu, failed %llu, avg %.3f ms\n",
	       op_names[k->op], dest, src_names[k->src % 3], total, h->failed,
	       h->sum_ns / (double)total / 1e6);
	printf("%24s : count    distribution\n", "usecs");
	for (int i = 0; i <= last; i++) {
		unsigned long long lo = i ? 1ull << i : 0,
				   hi = (1ull << (i + 1)) - 1;
		printf("%10llu -> %-10llu : %-8llu |", lo, hi, h->slots[i]);
		print_stars(h->slots[i], max, 40);
		printf("|\n");
	}
}

/* Prints and clears every histogram, then the drop counters. */
static void print_hists(struct bulwark_trace_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.hists);
	int cfd = bpf_map__fd(skel->maps.counters);
	struct bwt_hist_key key, next, *prev = NULL;
	struct bwt_hist h;
	unsigned long long dropped = 0, mapfull = 0;
	unsigned i;
	char tbuf[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(tbuf, sizeof(tbuf), "%H:%M:%S", &tm);
	if (!env.json)
		printf("\n--- %s histograms ---\n", tbuf);
	/* The kernel's histograms run over the whole trace: each period
	 * prints what came since the last (biolatency's clear, without
	 * losing what --suggest needs). */
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		if (!bpf_map_lookup_elem(fd, &next, &h)) {
			struct bwt_hist d = h;
			const struct bwt_hist *last = acc_update(&next, &h);
			for (int k = 0; last && k < BWT_HIST_SLOTS; k++)
				d.slots[k] -= last->slots[k];
			if (last) {
				d.failed -= last->failed;
				d.sum_ns -= last->sum_ns;
			}
			print_hist(&next, &d);
		}
		key = next;
		prev = &key;
	}
	acc_commit();
	i = BWT_CNT_DROPPED;
	bpf_map_lookup_elem(cfd, &i, &dropped);
	i = BWT_CNT_MAPFULL;
	bpf_map_lookup_elem(cfd, &i, &mapfull);
	if (env.json)
		printf("{\"type\":\"stats\",\"dropped\":%llu,\"map_full\":%llu}\n",
		       dropped, mapfull);
	else if (dropped || mapfull)
		printf("\n%llu slow-call events dropped (ring buffer full), "
		       "%llu calls not counted (map full)\n",
		       dropped, mapfull);
	fflush(stdout);
}

/* ---- --suggest: a policy from what the trace saw ------------------------- */

struct setting {
	char key[24];
	char value[24];
	char why[320];
};

struct suggestion {
	char dest[BWT_LABEL_LEN + 64];
	struct setting set[8];
	int n_set;
	char notes[4][320];
	int n_notes;
	char summary[256];
};

static unsigned long long hist_total(const struct bwt_hist *h)
{
	unsigned long long t = 0;
	for (int i = 0; h && i < BWT_HIST_SLOTS; i++)
		t += h->slots[i];
	return t;
}

/* An upper bound of the q-quantile, ns: the top of the log2 bucket that
 * holds it, and never more than the slowest call seen. */
static unsigned long long quantile_ns(const struct bwt_hist *h, double q,
				      unsigned long long max_ns)
{
	unsigned long long total = hist_total(h), cum = 0, need;

	if (!total)
		return 0;
	need = (unsigned long long)ceil(q * (double)total);
	if (need < 1)
		need = 1;
	for (int i = 0; i < BWT_HIST_SLOTS; i++) {
		cum += h->slots[i];
		if (cum >= need) {
			unsigned long long ns = ((1ull << (i + 1)) - 1) * 1000;
			return max_ns && max_ns < ns ? max_ns : ns;
		}
	}
	return max_ns;
}

/* The smallest 1, 2 or 5 x 10^k microseconds at least ns. */
static unsigned long long nice_up_ns(double ns)
{
	static const int steps[] = { 1, 2, 5 };
	for (unsigned long long p = 1000; p < 1000000000000000ull; p *= 10)
		for (int i = 0; i < 3; i++)
			if ((double)(steps[i] * p) >= ns)
				return steps[i] * p;
	return 1000000000000000ull;
}

/* A duration in the policy grammar: 250ms, 2s, 500us. */
static void fmt_dur(unsigned long long ns, char *out, size_t cap)
{
	if (ns >= 1000000000ull && ns % 1000000000ull == 0)
		snprintf(out, cap, "%llus", ns / 1000000000ull);
	else if (ns >= 1000000ull && ns % 1000000ull == 0)
		snprintf(out, cap, "%llums", ns / 1000000ull);
	else
		snprintf(out, cap, "%lluus", (ns + 999) / 1000);
}

/* A measured duration for a comment: 0.052 ms, 50.3 ms, 1.20 s. */
static void fmt_ms(unsigned long long ns, char *out, size_t cap)
{
	if (ns >= 1000000000ull)
		snprintf(out, cap, "%.2f s", ns / 1e9);
	else if (ns >= 10000000ull)
		snprintf(out, cap, "%.1f ms", ns / 1e6);
	else
		snprintf(out, cap, "%.3f ms", ns / 1e6);
}

static struct setting *add_setting(struct suggestion *sg, const char *key)
{
	struct setting *st = &sg->set[sg->n_set++];
	memset(st, 0, sizeof(*st));
	snprintf(st->key, sizeof(st->key), "%s", key);
	return st;
}

#define SLOW_FLOOR_NS 10000000ull     /* breaker.slow: at least 10ms */
#define TIMEOUT_FLOOR_NS 100000000ull /* connect.timeout: at least 100ms */

static void suggest_one(const struct bwt_addr *d, struct suggestion *sg)
{
	const struct bwt_hist *hs = acc_find(d, BWT_OP_HANDSHAKE);
	const struct bwt_hist *hx = acc_find(d, BWT_OP_EXCHANGE);
	unsigned long long n_hs = hist_total(hs), f_hs = hs ? hs->failed : 0;
	unsigned long long n_x = hist_total(hx), f_x = hx ? hx->failed : 0;
	unsigned long long calls = n_hs + n_x, fails = f_hs + f_x;
	char a[32], b[32], c[32];
	struct setting *st;

	memset(sg, 0, sizeof(*sg));
	addr_str(d, sg->dest, sizeof(sg->dest));
	snprintf(sg->summary, sizeof(sg->summary),
		 "%llu connect%s (%llu failed), %llu exchange%s (%llu failed)",
		 n_hs, n_hs == 1 ? "" : "s", f_hs, n_x, n_x == 1 ? "" : "s",
		 f_x);

	/* breaker.slow: the exchange p99, x1.5, rounded up. */
	if (n_x > f_x) {
		unsigned long long p99 = quantile_ns(hx, 0.99, hx->max_ns);
		unsigned long long v = nice_up_ns(p99 * 1.5);
		bool floor = v < SLOW_FLOOR_NS;
		if (floor)
			v = SLOW_FLOOR_NS;
		st = add_setting(sg, "breaker.slow");
		fmt_dur(v, st->value, sizeof(st->value));
		fmt_ms(p99, a, sizeof(a));
		fmt_ms(hx->max_ns, b, sizeof(b));
		snprintf(
			st->why, sizeof(st->why),
			"exchange p99 <= %s over %llu exchange%s (slowest %s), "
			"x1.5 rounded up%s",
			a, n_x, n_x == 1 ? "" : "s", b,
			floor ? ", at least 10ms" : "");
	} else {
		snprintf(sg->notes[sg->n_notes++], sizeof(sg->notes[0]),
			 "no breaker.slow: no exchange answered");
	}

	/* connect.timeout: the handshake p99.9, x3, rounded up. */
	if (n_hs > f_hs) {
		unsigned long long p999 = quantile_ns(hs, 0.999, hs->max_ns);
		unsigned long long v = nice_up_ns(p999 * 3.0);
		bool floor = v < TIMEOUT_FLOOR_NS;
		if (floor)
			v = TIMEOUT_FLOOR_NS;
		st = add_setting(sg, "connect.timeout");
		fmt_dur(v, st->value, sizeof(st->value));
		fmt_ms(p999, a, sizeof(a));
		fmt_ms(hs->max_ns, b, sizeof(b));
		snprintf(st->why, sizeof(st->why),
			 "handshake p99.9 <= %s over %llu connect%s (slowest "
			 "%s), x3 rounded up%s",
			 a, n_hs, n_hs == 1 ? "" : "s", b,
			 floor ? ", at least 100ms" : "");
	} else if (n_hs) {
		snprintf(sg->notes[sg->n_notes++], sizeof(sg->notes[0]),
			 "no connect.timeout: no connect succeeded");
	}

	/* bulkhead.max: the peak of connections open at once, x1.5. */
	unsigned long long peak = hs ? hs->peak : 0;
	if (peak && n_hs > f_hs) {
		unsigned long long v = (peak * 3 + 1) / 2;
		if (v < peak + 2)
			v = peak + 2;
		st = add_setting(sg, "bulkhead.max");
		snprintf(st->value, sizeof(st->value), "%llu", v);
		snprintf(st->why, sizeof(st->why),
			 "at most %llu connection%s open at once (of %llu "
			 "connects), x1.5 and at least 2 more",
			 peak, peak == 1 ? "" : "s", n_hs);
	}

	/* breaker.failures / breaker.rate: the failure pattern. */
	static const struct bwt_hist none;
	const struct bwt_hist *ps = hs ? hs : &none, *px = hx ? hx : &none;
	unsigned long long rec = ps->recovered + px->recovered;
	unsigned long long rec_run = ps->max_recovered_run >
						     px->max_recovered_run
					     ? ps->max_recovered_run
					     : px->max_recovered_run;
	unsigned long long max_run = ps->max_run > px->max_run ? ps->max_run
							       : px->max_run;
	st = add_setting(sg, "breaker.failures");
	if (!fails) {
		snprintf(st->value, sizeof(st->value), "5");
		snprintf(st->why, sizeof(st->why),
			 "no failed call in %llu: the default", calls);
	} else if (rec) {
		unsigned long long v = rec_run + 2 < 3 ? 3 : rec_run + 2;
		bool cap = v > 20;
		snprintf(st->value, sizeof(st->value), "%llu", cap ? 20 : v);
		snprintf(
			st->why, sizeof(st->why),
			"%llu run%s of failures ended by a success, the "
			"longest %llu in a row: +2, so that such a run does not "
			"open the breaker%s",
			rec, rec == 1 ? "" : "s", rec_run,
			cap ? " (at most 20: an outage longer than that should)"
			    : "");
	} else {
		snprintf(st->value, sizeof(st->value), "3");
		snprintf(st->why, sizeof(st->why),
			 "%llu of %llu calls failed, up to %llu in a row, and "
			 "no success followed: open early",
			 fails, calls, max_run);
	}
	double pct = calls ? 100.0 * fails / calls : 0;
	int rate = (int)ceil(pct * 2 / 5) * 5;
	rate = rate < 10 ? 10 : rate > 95 ? 95 : rate;
	if (fails && fails < calls && calls >= 20 && rate <= pct) {
		snprintf(sg->notes[sg->n_notes++], sizeof(sg->notes[0]),
			 "no breaker.rate: %.1f%% of %llu calls failed, too "
			 "many for a rate threshold above it",
			 pct, calls);
	} else if (fails && fails < calls && calls >= 20) {
		int v = rate;
		st = add_setting(sg, "breaker.rate");
		snprintf(st->value, sizeof(st->value), "%d%%", v);
		snprintf(st->why, sizeof(st->why),
			 "%.1f%% of %llu calls failed: x2, at least 10%%, so "
			 "that only worse opens the breaker",
			 pct, calls);
	}

	/* retry.*: only where connect failures were transient. */
	if (ps->recovered) {
		unsigned long long rns = ps->max_recover_ns;
		unsigned long long v = nice_up_ns(rns / 3.0);
		if (v < 10000000ull)
			v = 10000000ull;
		if (v > 10000000000ull)
			v = 10000000000ull;
		st = add_setting(sg, "retry.attempts");
		snprintf(st->value, sizeof(st->value), "3");
		fmt_ms(rns, a, sizeof(a));
		snprintf(st->why, sizeof(st->why),
			 "connect failures were transient: %llu run%s ended by "
			 "a success, at most %llu in a row, over at most %s",
			 ps->recovered, ps->recovered == 1 ? "" : "s",
			 ps->max_recovered_run, a);
		st = add_setting(sg, "retry.backoff");
		fmt_dur(v, st->value, sizeof(st->value));
		fmt_dur(v, b, sizeof(b));
		fmt_dur(2 * v, c, sizeof(c));
		snprintf(st->why, sizeof(st->why),
			 "the two retries wait %s then %s (multiplier 2): 3x "
			 "%s in all, at least the %s the failures lasted",
			 b, c, b, a);
	} else if (f_hs) {
		snprintf(sg->notes[sg->n_notes++], sizeof(sg->notes[0]),
			 "no retry.*: %llu connects failed and no success "
			 "followed (retrying would only add load)",
			 f_hs);
	}
}

static void print_suggestion_json(FILE *f, const struct suggestion *sg,
				  const char *rule, const struct shimev *se)
{
	fprintf(f, "{\"type\":\"suggest\",\"dest\":");
	json_fstr(f, sg->dest);
	fprintf(f, ",\"rule\":");
	json_fstr(f, rule);
	fprintf(f, ",\"observed\":");
	json_fstr(f, sg->summary);
	fprintf(f, ",\"settings\":[");
	for (int i = 0; i < sg->n_set; i++) {
		fprintf(f, "%s{\"key\":", i ? "," : "");
		json_fstr(f, sg->set[i].key);
		fprintf(f, ",\"value\":");
		json_fstr(f, sg->set[i].value);
		fprintf(f, ",\"why\":");
		json_fstr(f, sg->set[i].why);
		fprintf(f, "}");
	}
	fprintf(f, "],\"notes\":[");
	for (int i = 0; i < sg->n_notes; i++) {
		fprintf(f, "%s", i ? "," : "");
		json_fstr(f, sg->notes[i]);
	}
	fprintf(f, "]");
	if (se)
		fprintf(f,
			",\"shim\":{\"breaker_open\":%llu,\"reject_open\":%llu,"
			"\"reject_bulkhead\":%llu,\"retry\":%llu}",
			se->breaker_open, se->reject_open, se->reject_bulkhead,
			se->retry);
	fprintf(f, "}\n");
	fflush(f);
}

static int cmp_sugg(const void *x, const void *y)
{
	return strcmp(((const struct suggestion *)x)->dest,
		      ((const struct suggestion *)y)->dest);
}

/* Prints the policy for every destination seen (the histograms at their
 * last look, print_hists having just run): as text to f (when not NULL),
 * as JSON lines to standard output with --json. */
static void suggest(FILE *f, double secs)
{
	struct suggestion *sg = NULL;
	size_t n = 0;

	for (size_t i = 0; i < n_accs; i++) {
		const struct bwt_addr *d = &accs[i].key.dest;
		/* Each destination once: from its handshakes, or from its
		 * exchanges when no handshake was seen. */
		if (!accs[i].seen || !d->family ||
		    (accs[i].key.op == BWT_OP_EXCHANGE &&
		     acc_find(d, BWT_OP_HANDSHAKE)) ||
		    (accs[i].key.op != BWT_OP_EXCHANGE &&
		     accs[i].key.op != BWT_OP_HANDSHAKE))
			continue;
		struct suggestion *m = realloc(sg, (n + 1) * sizeof(*sg));
		if (!m)
			break;
		sg = m;
		suggest_one(d, &sg[n++]);
	}
	if (n)
		qsort(sg, n, sizeof(*sg), cmp_sugg);
	if (f) {
		fprintf(f,
			"# bulwark trace --suggest: a policy for the %zu "
			"destination%s seen in %.1f s of tracing.\n"
			"# Each value follows from the observation in the "
			"comment above it; review them,\n"
			"# then use the file: bulwark check --policy-file FILE, "
			"BULWARK_POLICY_FILE=FILE,\n"
			"# or bulwark policy push --file FILE.  A destination "
			"no rule matches is only observed.\n",
			n, n == 1 ? "" : "s", secs);
		if (!n)
			fprintf(f, "# No TCP connection was seen: nothing to "
				   "suggest.\n");
	}
	for (size_t i = 0; i < n; i++) {
		char rule[1024];
		size_t len =
			(size_t)snprintf(rule, sizeof(rule), "%s", sg[i].dest);
		const struct shimev *se = NULL;
		for (size_t k = 0; k < n_shimevs; k++)
			if (!strcmp(shimevs[k].label, sg[i].dest))
				se = &shimevs[k];
		for (int k = 0; k < sg[i].n_set && len < sizeof(rule); k++)
			len += (size_t)snprintf(rule + len, sizeof(rule) - len,
						" %s=%s", sg[i].set[k].key,
						sg[i].set[k].value);
		if (env.json)
			print_suggestion_json(stdout, &sg[i], rule, se);
		if (!f)
			continue;
		fprintf(f, "\n# %s: %s\n", sg[i].dest, sg[i].summary);
		if (se)
			fprintf(f,
				"# the shim here: breaker opened %llu times, "
				"%llu connects refused by the open breaker, "
				"%llu by the bulkhead, %llu retries\n",
				se->breaker_open, se->reject_open,
				se->reject_bulkhead, se->retry);
		for (int k = 0; k < sg[i].n_set; k++)
			fprintf(f, "#   %s=%s: %s\n", sg[i].set[k].key,
				sg[i].set[k].value, sg[i].set[k].why);
		for (int k = 0; k < sg[i].n_notes; k++)
			fprintf(f, "#   %s\n", sg[i].notes[k]);
		fprintf(f, "%s\n", rule);
	}
	if (f)
		fflush(f);
	fflush(stdout);
	free(sg);
}

/* ---- attaching ---------------------------------------------------------- */

struct hooks {
	char usdt[512];
	char sock[128];
	char fork[64];
};

#define N_USDT 3
static struct bpf_link *extra[MAX_SHIM_PATHS * N_USDT];
static int n_extra;

static void append(char *buf, size_t cap, const char *s)
{
	size_t n = strlen(buf);
	snprintf(buf + n, cap - n, "%s%s", n ? " " : "", s);
}

static int attach_prog(struct bpf_program *prog, struct bpf_link **slot)
{
	struct bpf_link *l = bpf_program__attach(prog);
	if (!l)
		return -errno;
	*slot = l;
	return 0;
}

/* The socket tracepoints: each as tp_btf, else classic. */
static int attach_all(struct bulwark_trace_bpf *skel, struct hooks *hk,
		      bool use_btf)
{
	struct {
		struct bpf_program *btf, *tp;
		struct bpf_link **btf_link, **tp_link;
		const char *name;
	} socks[] = {
#define SOCK(p, n)                                             \
	{ skel->progs.bwt_##p##_btf, skel->progs.bwt_##p##_tp, \
	  &skel->links.bwt_##p##_btf, &skel->links.bwt_##p##_tp, n }
		SOCK(state, "inet_sock_set_state"),
		SOCK(send, "sock_send_length"),
		SOCK(recv, "sock_recv_length"),
#undef SOCK
	};
	static const char *const usdt_names[N_USDT] = { "breaker", "reject",
							"retry" };
	struct bpf_program *usdt_progs[N_USDT] = {
		skel->progs.bwt_usdt_breaker,
		skel->progs.bwt_usdt_reject,
		skel->progs.bwt_usdt_retry,
	};
	struct bpf_link **usdt_links[N_USDT] = {
		&skel->links.bwt_usdt_breaker,
		&skel->links.bwt_usdt_reject,
		&skel->links.bwt_usdt_retry,
	};
	int n_sock = 0;

	for (size_t i = 0; i < sizeof(socks) / sizeof(socks[0]); i++) {
		char one[64];
		if (use_btf && !attach_prog(socks[i].btf, socks[i].btf_link)) {
			snprintf(one, sizeof(one), "%s(tp_btf)", socks[i].name);
		} else if (tracepoint_exists("sock", socks[i].name) &&
			   !attach_prog(socks[i].tp, socks[i].tp_link)) {
			snprintf(one, sizeof(one), "%s", socks[i].name);
		} else {
			fprintf(stderr,
				"bulwark trace: cannot attach to the tracepoint "
				"sock:%s (%s; sock_send_length and "
				"sock_recv_length need Linux 6.3 or later)\n",
				socks[i].name,
				tracepoint_exists("sock", socks[i].name)
					? "attach failed"
					: "not in this kernel");
			continue;
		}
		append(hk->sock, sizeof(hk->sock), one);
		n_sock++;
	}

	if (env.cmd) {
		if (!attach_prog(skel->progs.bwt_fork, &skel->links.bwt_fork))
			snprintf(hk->fork, sizeof(hk->fork), "raw_tp");
		else
			snprintf(hk->fork, sizeof(hk->fork),
				 "none (children not followed)");
	}

	/* USDT: one link per probe per shim file.  The first file's links go
	 * in the skeleton; the others are kept here. */
	for (int s = 0; s < n_shim_paths; s++) {
		char one[512] = "";
		int ok = 0;
		for (size_t i = 0; i < N_USDT; i++) {
			struct bpf_link *l = bpf_program__attach_usdt(
				usdt_progs[i], env.pid ? env.pid : -1,
				shim_paths[s], "bulwark", usdt_names[i], NULL);
			if (!l)
				continue;
			if (!*usdt_links[i])
				*usdt_links[i] = l;
			else
				extra[n_extra++] = l;
			ok++;
		}
		if (ok) {
			snprintf(one, sizeof(one), "%.400s(%d probes)",
				 shim_paths[s], ok);
			append(hk->usdt, sizeof(hk->usdt), one);
		}
	}
	/* Without the handshake and exchange hooks there is nothing to
	 * measure. */
	return n_sock == 3 ? 0 : -1;
}

static void print_hooks(const struct hooks *hk)
{
	if (env.json) {
		printf("{\"type\":\"hooks\",\"usdt\":");
		json_str(hk->usdt);
		printf(",\"sock\":");
		json_str(hk->sock);
		printf("}\n");
		fflush(stdout);
	}
	fprintf(stderr,
		"bulwark trace: hooks: socket tracepoints: %s; usdt (the "
		"shim's breaker, reject, retry events): %s%s%s\n",
		hk->sock[0] ? hk->sock : "none",
		hk->usdt[0] ? hk->usdt : "none (no shim found)",
		hk->fork[0] ? "; fork: " : "", hk->fork);
}

/* ---- main --------------------------------------------------------------- */

static pid_t start_cmd(int *go_fd)
{
	int p[2];
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char c;
		close(p[1]);
		/* Wait until the probes are attached. */
		if (read(p[0], &c, 1) != 1)
			_exit(127);
		close(p[0]);
		execvp(env.cmd[0], env.cmd);
		fprintf(stderr, "bulwark trace: cannot run %s: %s\n",
			env.cmd[0], strerror(errno));
		_exit(127);
	}
	close(p[0]);
	*go_fd = p[1];
	return pid;
}

static struct bulwark_trace_bpf *open_load(bool use_btf)
{
	struct bulwark_trace_bpf *skel = bulwark_trace_bpf__open();
	if (!skel)
		return NULL;
	skel->rodata->targ_tgid = env.pid;
	skel->rodata->targ_follow = env.cmd != NULL;
	skel->rodata->targ_min_ns = env.min_ns;
	if (env.has_dest) {
		skel->rodata->targ_dport = env.dest_port;
		if (env.dest_text[0]) {
			skel->rodata->targ_family = env.dest_family;
			memcpy((void *)skel->rodata->targ_daddr, env.dest_addr,
			       16);
		}
	}
	bpf_program__set_autoload(skel->progs.bwt_state_btf, use_btf);
	bpf_program__set_autoload(skel->progs.bwt_send_btf, use_btf);
	bpf_program__set_autoload(skel->progs.bwt_recv_btf, use_btf);
	bpf_program__set_autoload(
		skel->progs.bwt_state_tp,
		!use_btf && tracepoint_exists("sock", "inet_sock_set_state"));
	bpf_program__set_autoload(
		skel->progs.bwt_send_tp,
		!use_btf && tracepoint_exists("sock", "sock_send_length"));
	bpf_program__set_autoload(
		skel->progs.bwt_recv_tp,
		!use_btf && tracepoint_exists("sock", "sock_recv_length"));
	bpf_program__set_autoload(skel->progs.bwt_fork, env.cmd != NULL);
	if (bulwark_trace_bpf__load(skel)) {
		bulwark_trace_bpf__destroy(skel);
		return NULL;
	}
	return skel;
}

int main(int argc, char **argv)
{
	struct bulwark_trace_bpf *skel = NULL;
	struct ring_buffer *rb = NULL;
	struct hooks hk = { 0 };
	pid_t child = 0;
	int go_fd = -1, err = 1;
	struct sigaction sa = { .sa_handler = on_signal };

	parse_args(argc, argv);
	libbpf_set_print(libbpf_print);
	if (check_preconditions())
		return 1;
	if (env.pid && kill(env.pid, 0) && errno == ESRCH) {
		fprintf(stderr, "bulwark trace: no process %d\n", (int)env.pid);
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Feature probe: tp_btf needs the tracepoint's BTF type; if the load
	 * still fails with it, load again without (BULWARK_TRACE_NO_TP_BTF
	 * forces the fallback, for tests). */
	bool use_btf = !getenv("BULWARK_TRACE_NO_TP_BTF") &&
		       btf_has_type("btf_trace_inet_sock_set_state") &&
		       btf_has_type("btf_trace_sock_send_length") &&
		       btf_has_type("btf_trace_sock_recv_length");
	skel = open_load(use_btf);
	if (!skel && use_btf) {
		use_btf = false;
		skel = open_load(false);
	}
	if (!skel) {
		fprintf(stderr,
			"bulwark trace: cannot load the eBPF program: %s (run "
			"with -v for libbpf's messages)\n",
			strerror(errno));
		return 1;
	}
	if (env.cmd) {
		child = start_cmd(&go_fd);
		if (child < 0) {
			fprintf(stderr, "bulwark trace: fork: %s\n",
				strerror(errno));
			goto out;
		}
		unsigned tgid = child;
		unsigned char one = 1;
		bpf_map_update_elem(bpf_map__fd(skel->maps.tgids), &tgid, &one,
				    BPF_ANY);
	}
	/* --suggest without a file: the policy alone on standard output,
	 * the trace's report on standard error (CMD keeps its own). */
	if (env.suggest && !env.suggest_file && !env.json) {
		int keep = dup(STDOUT_FILENO);
		fflush(stdout);
		if (keep < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 ||
		    !(suggest_out = fdopen(keep, "w"))) {
			fprintf(stderr, "bulwark trace: %s\n", strerror(errno));
			goto out;
		}
	}
	find_shims();
	if (attach_all(skel, &hk, use_btf)) {
		fprintf(stderr, "bulwark trace: the socket tracepoints could "
				"not all be attached (run with -v for libbpf's "
				"messages)\n");
		goto out;
	}
	print_hooks(&hk);
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), handle_event,
			      NULL, NULL);
	if (!rb) {
		fprintf(stderr, "bulwark trace: ring buffer: %s\n",
			strerror(errno));
		goto out;
	}
	if (!env.json)
		printf("%-12s %-7s %-15s %-9s %-28s %10s  %s\n", "TIME", "PID",
		       "COMM", "OP", "DEST", "LAT(ms)", "RESULT");
	fflush(stdout);
	if (go_fd >= 0) {
		if (write(go_fd, "g", 1) != 1)
			goto out;
		close(go_fd);
		go_fd = -1;
	}

	unsigned long long t0 = mono_ns(), now = t0, last_hist = t0;
	err = 0;
	while (!exiting) {
		int timeout_ms = 100;
		if (env.interval_ns &&
		    last_hist + env.interval_ns - now < 100000000ull)
			timeout_ms =
				(last_hist + env.interval_ns - now) / 1000000 +
				1;
		int n = ring_buffer__poll(rb, timeout_ms);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "bulwark trace: ring buffer: %s\n",
				strerror(-n));
			err = 1;
			break;
		}
		now = mono_ns();
		if (env.interval_ns && now - last_hist >= env.interval_ns) {
			print_hists(skel);
			last_hist = now;
		}
		if (env.duration_ns && now - t0 >= env.duration_ns)
			break;
		if (child > 0) {
			int st;
			if (waitpid(child, &st, WNOHANG) == child) {
				child = 0;
				break;
			}
		}
	}
	ring_buffer__consume(rb);
	print_hists(skel);
	if (env.suggest) {
		/* The text policy: to FILE, else to standard output unless
		 * --json (whose lines carry each rule). */
		FILE *f = suggest_out			 ? suggest_out
			  : env.suggest_file || env.json ? NULL
							 : stdout;
		if (env.suggest_file) {
			f = fopen(env.suggest_file, "w");
			if (!f) {
				fprintf(stderr, "bulwark trace: %s: %s\n",
					env.suggest_file, strerror(errno));
				err = 1;
			}
		}
		if (f || env.json) {
			suggest(f, (mono_ns() - t0) / 1e9);
			if (f && (fflush(f) || (f != stdout && fclose(f)))) {
				fprintf(stderr,
					"bulwark trace: writing the "
					"policy: %s\n",
					strerror(errno));
				err = 1;
			}
		}
	}
out:
	if (go_fd >= 0)
		close(go_fd); /* the child exits without running CMD */
	ring_buffer__free(rb);
	/* Every link is fd-based and nothing is pinned: destroying them here
	 * detaches everything, and so would the kernel if we were killed. */
	for (int i = 0; i < n_extra; i++)
		bpf_link__destroy(extra[i]);
	bulwark_trace_bpf__destroy(skel);
	return err;
}
