/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_alloc.c: the shim's memory.  Connects to the echo server,
 * makes CALLS intercepted calls (send and recv, CALLS/2 exchanges) on the
 * tracked socket and reports
 *   - heap bytes allocated and freed on this thread during those calls,
 *     from jemalloc's thread.allocated / thread.deallocated counters
 *     (bench/run links this program with -ljemalloc; without jemalloc the
 *     counters read "n/a");
 *   - the process's resident memory afterwards (VmRSS and its parts from
 *     /proc/self/status), for the with/without-shim comparison.
 * Prints one line of key=value pairs.
 *
 *   bench_alloc HOST PORT CALLS
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include "bench/bench.h"

/* jemalloc's control interface; weak so that the program also links (and
 * reports n/a) without jemalloc, as the Makefile's generic rule builds it. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
		   size_t newlen) __attribute__((weak));

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static mallctl_fn find_mallctl(void)
{
	if (mallctl)
		return mallctl;
	return (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
}

/* Reads a uint64 jemalloc statistic; returns 0 or -1. */
static int stat_u64(mallctl_fn f, const char *name, uint64_t *v)
{
	size_t len = sizeof(*v);
	return f && f(name, v, &len, NULL, 0) == 0 ? 0 : -1;
}

/* Value in kB of a "Key:   N kB" line of /proc/self/status, or -1. */
static long status_kb(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static int exchange(int fd)
{
	char c = 'a';
	if (send(fd, &c, 1, 0) != 1)
		return -1;
	return recv(fd, &c, 1, 0) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: bench_alloc HOST PORT CALLS\n");
		return 2;
	}
	struct sockaddr_in a = bench_addr(argv[1], argv[2]);
	long calls = bench_arg_long(argv[3], "calls");
	mallctl_fn f = find_mallctl();
	uint64_t a0 = 0, a1 = 0, d0 = 0, d1 = 0;

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("bench_alloc: connect");
		return 1;
	}
	for (int i = 0; i < 1000; i++) /* first-call set-up is not counted */
		if (exchange(fd) < 0)
			goto fail;
	int ok = stat_u64(f, "thread.allocated", &a0) == 0 &&
		 stat_u64(f, "thread.deallocated", &d0) == 0;
	for (long i = 0; i < calls / 2; i++)
		if (exchange(fd) < 0)
			goto fail;
	ok = ok && stat_u64(f, "thread.allocated", &a1) == 0 &&
	     stat_u64(f, "thread.deallocated", &d1) == 0;
	close(fd);

	char text[8192];
	int sfd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = sfd >= 0 ? read(sfd, text, sizeof(text) - 1) : -1;
	text[n > 0 ? n : 0] = 0;
	if (sfd >= 0)
		close(sfd);

	printf("calls=%ld", calls / 2 * 2);
	if (ok)
		printf(" alloc_bytes=%llu free_bytes=%llu",
		       (unsigned long long)(a1 - a0),
		       (unsigned long long)(d1 - d0));
	else
		printf(" alloc_bytes=n/a free_bytes=n/a");
	printf(" vmrss_kb=%ld rss_anon_kb=%ld rss_file_kb=%ld "
	       "rss_shmem_kb=%ld\n",
	       status_kb(text, "VmRSS:"), status_kb(text, "RssAnon:"),
	       status_kb(text, "RssFile:"), status_kb(text, "RssShmem:"));
	return 0;
fail:
	perror("bench_alloc: exchange");
	return 1;
}
