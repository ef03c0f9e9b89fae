/* SPDX-License-Identifier: MIT */
/*
 * core/sys.h: the core's system calls (bw_sys), one table.  The core and
 * its seams (state.c, livestore.c, bulkhead.c, sigrule.c, clock.c) call
 * the kernel only through it, never libc by a name the shim exports: inside
 * libbulwark.so such a name binds to our own hook, so the core would
 * re-enter the hook layer (while attaching the state, inside init's
 * pthread_once).  `tests/bats/cli.bats` checks that libbulwark.so has no
 * relocation against a symbol it exports.
 *
 * Every entry returns its result or -errno and never touches errno, so
 * nothing in core/ but sys.c reads or writes errno: the core calls no
 * other function that may set it (getpid, geteuid and
 * clock_gettime(CLOCK_MONOTONIC) cannot fail; pthread_sigmask returns
 * its error).  The defaults (core/sys.c) make the system call directly or
 * through a libc wrapper the shim does not export, so they work before
 * the shim's constructor, in the command and in the unit tests alike; the
 * shim replaces only sigaction (init.c: the program's own SIGBUS
 * disposition, hook_signal.c).  Unit tests replace entries to
 * inject faults (tests/unit/test_sys.c) and put bw_sys_default back.
 */
#ifndef BW_CORE_SYS_H
#define BW_CORE_SYS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

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
	ssize_t (*read)(int fd, void *buf, size_t n);
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*fstat)(int fd, struct stat *sb);
	int (*fchmod)(int fd, mode_t mode);
	int (*ftruncate)(int fd, off_t len);
	/* posix_fallocate(3): written out where the file system cannot. */
	int (*fallocate)(int fd, off_t off, off_t len);
	int (*linkat)(int odfd, const char *old, int ndfd, const char *new_,
		      int flags);
	int (*unlinkat)(int dfd, const char *path, int flags);
	ssize_t (*readlinkat)(int dfd, const char *path, char *buf, size_t cap);
	/* struct linux_dirent64 records, as getdents64(2). */
	ssize_t (*getdents64)(int fd, void *buf, size_t cap);
	/* 0 with the mapping in *out, or -errno (*out untouched). */
	int (*mmap)(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off, void **out);
	int (*munmap)(void *addr, size_t len);
	/* futex(2) with a bitset: FUTEX_WAIT_BITSET (ts absolute) or
	 * FUTEX_WAKE_BITSET (val: how many; returns how many woke). */
	int (*futex)(uint32_t *word, int op, uint32_t val,
		     const struct timespec *ts, uint32_t mask);
	/* Relative; -EINTR when a signal handler ran. */
	int (*nanosleep)(const struct timespec *req);
	int (*sched_yield)(void);
};

extern struct bw_sys bw_sys;
extern const struct bw_sys bw_sys_default;

#endif
