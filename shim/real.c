/* SPDX-License-Identifier: MIT */
/*
 * shim/real.c: the table of real libc functions (bw_real) and the kernel
 * fallbacks it holds until bw_real_bind() runs.
 * Owns: bw_real, bw_real_bind.  Never: allocates before binding; a fallback
 * calls only syscall(2) (doc/design.md L1).  Binding runs once, under
 * pthread_once in bw__init, and refuses a symbol that resolves back into
 * the shim itself (a second copy of us loaded under another name).
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/internal.h"
#include "shim/real.h"

/* ---- kernel fallbacks (pre-initialisation) ----------------------------- */

static int fb_socket(int d, int t, int p)
{
	return (int)syscall(SYS_socket, d, t, p);
}
static int fb_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return (int)syscall(SYS_connect, fd, sa, len);
}
static int fb_accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	return (int)syscall(SYS_accept4, fd, sa, len, 0);
}
static int fb_accept4(int fd, struct sockaddr *sa, socklen_t *len, int fl)
{
	return (int)syscall(SYS_accept4, fd, sa, len, fl);
}
static int fb_getsockopt(int fd, int lv, int nm, void *v, socklen_t *l)
{
	return (int)syscall(SYS_getsockopt, fd, lv, nm, v, l);
}
static int fb_shutdown(int fd, int how)
{
	return (int)syscall(SYS_shutdown, fd, how);
}
static int fb_socketpair(int d, int t, int p, int sv[2])
{
	return (int)syscall(SYS_socketpair, d, t, p, sv);
}
static int fb_pipe(int fds[2])
{
	return (int)syscall(SYS_pipe2, fds, 0);
}
static int fb_pipe2(int fds[2], int fl)
{
	return (int)syscall(SYS_pipe2, fds, fl);
}
static int fb_openat(int dfd, const char *p, int fl, ...)
{
	va_list ap;
	va_start(ap, fl);
	mode_t mode = bw_open_mode(fl, ap);
	va_end(ap);
	return (int)syscall(SYS_openat, dfd, p, fl, mode);
}
static int fb_open(const char *p, int fl, ...)
{
	va_list ap;
	va_start(ap, fl);
	mode_t mode = bw_open_mode(fl, ap);
	va_end(ap);
	return fb_openat(AT_FDCWD, p, fl, mode);
}
static ssize_t fb_send(int fd, const void *b, size_t n, int fl)
{
	return syscall(SYS_sendto, fd, b, n, fl, NULL, 0);
}
static ssize_t fb_sendto(int fd, const void *b, size_t n, int fl,
			 const struct sockaddr *sa, socklen_t l)
{
	return syscall(SYS_sendto, fd, b, n, fl, sa, l);
}
static ssize_t fb_sendmsg(int fd, const struct msghdr *m, int fl)
{
	return syscall(SYS_sendmsg, fd, m, fl);
}
static int fb_sendmmsg(int fd, struct mmsghdr *m, unsigned int n, int fl)
{
	return (int)syscall(SYS_sendmmsg, fd, m, n, fl);
}
static ssize_t fb_write(int fd, const void *b, size_t n)
{
	return syscall(SYS_write, fd, b, n);
}
static ssize_t fb_writev(int fd, const struct iovec *v, int n)
{
	return syscall(SYS_writev, fd, v, n);
}
static ssize_t fb_sendfile(int o, int i, off_t *off, size_t n)
{
	return syscall(SYS_sendfile, o, i, off, n);
}
static ssize_t fb_sendfile64(int o, int i, off64_t *off, size_t n)
{
	return syscall(SYS_sendfile, o, i, off, n);
}
static ssize_t fb_recv(int fd, void *b, size_t n, int fl)
{
	return syscall(SYS_recvfrom, fd, b, n, fl, NULL, NULL);
}
static ssize_t fb_recvfrom(int fd, void *b, size_t n, int fl,
			   struct sockaddr *sa, socklen_t *l)
{
	return syscall(SYS_recvfrom, fd, b, n, fl, sa, l);
}
static ssize_t fb_recvmsg(int fd, struct msghdr *m, int fl)
{
	return syscall(SYS_recvmsg, fd, m, fl);
}
static int fb_recvmmsg(int fd, struct mmsghdr *m, unsigned int n, int fl,
		       struct timespec *t)
{
	return (int)syscall(SYS_recvmmsg, fd, m, n, fl, t);
}
static ssize_t fb_read(int fd, void *b, size_t n)
{
	return syscall(SYS_read, fd, b, n);
}
static ssize_t fb_readv(int fd, const struct iovec *v, int n)
{
	return syscall(SYS_readv, fd, v, n);
}
static ssize_t fb_read_chk(int fd, void *b, size_t n, size_t cap)
{
	if (n > cap)
		__builtin_trap(); /* what glibc's __chk_fail amounts to */
	return syscall(SYS_read, fd, b, n);
}
static ssize_t fb_recv_chk(int fd, void *b, size_t n, size_t cap, int fl)
{
	if (n > cap)
		__builtin_trap();
	return syscall(SYS_recvfrom, fd, b, n, fl, NULL, NULL);
}
static ssize_t fb_recvfrom_chk(int fd, void *b, size_t n, size_t cap, int fl,
			       struct sockaddr *sa, socklen_t *l)
{
	if (n > cap)
		__builtin_trap();
	return syscall(SYS_recvfrom, fd, b, n, fl, sa, l);
}
static int fb_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}
static int fb_close_range(unsigned int a, unsigned int b, int fl)
{
	return (int)syscall(SYS_close_range, a, b, fl);
}
static void fb_closefrom(int lo)
{
	syscall(SYS_close_range, (unsigned)lo, ~0u, 0);
}
static int fb_dup(int fd)
{
	return (int)syscall(SYS_dup, fd);
}
static int fb_dup2(int a, int b)
{
	if (a == b) /* dup3 refuses this case; dup2 checks a is open */
		return (int)syscall(SYS_fcntl, a, F_GETFD) < 0 ? -1 : b;
	return (int)syscall(SYS_dup3, a, b, 0);
}
static int fb_dup3(int a, int b, int fl)
{
	return (int)syscall(SYS_dup3, a, b, fl);
}
static int fb_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return (int)syscall(SYS_fcntl, fd, cmd, arg);
}
static int fb_poll(struct pollfd *p, nfds_t n, int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	return (int)syscall(SYS_ppoll, p, n, ms < 0 ? NULL : &ts, NULL, 0);
}

static int fb_ppoll(struct pollfd *p, nfds_t n, const struct timespec *ts,
		    const __sigset_t *mask)
{
	return (int)syscall(SYS_ppoll, p, n, ts, mask, _NSIG / 8);
}

static int fb_pselect(int n, fd_set *r, fd_set *w, fd_set *e,
		      const struct timespec *ts, const __sigset_t *mask)
{
	struct {
		const void *ss;
		size_t len;
	} data = { mask, _NSIG / 8 };
	return (int)syscall(SYS_pselect6, n, r, w, e, ts, mask ? &data : NULL);
}

static int fb_select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	struct timespec ts;
	if (tv) {
		ts.tv_sec = tv->tv_sec;
		ts.tv_nsec = tv->tv_usec * 1000L;
	}
	return fb_pselect(n, r, w, e, tv ? &ts : NULL, NULL);
}

static int fb_epoll_create1(int fl)
{
	return (int)syscall(SYS_epoll_create1, fl);
}

static int fb_epoll_create(int size)
{
	if (size <= 0) {
		errno = EINVAL;
		return -1;
	}
	return fb_epoll_create1(0);
}

static int fb_epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
	return (int)syscall(SYS_epoll_ctl, ep, op, fd, ev);
}

static int fb_epoll_pwait(int ep, struct epoll_event *ev, int n, int ms,
			  const __sigset_t *mask)
{
	return (int)syscall(SYS_epoll_pwait, ep, ev, n, ms, mask, _NSIG / 8);
}

static int fb_epoll_wait(int ep, struct epoll_event *ev, int n, int ms)
{
	return fb_epoll_pwait(ep, ev, n, ms, NULL);
}

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif
static int fb_epoll_pwait2(int ep, struct epoll_event *ev, int n,
			   const struct timespec *ts, const __sigset_t *mask)
{
	return (int)syscall(SYS_epoll_pwait2, ep, ev, n, ts, mask, _NSIG / 8);
}

/* Functions with no system call behind them resolve themselves on first
 * use; they are never on an allocator's start-up path. */
static void *lazy(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}
static int fb_fclose(FILE *f)
{
	int (*fn)(FILE *) = (int (*)(FILE *))lazy("fclose");
	if (!fn) {
		errno = ENOSYS;
		return EOF;
	}
	return fn(f);
}
static int fb_getaddrinfo(const char *n, const char *s,
			  const struct addrinfo *h, struct addrinfo **r)
{
	int (*fn)(const char *, const char *, const struct addrinfo *,
		  struct addrinfo **) =
		(int (*)(const char *, const char *, const struct addrinfo *,
			 struct addrinfo **))lazy("getaddrinfo");
	return fn ? fn(n, s, h, r) : EAI_SYSTEM;
}
static struct hostent *fb_gethostbyname(const char *n)
{
	struct hostent *(*fn)(const char *) =
		(struct hostent * (*)(const char *)) lazy("gethostbyname");
	return fn ? fn(n) : NULL;
}
static struct hostent *fb_gethostbyname2(const char *n, int af)
{
	struct hostent *(*fn)(const char *, int) =
		(struct hostent * (*)(const char *, int))
			lazy("gethostbyname2");
	return fn ? fn(n, af) : NULL;
}
static int fb_gethostbyname_r(const char *n, struct hostent *h, char *b,
			      size_t l, struct hostent **r, int *e)
{
	int (*fn)(const char *, struct hostent *, char *, size_t,
		  struct hostent **, int *) =
		(int (*)(const char *, struct hostent *, char *, size_t,
			 struct hostent **, int *))lazy("gethostbyname_r");
	return fn ? fn(n, h, b, l, r, e) : ENOSYS;
}
static int fb_gethostbyname2_r(const char *n, int af, struct hostent *h,
			       char *b, size_t l, struct hostent **r, int *e)
{
	int (*fn)(const char *, int, struct hostent *, char *, size_t,
		  struct hostent **, int *) =
		(int (*)(const char *, int, struct hostent *, char *, size_t,
			 struct hostent **, int *))lazy("gethostbyname2_r");
	return fn ? fn(n, af, h, b, l, r, e) : ENOSYS;
}
typedef int spawn_fn(pid_t *, const char *, const posix_spawn_file_actions_t *,
		     const posix_spawnattr_t *, char *const[], char *const[]);
static int fb_posix_spawn(pid_t *p, const char *f,
			  const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *a, char *const v[],
			  char *const e[])
{
	spawn_fn *fn = (spawn_fn *)lazy("posix_spawn");
	return fn ? fn(p, f, fa, a, v, e) : ENOSYS;
}
static int fb_posix_spawnp(pid_t *p, const char *f,
			   const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *a, char *const v[],
			   char *const e[])
{
	spawn_fn *fn = (spawn_fn *)lazy("posix_spawnp");
	return fn ? fn(p, f, fa, a, v, e) : ENOSYS;
}
static int fb_system(const char *c)
{
	int (*fn)(const char *) = (int (*)(const char *))lazy("system");
	if (!fn) {
		errno = ENOSYS;
		return -1;
	}
	return fn(c);
}
static FILE *fb_popen(const char *c, const char *m)
{
	FILE *(*fn)(const char *, const char *) =
		(FILE * (*)(const char *, const char *)) lazy("popen");
	if (!fn) {
		errno = ENOSYS;
		return NULL;
	}
	return fn(c, m);
}

struct bw_real bw_real = {
	.socket = fb_socket,
	.connect = fb_connect,
	.accept = fb_accept,
	.accept4 = fb_accept4,
	.getsockopt = fb_getsockopt,
	.shutdown = fb_shutdown,
	.socketpair = fb_socketpair,
	.pipe = fb_pipe,
	.pipe2 = fb_pipe2,
	.open = fb_open,
	.open64 = fb_open,
	.openat = fb_openat,
	.openat64 = fb_openat,
	.send = fb_send,
	.sendto = fb_sendto,
	.sendmsg = fb_sendmsg,
	.sendmmsg = fb_sendmmsg,
	.write = fb_write,
	.writev = fb_writev,
	.sendfile = fb_sendfile,
	.sendfile64 = fb_sendfile64,
	.recv = fb_recv,
	.recvfrom = fb_recvfrom,
	.recvmsg = fb_recvmsg,
	.recvmmsg = fb_recvmmsg,
	.read = fb_read,
	.readv = fb_readv,
	.read_chk = fb_read_chk,
	.recv_chk = fb_recv_chk,
	.recvfrom_chk = fb_recvfrom_chk,
	.close = fb_close,
	.close_range = fb_close_range,
	.closefrom = fb_closefrom,
	.fclose = fb_fclose,
	.dup = fb_dup,
	.dup2 = fb_dup2,
	.dup3 = fb_dup3,
	.fcntl = fb_fcntl,
	.fcntl64 = fb_fcntl,
	.poll = fb_poll,
	.ppoll = fb_ppoll,
	.posix_spawn = fb_posix_spawn,
	.posix_spawnp = fb_posix_spawnp,
	.system = fb_system,
	.popen = fb_popen,
	.select = fb_select,
	.pselect = fb_pselect,
	.epoll_create = fb_epoll_create,
	.epoll_create1 = fb_epoll_create1,
	.epoll_ctl = fb_epoll_ctl,
	.epoll_wait = fb_epoll_wait,
	.epoll_pwait = fb_epoll_pwait,
	.epoll_pwait2 = fb_epoll_pwait2,
	.getaddrinfo = fb_getaddrinfo,
	.gethostbyname = fb_gethostbyname,
	.gethostbyname2 = fb_gethostbyname2,
	.gethostbyname_r = fb_gethostbyname_r,
	.gethostbyname2_r = fb_gethostbyname2_r,
};

/* Where this object is loaded: [self_lo, self_hi). */
static uintptr_t self_lo, self_hi;

static int find_self(struct dl_phdr_info *info, size_t size, void *ctx)
{
	(void)size;
	(void)ctx;
	if (info->dlpi_addr != self_lo)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t end = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
		if (ph->p_type == PT_LOAD && end > self_hi)
			self_hi = end;
	}
	return 1;
}

/* Binds *slot to the next definition of name, unless that is ourselves
 * (doc/design.md L1).  One range check a symbol: dladdr per symbol cost 4
 * million instructions at every process start. */
static void bind1(void **slot, const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p)
		return;
	if ((uintptr_t)p >= self_lo && (uintptr_t)p < self_hi)
		return;
	*slot = p;
}

#define BIND(field, name) bind1((void **)&bw_real.field, name)

void bw_real_bind(void)
{
	Dl_info me;
	if (dladdr((void *)bind1, &me) && me.dli_fbase) {
		self_lo = (uintptr_t)me.dli_fbase;
		dl_iterate_phdr(find_self, NULL);
	}
	BIND(socket, "socket");
	BIND(connect, "connect");
	BIND(accept, "accept");
	BIND(accept4, "accept4");
	BIND(getsockopt, "getsockopt");
	BIND(shutdown, "shutdown");
	BIND(socketpair, "socketpair");
	BIND(pipe, "pipe");
	BIND(pipe2, "pipe2");
	BIND(open, "open");
	BIND(open64, "open64");
	BIND(openat, "openat");
	BIND(openat64, "openat64");
	BIND(send, "send");
	BIND(sendto, "sendto");
	BIND(sendmsg, "sendmsg");
	BIND(sendmmsg, "sendmmsg");
	BIND(write, "write");
	BIND(writev, "writev");
	BIND(sendfile, "sendfile");
	BIND(sendfile64, "sendfile64");
	BIND(recv, "recv");
	BIND(recvfrom, "recvfrom");
	BIND(recvmsg, "recvmsg");
	BIND(recvmmsg, "recvmmsg");
	BIND(read, "read");
	BIND(readv, "readv");
	BIND(read_chk, "__read_chk");
	BIND(recv_chk, "__recv_chk");
	BIND(recvfrom_chk, "__recvfrom_chk");
	BIND(close, "close");
	BIND(close_range, "close_range");
	BIND(closefrom, "closefrom");
	BIND(fclose, "fclose");
	BIND(dup, "dup");
	BIND(dup2, "dup2");
	BIND(dup3, "dup3");
	BIND(fcntl, "fcntl");
	BIND(fcntl64, "fcntl64");
	BIND(poll, "poll");
	BIND(ppoll, "ppoll");
	BIND(posix_spawn, "posix_spawn");
	BIND(posix_spawnp, "posix_spawnp");
	BIND(system, "system");
	BIND(popen, "popen");
	BIND(select, "select");
	BIND(pselect, "pselect");
	BIND(epoll_create, "epoll_create");
	BIND(epoll_create1, "epoll_create1");
	BIND(epoll_ctl, "epoll_ctl");
	BIND(epoll_wait, "epoll_wait");
	BIND(epoll_pwait, "epoll_pwait");
	BIND(epoll_pwait2, "epoll_pwait2");
	BIND(getaddrinfo, "getaddrinfo");
	BIND(gethostbyname, "gethostbyname");
	BIND(gethostbyname2, "gethostbyname2");
	BIND(gethostbyname_r, "gethostbyname_r");
	BIND(gethostbyname2_r, "gethostbyname2_r");
}
