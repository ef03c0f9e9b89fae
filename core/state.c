/* SPDX-License-Identifier: MIT */
/*
 * core/state.c: the per-destination table of bulwark(1) FILES in a shared
 * segment (/dev/shm/bulwark-<uid>-<name>) or private memory.  Owns: bw_state_*.
 * Never: allocates, locks, logs, sets errno, holds an fd, or indexes with a
 * value read from the segment.  Context: attach/detach from the constructor
 * or the command (not AS-safe: snprintf); get/find/slot/label/reset from any
 * hook or signal handler (AS-safe: atomics, getpid, kill, sched_yield and
 * the shim clock only; a lookup waits at most ~100 µs for another writer).
 *
 * Slot tag (bw_dest.tag), the only word that says what a slot holds:
 *
 *   0 --claim (CAS)--> PENDING|h16|sec|pid --publish (CAS)--> READY|hash>>2
 *                       |   ^      ^                             |
 *                       +-steal-+  |      reclaim (CAS, idle) <--+
 *                                  |      PENDING|h16|sec|pid, ten++,
 *   TOMB <-------------------------+----- cleared, then TOMB
 *     +--claim (CAS) by a new key, as for 0 ---> PENDING ...
 *
 * I1: a tag only moves along the diagram.  A READY tag changes only by a
 *     reclaim, which first takes the slot as a PENDING claim carrying the
 *     same h16 (so I3's waiting rule covers it), bumps the slot's tenancy
 *     (ten), clears it and leaves TOMB; a reclaimer that finds the slot
 *     busy again once it holds the claim puts the same READY tag back.
 * I2: the 16 hash bits (h16) a PENDING tag carries survive a steal.
 * I3: a new key is inserted, after a probe sequence that met neither it
 *     nor a PENDING slot with its h16, in the first TOMB of that sequence,
 *     else in its first empty slot; a lookup that meets a PENDING slot with
 *     its own h16 waits for it or gives up (NULL), and never probes past it
 *     to insert.  Lookups skip TOMBs.  Two first inserts of one key see the
 *     same first TOMB or empty slot and meet at its CAS, so the key gets one
 *     slot; the exception is a reclaim between their two scans (one sees a
 *     TOMB where the other saw a READY slot): the key may then hold two
 *     slots, lookups use the first in probe order, and the other idles out.
 * I4: key, label and rule are written only by the claimer between claim and
 *     publish, read only after an acquire load sees READY.
 * I5: every slot index is (our hash + n) & (BW_STATE_SLOTS - 1) with
 *     n < BW_STATE_PROBE_MAX; no segment byte is used as an index or length.
 * I6: a mapped segment passed every check of attach_file(); hdr->used is
 *     publishes less reclaims (approximate: a writer killed between its tag
 *     CAS and the count leaves it one off); status counts READY tags
 *     instead.  hdr->full_events counts the NULLs for lack of room.
 *
 * Reclaim (bw_state_reclaim).  A destination gives up its slot when a new
 * key finds no room in its probe sequence (the first reclaimable slot of
 * that sequence goes), or at bulwark reset --all.  Reclaimable: not
 * forced; no bulkhead slot held or waited for (bw_bulkhead_view); and for
 * the idle rule also idle BW_STATE_IDLE_S (touched: every admitted connect
 * and every recorded call stores the time, at most once a second) with
 * the breaker closed or its open time over that long ago (the next
 * connect would be let through as a probe anyway; without this the dead
 * destinations a test suite leaves behind would keep their slots for
 * ever).  An open connection that makes no call for 10 minutes counts as
 * idle: keeping an exact cross-process count of open connections would
 * cost two shared atomic operations per connection and leak on every
 * SIGKILL.  Such a connection, and any process still holding a pointer to
 * the slot, is kept away from the slot's next destination by the tenancy:
 *
 * T1: ten changes (fetch_add, seq_cst) after the reclaim's CAS took the
 *     READY tag and before anything of the slot is cleared or rewritten,
 *     and again at every publish; a published slot's ten is never 0.
 * T2: a connection reads ten BEFORE the tag and key that tell it the slot
 *     holds its key (bw_state_ten then bw_state_find_at; or bw_state_pin,
 *     which reads ten and then checks tag and key again).  Reading the new
 *     ten means the tag it then reads is not the old READY (T1), so the key
 *     it compares is the new tenant's; reading the old ten means it will
 *     find the slot not live: it stops counting, never counts for another
 *     destination.  A call whose check passed just before a reclaim may
 *     still add its counts to the cleared slot: one call per connection,
 *     within the counters' approximation.
 * T3: bulkhead hold records name their destination by slot: a slot with a
 *     slot held or waited for is never reclaimed, and a connection holding
 *     one releases it through its hold record, not through the slot.
 */
#include "core/state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/breaker.h"
#include "core/bulkhead.h"
#include "core/clock.h"
#include "core/sys.h"

/* Bytes before the first slot: the header, rounded up to a cache line. */
#define BW_STATE_HDR_AREA 128
/* A claimer fills 136 bytes between claim and publish; a lookup that meets
 * its PENDING tag first spins this many times (about 10 µs), then yields
 * the CPU this many times (tens of µs) before it asks whether the claimer
 * is dead.  Past that a live claimer makes the lookup return NULL. */
#define BW_STATE_PENDING_SPINS 256
#define BW_STATE_PENDING_YIELDS 64
/* A PENDING tag claimed this many seconds ago (whole seconds of the tag's
 * clock, so 1-2 s in fact) is taken over whatever kill() says: no writer
 * takes a second to copy 136 bytes unless stopped, and pid_max may be
 * 32768, so a dead claimer's pid is soon reused.  The 14-bit seconds wrap
 * every 4.5 hours; a claim that old may look fresh for 2 s more. */
#define BW_STATE_CLAIM_STALE_S 2
/* Probe sequences one lookup may run after losing its claimed slot to a
 * stealer.  Each loss needs another process to judge us dead or stale
 * (2 s), so even one repeat is rare; past it the lookup returns NULL. */
#define BW_STATE_RESTARTS_MAX 4
/* Attempts to open a segment that another process is creating. */
#define BW_STATE_OPEN_TRIES 4

#define TAG_KIND (BW_TAG_READY | BW_TAG_PENDING)

_Static_assert((BW_STATE_SLOTS & (BW_STATE_SLOTS - 1)) == 0,
	       "BW_STATE_SLOTS must be a power of two");
_Static_assert(BW_STATE_PROBE_MAX <= BW_STATE_SLOTS, "probe bound");
_Static_assert(sizeof(struct bw_state_hdr) <= BW_STATE_HDR_AREA, "hdr");
_Static_assert(BW_STATE_HDR_AREA % _Alignof(struct bw_dest) == 0, "align");
_Static_assert(sizeof(struct bw_dest) % _Alignof(struct bw_bh_hold) == 0,
	       "holds align");
_Static_assert(offsetof(struct bw_state_hdr, hdr_sum) == 28, "hdr layout");
_Static_assert((BW_STATE_HOLDS * sizeof(struct bw_bh_hold)) % 64 == 0,
	       "policy area align");
/* The layout of version 7.  breaker_corrupt took the place of the
 * padding after slow_count, which every version-7 segment holds as 0:
 * shims built before it share the segment unchanged. */
_Static_assert(sizeof(struct bw_dest) == 960, "bw_dest layout");
_Static_assert(offsetof(struct bw_dest, breaker_corrupt) == 236 &&
		       offsetof(struct bw_dest, open_until_ns) == 240,
	       "bw_dest layout: breaker_corrupt is the old padding");

static const char private_name[] = "private";

/* ---- small helpers ------------------------------------------------------ */

static int ok_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* 0 if name is a valid state name (BULWARK_STATE in bulwark(1)), else
 * -EINVAL. */
static int check_name(const char *name)
{
	size_t n = 0;

	if (!name)
		return -EINVAL;
	for (; name[n]; n++)
		if (n >= 64 || !ok_name_char(name[n]))
			return -EINVAL;
	if (n == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	return 0;
}

static uint32_t fnv1a32(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

static uint32_t hdr_checksum(const struct bw_state_hdr *h)
{
	return fnv1a32(h, offsetof(struct bw_state_hdr, hdr_sum));
}

static void hdr_init(struct bw_state_hdr *h, unsigned uid)
{
	h->magic = BW_STATE_MAGIC;
	h->version = BW_STATE_VERSION;
	h->slots = BW_STATE_SLOTS;
	h->size = bw_state_size();
	h->uid = uid;
	h->hdr_sum = hdr_checksum(h);
	atomic_store_explicit(&h->used, 0, memory_order_relaxed);
	atomic_store_explicit(&h->full_events, 0, memory_order_relaxed);
	atomic_store_explicit(&h->bh_hold_full, 0, memory_order_relaxed);
}

/* A name for the errno values attach can meet; no strerror (may allocate
 * for translations, not thread-safe). */
static const char *errname(int e)
{
	static const struct {
		int e;
		const char *s;
	} names[] = {
		{ ENOENT, "no such file" },
		{ EACCES, "permission denied" },
		{ EPERM, "operation not permitted" },
		{ ELOOP, "is a symbolic link" },
		{ EISDIR, "is a directory" },
		{ ENOTDIR, "not a directory" },
		{ ENOSPC, "no space left" },
		{ ENOMEM, "out of memory" },
		{ EMFILE, "too many open files" },
		{ ENFILE, "too many open files in system" },
		{ EROFS, "read-only file system" },
		{ EEXIST, "file exists" },
		{ EINVAL, "invalid argument" },
		{ EOPNOTSUPP, "operation not supported" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == e)
			return names[i].s;
	return "system error";
}

#define WHY(...)                                            \
	do {                                                \
		if (why && whycap)                          \
			snprintf(why, whycap, __VA_ARGS__); \
	} while (0)

/* ---- paths and segment files ----------------------------------------------
 */

size_t bw_state_size(void)
{
	return BW_STATE_HDR_AREA +
	       (size_t)BW_STATE_SLOTS * sizeof(struct bw_dest) +
	       (size_t)BW_STATE_HOLDS * sizeof(struct bw_bh_hold) +
	       sizeof(struct bw_policy_area);
}

int bw_state_path(const char *name, unsigned uid, char *buf, size_t cap)
{
	int n;

	if (check_name(name) < 0 || !buf)
		return -EINVAL;
	n = snprintf(buf, cap, "/dev/shm/bulwark-%u-%s", uid, name);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* Gives a new segment file its size, reserved pages and header. */
static int prepare_file(int fd, const char *path, unsigned uid, char *why,
			size_t whycap)
{
	struct bw_state_hdr h;
	size_t size = bw_state_size();
	int rc;

	/* umask may have cleared bits of 0600; attach insists on exactly it. */
	rc = bw_sys.fchmod(fd, 0600);
	if (rc == 0)
		rc = bw_sys.ftruncate(fd, (off_t)size);
	if (rc < 0) {
		WHY("state %s: cannot size: %s", path, errname(-rc));
		return rc;
	}
	/* Reserve the pages now: a store into a hole of a full tmpfs would
	 * kill the program with SIGBUS later (bulwark(1) DIAGNOSTICS). */
	rc = bw_sys.fallocate(fd, 0, (off_t)size);
	if (rc < 0 && rc != -EOPNOTSUPP && rc != -EINVAL) {
		WHY("state %s: cannot reserve %zu bytes: %s", path, size,
		    errname(-rc));
		return rc;
	}
	memset(&h, 0, sizeof(h));
	hdr_init(&h, uid);
	ssize_t w = bw_sys.pwrite(fd, &h, sizeof(h), 0);
	if (w != (ssize_t)sizeof(h)) {
		rc = w < 0 ? (int)w : -EIO;
		WHY("state %s: cannot write header: %s", path, errname(-rc));
		return rc;
	}
	return 0;
}

/*
 * Creates the segment at path race-free: an unnamed file gets its full
 * size and header, then link() publishes it whole, so no process ever opens
 * a half-made segment.  The file is an O_TMPFILE linked through
 * /proc/self/fd (nothing is left behind if we are killed meanwhile); without
 * O_TMPFILE or /proc, a ".bulwark-*" file made with O_EXCL.  Losing the race
 * (EEXIST) is success: the caller opens the winner's file.
 * Returns 0 or -errno.
 */
static int create_file(const char *path, unsigned uid, char *why, size_t whycap)
{
	static _Atomic unsigned seq;
	char tmp[160];
	int fd, rc, n;
	bool named = false;

	fd = bw_sys.openat(AT_FDCWD, "/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC,
			   0600);
	if (fd >= 0) {
		rc = prepare_file(fd, path, uid, why, whycap);
		if (rc < 0)
			goto out;
		n = snprintf(tmp, sizeof(tmp), "/proc/self/fd/%d", fd);
		if (n < 0 || (size_t)n >= sizeof(tmp)) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		rc = bw_sys.linkat(AT_FDCWD, tmp, AT_FDCWD, path,
				   AT_SYMLINK_FOLLOW);
		if (rc == 0 || rc == -EEXIST) {
			rc = 0;
			goto out;
		}
		if (rc != -ENOENT) { /* ENOENT: no /proc; try a name */
			WHY("state %s: cannot create: %s", path, errname(-rc));
			goto out;
		}
		bw_sys.close(fd);
	}
	/* A leading dot: never the name of a state segment. */
	n = snprintf(tmp, sizeof(tmp), "/dev/shm/.bulwark-%u.%ld.%u.tmp", uid,
		     (long)getpid(), atomic_fetch_add(&seq, 1));
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = bw_sys.openat(AT_FDCWD, tmp,
			   O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			   0600);
	if (fd < 0) {
		rc = fd;
		WHY("state %s: cannot create %s: %s", path, tmp, errname(-rc));
		return rc;
	}
	named = true;
	rc = prepare_file(fd, path, uid, why, whycap);
	if (rc == 0) {
		rc = bw_sys.linkat(AT_FDCWD, tmp, AT_FDCWD, path, 0);
		if (rc == -EEXIST)
			rc = 0;
		else if (rc < 0)
			WHY("state %s: cannot create: %s", path, errname(-rc));
	}
out:
	if (named)
		bw_sys.unlinkat(AT_FDCWD, tmp, 0);
	bw_sys.close(fd);
	return rc;
}

static void state_clear(struct bw_state *st)
{
	memset(st, 0, sizeof(*st));
}

/* Checks an open segment file and maps it (I6).  Returns 0 or -errno. */
static int map_file(struct bw_state *st, int fd, const char *path, unsigned uid,
		    char *why, size_t whycap)
{
	struct stat sb;
	struct bw_state_hdr *h;
	size_t size = bw_state_size();
	void *m;
	int rc;

	rc = bw_sys.fstat(fd, &sb);
	if (rc < 0) {
		WHY("state %s: %s", path, errname(-rc));
		return rc;
	}
	if (!S_ISREG(sb.st_mode)) {
		WHY("state %s: not a regular file", path);
		return -EINVAL;
	}
	if (sb.st_uid != uid) {
		WHY("state %s: owned by uid %u, not %u", path,
		    (unsigned)sb.st_uid, uid);
		return -EACCES;
	}
	if ((sb.st_mode & 07777) != 0600) {
		WHY("state %s: mode %04o, not 0600", path,
		    (unsigned)(sb.st_mode & 07777));
		return -EACCES;
	}
	if (sb.st_size < 0 || (uint64_t)sb.st_size != size) {
		WHY("state %s: %lld bytes, not %zu", path,
		    (long long)sb.st_size, size);
		return -EINVAL;
	}
	rc = bw_sys.mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0,
			 &m);
	if (rc < 0) {
		WHY("state %s: cannot map: %s", path, errname(-rc));
		return rc;
	}
	h = m;
	rc = -EPROTO;
	if (h->magic != BW_STATE_MAGIC)
		WHY("state %s: not a bulwark state (bad magic)", path);
	else if (h->version != BW_STATE_VERSION)
		WHY("state %s: version %u, not %u", path, h->version,
		    (unsigned)BW_STATE_VERSION);
	else if (h->slots != BW_STATE_SLOTS || h->size != size)
		WHY("state %s: layout %u slots/%llu bytes, not %u/%zu", path,
		    h->slots, (unsigned long long)h->size,
		    (unsigned)BW_STATE_SLOTS, size);
	else if (h->uid != uid)
		WHY("state %s: header names uid %u, not %u", path, h->uid, uid);
	else if (h->hdr_sum != hdr_checksum(h)) {
		WHY("state %s: corrupt header (bad checksum)", path);
		rc = -EBADMSG;
	} else
		rc = 0;
	if (rc < 0) {
		bw_sys.munmap(m, size);
		return rc;
	}
	st->hdr = h;
	st->dests = (struct bw_dest *)((char *)m + BW_STATE_HDR_AREA);
	st->holds = (struct bw_bh_hold *)(st->dests + BW_STATE_SLOTS);
	st->pol = (struct bw_policy_area *)(st->holds + BW_STATE_HOLDS);
	st->map_len = size;
	st->shared = true;
	return 0;
}

static int attach_file(struct bw_state *st, const char *name, bool create,
		       char *why, size_t whycap)
{
	unsigned uid = (unsigned)geteuid();
	int rc, fd;

	rc = bw_state_path(name, uid, st->path, sizeof(st->path));
	if (rc < 0) {
		WHY("state name \"%.70s\": %s", name ? name : "(null)",
		    rc == -EINVAL ? "use 1-64 letters, digits, '.', '_', '-'"
				  : "too long");
		return rc;
	}
	for (int tries = 0;; tries++) {
		fd = bw_sys.openat(AT_FDCWD, st->path,
				   O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
					   O_NONBLOCK,
				   0);
		if (fd >= 0)
			break;
		rc = fd;
		if (rc != -ENOENT || !create || tries >= BW_STATE_OPEN_TRIES) {
			WHY("state %s: %s", st->path, errname(-rc));
			return rc;
		}
		rc = create_file(st->path, uid, why, whycap);
		if (rc < 0)
			return rc;
	}
	rc = map_file(st, fd, st->path, uid, why, whycap);
	bw_sys.close(fd); /* doc/design.md L9: hold no fd */
	return rc;
}

int bw_state_attach_private(struct bw_state *st)
{
	size_t size = bw_state_size();
	void *m;
	int rc;

	state_clear(st);
	/* Pages come on first touch: an unused table costs nothing. */
	rc = bw_sys.mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
			 &m);
	if (rc < 0)
		return rc;
	st->hdr = m;
	hdr_init(st->hdr, (unsigned)geteuid());
	st->dests = (struct bw_dest *)((char *)m + BW_STATE_HDR_AREA);
	st->holds = (struct bw_bh_hold *)(st->dests + BW_STATE_SLOTS);
	st->pol = (struct bw_policy_area *)(st->holds + BW_STATE_HOLDS);
	st->map_len = size;
	st->shared = false;
	return 0;
}

int bw_state_attach(struct bw_state *st, const char *name, bool create,
		    char *why, size_t whycap)
{
	int rc;

	if (why && whycap)
		why[0] = '\0';
	state_clear(st);
	if (name && strcmp(name, private_name) == 0) {
		rc = bw_state_attach_private(st);
		if (rc < 0)
			WHY("state private: cannot map %zu bytes: %s",
			    bw_state_size(), errname(-rc));
	} else {
		rc = attach_file(st, name, create, why, whycap);
		if (rc < 0)
			state_clear(st);
	}
	return rc;
}

int bw_state_lose(struct bw_state *st)
{
	void *m;
	int rc;

	if (!st || !st->hdr || !st->map_len)
		return -EINVAL;
	rc = bw_sys.mmap(st->hdr, st->map_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
				 MAP_NORESERVE,
			 -1, 0, &m);
	if (rc == 0) {
		/* Zeroed slots: tenancy 0, which no published slot has
		 * (fill_publish), so no connection bound before is live. */
		hdr_init(st->hdr, (unsigned)geteuid());
		st->shared = false;
	}
	return rc;
}

bool bw_state_contains(const struct bw_state *st, const void *addr)
{
	uintptr_t a = (uintptr_t)addr, b;

	if (!st || !st->hdr)
		return false;
	b = (uintptr_t)st->hdr;
	return a >= b && a - b < st->map_len;
}

void bw_state_detach(struct bw_state *st)
{
	if (st->hdr)
		bw_sys.munmap(st->hdr, st->map_len);
	state_clear(st);
}

/* ---- keys -----------------------------------------------------------------
 */

/* How many bytes of addr name a key of this family (0: a group). */
static size_t key_addr_len(uint8_t family)
{
	static const struct bw_dest_key k;

	return family == AF_INET ? 4 : family ? sizeof(k.addr) : 0;
}

/* The canonical form of k: the bytes that name the destination. */
static void key_canon(struct bw_dest_key *c, const struct bw_dest_key *k)
{
	*c = (struct bw_dest_key){ .family = k->family,
				   .port = k->port,
				   .group_hash = k->group_hash };
	memcpy(c->addr, k->addr, key_addr_len(k->family));
}

/* 64-bit finaliser of a multiply-xorshift mix (the constants of
 * splitmix64): every input bit moves about half the output bits. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* Hash of a canonical key: its three 64-bit words, mixed in turn. */
static uint64_t canon_hash(const struct bw_dest_key *c)
{
	uint64_t w[3], h = 0x9e3779b97f4a7c15ull;

	_Static_assert(sizeof(*c) == sizeof(w), "a key is three words");
	memcpy(w, c, sizeof(w));
	for (int i = 0; i < 3; i++)
		h = mix64(h ^ w[i]);
	return h ? h : 1;
}

uint64_t bw_state_key_hash(const struct bw_dest_key *k)
{
	struct bw_dest_key c;

	key_canon(&c, k);
	return canon_hash(&c);
}

/* ---- slots ----------------------------------------------------------------
 */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static bool tag_ready(uint64_t t)
{
	return (t & TAG_KIND) == BW_TAG_READY;
}

static bool tag_pending(uint64_t t)
{
	return (t & TAG_KIND) == BW_TAG_PENDING;
}

/* Copies at most max bytes of src up to its NUL; always terminates. */
static void copy_bounded(char *dst, size_t cap, const char *src, size_t max)
{
	size_t n = 0;

	if (!dst || cap == 0)
		return;
	if (src)
		for (; n < max && n + 1 < cap && src[n]; n++)
			dst[n] = src[n];
	dst[n] = '\0';
}

/* Zeroes the counters of d that the breaker does not own. */
static void counters_zero(struct bw_dest *d)
{
	const memory_order r = memory_order_relaxed;

	atomic_store_explicit(&d->successful_calls, 0, r);
	atomic_store_explicit(&d->failed_calls, 0, r);
	atomic_store_explicit(&d->rejected_calls, 0, r);
	atomic_store_explicit(&d->slow_calls, 0, r);
	atomic_store_explicit(&d->connect_calls, 0, r);
	atomic_store_explicit(&d->exchange_calls, 0, r);
	atomic_store_explicit(&d->connect_ns_sum, 0, r);
	atomic_store_explicit(&d->exchange_ns_sum, 0, r);
	atomic_store_explicit(&d->opened_count, 0, r);
	atomic_store_explicit(&d->bh_rejected, 0, r);
	atomic_store_explicit(&d->bh_saturated, 0, r);
	atomic_store_explicit(&d->bh_acquired, 0, r);
	for (int i = 0; i < BW_STATE_HIST_BUCKETS; i++)
		atomic_store_explicit(&d->bh_wait_hist[i], 0, r);
	atomic_store_explicit(&d->retries, 0, r);
	atomic_store_explicit(&d->retries_ok, 0, r);
	atomic_store_explicit(&d->retries_denied, 0, r);
	atomic_store_explicit(&d->budget_epoch, 0, r);
	atomic_store_explicit(&d->budget_connects, 0, r);
	atomic_store_explicit(&d->budget_retries, 0, r);
}

/* Clears every field but the tag of a slot nobody else can see yet (one we
 * stole from a dead claimer): a fresh slot, breaker word included. */
static void dest_clear_unpublished(struct bw_dest *d)
{
	const memory_order r = memory_order_relaxed;

	counters_zero(d);
	atomic_store_explicit(&d->consecutive_failures, 0, r);
	atomic_store_explicit(&d->slow_count, 0, r);
	atomic_store_explicit(&d->open_until_ns, 0, r);
	atomic_store_explicit(&d->open_ns, 0, r);
	atomic_store_explicit(&d->probes_claimed, 0, r);
	atomic_store_explicit(&d->probes_ok, 0, r);
	atomic_store_explicit(&d->window_seq, 0, r);
	for (int i = 0; i < BW_STATE_WINDOW_BUCKETS; i++) {
		atomic_store_explicit(&d->win[i].epoch, 0, r);
		atomic_store_explicit(&d->win[i].calls, 0, r);
		atomic_store_explicit(&d->win[i].failures, 0, r);
		atomic_store_explicit(&d->win[i].slow, 0, r);
	}
	atomic_store_explicit(&d->bh_word, 0, r);
	atomic_store_explicit(&d->bh_max, 0, r);
	atomic_store_explicit(&d->bh_ticket, 0, r);
	atomic_store_explicit(&d->bh_serving, 0, r);
	atomic_store_explicit(&d->bh_sweep_ns, 0, r);
	atomic_store_explicit(&d->bh_shared, 0, r);
	atomic_store_explicit(&d->forced, BW_FORCE_AUTO, r);
	atomic_store_explicit(&d->state, 0, r);
}

/* The breaker's word, window and probe rounds belong to core/breaker.c,
 * whose reset closes with a new generation (stale probe tickets stay
 * stale); a plain store here would move the generation back. */
void bw_state_reset_dest(struct bw_dest *d)
{
	if (!d)
		return;
	counters_zero(d);
	bw_breaker_reset(d);
}

static uint64_t now_s(void)
{
	return bw_clock_ns() / 1000000000ull;
}

/* True when the claimer of PENDING tag t is gone: no such process, or a
 * claim so old that its pid has probably been reused (or its writer is
 * stopped; I4 then relies on the stealer's publish winning the race). */
static bool claimer_gone(uint64_t t)
{
	uint64_t pid = t & BW_TAG_PID_MASK;
	uint64_t sec = (t >> 32) & BW_TAG_SEC_MASK;
	/* A corrupt pid: kill(0, ...) and kill(-n, ...) name groups. */
	if (pid == 0 || pid > INT_MAX)
		return true;
	if (bw_sys.kill((pid_t)pid, 0) == -ESRCH)
		return true;
	return ((now_s() - sec) & BW_TAG_SEC_MASK) >= BW_STATE_CLAIM_STALE_S;
}

/* Waits a bounded time for PENDING tag t of d to change; returns the tag
 * last seen (still t when it did not change). */
static uint64_t wait_pending(struct bw_dest *d, uint64_t t)
{
	uint64_t cur;

	for (int i = 0; i < BW_STATE_PENDING_SPINS; i++) {
		cur = atomic_load_explicit(&d->tag, memory_order_acquire);
		if (cur != t)
			return cur;
		cpu_relax();
	}
	for (int i = 0; i < BW_STATE_PENDING_YIELDS; i++) {
		bw_sys.sched_yield();
		cur = atomic_load_explicit(&d->tag, memory_order_acquire);
		if (cur != t)
			return cur;
	}
	return t;
}

static bool key_eq(const struct bw_dest *d, const struct bw_dest_key *c)
{
	return memcmp(&d->key, c, sizeof(*c)) == 0;
}

/* Outcome of one probe sequence: found (or made); absent (find met an
 * empty slot); no room within BW_STATE_PROBE_MAX; the key's slot is being
 * written by a live claimer; our claimed slot was stolen. */
enum lookup_rc {
	LOOKUP_FOUND,
	LOOKUP_ABSENT,
	LOOKUP_FULL,
	LOOKUP_BUSY,
	LOOKUP_RESTART,
	LOOKUP_LOST, /* claim(): another CAS came first; *t is its tag */
};

/* Fills slot d that we hold with tag mine and publishes it (I4).  Returns
 * false when a stealer took it meanwhile. */
static bool fill_publish(struct bw_state *st, struct bw_dest *d,
			 const struct bw_dest_key *c, uint64_t mine,
			 uint64_t ready, bool stolen, const char *label,
			 const char *rule)
{
	/* A new tenancy (T1): the next value, or for a slot never used
	 * (or zeroed by bw_state_lose) one taken from the clock, so that it
	 * differs from whatever a connection bound before a loss holds. */
	uint32_t ten = atomic_load_explicit(&d->ten, memory_order_relaxed);
	ten = ten ? ten + 1 : (uint32_t)(bw_clock_ns() >> 10);
	atomic_store(&d->ten, ten ? ten : 1);
	if (stolen)
		dest_clear_unpublished(d);
	atomic_store_explicit(&d->touched,
			      (uint32_t)(bw_clock_ns() >> BW_STATE_TOUCH_SHIFT),
			      memory_order_relaxed);
	memcpy(&d->key, c, sizeof(*c));
	copy_bounded(d->label, sizeof(d->label), label, BW_STATE_LABEL_MAX);
	copy_bounded(d->rule, sizeof(d->rule), rule, BW_STATE_RULE_MAX);
	if (!atomic_compare_exchange_strong_explicit(&d->tag, &mine, ready,
						     memory_order_acq_rel,
						     memory_order_acquire))
		return false;
	atomic_fetch_add_explicit(&st->hdr->used, 1, memory_order_relaxed);
	return true;
}

/* Our PENDING tag for a claim of the key with hash bits h16: fresh each
 * time, its seconds date this claim. */
static uint64_t claim_tag(uint64_t h16)
{
	return BW_TAG_PENDING | h16 | (now_s() & BW_TAG_SEC_MASK) << 32 |
	       ((uint64_t)getpid() & BW_TAG_PID_MASK);
}

/* Claims d, whose tag we saw as *t (0, TOMB, or a dead claimer's), for
 * key c and publishes it.  Returns FOUND; LOST when the tag moved first
 * (*t then holds the new tag); RESTART when a stealer took our claim. */
static enum lookup_rc claim(struct bw_state *st, struct bw_dest *d, uint64_t *t,
			    const struct bw_dest_key *c, uint64_t hash,
			    bool stolen, const char *label, const char *rule,
			    struct bw_dest **out)
{
	const uint64_t ready = BW_TAG_READY | (hash >> 2);
	uint64_t mine = claim_tag((hash >> 2) & BW_TAG_HASH16);

	if (!atomic_compare_exchange_strong_explicit(&d->tag, t, mine,
						     memory_order_acq_rel,
						     memory_order_acquire))
		return LOOKUP_LOST;
	if (!fill_publish(st, d, c, mine, ready, stolen, label, rule))
		return LOOKUP_RESTART;
	*out = d;
	return LOOKUP_FOUND;
}

/* Claims TOMB slot d for c; any change of its tag since the scan saw it
 * means another claim came first: the caller scans again. */
static enum lookup_rc claim_tomb(struct bw_state *st, struct bw_dest *d,
				 const struct bw_dest_key *c, uint64_t hash,
				 const char *label, const char *rule,
				 struct bw_dest **out)
{
	uint64_t t = BW_TAG_TOMB;
	enum lookup_rc rc = claim(st, d, &t, c, hash, true, label, rule, out);

	return rc == LOOKUP_LOST ? LOOKUP_RESTART : rc;
}

/* One probe sequence for c (I3, I5).  create: claim a slot when absent. */
static enum lookup_rc lookup(struct bw_state *st, const struct bw_dest_key *c,
			     uint64_t hash, bool create, const char *label,
			     const char *rule, struct bw_dest **out)
{
	const uint64_t ready = BW_TAG_READY | (hash >> 2);
	const uint64_t h16 = (hash >> 2) & BW_TAG_HASH16;
	struct bw_dest *tomb = NULL; /* the first TOMB of the sequence */
	enum lookup_rc rc;

	for (uint32_t n = 0; n < BW_STATE_PROBE_MAX; n++) {
		uint32_t i = (uint32_t)(hash + n) & (BW_STATE_SLOTS - 1);
		struct bw_dest *d = &st->dests[i];
		uint64_t t =
			atomic_load_explicit(&d->tag, memory_order_acquire);
		/* Each pass returns, moves to the next slot, or sees the tag
		 * move along I1's diagram.  A slot that keeps changing is
		 * never skipped (I3): the lookup gives up instead. */
		for (int step = 0;; step++) {
			bool stolen = false;

			if (step >= 8)
				return LOOKUP_BUSY;
			if (t == BW_TAG_TOMB) {
				if (!tomb)
					tomb = d;
				break;
			}
			if (t == 0) {
				if (!create)
					return LOOKUP_ABSENT;
				if (tomb) /* I3: the first TOMB first */
					return claim_tomb(st, tomb, c, hash,
							  label, rule, out);
			} else if (tag_ready(t)) {
				if (t == ready && key_eq(d, c)) {
					*out = d;
					return LOOKUP_FOUND;
				}
				break; /* another key: next slot */
			} else if (!tag_pending(t) ||
				   (t & BW_TAG_HASH16) != h16) {
				break; /* corrupt, or another key's claim */
			} else {
				uint64_t now = wait_pending(d, t);

				if (now != t) {
					t = now;
					continue;
				}
				if (!create || !claimer_gone(t))
					return LOOKUP_BUSY;
				stolen = true;
			}
			rc = claim(st, d, &t, c, hash, stolen, label, rule,
				   out);
			if (rc != LOOKUP_LOST)
				return rc;
			/* Lost the race: t holds the new tag; judge it. */
		}
	}
	if (create && tomb)
		return claim_tomb(st, tomb, c, hash, label, rule, out);
	return LOOKUP_FULL;
}

/* ---- reclaim (T1-T3) ------------------------------------------------------
 */

/* Whether no bulkhead slot of d is held or waited for (T3). */
static bool bulkhead_idle(const struct bw_dest *d)
{
	struct bw_bulkhead_view v;

	bw_bulkhead_view(d, &v);
	return !v.active && !v.waiting;
}

/* Whether d may give up its slot under mode, now (I1, T3).  The cheap
 * tests first: a full table asks this of up to BW_STATE_PROBE_MAX slots. */
static bool reclaimable(struct bw_dest *d, uint64_t now_ns,
			enum bw_reclaim_mode mode)
{
	if (atomic_load_explicit(&d->forced, memory_order_relaxed) !=
	    BW_FORCE_AUTO)
		return false;
	if (mode == BW_RECLAIM_RESET)
		return bulkhead_idle(d);
	uint32_t now_t = (uint32_t)(now_ns >> BW_STATE_TOUCH_SHIFT);
	uint32_t age =
		now_t - atomic_load_explicit(&d->touched, memory_order_relaxed);
	const uint32_t idle =
		(uint32_t)(((uint64_t)BW_STATE_IDLE_S * 1000000000ull) >>
			   BW_STATE_TOUCH_SHIFT);
	if (age > UINT32_MAX / 2) {
		/* Touched in the future: another time namespace's clock or
		 * a corrupt value.  From now on it ages as ours. */
		atomic_store_explicit(&d->touched, now_t, memory_order_relaxed);
		return false;
	}
	return age >= idle &&
	       bw_breaker_quiet(d, now_ns,
				(uint64_t)BW_STATE_IDLE_S * 1000000000ull) &&
	       bulkhead_idle(d);
}

bool bw_state_reclaim(struct bw_state *st, uint32_t i, uint64_t now_ns,
		      enum bw_reclaim_mode mode)
{
	struct bw_dest *d;
	uint64_t t, mine;

	if (!st || !st->hdr || !st->dests || i >= BW_STATE_SLOTS)
		return false;
	d = &st->dests[i];
	t = atomic_load_explicit(&d->tag, memory_order_acquire);
	if (!tag_ready(t) || !reclaimable(d, now_ns, mode))
		return false;
	/* A claim with the key's own h16: its lookups wait for us (I3). */
	mine = claim_tag(t & BW_TAG_HASH16);
	if (!atomic_compare_exchange_strong_explicit(&d->tag, &t, mine,
						     memory_order_acq_rel,
						     memory_order_acquire))
		return false;
	/* A connect may have bound to it between the check and the claim;
	 * it touched the slot first (bw_call_admit). */
	if (!reclaimable(d, now_ns, mode)) {
		atomic_compare_exchange_strong(&d->tag, &mine, t);
		return false;
	}
	atomic_fetch_add(&d->ten, 1); /* T1 */
	dest_clear_unpublished(d);
	memset(&d->key, 0, sizeof(d->key));
	memset(d->label, 0, sizeof(d->label));
	memset(d->rule, 0, sizeof(d->rule));
	if (atomic_compare_exchange_strong(&d->tag, &mine, BW_TAG_TOMB)) {
		uint64_t u = atomic_load_explicit(&st->hdr->used,
						  memory_order_relaxed);
		while (u > 0 &&
		       !atomic_compare_exchange_weak(&st->hdr->used, &u, u - 1))
			;
	}
	return true;
}

/* Frees the first reclaimable slot of hash's probe sequence, for a new
 * key that found no room.  Returns whether one was freed. */
static bool reclaim_for(struct bw_state *st, uint64_t hash)
{
	uint64_t now = bw_clock_ns();

	for (uint32_t n = 0; n < BW_STATE_PROBE_MAX; n++) {
		uint32_t i = (uint32_t)(hash + n) & (BW_STATE_SLOTS - 1);

		if (bw_state_reclaim(st, i, now, BW_RECLAIM_IDLE))
			return true;
	}
	return false;
}

uint32_t bw_state_count_used(const struct bw_state *st)
{
	uint32_t n = 0;

	if (!st || !st->dests)
		return 0;
	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++)
		n += tag_ready(atomic_load_explicit(&st->dests[i].tag,
						    memory_order_relaxed));
	return n;
}

static struct bw_dest *get_or_find(struct bw_state *st,
				   const struct bw_dest_key *k, bool create,
				   const char *label, const char *rule)
{
	struct bw_dest_key c;
	struct bw_dest *d = NULL;
	uint64_t hash;
	bool reclaimed = false;

	if (!st || !st->hdr || !st->dests || !k)
		return NULL;
	key_canon(&c, k);
	hash = canon_hash(&c);
	for (int r = 0; r < BW_STATE_RESTARTS_MAX; r++) {
		switch (lookup(st, &c, hash, create, label, rule, &d)) {
		case LOOKUP_FOUND:
			return d;
		case LOOKUP_FULL:
			if (create && !reclaimed) {
				/* An idle destination makes room (once). */
				reclaimed = true;
				if (reclaim_for(st, hash))
					break;
			}
			if (create)
				atomic_fetch_add_explicit(&st->hdr->full_events,
							  1,
							  memory_order_relaxed);
			return NULL;
		case LOOKUP_ABSENT:
		case LOOKUP_BUSY:
		case LOOKUP_LOST:
			return NULL;
		case LOOKUP_RESTART:
			break;
		}
	}
	return NULL;
}

struct bw_dest *bw_state_get(struct bw_state *st, const struct bw_dest_key *k,
			     const char *label, const char *rule)
{
	return get_or_find(st, k, true, label, rule);
}

struct bw_dest *bw_state_find(struct bw_state *st, const struct bw_dest_key *k)
{
	return get_or_find(st, k, false, NULL, NULL);
}

struct bw_dest *bw_state_slot(struct bw_state *st, uint32_t i)
{
	struct bw_dest *d;

	if (!st || !st->dests || i >= BW_STATE_SLOTS)
		return NULL;
	d = &st->dests[i];
	if (!tag_ready(atomic_load_explicit(&d->tag, memory_order_acquire)))
		return NULL;
	return d;
}

struct bw_dest *bw_state_find_at(struct bw_state *st, uint32_t i,
				 const struct bw_dest_key *k)
{
	struct bw_dest *d = bw_state_slot(st, i);

	/* key_eq against k's canonical form, without making it: the slot's
	 * key is canonical, so only the bytes that name k are compared. */
	if (!d || !k || d->key.family != k->family || d->key.port != k->port ||
	    d->key.group_hash != k->group_hash)
		return NULL;
	return memcmp(d->key.addr, k->addr, key_addr_len(k->family)) == 0
		       ? d
		       : NULL;
}

bool bw_state_pin(struct bw_state *st, struct bw_dest *d,
		  const struct bw_dest_key *k, uint32_t *ten)
{
	uint32_t i = bw_state_index(st, d);

	if (i >= BW_STATE_SLOTS)
		return false;
	*ten = atomic_load_explicit(&d->ten, memory_order_acquire); /* T2 */
	return bw_state_find_at(st, i, k) == d;
}

uint32_t bw_state_index(const struct bw_state *st, const struct bw_dest *d)
{
	uintptr_t base, p, i;

	if (!st || !st->dests || !d)
		return BW_STATE_SLOTS;
	base = (uintptr_t)st->dests;
	p = (uintptr_t)d;
	i = (p - base) / sizeof(*d);
	if (p < base || i >= BW_STATE_SLOTS || i * sizeof(*d) != p - base)
		return BW_STATE_SLOTS;
	return (uint32_t)i;
}

void bw_state_label(const struct bw_dest *d, char *buf, size_t cap)
{
	copy_bounded(buf, cap, d ? d->label : NULL, BW_STATE_LABEL_MAX - 1);
}

void bw_state_rule(const struct bw_dest *d, char *buf, size_t cap)
{
	copy_bounded(buf, cap, d ? d->rule : NULL, BW_STATE_RULE_MAX - 1);
}
