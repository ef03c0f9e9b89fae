/* SPDX-License-Identifier: MIT */
/*
 * shim/init.c: start-up of the shim in each process: binds libc, reads the
 * environment (bulwark(1) ENVIRONMENT), compiles the policy, attaches the
 * state, and only then lets the hooks act (bw_g.ready).  An invalid policy, a
 * bad state name or an unusable segment never stops the program: it is said
 * once on the log and the shim falls back (bulwark(1) DIAGNOSTICS);
 * BULWARK_STRICT=1 ends the program with status 2 before main instead.
 * Owns: bw_g, bw__init, the constructor, the fork handlers and their
 * counterpart for children started without them (bw_spawned).  Runs once
 * per process image, under pthread_once; fork children inherit everything.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/bulkhead.h"
#include "core/sys.h"
#include "shim/async.h"
#include "shim/fd_table.h"
#include "shim/hedge.h"
#include "shim/internal.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/usdt.h"

struct bw_global bw_g;

/* The policy file is read into static memory: nothing is allocated. */
static char file_buf[BW_POLICY_FILE_MAX];

static const char *env(const char *name)
{
	return getenv(name);
}

static bool env_on(const char *name)
{
	const char *v = getenv(name);
	return v && strcmp(v, "1") == 0;
}

/* read_file's result for a path that is not a regular file (no errno
 * value is this large). */
#define NOT_REGULAR (-100000)

/* Reads path whole into file_buf.  Returns its length, -errno (ELOOP: a
 * symbolic link, which is not followed), or NOT_REGULAR.  Opened
 * non-blocking: a FIFO would otherwise hang the program before main until
 * a writer came; it is then refused as not a regular file, as a device
 * or a directory is. */
static ssize_t read_file(const char *path)
{
	int fd = bw_real.open(path,
			      O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		bw_real.close(fd);
		return NOT_REGULAR;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r =
			bw_real.read(fd, file_buf + n, sizeof(file_buf) - n);
		if (r < 0)
			r = -errno;
		if (r == -EINTR)
			continue;
		if (r < 0) {
			bw_real.close(fd);
			return r;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == sizeof(file_buf)) {
			bw_real.close(fd);
			return -EFBIG;
		}
	}
	bw_real.close(fd);
	return (ssize_t)n;
}

static void say_policy_error(const struct bw_policy_error *err)
{
	char msg[512];
	bw_policy_error_format(err, msg, sizeof(msg));
	bw_log(BW_LOG_ERROR, "policy_error", NULL, "msg=%q action=%s", msg,
	       env_on("BULWARK_STRICT") ? "exit" : "pass-through");
}

/* Compiles BULWARK_<KEY>, BULWARK_POLICY, then BULWARK_POLICY_FILE (the
 * string's rules come first; man/bulwark-policy.7).  Returns 0 or -errno with
 * *err. */
static int load_policy(struct bw_policy_error *err)
{
	int rc = bw_policy_init(bw_policy_env(), env, err);
	if (rc < 0)
		return rc;
	const char *text = getenv("BULWARK_POLICY");
	if (text && text[0]) {
		rc = bw_policy_parse(bw_policy_env(), text, strlen(text),
				     "policy", err);
		if (rc < 0)
			return rc;
	}
	const char *path = getenv("BULWARK_POLICY_FILE");
	if (path && path[0]) {
		ssize_t n = read_file(path);
		if (n < 0) {
			memset(err, 0, sizeof(*err));
			strcpy(err->origin, "file");
			if (n == NOT_REGULAR)
				snprintf(err->msg, sizeof(err->msg),
					 "policy file %s: not a regular file",
					 path);
			else if (n == -ELOOP)
				snprintf(err->msg, sizeof(err->msg),
					 "policy file %s: a symbolic link "
					 "(not followed)",
					 path);
			else
				snprintf(err->msg, sizeof(err->msg),
					 "cannot read policy file %s: %s", path,
					 strerror((int)-n));
			return n == NOT_REGULAR ? -EINVAL : (int)n;
		}
		rc = bw_policy_parse(bw_policy_env(), file_buf, (size_t)n,
				     "file", err);
		if (rc < 0)
			return rc;
	}
	/* No rules but BULWARK_<KEY> variables: those act as the rule "*";
	 * no rules at all: every destination is observed only. */
	return bw_policy_finish(bw_policy_env());
}

static void attach_state(void)
{
	const char *name = getenv("BULWARK_STATE");
	char why[256] = "";
	if (!name || !name[0])
		name = "default";
	strncpy(bw_g.state_name, name, sizeof(bw_g.state_name) - 1);
	if (strcmp(name, "private") != 0 &&
	    bw_state_attach(&bw_g.state, name, true, why, sizeof(why)) == 0) {
		bw_sigbus_guard(); /* a truncated file: private, not SIGBUS */
		return;
	}
	if (why[0])
		bw_log(BW_LOG_WARN, "state_error", NULL,
		       "msg=%q action=private", why);
	if (bw_state_attach_private(&bw_g.state) < 0) {
		bw_log(BW_LOG_ERROR, "state_error", NULL,
		       "msg=%q action=pass-through",
		       "cannot map private state");
		bw_g.active = false;
	}
}

/* Before a fork: the child will share every connection we hold a bulkhead
 * slot for, so each hold learns its socket's inode now (the connect path
 * leaves it unknown to save an fstat per connect), and a sweep can tell
 * whether the child still has the socket after we are gone. */
static void fork_prepare(void)
{
	int high = bw_fd_high();
	for (int fd = 0; fd < high; fd++) {
		const struct bw_conn *c = bw_fd_conn(fd);
		if (c && c->slot.kind == BW_SLOT_SHARED)
			bw_bulkhead_note_inode(&bw_g.state, &c->slot, fd);
	}
}

static void fork_parent(void)
{
	bw_bulkhead_forked(false);
}

static void fork_child(void)
{
	bw_bulkhead_forked(true);
	bw_hedge_nb_fork_child(); /* non-blocking hedges: the parent's */
	/* The parent goes on with its pending connects. */
	bw_async_fork_child();
	bw_live_forked(); /* a new pid in the live-policy table */
}

/* The parent's half of fork's handlers for a child they do not run for;
 * called before the child starts and again once it has (hook_spawn.c).
 * Only when the child may hold a slot's socket: every hold then waits for
 * the sweep at its close, which is about a second later than at once.
 * After the call the child's inherited fds are copies of ours, unchanged
 * since, so their inodes can still be noted; a hold taken by another
 * thread while the call ran, and closed before the second call, is freed
 * at once, as one is between fork's prepare and parent handlers. */
void bw_spawned(bool dups)
{
	if (!atomic_load_explicit(&bw_g.ready, memory_order_acquire) ||
	    !bw_g.active)
		return;
	int high = bw_fd_high();
	bool held = false, inherits = dups;
	for (int fd = 0; fd < high && !(held && inherits); fd++) {
		const struct bw_conn *c = bw_fd_conn(fd);
		if (!c || c->slot.kind != BW_SLOT_SHARED)
			continue;
		held = true;
		if (!inherits) {
			int fl = bw_real.fcntl(fd, F_GETFD);
			inherits = fl >= 0 && !(fl & FD_CLOEXEC);
		}
	}
	if (!held || !inherits)
		return;
	fork_prepare();
	bw_bulkhead_forked(false);
}

static void init_once(void)
{
	struct bw_policy_error err;

	bw_real_bind();
	/* The core sees the program's signal dispositions (core/sys.h). */
	bw_sys.sigaction = bw__sigaction;
	bw_log_init(); /* before the first line */
	bw_g.log_level = BW_LOG_WARN;
	const char *lv = getenv("BULWARK_LOG");
	if (lv && lv[0]) {
		int l = bw_log_level_from_name(lv);
		if (l >= 0)
			bw_g.log_level = l;
		else
			bw_log(BW_LOG_WARN, "policy_error", NULL, "msg=%q",
			       "BULWARK_LOG: expected off, error, warn, info or debug");
	}
	const char *lf = getenv("BULWARK_LOG_FILE");
	if (lf && strlen(lf) < sizeof(bw_g.log_file))
		strcpy(bw_g.log_file, lf);

	if (env_on("BULWARK_DISABLE"))
		goto out;

	const char *st = getenv("BULWARK_STATE");
	if (st && st[0] && bw_policy_check_state_name(st) < 0 &&
	    strcmp(st, "private") != 0) {
		memset(&err, 0, sizeof(err));
		strcpy(err.origin, "env");
		snprintf(err.msg, sizeof(err.msg),
			 "BULWARK_STATE: '%.64s' is not a state name (letters, "
			 "digits, '.', '_', '-'; at most 64)",
			 st);
		goto bad;
	}
	if (load_policy(&err) < 0)
		goto bad;
	bw_clock_init();
	bw_g.active = true;
	attach_state();
	/* Follows the policy pushed into a shared state (shim/live.c):
	 * one pushed before we started is in force from here on. */
	bw_live_setup(&bw_g.state);
	/* Bulkhead slots belong to open file descriptions, which a fork
	 * shares (doc/design.md L8). */
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	goto out;
bad:
	say_policy_error(&err);
	if (env_on("BULWARK_STRICT"))
		_exit(2);
out:
	atomic_store_explicit(&bw_g.ready, 1, memory_order_release);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

void bw__init(void)
{
	pthread_once(&once, init_once);
}

__attribute__((constructor)) static void bw_constructor(void)
{
	/* Start-up's one boundary, as a hook's: nothing it does (the
	 * policy file read, fd 2 examined, the state attached) shows in the
	 * program's errno. */
	int saved = errno;
	bw__init();
	BW_USDT_INIT();
	errno = saved;
}
