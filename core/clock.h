/* SPDX-License-Identifier: MIT */
/*
 * core/clock.h: the shim's clock, CLOCK_MONOTONIC in nanoseconds, read
 * from the CPU's time-stamp counter when the kernel keeps its own time
 * with it (clock.c).  Every hook that times a call reads it: a vDSO
 * clock_gettime costs ~90 ns when a connect loop finds its code and data
 * out of the caches, the counter ~20 ns (bench/results, connect loop).
 */
#ifndef BW_CORE_CLOCK_H
#define BW_CORE_CLOCK_H

#include <stdint.h>

/* The time-stamp counter is trusted for at most this long after the last
 * clock_gettime: the error of a reading then stays below 0.5 ms even if
 * NTP slews the kernel's clock at its maximum (500 ppm). */
#define BW_CLOCK_ANCHOR_NS 1000000000ull
/* The counter's rate is measured over at least this long first. */
#define BW_CLOCK_CALIBRATE_NS 20000000ull

/* Decides, once, whether the counter can stand in for clock_gettime: an
 * x86-64 CPU with an invariant counter, and the kernel's clocksource is
 * "tsc".  Until it is called, or when it says no, bw_clock_ns() is
 * clock_gettime.  Not AS-safe (reads sysfs); the constructor calls it. */
void bw_clock_init(void);

/* CLOCK_MONOTONIC in nanoseconds, within 0.5 ms; monotonic within one
 * anchor (callers clamp differences at 0).  AS-safe: yes. */
uint64_t bw_clock_ns(void);

/* 1 when readings come from the counter (decided usable and its rate
 * measured), else 0.  For tests and diagnostics.  AS-safe: yes. */
int bw_clock_uses_tsc(void);

#endif
