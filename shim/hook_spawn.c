/* SPDX-License-Identifier: MIT */
/*
 * shim/hook_spawn.c: the interposed calls that start a child without
 * fork's atfork handlers: vfork, posix_spawn, posix_spawnp, system, popen.
 * Owns: those exported symbols, the vfork trampoline.  Never: changes what
 * the call does or returns; touches the fd table in a vfork child.
 *
 * Two things go wrong without these hooks.  A vfork child runs on its
 * parent's memory, so hooks called in it (Python's subprocess calls
 * close_range and dup2 there) would edit the parent's fd table and give
 * back its bulkhead slots: vfork marks the calling thread (fd_table.h,
 * bw_vfork_parent) so that the child's hooks change nothing.  And any of
 * these children may inherit a tracked socket (an fd without FD_CLOEXEC,
 * or one a vfork child or spawn file action duplicates), while no atfork
 * handler runs for them: after the call the parent does what fork's
 * handlers do (init.c, bw_spawned), so its own close of the socket hands
 * the bulkhead slot to the sweep, which frees it once the child has
 * closed the socket or exited, instead of freeing it at once.  It does so
 * before the call too, for the sockets it knows the child inherits (no
 * FD_CLOEXEC), so that a close by another thread while the call runs
 * (system() runs until the shell exits) also waits for the sweep.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "shim/fd_table.h"
#include "shim/internal.h"
#include "shim/real.h"

/* ---- vfork -----------------------------------------------------------------
 *
 * A C wrapper cannot call vfork: the child returns from the wrapper and
 * its next calls overwrite the wrapper's frame, where the parent, resumed,
 * finds its return address.  So vfork is a few instructions that keep the
 * return address in a register across the system call, as glibc's own
 * vfork (and the sanitizers' interceptors) do, and call C only before the
 * system call and, in the parent, after it.  x86_64 only; elsewhere vfork
 * is not interposed and a vfork child's hooks act as in the parent.
 * Under a CET shadow stack (glibc 2.39 and later may enable one; rdsspq
 * reads 0 without, and is a no-op on CPUs without CET) the child goes back
 * by an indirect jump, not ret, as glibc's vfork does: the shadow stack is
 * shared with the parent, whose return address must stay on it.
 */

/* Before the system call: marks the calling thread; returns the previous
 * mark (a vfork from a vfork child), restored by bw__vfork_parent. */
__attribute__((used)) uint32_t bw__vfork_enter(void);
__attribute__((used)) uint32_t bw__vfork_enter(void)
{
	uint32_t was = bw_vfork_parent;
	int e = errno;
	bw_spawned(false);
	errno = e;
	bw_vfork_dups = 0;
	bw_vfork_parent = (uint32_t)getpid();
	return was;
}

/* In the parent once the child has exec'd or exited: rc is the system
 * call's result (a pid or -errno), was the mark bw__vfork_enter found. */
__attribute__((used)) pid_t bw__vfork_parent(long rc, uint32_t was);
__attribute__((used)) pid_t bw__vfork_parent(long rc, uint32_t was)
{
	bool dups = bw_vfork_dups;
	bw_vfork_parent = was;
	bw_vfork_dups = 0;
	if (rc < 0) {
		errno = (int)-rc;
		return -1;
	}
	int e = errno;
	bw_spawned(dups);
	errno = e;
	return (pid_t)rc;
}

#if defined(__x86_64__)
/* rdi keeps the return address (the kernel preserves every register but
 * rax, rcx and r11 across syscall), rsi the previous mark; the child
 * returns straight to the caller, the parent jumps to bw__vfork_parent,
 * which returns to the caller.  58: SYS_vfork.  endbr64 (a no-op without
 * CET) lets a program built for indirect-branch tracking call us. */
__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	".p2align 4\n"
	"vfork:\n"
	".cfi_startproc\n"
	"	endbr64\n"
	"	subq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	call bw__vfork_enter\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	movl %eax, %esi\n"
	"	popq %rdi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_register %rip, %rdi\n"
	"	movl $58, %eax\n"
	"	syscall\n"
	"	pushq %rdi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %rip, 0\n"
	"	testq %rax, %rax\n"
	"	jz 1f\n"
	"	movq %rax, %rdi\n"
	"	jmp bw__vfork_parent\n"
	"1:	xorl %esi, %esi\n"
	"	rdsspq %rsi\n"
	"	testq %rsi, %rsi\n"
	"	jnz 2f\n"
	"	ret\n"
	"2:	popq %rdi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	jmp *%rdi\n"
	".cfi_endproc\n"
	".size vfork, .-vfork\n");
#endif

/* ---- posix_spawn, system, popen --------------------------------------------
 *
 * glibc starts these children with an internal clone that runs no hook
 * in the child and no atfork handler.  A file action may dup2 a tracked
 * fd into the child: with any file action, the child is assumed to keep
 * what it may (conservative: a held slot is then freed by the sweep, about
 * a second after the last process closed the socket, not at once).
 */

static bool spawn_dups(const posix_spawn_file_actions_t *fa)
{
	return fa && fa->__used > 0;
}

BW_EXPORT int posix_spawn(pid_t *pid, const char *path,
			  const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[],
			  char *const envp[])
{
	BW_KEEP_ERRNO(bw_spawned(spawn_dups(fa)));
	int rc = bw_real.posix_spawn(pid, path, fa, attr, argv, envp);
	if (rc == 0)
		BW_KEEP_ERRNO(bw_spawned(spawn_dups(fa)));
	return rc;
}

BW_EXPORT int posix_spawnp(pid_t *pid, const char *file,
			   const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[],
			   char *const envp[])
{
	BW_KEEP_ERRNO(bw_spawned(spawn_dups(fa)));
	int rc = bw_real.posix_spawnp(pid, file, fa, attr, argv, envp);
	if (rc == 0)
		BW_KEEP_ERRNO(bw_spawned(spawn_dups(fa)));
	return rc;
}

/* system(3): the shell has exited when it returns, but something it
 * started in the background may still hold the socket. */
BW_EXPORT int system(const char *cmd)
{
	if (cmd)
		BW_KEEP_ERRNO(bw_spawned(false));
	int rc = bw_real.system(cmd);
	if (cmd)
		BW_KEEP_ERRNO(bw_spawned(false));
	return rc;
}

BW_EXPORT FILE *popen(const char *cmd, const char *mode)
{
	BW_KEEP_ERRNO(bw_spawned(false));
	FILE *f = bw_real.popen(cmd, mode);
	if (f)
		BW_KEEP_ERRNO(bw_spawned(false));
	return f;
}
