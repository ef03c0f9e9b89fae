/* SPDX-License-Identifier: MIT */
/*
 * cli/run.c: `bulwark run` (bulwark(1) run): checks the policy, sets the
 * BULWARK_* variables, appends libbulwark.so to LD_PRELOAD and execs the
 * program, whose exit status becomes ours.  Warns when the shim cannot act
 * in the target: a statically linked ELF (no PT_INTERP; program headers
 * read here, 32/64-bit, either byte order) or one the loader runs in
 * secure-execution mode (setuid, setgid, file capabilities).
 * Never: starts the program when the policy is invalid (exit 2), or adds
 * the shim to LD_PRELOAD twice.  After exec fails: 127 not found, 126 not
 * executable, as a shell does.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli/cli.h"

/* Interpreter chain followed for "#!" scripts; the kernel allows 4. */
#define BW_CLI_SHEBANG_DEPTH_MAX 4
/* Program headers read at most; ELF allows 65535 (PN_XNUM and up via
 * section 0), real binaries have about a dozen. */
#define BW_CLI_PHDRS_MAX 65535u

enum elf_kind { ELF_NOT = -1, ELF_STATIC = 0, ELF_DYNAMIC = 1 };

static int resolve_program(const char *prog, char *out, size_t cap);
static enum elf_kind elf_kind(int fd);
static bool elf_is_go(int fd);
static void warn_target(const char *prog, int depth);
static int add_preload(const char *shim);

static const char usage[] =
	"Usage: bulwark run [OPTIONS] [--] PROGRAM [ARGS...]\n"
	"\n"
	"Runs PROGRAM with the bulwark shim preloaded: every outgoing TCP "
	"connect it\n"
	"makes that a rule matches goes through the circuit breaker, bulkhead "
	"and\n"
	"retry policy.  The exit status is the program's.\n"
	"\n"
	"The policy is checked first (as 'bulwark check' does); an invalid one "
	"is\n"
	"reported and the program is not started (exit status 2).  Then "
	"bulwark sets\n"
	"the variables below, appends libbulwark.so to LD_PRELOAD (keeping what "
	"is\n"
	"there; never twice) and execs PROGRAM, found through PATH.\n"
	"\n"
	"Options:\n"
	"  -p, --policy P       rules (bulwark-policy(7)) -> BULWARK_POLICY\n"
	"  -f, --policy-file F  a file of rules -> BULWARK_POLICY_FILE "
	"(made absolute)\n"
	"  -s, --state NAME     shared state to use -> BULWARK_STATE "
	"(default 'default';\n"
	"                       'private' keeps state inside each process)\n"
	"  -l, --log LEVEL      off, error, warn, info or debug -> BULWARK_LOG\n"
	"      --strict         an invalid policy ends the program before main "
	"with\n"
	"                       exit status 2 -> BULWARK_STRICT=1\n"
	"  -h, --help           show this help\n"
	"\n"
	"Without --policy or --policy-file, BULWARK_POLICY and "
	"BULWARK_POLICY_FILE\n"
	"from the environment are checked and passed on unchanged.  A "
	"destination\n"
	"no rule matches is observed only (counted, nothing applied); with no "
	"policy\n"
	"at all that is every destination.  --policy '*' applies every "
	"default.\n"
	"\n"
	"The shim is BULWARK_LIB if set, else libbulwark.so beside the bulwark "
	"binary,\n"
	"else ../lib/MULTIARCH/bulwark/libbulwark.so (the Debian package), else\n"
	"../lib/bulwark/libbulwark.so (make install), relative to it.\n"
	"\n"
	"Warnings: bulwark warns when PROGRAM is statically linked or setuid/"
	"setgid\n"
	"(or has file capabilities): the dynamic loader does not preload the "
	"shim\n"
	"there, so nothing is applied.  Programs that bypass libc (Go's own net "
	"stack,\n"
	"raw syscall(2), io_uring) are not covered either; bulwark warns for "
	"a Go\n"
	"binary.\n"
	"\n"
	"Exit status: PROGRAM's; 2 for bad usage or an invalid policy; 1 when "
	"the\n"
	"shim is missing; 127 when PROGRAM is not found, 126 when it cannot be\n"
	"executed.\n"
	"\n"
	"Examples:\n"
	"  bulwark run --policy 'redis.internal:6379 breaker.failures=3' \\\n"
	"      -- redis-cli ping\n"
	"  bulwark run --policy-file /etc/bulwark/api.policy --state api -- "
	"./worker\n";

/* Whether path names an existing regular file. */
static bool is_file(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Resolves prog through PATH as execvp does.  Returns 0 with the path of
 * an executable regular file, or -ENOENT. */
static int resolve_program(const char *prog, char *out, size_t cap)
{
	if (strchr(prog, '/')) {
		if ((size_t)snprintf(out, cap, "%s", prog) >= cap)
			return -ENAMETOOLONG;
		return is_file(out) ? 0 : -ENOENT;
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/bin:/usr/bin"; /* glibc's confstr(_CS_PATH) */
	for (const char *p = path;;) {
		const char *end = strchrnul(p, ':');
		int len = (int)(end - p);
		if (len == 0)
			snprintf(out, cap, "%s", prog); /* "" is "." */
		else
			snprintf(out, cap, "%.*s/%s", len, p, prog);
		if (is_file(out) && access(out, X_OK) == 0)
			return 0;
		if (!*end)
			break;
		p = end + 1;
	}
	return -ENOENT;
}

/* Little- or big-endian field readers for elf_kind. */
static uint64_t rd(const unsigned char *b, int n, bool be)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)b[be ? n - 1 - i : i] << (8 * i);
	return v;
}

/*
 * Whether the ELF file on fd has a program interpreter (PT_INTERP): a
 * binary without one is loaded by the kernel alone and never sees
 * LD_PRELOAD.  ELF_NOT for anything else (scripts, short files).
 */
static enum elf_kind elf_kind(int fd)
{
	unsigned char eh[64];
	ssize_t n = pread(fd, eh, sizeof(eh), 0);

	if (n < 52 || memcmp(eh, "\177ELF", 4) != 0)
		return ELF_NOT;
	bool is64 = eh[4] == 2, be = eh[5] == 2;
	if ((eh[4] != 1 && eh[4] != 2) || (eh[5] != 1 && eh[5] != 2) ||
	    (is64 && n < 64))
		return ELF_NOT;
	uint64_t type = rd(eh + 16, 2, be);
	if (type != 2 && type != 3) /* ET_EXEC, ET_DYN */
		return ELF_NOT;
	uint64_t phoff = is64 ? rd(eh + 32, 8, be) : rd(eh + 28, 4, be);
	uint64_t shoff = is64 ? rd(eh + 40, 8, be) : rd(eh + 32, 4, be);
	uint64_t phentsize = rd(eh + (is64 ? 54 : 42), 2, be);
	uint64_t phnum = rd(eh + (is64 ? 56 : 44), 2, be);
	if (phnum == 0xffff && shoff) { /* PN_XNUM: count in sh_info of 0 */
		unsigned char sh[4];
		off_t at = (off_t)shoff + (is64 ? 44 : 28);
		if (pread(fd, sh, 4, at) == 4)
			phnum = rd(sh, 4, be);
	}
	if (phentsize < (is64 ? 56u : 32u) || phnum > BW_CLI_PHDRS_MAX)
		return ELF_NOT;
	for (uint64_t i = 0; i < phnum; i++) {
		unsigned char ph[4];
		if (pread(fd, ph, 4, (off_t)(phoff + i * phentsize)) != 4)
			return ELF_NOT;
		if (rd(ph, 4, be) == 3) /* PT_INTERP */
			return ELF_DYNAMIC;
	}
	return ELF_STATIC;
}

/*
 * Whether the ELF file on fd is a Go program (a ".go.buildinfo" or
 * ".note.go.buildid" section; strip keeps both).  Go's net package makes
 * its own connect system calls, so even a dynamically linked Go binary
 * never calls libc's connect.  Reads at most BW_CLI_SHDRS_MAX headers.
 */
#define BW_CLI_SHDRS_MAX 4096u
static bool elf_is_go(int fd)
{
	unsigned char eh[64], sh[64];

	if (pread(fd, eh, sizeof(eh), 0) < 64 || memcmp(eh, "\177ELF", 4) != 0)
		return false;
	bool is64 = eh[4] == 2, be = eh[5] == 2;
	uint64_t shoff = is64 ? rd(eh + 40, 8, be) : rd(eh + 32, 4, be);
	uint64_t shentsize = rd(eh + (is64 ? 58 : 46), 2, be);
	uint64_t shnum = rd(eh + (is64 ? 60 : 48), 2, be);
	uint64_t shstrndx = rd(eh + (is64 ? 62 : 50), 2, be);
	size_t want = is64 ? 64 : 40;
	if (!shoff || shentsize < want || shnum > BW_CLI_SHDRS_MAX ||
	    shstrndx >= shnum)
		return false;
	if (pread(fd, sh, want, (off_t)(shoff + shstrndx * shentsize)) !=
	    (ssize_t)want)
		return false;
	uint64_t stroff = is64 ? rd(sh + 24, 8, be) : rd(sh + 16, 4, be);
	uint64_t strsize = is64 ? rd(sh + 32, 8, be) : rd(sh + 20, 4, be);
	for (uint64_t i = 0; i < shnum; i++) {
		char name[24];
		if (pread(fd, sh, 4, (off_t)(shoff + i * shentsize)) != 4)
			return false;
		uint64_t at = rd(sh, 4, be);
		if (at >= strsize)
			continue;
		ssize_t n =
			pread(fd, name, sizeof(name) - 1, (off_t)(stroff + at));
		if (n <= 0)
			continue;
		name[n] = '\0';
		if (!strcmp(name, ".go.buildinfo") ||
		    !strcmp(name, ".note.go.buildid"))
			return true;
	}
	return false;
}

/* Whether exec of the file at path (stat'ed in sb) puts the loader in
 * secure-execution mode (AT_SECURE), where it ignores LD_PRELOAD paths;
 * sets *why. */
static bool secure_exec(const char *path, const struct stat *sb,
			const char **why)
{
	struct statvfs fs;

	if (statvfs(path, &fs) == 0 && (fs.f_flag & ST_NOSUID))
		return false; /* the kernel ignores the bits there */
	if ((sb->st_mode & S_ISUID) && sb->st_uid != geteuid()) {
		*why = "setuid";
		return true;
	}
	if ((sb->st_mode & S_ISGID) && sb->st_gid != getegid()) {
		*why = "setgid";
		return true;
	}
	if (geteuid() != 0 &&
	    getxattr(path, "security.capability", NULL, 0) > 0) {
		*why = "given file capabilities";
		return true;
	}
	return false;
}

/* Warns (never fails) when the shim cannot act in prog; follows "#!"
 * interpreters, /usr/bin/env's included. */
static void warn_target(const char *prog, int depth)
{
	char path[PATH_MAX];
	struct stat sb;

	if (depth > BW_CLI_SHEBANG_DEPTH_MAX)
		return;
	if (resolve_program(prog, path, sizeof(path)) < 0)
		return; /* exec will say so */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	char head[256];
	ssize_t n = pread(fd, head, sizeof(head) - 1, 0);
	enum elf_kind kind = elf_kind(fd);
	bool go = kind != ELF_NOT && elf_is_go(fd);
	close(fd);

	const char *why = NULL;
	if (kind != ELF_NOT && secure_exec(path, &sb, &why))
		bw_cli_warn("%s is %s: the dynamic loader ignores LD_PRELOAD "
			    "for it (secure-execution mode), so bulwark cannot "
			    "act there; its connections get no breaker, "
			    "bulkhead or retry",
			    path, why);
	if (kind == ELF_STATIC && !go)
		bw_cli_warn("%s is statically linked: there is no dynamic "
			    "loader to preload the shim, so bulwark cannot act "
			    "there; its connections get no breaker, bulkhead "
			    "or retry (dynamically linked programs it starts "
			    "are still covered)",
			    path);
	if (go)
		bw_cli_warn(
			"%s is a Go program%s: Go's net package makes its "
			"own connect system calls, bypassing the C library, "
			"so bulwark cannot act there; its connections get "
			"no breaker, bulkhead or retry",
			path, kind == ELF_STATIC ? " (statically linked)" : "");
	if (kind != ELF_NOT || n < 3 || head[0] != '#' || head[1] != '!')
		return;

	/* "#!interp [arg]": check the interpreter instead. */
	head[n] = '\0';
	char *s = head + 2, *save = NULL;
	char *nl = strchr(s, '\n');
	if (nl)
		*nl = '\0';
	char *interp = strtok_r(s, " \t", &save);
	char *arg = strtok_r(NULL, " \t", &save);
	if (!interp)
		return;
	const char *base = strrchr(interp, '/');
	base = base ? base + 1 : interp;
	if (strcmp(base, "env") == 0 && arg && arg[0] != '-')
		warn_target(arg, depth + 1);
	else
		warn_target(interp, depth + 1);
}

/* Appends shim to LD_PRELOAD unless it is there already (by name or by
 * file).  Returns 0 or -errno. */
static int add_preload(const char *shim)
{
	const char *old = getenv("LD_PRELOAD");
	struct stat shim_sb;

	if (strpbrk(shim, " :\t")) {
		bw_cli_err("run",
			   "the shim's path '%s' holds a space or ':', "
			   "which LD_PRELOAD cannot carry; set BULWARK_LIB to "
			   "another path",
			   shim);
		return -EINVAL;
	}
	if (stat(shim, &shim_sb) < 0)
		return -errno;
	if (old && *old) {
		char *copy = strdup(old), *save = NULL;
		if (!copy)
			return -ENOMEM;
		bool have = false;
		for (char *t = strtok_r(copy, " :\t", &save); t && !have;
		     t = strtok_r(NULL, " :\t", &save)) {
			struct stat sb;
			have = strcmp(t, shim) == 0 ||
			       (stat(t, &sb) == 0 &&
				sb.st_dev == shim_sb.st_dev &&
				sb.st_ino == shim_sb.st_ino);
		}
		free(copy);
		if (have)
			return 0;
		size_t len = strlen(old) + 1 + strlen(shim) + 1;
		char *val = malloc(len);
		if (!val)
			return -ENOMEM;
		snprintf(val, len, "%s:%s", old, shim);
		int rc = setenv("LD_PRELOAD", val, 1) < 0 ? -errno : 0;
		free(val);
		return rc;
	}
	return setenv("LD_PRELOAD", shim, 1) < 0 ? -errno : 0;
}

static bool valid_log_level(const char *s)
{
	static const char *const levels[] = { "off", "error", "warn", "info",
					      "debug" };
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strcmp(s, levels[i]) == 0)
			return true;
	return false;
}

static int run_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "policy-file", required_argument, NULL, 'f' },
		{ "state", required_argument, NULL, 's' },
		{ "log", required_argument, NULL, 'l' },
		{ "strict", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *policy = NULL, *file = NULL, *state = NULL, *log = NULL;
	bool strict = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:p:f:s:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			policy = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'l':
			log = optarg;
			break;
		case 'S':
			strict = true;
			break;
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_run, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option("run", argv, c);
		}
	}
	if (optind >= argc)
		return bw_cli_usage_error("run",
					  "no program to run: "
					  "bulwark run [OPTIONS] -- PROGRAM "
					  "[ARGS...]");
	if (state && bw_cli_check_state("run", state) != BW_CLI_OK)
		return BW_CLI_USAGE;
	if (log && !valid_log_level(log))
		return bw_cli_usage_error("run",
					  "bad log level '%s': use off, "
					  "error, warn, info or debug",
					  log);

	/* What the shim will see: ours, else the inherited variables. */
	const char *eff_policy = policy ? policy : getenv("BULWARK_POLICY");
	const char *eff_file = file ? file : getenv("BULWARK_POLICY_FILE");
	if (eff_file && !*eff_file)
		eff_file = NULL;
	struct bw_policy *p = NULL;
	int rc = bw_cli_load_policy("run", eff_policy, eff_file, &p);
	if (rc != BW_CLI_OK)
		return rc;
	free(p);

	char shim[PATH_MAX];
	if (bw_cli_find_shim("run", shim, sizeof(shim)) < 0)
		return BW_CLI_FAIL;

	char abs_file[PATH_MAX];
	if (file && realpath(file, abs_file))
		file = abs_file; /* the program or its children may cd */
	if ((policy && setenv("BULWARK_POLICY", policy, 1) < 0) ||
	    (file && setenv("BULWARK_POLICY_FILE", file, 1) < 0) ||
	    (state && setenv("BULWARK_STATE", state, 1) < 0) ||
	    (log && setenv("BULWARK_LOG", log, 1) < 0) ||
	    (strict && setenv("BULWARK_STRICT", "1", 1) < 0)) {
		bw_cli_err("run", "cannot set the environment: %s",
			   strerror(errno));
		return BW_CLI_FAIL;
	}
	rc = add_preload(shim);
	if (rc < 0) {
		if (rc != -EINVAL)
			bw_cli_err("run", "cannot set LD_PRELOAD: %s",
				   strerror(-rc));
		return BW_CLI_FAIL;
	}

	const char *prog = argv[optind];
	warn_target(prog, 0);
	fflush(NULL);
	execvp(prog, argv + optind);
	int e = errno;
	if (e == ENOENT && !strchr(prog, '/')) {
		bw_cli_err("run", "%s: command not found", prog);
		return 127;
	}
	bw_cli_err("run", "cannot run '%s': %s", prog, strerror(e));
	return (e == ENOENT || e == ENOTDIR) ? 127 : 126;
}

const struct bw_cli_cmd bw_cli_cmd_run = {
	.name = "run",
	.main = run_main,
	.summary = "run a program with the shim preloaded",
	.usage = usage,
};
