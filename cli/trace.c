/* SPDX-License-Identifier: MIT */
/*
 * cli/trace.c: `bulwark trace` (man/bulwark.1).  The eBPF reporter is its own
 * binary, bulwark-trace (built from probe/ only where clang, bpftool and
 * libbpf exist), so the command itself never links libbpf.  This file
 * finds it beside the bulwark binary or in ../lib/bulwark/ and execs it
 * with the same arguments; without it, says how to build it, exit 1.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char usage[] =
	"Usage: bulwark trace [-p PID | -- CMD [ARGS...]] [--slow DURATION]\n"
	"                     [--interval DURATION] [-d DURATION] [--json]\n"
	"                     [--dest ADDR[:PORT]] [--suggest[=FILE]]\n"
	"\n"
	"Measures in the kernel, with a CO-RE eBPF program, the latency of "
	"connects\n"
	"(the TCP handshake) and of request/response exchanges on TCP "
	"connections,\n"
	"per destination, for any process (with or without the shim).  Prints "
	"each\n"
	"call slower than --slow as it happens and, every interval, a log2 "
	"latency\n"
	"histogram per destination.  For a process running the shim it also "
	"reports\n"
	"the shim's breaker, bulkhead and retry events (USDT probes, rare "
	"events\n"
	"only).  Cheap to leave attached: socket tracepoints, no syscall "
	"tracepoint.\n"
	"\n"
	"Options:\n"
	"  -p PID              trace one process (default: every process)\n"
	"  -- CMD [ARGS...]    start CMD and trace it\n"
	"  --slow DURATION     report calls slower than this, e.g. 200ms\n"
	"  --interval DURATION histogram period, e.g. 5s, 500ms (bare number: "
	"seconds)\n"
	"  -d DURATION         stop after DURATION (bare number: seconds)\n"
	"  --suggest[=FILE]    at the end, print a policy for the destinations "
	"seen,\n"
	"                      each value with the observation behind it\n"
	"  --json              one JSON object per line\n"
	"  -h, --help          show this help\n"
	"\n"
	"It needs root or CAP_BPF and CAP_PERFMON; without them it says which "
	"are\n"
	"missing and exits 1.  Nothing stays attached after it exits.\n"
	"\n"
	"The reporter is a separate program, bulwark-trace, installed beside "
	"bulwark\n"
	"or in ../lib/MULTIARCH/bulwark/ or ../lib/bulwark/; it is built only\n"
	"where clang, bpftool and "
	"libbpf\n"
	"are present (make deps && make).\n"
	"\n"
	"Exit status: 0 done, 1 missing privileges or reporter, 2 bad usage.\n"
	"\n"
	"Examples:\n"
	"  sudo bulwark trace -p $(pidof nginx) --slow 100ms\n"
	"  sudo bulwark trace --json -- curl -s http://example.com/\n"
	"  sudo bulwark trace --suggest -d 60 > policy\n";

/* The reporter's path, or -ENOENT. */
static int find_reporter(char *out, size_t cap)
{
	char dir[PATH_MAX];
	static const char *const rel[] = { "/bulwark-trace",
#ifdef BW_MULTIARCH
					   "/../lib/" BW_MULTIARCH
					   "/bulwark/bulwark-trace",
#endif
					   "/../lib/bulwark/bulwark-trace" };

	if (bw_cli_exe_dir(dir, sizeof(dir)) < 0)
		return -ENOENT;
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		if ((size_t)snprintf(out, cap, "%s%s", dir, rel[i]) >= cap)
			continue;
		if (access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

static int trace_main(int argc, char **argv)
{
	char path[PATH_MAX + 40];
	bool help = argc > 1 &&
		    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));

	(void)argc;
	if (find_reporter(path, sizeof(path)) < 0) {
		if (help) {
			bw_cli_print_usage(&bw_cli_cmd_trace, stdout);
			printf("\nThis installation has no bulwark-trace.\n");
			return BW_CLI_OK;
		}
		bw_cli_err("trace",
			   "the eBPF reporter is not built in this "
			   "installation (it needs clang, bpftool and libbpf "
			   "at build time: run make deps && make)");
		return BW_CLI_FAIL;
	}
	argv[0] = "bulwark-trace";
	fflush(NULL);
	execv(path, argv);
	bw_cli_err("trace", "cannot run %s: %s", path, strerror(errno));
	return BW_CLI_FAIL;
}

const struct bw_cli_cmd bw_cli_cmd_trace = {
	.name = "trace",
	.main = trace_main,
	.summary = "report slow connects and exchanges with eBPF (optional)",
	.usage = usage,
};
