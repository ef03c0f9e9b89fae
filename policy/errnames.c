/* SPDX-License-Identifier: MIT */
/*
 * policy/errnames.c: errno names <-> values for breaker.errno and
 * bulkhead.errno.  Names compare case-insensitively; a value's name is its
 * canonical one (EAGAIN, not EWOULDBLOCK), aliases come after all names.
 * Never: allocates, uses the locale (no strerror).  AS-safe: yes.
 * Linux only: every name below exists in glibc's and musl's errno.h.
 */
#include <errno.h>
#include <stddef.h>

#include "policy/internal.h"

struct errname {
	const char *name;
	int value;
};

static const struct errname errnames[] = {
	{ "EPERM", EPERM },
	{ "ENOENT", ENOENT },
	{ "ESRCH", ESRCH },
	{ "EINTR", EINTR },
	{ "EIO", EIO },
	{ "ENXIO", ENXIO },
	{ "E2BIG", E2BIG },
	{ "ENOEXEC", ENOEXEC },
	{ "EBADF", EBADF },
	{ "ECHILD", ECHILD },
	{ "EAGAIN", EAGAIN },
	{ "ENOMEM", ENOMEM },
	{ "EACCES", EACCES },
	{ "EFAULT", EFAULT },
	{ "ENOTBLK", ENOTBLK },
	{ "EBUSY", EBUSY },
	{ "EEXIST", EEXIST },
	{ "EXDEV", EXDEV },
	{ "ENODEV", ENODEV },
	{ "ENOTDIR", ENOTDIR },
	{ "EISDIR", EISDIR },
	{ "EINVAL", EINVAL },
	{ "ENFILE", ENFILE },
	{ "EMFILE", EMFILE },
	{ "ENOTTY", ENOTTY },
	{ "ETXTBSY", ETXTBSY },
	{ "EFBIG", EFBIG },
	{ "ENOSPC", ENOSPC },
	{ "ESPIPE", ESPIPE },
	{ "EROFS", EROFS },
	{ "EMLINK", EMLINK },
	{ "EPIPE", EPIPE },
	{ "EDOM", EDOM },
	{ "ERANGE", ERANGE },
	{ "EDEADLK", EDEADLK },
	{ "ENAMETOOLONG", ENAMETOOLONG },
	{ "ENOLCK", ENOLCK },
	{ "ENOSYS", ENOSYS },
	{ "ENOTEMPTY", ENOTEMPTY },
	{ "ELOOP", ELOOP },
	{ "ENOMSG", ENOMSG },
	{ "EIDRM", EIDRM },
	{ "ENOSTR", ENOSTR },
	{ "ENODATA", ENODATA },
	{ "ETIME", ETIME },
	{ "ENOSR", ENOSR },
	{ "ENOLINK", ENOLINK },
	{ "EPROTO", EPROTO },
	{ "EMULTIHOP", EMULTIHOP },
	{ "EBADMSG", EBADMSG },
	{ "EOVERFLOW", EOVERFLOW },
	{ "EILSEQ", EILSEQ },
	{ "EUSERS", EUSERS },
	{ "ENOTSOCK", ENOTSOCK },
	{ "EDESTADDRREQ", EDESTADDRREQ },
	{ "EMSGSIZE", EMSGSIZE },
	{ "EPROTOTYPE", EPROTOTYPE },
	{ "ENOPROTOOPT", ENOPROTOOPT },
	{ "EPROTONOSUPPORT", EPROTONOSUPPORT },
	{ "ESOCKTNOSUPPORT", ESOCKTNOSUPPORT },
	{ "EOPNOTSUPP", EOPNOTSUPP },
	{ "EPFNOSUPPORT", EPFNOSUPPORT },
	{ "EAFNOSUPPORT", EAFNOSUPPORT },
	{ "EADDRINUSE", EADDRINUSE },
	{ "EADDRNOTAVAIL", EADDRNOTAVAIL },
	{ "ENETDOWN", ENETDOWN },
	{ "ENETUNREACH", ENETUNREACH },
	{ "ENETRESET", ENETRESET },
	{ "ECONNABORTED", ECONNABORTED },
	{ "ECONNRESET", ECONNRESET },
	{ "ENOBUFS", ENOBUFS },
	{ "EISCONN", EISCONN },
	{ "ENOTCONN", ENOTCONN },
	{ "ESHUTDOWN", ESHUTDOWN },
	{ "ETOOMANYREFS", ETOOMANYREFS },
	{ "ETIMEDOUT", ETIMEDOUT },
	{ "ECONNREFUSED", ECONNREFUSED },
	{ "EHOSTDOWN", EHOSTDOWN },
	{ "EHOSTUNREACH", EHOSTUNREACH },
	{ "EALREADY", EALREADY },
	{ "EINPROGRESS", EINPROGRESS },
	{ "ESTALE", ESTALE },
	{ "EDQUOT", EDQUOT },
	{ "ECANCELED", ECANCELED },
	{ "EOWNERDEAD", EOWNERDEAD },
	{ "ENOTRECOVERABLE", ENOTRECOVERABLE },
	{ "ERFKILL", ERFKILL },
	{ "EHWPOISON", EHWPOISON },
	{ "EREMOTEIO", EREMOTEIO },
	{ "ENOMEDIUM", ENOMEDIUM },
	{ "EMEDIUMTYPE", EMEDIUMTYPE },
	{ "ENOKEY", ENOKEY },
	{ "EKEYEXPIRED", EKEYEXPIRED },
	{ "EKEYREVOKED", EKEYREVOKED },
	{ "EKEYREJECTED", EKEYREJECTED },
	{ "ECOMM", ECOMM },
	{ "EREMOTE", EREMOTE },
	{ "ENONET", ENONET },
	{ "EBADE", EBADE },
	{ "EBADR", EBADR },
	{ "EXFULL", EXFULL },
	{ "ENOANO", ENOANO },
	{ "EBADRQC", EBADRQC },
	{ "EBADSLT", EBADSLT },
	{ "EBFONT", EBFONT },
	{ "ECHRNG", ECHRNG },
	{ "EL2NSYNC", EL2NSYNC },
	{ "EL3HLT", EL3HLT },
	{ "EL3RST", EL3RST },
	{ "ELNRNG", ELNRNG },
	{ "EUNATCH", EUNATCH },
	{ "ENOCSI", ENOCSI },
	{ "EL2HLT", EL2HLT },
	{ "ENOPKG", ENOPKG },
	{ "EADV", EADV },
	{ "ESRMNT", ESRMNT },
	{ "EDOTDOT", EDOTDOT },
	{ "ENOTUNIQ", ENOTUNIQ },
	{ "EBADFD", EBADFD },
	{ "EREMCHG", EREMCHG },
	{ "ELIBACC", ELIBACC },
	{ "ELIBBAD", ELIBBAD },
	{ "ELIBSCN", ELIBSCN },
	{ "ELIBMAX", ELIBMAX },
	{ "ELIBEXEC", ELIBEXEC },
	{ "ERESTART", ERESTART },
	{ "ESTRPIPE", ESTRPIPE },
	{ "EUCLEAN", EUCLEAN },
	{ "ENOTNAM", ENOTNAM },
	{ "ENAVAIL", ENAVAIL },
	{ "EISNAM", EISNAM },
	/* Aliases: accepted, never printed. */
	{ "EWOULDBLOCK", EWOULDBLOCK },
	{ "EDEADLOCK", EDEADLOCK },
	{ "ENOTSUP", ENOTSUP },
};

#define NERRNAMES (sizeof(errnames) / sizeof(errnames[0]))

int bw_policy_errno_from_name(const char *name, size_t len)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < NERRNAMES; i++) {
		const char *e = errnames[i].name;
		size_t j = 0;
		while (j < len && e[j] && bw__lower(name[j]) == bw__lower(e[j]))
			j++;
		if (j == len && !e[j])
			return errnames[i].value;
	}
	return -1;
}

const char *bw_policy_errno_name(int e)
{
	for (size_t i = 0; i < NERRNAMES; i++)
		if (errnames[i].value == e)
			return errnames[i].name;
	return NULL;
}
