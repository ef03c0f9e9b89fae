/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_state.c: core/state.c.  Segment creation and sharing,
 * refusal of untrusted segments, capacity, the PENDING takeover rules,
 * SIGKILLed writers, and garbage in the slot area.  Segments are named
 * "ut-<pid>-<case>" and unlinked by each case.  The multi-threaded cases
 * (and the ThreadSanitizer build) are in test_state_threads.c.
 */
#include "core/breaker.h"
#include "core/bulkhead.h"
#include "core/state.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/bw_test.h"

_Static_assert(BW_STATE_SLOTS == 1 << 14, "count_duplicates packs 14 bits");

static char names[16][80];
static int nnames;

/* A per-process state name; remembered for cleanup. */
static const char *uname_(const char *what)
{
	char *n = names[nnames++ % 16];

	snprintf(n, 80, "ut-%ld-%s", (long)getpid(), what);
	return n;
}

static void unlink_state(const char *name)
{
	char p[128];

	if (bw_state_path(name, (unsigned)geteuid(), p, sizeof(p)) == 0)
		unlink(p);
}

static const char *spath(const char *name)
{
	static char p[128];

	bw_state_path(name, (unsigned)geteuid(), p, sizeof(p));
	return p;
}

static struct bw_dest_key key_v4(uint32_t id)
{
	struct bw_dest_key k;
	uint32_t a = htonl(0x0a000000u + id);

	memset(&k, 0, sizeof(k));
	k.family = AF_INET;
	k.port = (uint16_t)(80 + id % 7);
	memcpy(k.addr, &a, 4);
	return k;
}

static uint64_t xs_state = 88172645463325252ull;
static uint64_t xs(void)
{
	xs_state ^= xs_state << 13;
	xs_state ^= xs_state >> 7;
	xs_state ^= xs_state << 17;
	return xs_state;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Number of READY slots holding the same key as an earlier READY slot. */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int count_duplicates(struct bw_state *st, int *ready_out)
{
	static uint64_t hs[BW_STATE_SLOTS];
	int n = 0, dups = 0;

	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++) {
		struct bw_dest *d = bw_state_slot(st, i);
		if (d)
			hs[n++] = (bw_state_key_hash(&d->key) << 14) | i;
	}
	/* Sort by hash (index in the low bits), compare equal hashes fully. */
	qsort(hs, (size_t)n, sizeof(hs[0]), cmp_u64);
	for (int a = 0; a < n; a++)
		for (int b = a + 1; b < n && (hs[b] >> 14) == (hs[a] >> 14);
		     b++) {
			struct bw_dest *x = &st->dests[hs[a] & 16383];
			struct bw_dest *y = &st->dests[hs[b] & 16383];
			if (memcmp(&x->key, &y->key, sizeof(x->key)) == 0)
				dups++;
		}
	if (ready_out)
		*ready_out = n;
	return dups;
}

/* ---- names and paths ---------------------------------------------------- */

static void test_state_path_validation(void)
{
	char p[128], n65[66];

	memset(n65, 'a', 65);
	n65[65] = '\0';
	BW_ASSERT_EQ(bw_state_path("web-1.prod_x", 1000, p, sizeof(p)), 0);
	BW_ASSERT_STR(p, "/dev/shm/bulwark-1000-web-1.prod_x");
	BW_ASSERT_EQ(bw_state_path(n65 + 1, 1, p, sizeof(p)), 0);
	BW_ASSERT_EQ(bw_state_path(n65, 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path("", 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path(".", 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path("..", 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path("...", 1, p, sizeof(p)), 0);
	BW_ASSERT_EQ(bw_state_path("a/b", 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path("a b", 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path("caf\xc3\xa9", 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path(NULL, 1, p, sizeof(p)), -EINVAL);
	BW_ASSERT_EQ(bw_state_path("x", 1, p, 10), -ENAMETOOLONG);
}

static void test_state_key_hash(void)
{
	struct bw_dest_key a = key_v4(1), b = key_v4(1), g;

	/* Bytes outside the canonical form do not matter. */
	b.pad = 7;
	b.addr[9] = 0xff;
	BW_ASSERT(bw_state_key_hash(&a) == bw_state_key_hash(&b));
	b.port++;
	BW_ASSERT(bw_state_key_hash(&a) != bw_state_key_hash(&b));
	memset(&g, 0, sizeof(g));
	BW_ASSERT(bw_state_key_hash(&g) != 0);
	g.group_hash = 42;
	BW_ASSERT(bw_state_key_hash(&g) != 0);
}

/* ---- sharing ------------------------------------------------------------ */

static void test_state_attach_shares_memory(void)
{
	const char *name = uname_("share");
	struct bw_state a, b;
	struct bw_dest_key k = key_v4(7);
	struct bw_dest *da, *db;
	char why[256], buf[80];
	struct stat sb;
	pid_t pid;
	int status, fds_before, fds_after;

	unlink_state(name);
	why[0] = 'x';
	BW_ASSERT_EQ(bw_state_attach(&a, name, false, why, sizeof(why)),
		     -ENOENT);
	BW_ASSERT(strstr(why, "no such file") != NULL);
	fds_before = dup(0);
	close(fds_before);
	errno = 1234;
	BW_ASSERT_EQ(bw_state_attach(&a, name, true, why, sizeof(why)), 0);
	BW_ASSERT_EQ(errno, 1234);
	fds_after = dup(0);
	close(fds_after);
	BW_ASSERT_EQ(fds_after, fds_before); /* no fd held */
	BW_ASSERT_EQ(bw_state_attach(&b, name, true, why, sizeof(why)), 0);
	BW_ASSERT(a.shared && b.shared);
	BW_ASSERT_STR(a.path, spath(name));
	BW_ASSERT_EQ(stat(a.path, &sb), 0);
	BW_ASSERT_EQ(sb.st_mode & 07777, 0600);
	BW_ASSERT_EQ(sb.st_size, (long long)bw_state_size());
	BW_ASSERT(a.hdr != b.hdr);

	da = bw_state_get(&a, &k, "10.0.0.7:80", "10.0.0.0/8");
	BW_ASSERT(da != NULL);
	db = bw_state_find(&b, &k);
	BW_ASSERT(db != NULL);
	BW_ASSERT_EQ(bw_state_index(&a, da), bw_state_index(&b, db));
	bw_state_label(db, buf, sizeof(buf));
	BW_ASSERT_STR(buf, "10.0.0.7:80");
	bw_state_rule(db, buf, sizeof(buf));
	BW_ASSERT_STR(buf, "10.0.0.0/8");
	atomic_fetch_add(&da->successful_calls, 5);
	BW_ASSERT_EQ(atomic_load(&db->successful_calls), 5);
	BW_ASSERT_EQ(atomic_load(&b.hdr->used), 1);

	pid = fork();
	if (pid == 0) {
		struct bw_state c;
		if (bw_state_attach(&c, name, false, why, sizeof(why)) < 0)
			_exit(2);
		struct bw_dest *dc = bw_state_get(&c, &k, "x", "y");
		if (!dc)
			_exit(3);
		for (int i = 0; i < 1000; i++)
			atomic_fetch_add(&dc->successful_calls, 1);
		bw_state_detach(&c);
		_exit(0);
	}
	BW_ASSERT(pid > 0);
	BW_ASSERT_EQ(waitpid(pid, &status, 0), pid);
	BW_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	BW_ASSERT_EQ(atomic_load(&da->successful_calls), 1005);
	BW_ASSERT_EQ(atomic_load(&a.hdr->used), 1);

	bw_state_detach(&a);
	BW_ASSERT(a.hdr == NULL);
	bw_state_detach(&b);
	unlink_state(name);
}

static void test_state_private_not_shared(void)
{
	struct bw_state a, b;
	struct bw_dest_key k = key_v4(3);
	struct bw_dest *d;
	char why[128];
	pid_t pid;
	int status;

	BW_ASSERT_EQ(bw_state_attach(&a, "private", true, why, sizeof(why)), 0);
	BW_ASSERT_EQ(bw_state_attach(&b, "private", false, why, sizeof(why)),
		     0);
	BW_ASSERT(!a.shared && a.path[0] == '\0');
	d = bw_state_get(&a, &k, "l", "r");
	BW_ASSERT(d != NULL);
	BW_ASSERT(bw_state_find(&b, &k) == NULL);
	BW_ASSERT(bw_state_find(&a, &k) == d);
	pid = fork();
	if (pid == 0) {
		atomic_fetch_add(&d->successful_calls, 100);
		_exit(atomic_load(&d->successful_calls) == 100 ? 0 : 1);
	}
	BW_ASSERT_EQ(waitpid(pid, &status, 0), pid);
	BW_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	BW_ASSERT_EQ(atomic_load(&d->successful_calls), 0);
	bw_state_detach(&a);
	bw_state_detach(&b);
	BW_ASSERT_EQ(bw_state_attach_private(&a), 0);
	BW_ASSERT(a.hdr->magic == BW_STATE_MAGIC);
	bw_state_detach(&a);
}

/* ---- refusals ----------------------------------------------------------- */

/* 1 when attaching name (spoilt by the caller) fails with rc and a reason
 * containing what, leaving st unmapped. */
static int refused(const char *name, int rc, const char *what, char *why,
		   size_t cap)
{
	struct bw_state st;
	int got = bw_state_attach(&st, name, true, why, cap);

	if (got != rc || strstr(why, what) == NULL || st.hdr != NULL) {
		fprintf(stderr, "# attach %s: rc %d (want %d), why \"%s\"\n",
			name, got, rc, why);
		if (got == 0)
			bw_state_detach(&st);
		return 0;
	}
	fprintf(stderr, "# refused as expected: %s\n", why);
	return 1;
}

static int make_segment(const char *name)
{
	struct bw_state st;
	char why[256];

	unlink_state(name);
	if (bw_state_attach(&st, name, true, why, sizeof(why)) < 0)
		return -1;
	bw_state_detach(&st);
	return 0;
}

static int poke(const char *name, off_t off, const void *p, size_t n)
{
	int fd = open(spath(name), O_RDWR);
	ssize_t w;

	if (fd < 0)
		return -1;
	w = pwrite(fd, p, n, off);
	close(fd);
	return w == (ssize_t)n ? 0 : -1;
}

static void test_state_refuses_symlink(void)
{
	const char *name = uname_("link"), *other = uname_("target");
	char why[256], target[128];

	BW_ASSERT_EQ(make_segment(other), 0);
	snprintf(target, sizeof(target), "%s", spath(other));
	unlink_state(name);
	BW_ASSERT_EQ(symlink(target, spath(name)), 0);
	BW_ASSERT(refused(name, -ELOOP, "symbolic link", why, sizeof(why)));
	/* A dangling link is not replaced by a new segment either. */
	unlink_state(other);
	BW_ASSERT(refused(name, -ELOOP, "symbolic link", why, sizeof(why)));
	unlink_state(name);
}

static void test_state_refuses_wrong_size(void)
{
	const char *name = uname_("size");
	char why[256];

	BW_ASSERT_EQ(make_segment(name), 0);
	BW_ASSERT_EQ(truncate(spath(name), (off_t)bw_state_size() - 4096), 0);
	BW_ASSERT(refused(name, -EINVAL, "bytes, not", why, sizeof(why)));
	BW_ASSERT_EQ(truncate(spath(name), 0), 0);
	BW_ASSERT(refused(name, -EINVAL, "0 bytes", why, sizeof(why)));
	unlink_state(name);
}

static void test_state_refuses_wrong_mode(void)
{
	const char *name = uname_("mode");
	char why[256];

	BW_ASSERT_EQ(make_segment(name), 0);
	BW_ASSERT_EQ(chmod(spath(name), 0644), 0);
	BW_ASSERT(refused(name, -EACCES, "mode 0644, not 0600", why,
			  sizeof(why)));
	BW_ASSERT_EQ(chmod(spath(name), 0400), 0);
	BW_ASSERT(refused(name, -EACCES, "mode 0400", why, sizeof(why)));
	unlink_state(name);
}

static void test_state_refuses_bad_header(void)
{
	const char *name = uname_("hdr");
	char why[256];
	uint64_t bad_magic = 0x1122334455667788ull;
	uint32_t v2 = BW_STATE_VERSION + 1, slots = 1024, sum;

	BW_ASSERT_EQ(make_segment(name), 0);
	BW_ASSERT_EQ(poke(name, 0, &bad_magic, 8), 0);
	BW_ASSERT(refused(name, -EPROTO, "bad magic", why, sizeof(why)));

	BW_ASSERT_EQ(make_segment(name), 0);
	BW_ASSERT_EQ(poke(name, offsetof(struct bw_state_hdr, version), &v2, 4),
		     0);
	char want[64];
	snprintf(want, sizeof(want), "version %u, not %u",
		 (unsigned)BW_STATE_VERSION + 1, (unsigned)BW_STATE_VERSION);
	BW_ASSERT(refused(name, -EPROTO, want, why, sizeof(why)));

	BW_ASSERT_EQ(make_segment(name), 0);
	BW_ASSERT_EQ(
		poke(name, offsetof(struct bw_state_hdr, slots), &slots, 4), 0);
	BW_ASSERT(refused(name, -EPROTO, "layout", why, sizeof(why)));

	BW_ASSERT_EQ(make_segment(name), 0);
	sum = 0xdeadbeef;
	BW_ASSERT_EQ(
		poke(name, offsetof(struct bw_state_hdr, hdr_sum), &sum, 4), 0);
	BW_ASSERT(refused(name, -EBADMSG, "checksum", why, sizeof(why)));
	unlink_state(name);
}

static void test_state_refuses_other_owner(void)
{
	const char *name = uname_("owner");
	char why[256], want[64];

	if (geteuid() != 0) {
		printf("# skipped: chown needs root\n");
		return;
	}
	BW_ASSERT_EQ(make_segment(name), 0);
	BW_ASSERT_EQ(chown(spath(name), 65534, 65534), 0);
	snprintf(want, sizeof(want), "owned by uid 65534, not %u",
		 (unsigned)geteuid());
	BW_ASSERT(refused(name, -EACCES, want, why, sizeof(why)));
	unlink_state(name);
}

static void test_state_refuses_not_regular(void)
{
	const char *name = uname_("fifo");
	char why[256];

	unlink_state(name);
	BW_ASSERT_EQ(mkfifo(spath(name), 0600), 0);
	BW_ASSERT(
		refused(name, -EINVAL, "not a regular file", why, sizeof(why)));
	unlink_state(name);
	BW_ASSERT_EQ(mkdir(spath(name), 0700), 0);
	BW_ASSERT(refused(name, -EISDIR, "directory", why, sizeof(why)));
	rmdir(spath(name));
	BW_ASSERT(refused("../etc", -EINVAL, "use 1-64", why, sizeof(why)));
	/* A tiny buffer is still terminated. */
	BW_ASSERT(refused("../etc", -EINVAL, "st", why, 3));
	BW_ASSERT_EQ(strlen(why), 2);
}

/* ---- capacity ----------------------------------------------------------- */

static void test_state_ten_thousand_fit(void)
{
	static struct bw_dest *ptr[10000];
	struct bw_state st;
	char label[64], buf[64];

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	for (uint32_t i = 0; i < 10000; i++) {
		struct bw_dest_key k = key_v4(i);
		snprintf(label, sizeof(label), "dest-%u", i);
		ptr[i] = bw_state_get(&st, &k, label, "r");
		BW_ASSERT(ptr[i] != NULL);
	}
	for (uint32_t i = 0; i < 10000; i++) {
		struct bw_dest_key k = key_v4(i);
		BW_ASSERT(bw_state_find(&st, &k) == ptr[i]);
		BW_ASSERT(bw_state_get(&st, &k, "x", "x") == ptr[i]);
		snprintf(label, sizeof(label), "dest-%u", i);
		bw_state_label(ptr[i], buf, sizeof(buf));
		BW_ASSERT_STR(buf, label);
		BW_ASSERT(bw_state_slot(&st, bw_state_index(&st, ptr[i])) ==
			  ptr[i]);
	}
	BW_ASSERT_EQ(atomic_load(&st.hdr->used), 10000);
	BW_ASSERT_EQ(atomic_load(&st.hdr->full_events), 0);
	BW_ASSERT_EQ(count_duplicates(&st, NULL), 0);
	bw_state_detach(&st);
}

static void test_state_table_full(void)
{
	struct bw_state st;
	uint64_t nulls = 0, ok = 0;
	struct bw_dest_key k;

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	for (uint32_t i = 0; i < 3 * BW_STATE_SLOTS; i++) {
		k = key_v4(i);
		if (bw_state_get(&st, &k, "l", "r"))
			ok++;
		else
			nulls++;
	}
	printf("# %llu of %u slots filled before probes ran out\n",
	       (unsigned long long)ok, (unsigned)BW_STATE_SLOTS);
	BW_ASSERT(ok <= BW_STATE_SLOTS && ok > 10000);
	BW_ASSERT(nulls > 0);
	BW_ASSERT_EQ(atomic_load(&st.hdr->used), ok);
	BW_ASSERT_EQ(atomic_load(&st.hdr->full_events), nulls);
	/* Fill every remaining slot with some other key. */
	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++)
		if (atomic_load(&st.dests[i].tag) == 0)
			atomic_store(&st.dests[i].tag, BW_TAG_READY | 1);
	k = key_v4(999999);
	BW_ASSERT(bw_state_get(&st, &k, "l", "r") == NULL);
	BW_ASSERT(bw_state_find(&st, &k) == NULL);
	BW_ASSERT_EQ(atomic_load(&st.hdr->full_events), nulls + 1);
	k = key_v4(5);
	BW_ASSERT(bw_state_get(&st, &k, "l", "r") != NULL);
	BW_ASSERT(bw_state_slot(&st, BW_STATE_SLOTS) == NULL);
	BW_ASSERT_EQ(bw_state_index(&st, (struct bw_dest *)st.hdr),
		     BW_STATE_SLOTS);
	bw_state_detach(&st);
}

/* ---- reclaim ------------------------------------------------------------- */

/* Makes every destination of st look idle for 1,000 units (~18 min). */
static void age_all(struct bw_state *st)
{
	uint32_t now_t = (uint32_t)(mono_ns() >> BW_STATE_TOUCH_SHIFT);

	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++)
		atomic_store(&st->dests[i].touched, now_t - 1000);
}

/* Fills every slot of st; returns how many keys found room. */
static uint32_t fill_all(struct bw_state *st)
{
	uint32_t ok = 0;

	for (uint32_t i = 0; i < 3 * BW_STATE_SLOTS; i++) {
		struct bw_dest_key k = key_v4(i);
		ok += bw_state_get(st, &k, "l", "r") != NULL;
	}
	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++)
		if (!bw_state_slot(st, i))
			return 0;
	return ok;
}

/* Slot n of k's probe sequence. */
static uint32_t probe_slot(const struct bw_dest_key *k, uint32_t n)
{
	return (uint32_t)(bw_state_key_hash(k) + n) & (BW_STATE_SLOTS - 1);
}

/* A full table: a new destination takes the slot of an idle one, the
 * first of its probe sequence; the old one is gone (made afresh at its
 * next connect), and a pointer to the old tenant, checked with the
 * tenancy it bound with, no longer reaches the slot.  On the old code the
 * new destination got NULL for ever (the table filled for good). */
static void test_state_reclaim_idle_when_full(void)
{
	struct bw_state st;
	struct bw_dest_key x = key_v4(999999), old;
	uint32_t i0;
	struct bw_dest *d0, *d;
	uint32_t ten0 = 0, ten1 = 0;

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	BW_ASSERT(fill_all(&st) > 0);
	/* Everything was used just now: nothing gives way. */
	BW_ASSERT(bw_state_get(&st, &x, "new", "r") == NULL);
	age_all(&st);
	i0 = probe_slot(&x, 0);
	d0 = bw_state_slot(&st, i0);
	BW_ASSERT(d0 != NULL);
	old = d0->key;
	/* A connection bound to the old tenant (tenancy read first, T2). */
	ten0 = bw_state_ten(&st, i0);
	BW_ASSERT(bw_state_find_at(&st, i0, &old) == d0);
	BW_ASSERT(bw_state_live(d0, ten0) == d0);
	atomic_fetch_add(&d0->successful_calls, 5);

	d = bw_state_get(&st, &x, "new", "r");
	BW_ASSERT(d == d0);
	BW_ASSERT_STR(d->label, "new");
	BW_ASSERT_EQ(atomic_load(&d->successful_calls), 0);
	BW_ASSERT(bw_state_find(&st, &x) == d);
	BW_ASSERT(bw_state_find(&st, &old) == NULL);
	BW_ASSERT(bw_state_find_at(&st, i0, &old) == NULL);
	/* The stale pointer: not live, so calls.c never counts through it. */
	BW_ASSERT(bw_state_live(d0, ten0) == NULL);
	BW_ASSERT(bw_state_pin(&st, d, &x, &ten1));
	BW_ASSERT(ten1 != ten0);
	BW_ASSERT(bw_state_live(d, ten1) == d);
	BW_ASSERT(!bw_state_pin(&st, d, &old, &ten1));
	BW_ASSERT_EQ(bw_state_count_used(&st), BW_STATE_SLOTS);
	BW_ASSERT_EQ(count_duplicates(&st, NULL), 0);
	/* The old key comes back too, in another idle slot, as new. */
	d = bw_state_get(&st, &old, "back", "r");
	BW_ASSERT(d != NULL && d != d0);
	BW_ASSERT_EQ(atomic_load(&d->successful_calls), 0);
	BW_ASSERT_EQ(count_duplicates(&st, NULL), 0);
	bw_state_detach(&st);
}

/* Never reclaimed: a forced destination, one whose breaker is open (or
 * whose open time ended less than 10 minutes ago), one used recently, one
 * with a bulkhead slot held.  reset --all frees the first kind only when
 * not forced, and never one holding a bulkhead slot. */
static void test_state_reclaim_spares_busy(void)
{
	struct bw_state st;
	struct bw_dest_key x = key_v4(999999);
	struct bw_settings bs, bh;
	struct bw_slot slot;
	uint64_t now = mono_ns();
	uint32_t held = BW_STATE_SLOTS, young = BW_STATE_SLOTS;

	memset(&bs, 0, sizeof(bs));
	bs.breaker_on = true;
	bs.failures = 1;
	bs.rate = bs.slow_rate = -1;
	bs.open_ns = 1000000000ull;
	memset(&bh, 0, sizeof(bh));
	bh.bulkhead_max = 4;
	bh.bulkhead_scope = BW_SCOPE_SHARED;
	bh.bulkhead_errno = ECONNREFUSED;

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	BW_ASSERT(fill_all(&st) > 0);
	age_all(&st);
	for (uint32_t n = 0; n < BW_STATE_PROBE_MAX; n++) {
		uint32_t i = probe_slot(&x, n);
		struct bw_dest *d = bw_state_slot(&st, i);

		BW_ASSERT(d != NULL);
		switch (n % 4) {
		case 0:
			atomic_store(&d->forced, BW_FORCE_DISABLED);
			break;
		case 1: /* opened 1 s ago for 1 s: ended, but not long ago */
			bw_breaker_record(d, &bs, true, 0, false,
					  now - 1000000000ull, NULL);
			break;
		case 2:
			bw_state_touch(d, now);
			young = i;
			break;
		case 3:
			memset(&slot, 0, sizeof(slot));
			if (held == BW_STATE_SLOTS) {
				BW_ASSERT_EQ(bw_bulkhead_acquire(&st, d, &bh,
								 BW_BH_NEVER, 0,
								 now, &slot),
					     0);
				BW_ASSERT(slot.kind != 0);
				held = i;
			} else {
				atomic_store(&d->forced, BW_FORCE_OPEN);
			}
			break;
		}
	}
	BW_ASSERT(bw_state_get(&st, &x, "new", "r") == NULL);
	for (uint32_t n = 0; n < BW_STATE_PROBE_MAX; n++)
		BW_ASSERT(!bw_state_reclaim(&st, probe_slot(&x, n), now,
					    BW_RECLAIM_IDLE));
	/* reset --all: a used or open one goes, forced and held stay. */
	BW_ASSERT(bw_state_reclaim(&st, young, now, BW_RECLAIM_RESET));
	BW_ASSERT(!bw_state_reclaim(&st, held, now, BW_RECLAIM_RESET));
	BW_ASSERT(!bw_state_reclaim(&st, probe_slot(&x, 0), now,
				    BW_RECLAIM_RESET));
	BW_ASSERT(bw_state_reclaim(&st, probe_slot(&x, 1), now,
				   BW_RECLAIM_RESET));
	BW_ASSERT(bw_state_slot(&st, young) == NULL);
	/* The new key takes the first free slot of its sequence. */
	struct bw_dest *d = bw_state_get(&st, &x, "new", "r");
	BW_ASSERT(d == &st.dests[probe_slot(&x, 1)]);
	bw_state_detach(&st);
}

/* A reclaimed slot's tenancy moves even when its next tenant is the same
 * key: every connection bound before the reclaim stops counting. */
static void test_state_reclaim_same_key_new_tenancy(void)
{
	struct bw_state st;
	struct bw_dest_key k = key_v4(42);
	struct bw_dest *d;
	uint32_t i, ten, ten2;

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	d = bw_state_get(&st, &k, "a", "r");
	BW_ASSERT(d != NULL);
	i = bw_state_index(&st, d);
	ten = bw_state_ten(&st, i);
	/* Touched now: the idle rule keeps it. */
	BW_ASSERT(!bw_state_reclaim(&st, i, mono_ns(), BW_RECLAIM_IDLE));
	atomic_store(&d->touched,
		     (uint32_t)(mono_ns() >> BW_STATE_TOUCH_SHIFT) - 600);
	BW_ASSERT(bw_state_reclaim(&st, i, mono_ns(), BW_RECLAIM_IDLE));
	BW_ASSERT_EQ(atomic_load(&d->tag), BW_TAG_TOMB);
	BW_ASSERT(bw_state_find(&st, &k) == NULL);
	BW_ASSERT(bw_state_get(&st, &k, "a", "r") == d); /* the TOMB */
	BW_ASSERT(bw_state_live(d, ten) == NULL);
	BW_ASSERT(bw_state_pin(&st, d, &k, &ten2) && ten2 != ten);
	/* A last use stamped in the future (another time namespace) is
	 * brought back to now: not idle for 10 more minutes. */
	atomic_store(&d->touched,
		     (uint32_t)(mono_ns() >> BW_STATE_TOUCH_SHIFT) + 100000);
	BW_ASSERT(!bw_state_reclaim(&st, i, mono_ns(), BW_RECLAIM_IDLE));
	BW_ASSERT(atomic_load(&d->touched) <=
		  (uint32_t)(mono_ns() >> BW_STATE_TOUCH_SHIFT));
	bw_state_detach(&st);
}

/* The segment's file truncated under us: bw_state_lose (what the SIGBUS
 * handler of shim/hook_signal.c calls) makes the mapping private memory
 * in place, every byte of it readable again, an empty table in which no
 * connection bound before is live, and lookups work. */
static void test_state_lose_truncated(void)
{
	const char *name = uname_("lose");
	struct bw_state st;
	struct bw_dest_key k = key_v4(7);
	struct bw_dest *d, *e;
	uint32_t ten = 0, ten2 = 0;
	char why[256];

	unlink_state(name);
	BW_ASSERT_EQ(bw_state_attach(&st, name, true, why, sizeof(why)), 0);
	d = bw_state_get(&st, &k, "a", "r");
	BW_ASSERT(d && bw_state_pin(&st, d, &k, &ten));
	BW_ASSERT(ten != 0);
	BW_ASSERT(bw_state_contains(&st, d));
	BW_ASSERT(bw_state_contains(&st, (char *)st.hdr + st.map_len - 1));
	BW_ASSERT(!bw_state_contains(&st, (char *)st.hdr + st.map_len));
	BW_ASSERT_EQ(truncate(spath(name), 0), 0);
	BW_ASSERT_EQ(bw_state_lose(&st), 0);
	BW_ASSERT(!st.shared);
	/* The last byte, past the old end of file, reads as 0. */
	BW_ASSERT_EQ(((volatile char *)st.hdr)[st.map_len - 1], 0);
	BW_ASSERT(bw_state_slot(&st, bw_state_index(&st, d)) == NULL);
	BW_ASSERT(bw_state_live(d, ten) == NULL);
	e = bw_state_get(&st, &k, "a", "r");
	BW_ASSERT(e == d); /* its home slot, empty again */
	BW_ASSERT(bw_state_pin(&st, e, &k, &ten2) && ten2 != ten);
	BW_ASSERT(bw_state_live(d, ten) == NULL);
	BW_ASSERT_EQ(atomic_load(&st.hdr->used), 1);
	bw_state_detach(&st);
	unlink_state(name);
}

/* Threads bind to destinations (lookup, then pin) and keep checking, as
 * calls.c does, that a slot they see live holds their key, while another
 * thread frees slots as reset --all does (T1, T2): a live pointer never
 * shows another key.  Run under ASan, not TSan: the key bytes are read
 * while a reclaimer may clear them, by design (the tenancy re-check
 * discards such a read). */
struct churn {
	struct bw_state *st;
	_Atomic int stop;
	_Atomic uint64_t binds, wrong, reclaims;
};

static void *churn_binder(void *arg)
{
	struct churn *ch = arg;
	uint64_t x = 88172645463325252ull ^ (uint64_t)(uintptr_t)&x;

	while (!atomic_load(&ch->stop)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		struct bw_dest_key k = key_v4((uint32_t)(x % 4000));
		struct bw_dest *d = bw_state_get(ch->st, &k, "c", "r");
		uint32_t ten;

		if (!d || !bw_state_pin(ch->st, d, &k, &ten))
			continue;
		atomic_fetch_add(&ch->binds, 1);
		for (int i = 0; i < 50; i++) {
			if (!bw_state_live(d, ten))
				break;
			struct bw_dest_key seen;
			memcpy(&seen, (const void *)&d->key, sizeof(seen));
			atomic_thread_fence(memory_order_acquire);
			if (bw_state_live(d, ten) &&
			    (seen.port != k.port ||
			     memcmp(seen.addr, k.addr, 4) != 0))
				atomic_fetch_add(&ch->wrong, 1);
		}
	}
	return NULL;
}

static void *churn_reclaimer(void *arg)
{
	struct churn *ch = arg;
	uint32_t i = 0;

	while (!atomic_load(&ch->stop)) {
		i = (i * 1103515245u + 12345u) & (BW_STATE_SLOTS - 1);
		if (bw_state_reclaim(ch->st, i, mono_ns(), BW_RECLAIM_RESET))
			atomic_fetch_add(&ch->reclaims, 1);
	}
	return NULL;
}

static void test_state_reclaim_under_lookups(void)
{
	struct bw_state st;
	struct churn ch = { .st = &st };
	pthread_t t[4];

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	for (int i = 0; i < 3; i++)
		BW_ASSERT_EQ(pthread_create(&t[i], NULL, churn_binder, &ch), 0);
	BW_ASSERT_EQ(pthread_create(&t[3], NULL, churn_reclaimer, &ch), 0);
	sleep_us(1500000);
	atomic_store(&ch.stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	printf("# %llu binds, %llu reclaims, %llu wrong keys seen live\n",
	       (unsigned long long)ch.binds, (unsigned long long)ch.reclaims,
	       (unsigned long long)ch.wrong);
	BW_ASSERT(ch.binds > 1000 && ch.reclaims > 100);
	BW_ASSERT_EQ(ch.wrong, 0);
	bw_state_detach(&st);
}

/* ---- PENDING takeover rules --------------------------------------------- */

static pid_t dead_pid(void)
{
	pid_t p = fork();

	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return p;
}

/* The tag of a claim made age_s seconds ago (layout in state.h). */
static uint64_t pending_tag_aged(const struct bw_dest_key *k, uint64_t pid,
				 uint64_t age_s)
{
	uint64_t sec = mono_ns() / 1000000000ull - age_s;

	return BW_TAG_PENDING | ((bw_state_key_hash(k) >> 2) & BW_TAG_HASH16) |
	       (sec & BW_TAG_SEC_MASK) << 32 | (pid & BW_TAG_PID_MASK);
}

static uint64_t pending_tag(const struct bw_dest_key *k, uint64_t pid)
{
	return pending_tag_aged(k, pid, 0);
}

static struct bw_dest *home(struct bw_state *st, const struct bw_dest_key *k)
{
	return &st->dests[bw_state_key_hash(k) & (BW_STATE_SLOTS - 1)];
}

static void test_state_pending_dead_claimer_taken_over(void)
{
	struct bw_state st;
	struct bw_dest_key k = key_v4(11);
	struct bw_dest *h, *d;
	char buf[64];

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	h = home(&st, &k);
	atomic_store(&h->tag, pending_tag(&k, (uint64_t)dead_pid()));
	memcpy(h->label, "half-written-garbage", 20); /* no NUL needed */
	atomic_store(&h->successful_calls, 77);
	BW_ASSERT(bw_state_find(&st, &k) == NULL);
	d = bw_state_get(&st, &k, "good", "rule");
	BW_ASSERT(d == h);
	BW_ASSERT(atomic_load(&h->tag) ==
		  (BW_TAG_READY | (bw_state_key_hash(&k) >> 2)));
	BW_ASSERT_EQ(atomic_load(&h->successful_calls), 0);
	bw_state_label(d, buf, sizeof(buf));
	BW_ASSERT_STR(buf, "good");
	BW_ASSERT(bw_state_find(&st, &k) == h);
	BW_ASSERT_EQ(atomic_load(&st.hdr->used), 1);

	/* Corrupt pids (0, negative as pid_t) count as dead, never signal. */
	k = key_v4(12);
	h = home(&st, &k);
	atomic_store(&h->tag, pending_tag(&k, 0));
	BW_ASSERT(bw_state_get(&st, &k, "a", "b") == h);
	k = key_v4(13);
	h = home(&st, &k);
	atomic_store(&h->tag, pending_tag(&k, 0xffffffffu));
	BW_ASSERT(bw_state_get(&st, &k, "a", "b") == h);
	bw_state_detach(&st);
}

static void test_state_pending_live_claimer_waits_bounded(void)
{
	struct bw_state st;
	struct bw_dest_key k = key_v4(21), other;
	struct bw_dest *h, *d;
	uint64_t t0, dt;
	uint32_t j;

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	h = home(&st, &k);
	atomic_store(&h->tag, pending_tag(&k, (uint64_t)getpid()));
	t0 = mono_ns();
	BW_ASSERT(bw_state_get(&st, &k, "l", "r") == NULL);
	dt = mono_ns() - t0;
	printf("# live PENDING: gave up after %llu us\n",
	       (unsigned long long)(dt / 1000));
	BW_ASSERT(dt < 50000000ull); /* bounded: well under 50 ms */
	BW_ASSERT(bw_state_find(&st, &k) == NULL);
	BW_ASSERT_EQ(atomic_load(&st.hdr->full_events), 0);
	BW_ASSERT_EQ(atomic_load(&st.hdr->used), 0);

	/* Another key whose probe passes the slot skips it at once. */
	for (j = 1000;; j++) {
		other = key_v4(j);
		if (home(&st, &other) == h &&
		    ((bw_state_key_hash(&other) ^ bw_state_key_hash(&k)) >> 2 &
		     BW_TAG_HASH16))
			break;
	}
	d = bw_state_get(&st, &other, "o", "r");
	BW_ASSERT(d != NULL && d != h);
	BW_ASSERT_EQ(bw_state_index(&st, d),
		     (bw_state_index(&st, h) + 1) & (BW_STATE_SLOTS - 1));

	/* A claim 1 s old is still honoured; 2 s old is stale even if its pid
	 * lives (pid reuse).  Seconds wrap at 2^14. */
	atomic_store(&h->tag, pending_tag_aged(&k, (uint64_t)getpid(), 1));
	BW_ASSERT(bw_state_get(&st, &k, "l", "r") == NULL);
	atomic_store(&h->tag, pending_tag_aged(&k, (uint64_t)getpid(),
					       BW_TAG_SEC_MASK + 1));
	BW_ASSERT(bw_state_get(&st, &k, "l", "r") == NULL);
	atomic_store(&h->tag, pending_tag_aged(&k, (uint64_t)getpid(), 2));
	BW_ASSERT(bw_state_get(&st, &k, "l", "r") == h);
	BW_ASSERT(bw_state_find(&st, &k) == h);
	BW_ASSERT_EQ(count_duplicates(&st, NULL), 0);
	bw_state_detach(&st);
}

static void test_state_reset_dest(void)
{
	struct bw_state st;
	struct bw_dest_key k = key_v4(31);
	struct bw_dest *d;
	char buf[64];

	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	d = bw_state_get(&st, &k, "lab", "rul");
	BW_ASSERT(d != NULL);
	atomic_store(&d->successful_calls, 9);
	atomic_store(&d->failed_calls, 9);
	atomic_store(&d->state, BW_BREAKER_OPEN); /* generation 0 */
	atomic_store(&d->consecutive_failures, 3);
	atomic_store(&d->forced, BW_FORCE_DISABLED);
	atomic_store(&d->open_until_ns, 12345);
	atomic_store(&d->win[3].failures, 4);
	atomic_store(&d->bh_word, 2); /* two slots held */
	atomic_store(&d->bh_max, 5);
	atomic_store(&d->bh_wait_hist[7], 3);
	atomic_store(&d->retries, 6);
	bw_state_reset_dest(d);
	BW_ASSERT_EQ(atomic_load(&d->successful_calls), 0);
	BW_ASSERT_EQ(atomic_load(&d->failed_calls), 0);
	/* Closed by the breaker's own reset: a new generation, so the word
	 * is not simply 0 (stale probe tickets stay stale). */
	BW_ASSERT_EQ(bw_breaker_view(d, mono_ns(), NULL), BW_BREAKER_CLOSED);
	BW_ASSERT(atomic_load(&d->state) != 0);
	BW_ASSERT_EQ(atomic_load(&d->consecutive_failures), 0);
	BW_ASSERT_EQ(atomic_load(&d->forced), BW_FORCE_DISABLED);
	BW_ASSERT_EQ(atomic_load(&d->open_until_ns), 0);
	BW_ASSERT_EQ(atomic_load(&d->win[3].failures), 0);
	BW_ASSERT_EQ(atomic_load(&d->bh_word), 2);
	BW_ASSERT_EQ(atomic_load(&d->bh_max), 5);
	BW_ASSERT_EQ(atomic_load(&d->bh_wait_hist[7]), 0);
	BW_ASSERT_EQ(atomic_load(&d->retries), 0);
	BW_ASSERT(bw_state_find(&st, &k) == d);
	bw_state_label(d, buf, sizeof(buf));
	BW_ASSERT_STR(buf, "lab");
	bw_state_reset_dest(NULL);
	bw_state_detach(&st);
}

static void test_state_long_labels_truncated(void)
{
	struct bw_state st;
	struct bw_dest_key k = key_v4(41);
	struct bw_dest *d;
	char big[300], buf[300], small[4];

	memset(big, 'L', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	d = bw_state_get(&st, &k, big, big);
	BW_ASSERT(d != NULL);
	bw_state_label(d, buf, sizeof(buf));
	BW_ASSERT_EQ(strlen(buf), BW_STATE_LABEL_MAX - 1);
	bw_state_rule(d, buf, sizeof(buf));
	BW_ASSERT_EQ(strlen(buf), BW_STATE_RULE_MAX - 1);
	bw_state_label(d, small, sizeof(small));
	BW_ASSERT_STR(small, "LLL");
	bw_state_label(NULL, small, sizeof(small));
	BW_ASSERT_STR(small, "");
	k = key_v4(42);
	d = bw_state_get(&st, &k, NULL, NULL);
	BW_ASSERT(d != NULL);
	bw_state_rule(d, buf, sizeof(buf));
	BW_ASSERT_STR(buf, "");
	bw_state_detach(&st);
}

/* ---- crash safety ------------------------------------------------------- */

#define CRASH_CHURNERS 4
#define CRASH_COUNTERS 3
#define CRASH_HOT 16
#define CRASH_POOL 3000
/* Keys that appear as time passes: CRASH_WINDOW_KEYS new ones every
 * CRASH_WINDOW_NS, so claims go on for the whole run. */
#define CRASH_WINDOW_KEYS 8
#define CRASH_WINDOW_NS 2000000ull
#define CRASH_RUN_NS 2000000000ull
#define CRASH_WINDOWS (CRASH_RUN_NS / CRASH_WINDOW_NS + 50)

struct crash_shared {
	_Atomic int stop;
	uint64_t t0;
	_Atomic uint64_t stalls;
	_Atomic uint64_t done[CRASH_COUNTERS];
	_Atomic uint64_t busy[CRASH_COUNTERS];
	_Atomic int moved[CRASH_COUNTERS];
};

static struct crash_shared *crash_sh;

/* kind 0 hot, 1 counters', 2 pool, 3 window keys. */
static uint32_t crash_key_id(int kind, uint32_t i)
{
	return kind == 0   ? 1 + i
	       : kind == 1 ? 100 + i
	       : kind == 2 ? 1000 + i
			   : 100000 + i;
}

static uint32_t crash_window_key(uint64_t r)
{
	uint64_t w = (mono_ns() - crash_sh->t0) / CRASH_WINDOW_NS;

	if (w >= CRASH_WINDOWS)
		w = CRASH_WINDOWS - 1;
	return crash_key_id(
		3, (uint32_t)(w * CRASH_WINDOW_KEYS + r % CRASH_WINDOW_KEYS));
}

/* Loops lookups and increments until killed: mostly hot keys, sometimes
 * a counter's key (a contested insert at start), a pool key (new until the
 * pool is used up) or a key of the current window (always some new). */
static void churner(const char *name, uint64_t seed)
{
	struct bw_state st;
	char why[256];

	xs_state = seed | 1;
	if (bw_state_attach(&st, name, false, why, sizeof(why)) < 0)
		_exit(2);
	for (uint64_t it = 0;; it++) {
		uint64_t r = xs();
		struct bw_dest_key k;
		struct bw_dest *d;

		if (it % 64 == 0)
			k = key_v4(crash_key_id(2, (uint32_t)(r % CRASH_POOL)));
		else if (it % 64 == 32)
			k = key_v4(crash_window_key(r));
		else if (it % 8 == 0)
			k = key_v4(crash_key_id(
				1, (uint32_t)(r % CRASH_COUNTERS)));
		else
			k = key_v4(crash_key_id(0, (uint32_t)(r % CRASH_HOT)));
		d = bw_state_get(&st, &k, "churn", "r");
		if (d)
			atomic_fetch_add(&d->rejected_calls, 1);
	}
}

/*
 * A writer that freezes in the middle of an insert: it claims the slot
 * bw_state_get would claim for an absent window key, exactly as state.c
 * does (tag layout in state.h), writes half the key and waits to be
 * SIGKILLed.  This puts a dead claimer on the probe path of a key live
 * processes want, which random kills almost never manage (the real claim
 * window is ~100 ns).
 */
static void staller(const char *name, uint64_t seed)
{
	struct bw_state st;
	char why[256];

	xs_state = seed | 1;
	if (bw_state_attach(&st, name, false, why, sizeof(why)) < 0)
		_exit(2);
	for (;;) {
		struct bw_dest_key k = key_v4(crash_window_key(xs()));
		uint64_t h = bw_state_key_hash(&k);

		for (uint32_t n = 0; n < BW_STATE_PROBE_MAX; n++) {
			struct bw_dest *d =
				&st.dests[(h + n) & (BW_STATE_SLOTS - 1)];
			uint64_t t = atomic_load(&d->tag), want = 0;

			if (t == BW_TAG_READY + (h >> 2) ||
			    (t &
			     (BW_TAG_READY | BW_TAG_PENDING | BW_TAG_HASH16)) ==
				    (BW_TAG_PENDING |
				     ((h >> 2) & BW_TAG_HASH16)))
				break; /* present or being made */
			if (t != 0)
				continue;
			if (!atomic_compare_exchange_strong(
				    &d->tag, &want,
				    pending_tag(&k, (uint64_t)getpid())))
				break;
			memcpy(&d->key, &k, sizeof(k) / 2);
			atomic_fetch_add(&crash_sh->stalls, 1);
			for (;;)
				pause();
		}
		sleep_us(100);
	}
}

/* Increments its own key's successful_calls until told to stop, then
 * says how many it did. */
static void counter(const char *name, struct crash_shared *sh, int j)
{
	struct bw_state st;
	struct bw_dest_key k = key_v4(crash_key_id(1, (uint32_t)j));
	struct bw_dest *first = NULL;
	char why[256];
	uint64_t done = 0, busy = 0;

	if (bw_state_attach(&st, name, false, why, sizeof(why)) < 0)
		_exit(2);
	while (!atomic_load(&sh->stop)) {
		struct bw_dest *d = bw_state_get(&st, &k, "count", "r");
		if (!d) {
			busy++;
			continue;
		}
		if (first && d != first)
			atomic_store(&sh->moved[j], 1);
		first = d;
		atomic_fetch_add(&d->successful_calls, 1);
		done++;
	}
	atomic_store(&sh->done[j], done);
	atomic_store(&sh->busy[j], busy);
	_exit(0);
}

/* Role CRASH_CHURNERS is the staller; the others churn. */
static pid_t spawn_writer(const char *name, int role)
{
	uint64_t seed = xs();
	pid_t p = fork();

	if (p == 0) {
		/* Lower than the parent, which must wake on time to kill. */
		if (nice(10) < 0)
			(void)0;
		if (role == CRASH_CHURNERS)
			staller(name, seed);
		churner(name, seed);
	}
	return p;
}

static int count_pending(struct bw_state *st)
{
	int n = 0;

	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++) {
		uint64_t t = atomic_load(&st->dests[i].tag);
		if ((t & (BW_TAG_READY | BW_TAG_PENDING)) == BW_TAG_PENDING)
			n++;
	}
	return n;
}

static void test_state_crash_safety(void)
{
	const char *name = uname_("crash");
	struct crash_shared *sh;
	struct bw_state st;
	pid_t ch[CRASH_CHURNERS + 1], co[CRASH_COUNTERS];
	char why[256];
	uint64_t kills = 0;
	int ready = 0, pending, status, bad_lookups = 0;

	unlink_state(name);
	BW_ASSERT_EQ(bw_state_attach(&st, name, true, why, sizeof(why)), 0);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	BW_ASSERT(sh != MAP_FAILED);
	crash_sh = sh;
	sh->t0 = mono_ns();
	xs_state = (uint64_t)getpid() * 2654435761u | 1;
	for (int i = 0; i <= CRASH_CHURNERS; i++)
		ch[i] = spawn_writer(name, i);
	sleep_us(20000);
	for (int j = 0; j < CRASH_COUNTERS; j++) {
		co[j] = fork();
		if (co[j] == 0) {
			if (nice(10) < 0)
				(void)0;
			counter(name, sh, j);
		}
	}
	while (mono_ns() - sh->t0 < CRASH_RUN_NS) {
		int v = (int)(xs() % (CRASH_CHURNERS + 1));

		sleep_us((long)(xs() % 3000));
		kill(ch[v], SIGKILL);
		waitpid(ch[v], NULL, 0); /* reaped: kill(pid, 0) says ESRCH */
		kills++;
		ch[v] = spawn_writer(name, v);
	}
	atomic_store(&sh->stop, 1);
	for (int i = 0; i <= CRASH_CHURNERS; i++) {
		kill(ch[i], SIGKILL);
		waitpid(ch[i], NULL, 0);
	}
	for (int j = 0; j < CRASH_COUNTERS; j++) {
		BW_ASSERT_EQ(waitpid(co[j], &status, 0), co[j]);
		BW_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}

	/* Survivors' counts are exact and their slot never moved. */
	for (int j = 0; j < CRASH_COUNTERS; j++) {
		struct bw_dest_key k = key_v4(crash_key_id(1, (uint32_t)j));
		struct bw_dest *d = bw_state_find(&st, &k);

		BW_ASSERT(d != NULL);
		printf("# counter %d: %llu increments, %llu busy lookups\n", j,
		       (unsigned long long)atomic_load(&sh->done[j]),
		       (unsigned long long)atomic_load(&sh->busy[j]));
		BW_ASSERT(atomic_load(&sh->done[j]) > 1000);
		BW_ASSERT_EQ(atomic_load(&d->successful_calls),
			     atomic_load(&sh->done[j]));
		BW_ASSERT_EQ(atomic_load(&sh->moved[j]), 0);
	}
	pending = count_pending(&st);
	BW_ASSERT_EQ(count_duplicates(&st, &ready), 0);
	printf("# %llu kills, %llu frozen claims, %d ready slots, used %llu, "
	       "%d left PENDING\n",
	       (unsigned long long)kills,
	       (unsigned long long)atomic_load(&sh->stalls), ready,
	       (unsigned long long)atomic_load(&st.hdr->used), pending);
	BW_ASSERT(atomic_load(&sh->stalls) > 0);
	/* used may miss a publish whose writer died before counting it. */
	BW_ASSERT(atomic_load(&st.hdr->used) <= (uint64_t)ready);
	BW_ASSERT((uint64_t)ready - atomic_load(&st.hdr->used) <= kills);

	/* Every key a live process needs can be looked up or made now, the
	 * dead claimers' slots taken over. */
	for (uint32_t i = 0; i < CRASH_HOT; i++) {
		struct bw_dest_key k = key_v4(crash_key_id(0, i));
		bad_lookups += !bw_state_get(&st, &k, "after", "r");
	}
	for (uint32_t i = 0; i < CRASH_POOL; i++) {
		struct bw_dest_key k = key_v4(crash_key_id(2, i));
		bad_lookups += !bw_state_get(&st, &k, "after", "r");
	}
	for (uint32_t i = 0; i < CRASH_WINDOWS * CRASH_WINDOW_KEYS; i++) {
		struct bw_dest_key k = key_v4(crash_key_id(3, i));
		bad_lookups += !bw_state_get(&st, &k, "after", "r");
	}
	BW_ASSERT_EQ(bad_lookups, 0);
	BW_ASSERT_EQ(count_duplicates(&st, &ready), 0);
	pending = count_pending(&st);
	printf("# after lookups: %d ready, %d PENDING left\n", ready, pending);
	/* Every frozen claim was for a window key, now taken over. */
	BW_ASSERT_EQ(pending, 0);
	munmap(sh, sizeof(*sh));
	bw_state_detach(&st);
	unlink_state(name);
}

/* ---- garbage ------------------------------------------------------------ */

static void test_state_garbage_slots_never_crash(void)
{
	const char *name = uname_("garbage");
	struct bw_state sh, st;
	char why[256], buf[128];
	size_t area = (size_t)BW_STATE_SLOTS * sizeof(struct bw_dest);
	uint64_t found = 0;

	BW_ASSERT_EQ(make_segment(name), 0);
	BW_ASSERT_EQ(bw_state_attach(&sh, name, false, why, sizeof(why)), 0);
	for (uint32_t i = 0; i < 3000; i++) {
		struct bw_dest_key k = key_v4(i);
		BW_ASSERT(bw_state_get(&sh, &k, "before", "r") != NULL);
	}
	BW_ASSERT_EQ(bw_state_attach_private(&st), 0);
	xs_state = 0x9e3779b97f4a7c15ull;
	for (int round = 0; round < 6; round++) {
		uint8_t *b = (uint8_t *)st.dests;

		memcpy(st.dests, sh.dests, area);
		if (round == 0) { /* everything random */
			for (size_t i = 0; i + 8 <= area; i += 8) {
				uint64_t r = xs();
				memcpy(b + i, &r, 8);
			}
		} else if (round < 4) { /* sprinkled bytes */
			for (int i = 0; i < 200000; i++)
				b[xs() % area] = (uint8_t)xs();
		} else { /* tags of every kind, with our keys' hash bits */
			for (uint32_t i = 0; i < BW_STATE_SLOTS; i++) {
				struct bw_dest_key k = key_v4(xs() % 3000);
				uint64_t r = xs(), t;
				switch (r % 5) {
				case 0:
					t = pending_tag(&k, r >> 32);
					break;
				case 1: /* pid 1 lives; any age */
					t = pending_tag_aged(
						&k, 1,
						round == 4 ? xs() % 20000 : 0);
					break;
				case 2:
					t = BW_TAG_READY |
					    (bw_state_key_hash(&k) >> 2);
					break;
				case 3:
					t = r;
					break;
				default:
					t = r | BW_TAG_READY | BW_TAG_PENDING;
				}
				atomic_store(&st.dests[i].tag, t);
			}
		}
		for (uint32_t i = 0; i < BW_STATE_SLOTS; i++) {
			struct bw_dest *d = bw_state_slot(&st, i);
			if (!d)
				continue;
			BW_ASSERT_EQ(bw_state_index(&st, d), i);
			bw_state_label(d, buf, sizeof(buf));
			BW_ASSERT(strlen(buf) < BW_STATE_LABEL_MAX);
			bw_state_rule(d, buf, sizeof(buf));
			BW_ASSERT(strlen(buf) < BW_STATE_RULE_MAX);
		}
		for (uint32_t i = 0; i < 4000; i++) {
			struct bw_dest_key k = key_v4(i);
			struct bw_dest *d = bw_state_find(&st, &k);
			if (d)
				found++;
			if (i % 4 == 0) {
				d = bw_state_get(&st, &k, "after", "r");
				if (d)
					BW_ASSERT(bw_state_find(&st, &k) == d);
			}
		}
	}
	printf("# garbage rounds: %llu finds hit\n", (unsigned long long)found);
	bw_state_detach(&st);
	bw_state_detach(&sh);
	unlink_state(name);
}

static void test_state_cleanup(void)
{
	for (int i = 0; i < nnames && i < 16; i++)
		unlink_state(names[i]);
}

static const struct bw_test tests[] = {
	BW_TEST(test_state_path_validation),
	BW_TEST(test_state_key_hash),
	BW_TEST(test_state_attach_shares_memory),
	BW_TEST(test_state_private_not_shared),
	BW_TEST(test_state_refuses_symlink),
	BW_TEST(test_state_refuses_wrong_size),
	BW_TEST(test_state_refuses_wrong_mode),
	BW_TEST(test_state_refuses_bad_header),
	BW_TEST(test_state_refuses_other_owner),
	BW_TEST(test_state_refuses_not_regular),
	BW_TEST(test_state_ten_thousand_fit),
	BW_TEST(test_state_table_full),
	BW_TEST(test_state_reclaim_idle_when_full),
	BW_TEST(test_state_reclaim_spares_busy),
	BW_TEST(test_state_reclaim_same_key_new_tenancy),
	BW_TEST(test_state_lose_truncated),
	BW_TEST(test_state_reclaim_under_lookups),
	BW_TEST(test_state_pending_dead_claimer_taken_over),
	BW_TEST(test_state_pending_live_claimer_waits_bounded),
	BW_TEST(test_state_reset_dest),
	BW_TEST(test_state_long_labels_truncated),
	BW_TEST(test_state_crash_safety),
	BW_TEST(test_state_garbage_slots_never_crash),
	BW_TEST(test_state_cleanup),
};

BW_TEST_MAIN(tests)
