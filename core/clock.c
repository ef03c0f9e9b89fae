/* SPDX-License-Identifier: MIT */
/*
 * core/clock.c: CLOCK_MONOTONIC from the time-stamp counter (clock.h).
 *
 * An anchor is one clock_gettime reading and the counter beside it.  A
 * reading is the anchor plus the counter's ticks since, at the rate
 * measured between the first anchor and the latest one.  The anchor is
 * renewed by the first reading more than BW_CLOCK_ANCHOR_NS after it, so
 * whatever the kernel's clock does in between (NTP slewing it by up to
 * 500 ppm) a reading is off by less than 0.5 ms, and a time computed in
 * one process agrees with another's as closely.  Until the rate has been
 * measured over BW_CLOCK_CALIBRATE_NS every reading is clock_gettime.
 *
 * Owns: the anchor.  Never: blocks, allocates, or waits for a writer (a
 * reader that meets one, or a writer that meets another, uses
 * clock_gettime).  AS-safe: the anchor is published under a sequence
 * count whose writer is whoever takes it with a CAS; a signal handler
 * that interrupts the writer sees an odd count and reads clock_gettime.
 */
#include "core/clock.h"
#include "core/sys.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

static struct {
	_Atomic int usable;	    /* 1: the counter stands in */
	_Atomic uint32_t seq;	    /* odd while a writer updates the rest */
	_Atomic uint64_t ns, tsc;   /* the anchor */
	_Atomic uint64_t mult;	    /* ns per tick << 32; 0: not measured yet */
	_Atomic uint64_t span;	    /* ticks an anchor is trusted for */
	_Atomic uint64_t ns0, tsc0; /* the first anchor: the rate's base */
} clk;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#if HAVE_TSC
/* Whether the kernel keeps time with the counter: its rate is then
 * constant, and equal on every CPU. */
static int kernel_uses_tsc(void)
{
	char buf[16] = { 0 };
	int fd = bw_sys.openat(AT_FDCWD,
			       "/sys/devices/system/clocksource/clocksource0/"
			       "current_clocksource",
			       O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ssize_t n = bw_sys.read(fd, buf, sizeof(buf) - 1);
	bw_sys.close(fd);
	return n >= 3 && memcmp(buf, "tsc", 3) == 0 &&
	       (buf[3] == '\n' || buf[3] == 0);
}
#endif

void bw_clock_init(void)
{
#if HAVE_TSC
	unsigned a, b, c, d;
	/* CPUID 0x80000007 EDX bit 8: the counter does not stop or change
	 * rate with the CPU's power states. */
	if (__get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8)) &&
	    kernel_uses_tsc())
		atomic_store(&clk.usable, 1);
#endif
}

#if HAVE_TSC
/* A clock_gettime reading, which also renews the anchor and the rate
 * when nobody else is doing so. */
static uint64_t anchor(void)
{
	uint64_t t = __rdtsc(), ns = mono_ns();
	uint32_t s = atomic_load_explicit(&clk.seq, memory_order_relaxed);

	if ((s & 1) || !atomic_compare_exchange_strong_explicit(
			       &clk.seq, &s, s + 1, memory_order_acquire,
			       memory_order_relaxed))
		return ns; /* another writer: leave it to them */
	uint64_t ns0 = atomic_load_explicit(&clk.ns0, memory_order_relaxed);
	uint64_t tsc0 = atomic_load_explicit(&clk.tsc0, memory_order_relaxed);
	if (!ns0) {
		atomic_store_explicit(&clk.ns0, ns, memory_order_relaxed);
		atomic_store_explicit(&clk.tsc0, t, memory_order_relaxed);
	} else if (ns - ns0 >= BW_CLOCK_CALIBRATE_NS && t > tsc0) {
		unsigned __int128 m =
			((unsigned __int128)(ns - ns0) << 32) / (t - tsc0);
		if (m > 0 && m < ((unsigned __int128)1 << 40)) {
			atomic_store_explicit(&clk.mult, (uint64_t)m,
					      memory_order_relaxed);
			atomic_store_explicit(
				&clk.span,
				(uint64_t)(((unsigned __int128)BW_CLOCK_ANCHOR_NS
					    << 32) /
					   m),
				memory_order_relaxed);
		}
	}
	atomic_store_explicit(&clk.ns, ns, memory_order_relaxed);
	atomic_store_explicit(&clk.tsc, t, memory_order_relaxed);
	atomic_store_explicit(&clk.seq, s + 2, memory_order_release);
	return ns;
}
#endif

uint64_t bw_clock_ns(void)
{
#if HAVE_TSC
	if (atomic_load_explicit(&clk.usable, memory_order_relaxed)) {
		uint32_t s =
			atomic_load_explicit(&clk.seq, memory_order_acquire);
		uint64_t ns =
			atomic_load_explicit(&clk.ns, memory_order_relaxed);
		uint64_t t0 =
			atomic_load_explicit(&clk.tsc, memory_order_relaxed);
		uint64_t m =
			atomic_load_explicit(&clk.mult, memory_order_relaxed);
		uint64_t span =
			atomic_load_explicit(&clk.span, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		uint64_t d = __rdtsc() - t0;
		if (!(s & 1) && m &&
		    atomic_load_explicit(&clk.seq, memory_order_relaxed) == s &&
		    d < span)
			return ns +
			       (uint64_t)(((unsigned __int128)d * m) >> 32);
		return anchor();
	}
#endif
	return mono_ns();
}

int bw_clock_uses_tsc(void)
{
	return atomic_load_explicit(&clk.usable, memory_order_relaxed) &&
	       atomic_load_explicit(&clk.mult, memory_order_relaxed) != 0;
}
