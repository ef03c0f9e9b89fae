/* SPDX-License-Identifier: MIT */
/*
 * core/sys.h: the core's system calls (bw_sys), one table.  The core and
 * the seams (state.c, livestore.c, bulkhead.c, sigrule.c) call the kernel
 * only through it, never libc by a name the shim exports: inside
 * libbulwark.so such a name binds to our own hook, so the core would
 * re-enter the hook layer (while attaching the state, inside init's
 * pthread_once).  `tests/bats/cli.bats` checks that libbulwark.so has no
 * relocation against a symbol it exports.
 *
 * Every entry returns its result or -errno and never touches errno.  The
 * defaults (core/sys.c) make the system call directly, so they work
 * before the shim's constructor, in the command and in the unit tests
 * alike; the shim replaces only sigaction (init.c: the program's own
 * SIGBUS disposition, hook_signal.c).  Unit tests replace entries to
 * inject faults (tests/unit/test_sys.c) and put bw_sys_default back.
 */
#ifndef BW_CORE_SYS_H
#define BW_CORE_SYS_H

#include <signal.h>
#include <sys/types.h>

struct bw_sys {
	/* mode is read only with O_CREAT or O_TMPFILE, as openat(2). */
	int (*openat)(int dfd, const char *path, int flags, mode_t mode);
	int (*close)(int fd);
	/* Commands whose argument is an int or none (F_GETFL, F_GETFD...). */
	int (*fcntl)(int fd, int cmd, long arg);
	int (*kill)(pid_t pid, int sig);
	/* The disposition the program set (the shim keeps SIGBUS's). */
	int (*sigaction)(int sig, const struct sigaction *act,
			 struct sigaction *old);
};

extern struct bw_sys bw_sys;
extern const struct bw_sys bw_sys_default;

#endif
