// SPDX-License-Identifier: MIT
/*
 * probe/bulwark_trace.c: the loader of `bulwark trace` (SPEC §8), the
 * program build/bulwark-trace that `bulwark trace ARGS` execs.  Loads
 * bulwark_trace.bpf.c, picks its hooks by run-time feature probes (USDT in
 * the shim, syscall tracepoints, tp_btf or classic sock:inet_sock_set_state),
 * prints slow calls as they come and log2 histograms every interval.
 * Links are fd-based and nothing is pinned: whatever way this process
 * ends, the kernel detaches every program.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
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
	unsigned interval_s;
	unsigned duration_s;
	bool json;
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
static const char *const op_names[BWT_OP_MAX] = {
	"connect", "exchange", "handshake", "breaker", "reject", "retry",
};
static const char *const src_names[] = { "syscall", "shim", "sock" };

static const char usage[] =
	"Usage: bulwark trace [-p PID | -- CMD [ARGS...]] [--slow DURATION]\n"
	"                     [--interval SECONDS] [--json] [--dest ADDR[:PORT]]\n"
	"\n"
	"  -p, --pid PID           trace one process (default: every process)\n"
	"  -- CMD [ARGS...]        start CMD, trace it and its children, stop\n"
	"                          when it exits\n"
	"  -s, --slow DURATION     print calls slower than this (default 10ms;\n"
	"                          units ns us ms s, bare number: ms)\n"
	"  -i, --interval SECONDS  print the histograms every SECONDS (default:\n"
	"                          only at exit)\n"
	"  -d, --duration SECONDS  stop after SECONDS\n"
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

static int parse_duration_ns(const char *s, unsigned long long *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	double mul = 1e6;
	if (!strcmp(end, "ns"))
		mul = 1;
	else if (!strcmp(end, "us"))
		mul = 1e3;
	else if (!strcmp(end, "ms") || !*end)
		mul = 1e6;
	else if (!strcmp(end, "s"))
		mul = 1e9;
	else
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
						->sin_addr, 4);
			else
				memcpy(env.dest_addr,
				       &((struct sockaddr_in6 *)res->ai_addr)
						->sin6_addr, 16);
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
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	char *end;

	while ((c = getopt_long(argc, argv, "+p:s:i:d:jvh", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			env.pid = strtol(optarg, &end, 10);
			if (*end || env.pid <= 0)
				die_usage("bad pid: %s", optarg);
			break;
		case 's':
			if (parse_duration_ns(optarg, &env.min_ns))
				die_usage("bad duration: %s", optarg);
			break;
		case 'i':
			env.interval_s = strtoul(optarg, &end, 10);
			if (*end || !env.interval_s)
				die_usage("bad interval: %s", optarg);
			break;
		case 'd':
			env.duration_s = strtoul(optarg, &end, 10);
			if (*end || !env.duration_s)
				die_usage("bad duration: %s", optarg);
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
			snprintf(p, sizeof(p), "%s/../lib/bulwark/libbulwark.so",
				 exe);
			add_shim_path(p);
		}
	}
}

/* Marks the processes already running the shim, so their syscalls are not
 * measured twice (the shim's probes report their calls). */
static void mark_shimmed(int map_fd)
{
	char p[PATH_MAX + 32];
	unsigned char one = 1;

	if (env.pid) {
		unsigned tgid = env.pid;
		if (!mapped_shim(env.pid, p, sizeof(p)))
			bpf_map_update_elem(map_fd, &tgid, &one, BPF_ANY);
		return;
	}
	DIR *d = opendir("/proc");
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		unsigned tgid = strtoul(de->d_name, NULL, 10);
		if (!mapped_shim(tgid, p, sizeof(p)))
			bpf_map_update_elem(map_fd, &tgid, &one, BPF_ANY);
	}
	closedir(d);
}

/* ---- output ------------------------------------------------------------- */

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

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = *s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
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
	char dest[BWT_LABEL_LEN + 64], tbuf[32], rbuf[32], comm[BWT_COMM_LEN + 1];
	unsigned long long real_ns = e->ts_ns + mono_to_real_offset_ns();
	time_t secs = real_ns / 1000000000ull;
	struct tm tm;

	(void)ctx;
	if (len < sizeof(*e) || e->op >= BWT_OP_MAX)
		return 0;
	if (!label_wanted(e->dest.label))
		return 0;
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
		printf(",\"op\":\"%s\",\"src\":\"%s\",\"dest\":", op_names[e->op],
		       src_names[e->src % 3]);
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
	dest_str(&k->dest, dest, sizeof(dest));
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
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		if (!bpf_map_lookup_elem(fd, &next, &h) &&
		    label_wanted(next.dest.label))
			print_hist(&next, &h);
		key = next;
		prev = &key;
	}
	/* Clear after printing: each period stands alone (biolatency). */
	prev = NULL;
	while (!bpf_map_get_next_key(fd, NULL, &next))
		if (bpf_map_delete_elem(fd, &next))
			break;
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

/* ---- attaching ---------------------------------------------------------- */

struct hooks {
	char usdt[512];
	char sys[512];
	char sock[64];
	char fork[64];
};

static struct bpf_link *extra[MAX_SHIM_PATHS * 6];
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

static int attach_all(struct bulwark_trace_bpf *skel, struct hooks *hk,
		      bool use_btf)
{
	struct {
		struct bpf_program *prog;
		struct bpf_link **link;
		const char *cat, *name;
	} sys[] = {
#define SYS(p, n) { skel->progs.bwt_##p, &skel->links.bwt_##p, "syscalls", n }
		SYS(enter_connect, "sys_enter_connect"),
		SYS(exit_connect, "sys_exit_connect"),
		SYS(enter_close, "sys_enter_close"),
		SYS(enter_write, "sys_enter_write"),
		SYS(enter_sendto, "sys_enter_sendto"),
		SYS(enter_sendmsg, "sys_enter_sendmsg"),
		SYS(enter_read, "sys_enter_read"),
		SYS(exit_read, "sys_exit_read"),
		SYS(enter_recvfrom, "sys_enter_recvfrom"),
		SYS(exit_recvfrom, "sys_exit_recvfrom"),
		SYS(enter_recvmsg, "sys_enter_recvmsg"),
		SYS(exit_recvmsg, "sys_exit_recvmsg"),
#undef SYS
	};
	static const char *const usdt_names[] = { "init", "connect", "exchange",
						  "breaker", "reject", "retry" };
	struct bpf_program *usdt_progs[] = {
		skel->progs.bwt_usdt_init,    skel->progs.bwt_usdt_connect,
		skel->progs.bwt_usdt_exchange, skel->progs.bwt_usdt_breaker,
		skel->progs.bwt_usdt_reject,  skel->progs.bwt_usdt_retry,
	};
	struct bpf_link **usdt_links[] = {
		&skel->links.bwt_usdt_init,    &skel->links.bwt_usdt_connect,
		&skel->links.bwt_usdt_exchange, &skel->links.bwt_usdt_breaker,
		&skel->links.bwt_usdt_reject,  &skel->links.bwt_usdt_retry,
	};
	int n_sys = 0;

	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
		if (!tracepoint_exists(sys[i].cat, sys[i].name))
			continue;
		if (attach_prog(sys[i].prog, sys[i].link) == 0) {
			append(hk->sys, sizeof(hk->sys), sys[i].name + 4);
			n_sys++;
		}
	}

	if (use_btf &&
	    !attach_prog(skel->progs.bwt_state_btf, &skel->links.bwt_state_btf))
		snprintf(hk->sock, sizeof(hk->sock), "tp_btf");
	else if (tracepoint_exists("sock", "inet_sock_set_state") &&
		 !attach_prog(skel->progs.bwt_state_tp,
			      &skel->links.bwt_state_tp))
		snprintf(hk->sock, sizeof(hk->sock), "tracepoint");

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
		for (size_t i = 0; i < 6; i++) {
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
	return n_sys || hk->sock[0] || hk->usdt[0] ? 0 : -1;
}

static void print_hooks(const struct hooks *hk)
{
	if (env.json) {
		printf("{\"type\":\"hooks\",\"usdt\":");
		json_str(hk->usdt);
		printf(",\"syscalls\":");
		json_str(hk->sys);
		printf(",\"inet_sock_set_state\":");
		json_str(hk->sock);
		printf("}\n");
		fflush(stdout);
	}
	fprintf(stderr,
		"bulwark trace: hooks: usdt: %s; syscall tracepoints: %s; "
		"sock:inet_sock_set_state: %s%s%s\n",
		hk->usdt[0] ? hk->usdt : "none (no shim found)",
		hk->sys[0] ? hk->sys : "none",
		hk->sock[0] ? hk->sock : "none", hk->fork[0] ? "; fork: " : "",
		hk->fork);
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
	bpf_program__set_autoload(skel->progs.bwt_state_tp,
				  tracepoint_exists("sock",
						    "inet_sock_set_state"));
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
		       btf_has_type("btf_trace_inet_sock_set_state");
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
	find_shims();
	mark_shimmed(bpf_map__fd(skel->maps.shimmed));
	if (attach_all(skel, &hk, use_btf)) {
		fprintf(stderr, "bulwark trace: no hook could be attached "
				"(run with -v for libbpf's messages)\n");
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

	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	time_t last_hist = t0.tv_sec;
	err = 0;
	while (!exiting) {
		int n = ring_buffer__poll(rb, 100);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "bulwark trace: ring buffer: %s\n",
				strerror(-n));
			err = 1;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (env.interval_s &&
		    now.tv_sec - last_hist >= (time_t)env.interval_s) {
			print_hists(skel);
			last_hist = now.tv_sec;
		}
		if (env.duration_s &&
		    now.tv_sec - t0.tv_sec >= (time_t)env.duration_s)
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
