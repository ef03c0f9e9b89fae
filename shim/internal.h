/* SPDX-License-Identifier: MIT */
/*
 * shim/internal.h: what every shim module shares: the process-wide
 * configuration (bw_g), branch hints, the export attribute, the clock and
 * the errno-keeping helpers of doc/design.md H4-H5.
 */
#ifndef BW_SHIM_INTERNAL_H
#define BW_SHIM_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/state.h"
#include "policy/policy.h"
#include "shim/live.h"

#define BW_LIKELY(x) __builtin_expect(!!(x), 1)
#define BW_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BW_NOINLINE __attribute__((noinline))
#define BW_EXPORT __attribute__((visibility("default")))

/*
 * The error convention (doc/design.md "Error convention"): below the hooks
 * a function returns >= 0 (a count, or a named outcome of its own enum:
 * BW_HEDGE_PASSED, BW_CALL_QUEUED, BW_ASYNC_SETTLED) or -errno.  It never
 * reads errno for its caller nor puts it back: a system call it makes may
 * leave errno changed.  A hook converts once, at the boundary: it keeps
 * the program's errno on entry when anything below may change it, and
 * returns with bw_hook_ret (or bw_hook_fail), so that an allowed call that
 * succeeds leaves errno as the program had it.  The core never touches
 * errno (its system calls go through bw_sys).  errno is saved and restored
 * by hand only at a hook boundary (the constructor's included), in
 * signal-handler context (log.c's bw_log too), before a receive hook's
 * real call (wait.c's bw_wait), and on the closing path called from the
 * close hooks; each such place says which.
 */

/* A libc call's result in that convention (libuv's UV__ERR): rc, or
 * -errno when it failed.  The call is the argument, so errno is read
 * right after it. */
static inline int bw_sysret(int rc)
{
	return rc < 0 ? -errno : rc;
}

/* Runs stmt with errno saved and restored around it (doc/design.md H5). */
#define BW_KEEP_ERRNO(stmt)                  \
	do {                                 \
		int bw_saved_errno_ = errno; \
		stmt;                        \
		errno = bw_saved_errno_;     \
	} while (0)

/* Converts an internal -errno into libc's -1/errno (doc/design.md H4). */
static inline int bw_hook_fail(int rc)
{
	errno = -rc;
	return -1;
}

/* A hook's one conversion of an internal result rc (musl's
 * __syscall_ret): -errno becomes -1 with errno set; anything else is
 * returned with errno put back to saved, the program's errno on entry to
 * the hook (doc/design.md H4, H5). */
static inline int bw_hook_ret(int rc, int saved)
{
	if (rc < 0)
		return bw_hook_fail(rc);
	errno = saved;
	return rc;
}

/* Process-wide configuration, written once by the constructor (and the
 * fork child handler) before bw_g.ready is set; read-only afterwards.
 * The policy is not here: the process's own is bw_policy_env(), the one
 * in force bw_policy_now() / bw_live_enter() (shim/live.h), which a push
 * replaces while the process runs. */
struct bw_global {
	_Atomic int ready; /* 1 once everything below is usable */
	bool active;	   /* policy applies (not disabled, not invalid) */
	struct bw_state state;
	int log_level;	    /* BW_LOG_* */
	char log_file[256]; /* "" : standard error */
	char state_name[BW_POLICY_NAME_MAX];
};
extern struct bw_global bw_g;

/* The rule index of a connection no rule matches: observed only. */
#define BW_RULE_OBSERVED (-1)
/* The rule column of status for such a destination. */
#define BW_RULE_OBSERVED_TEXT "(observed)"

/* What an observed destination gets: nothing (no breaker, bulkhead,
 * retries, timeouts or hedge); its calls are only counted.  calls.c also
 * keeps its outcomes away from the breaker. */
extern const struct bw_settings bw_observed_settings;

/* Settings for an encoded rule (shim/live.h; BW_RULE_OBSERVED: nothing
 * applies): those of the generation the rule was bound under. */
static inline const struct bw_settings *bw_settings_for(int rule)
{
	return rule < 0 ? &bw_observed_settings : &bw_live_rule_of(rule)->s;
}

/* While bw_g.state is a shared segment, a SIGBUS inside it (its file was
 * truncated) makes the state private instead of killing the process
 * (shim/hook_signal.c).  Returns 0 or -errno. */
int bw_sigbus_guard(void);
/* sigaction as the program sees it (its own SIGBUS disposition while
 * guarded); 0 or -errno, errno untouched (hook_signal.c). */
struct sigaction;
int bw__sigaction(int sig, const struct sigaction *act,
		  struct sigaction *oldact);

/* Initialises the shim once; safe to call from any hook (pthread_once). */
void bw__init(void);
/* After a child started without fork's handlers (vfork, posix_spawn,
 * system, popen; shim/hook_spawn.c): if it may have inherited a tracked
 * socket holding a bulkhead slot (an fd without FD_CLOEXEC, or dups: the
 * child or a spawn file action duplicated a tracked fd), does what the
 * fork handlers do.  May change errno (its callers keep it). */
void bw_spawned(bool dups);

#endif
