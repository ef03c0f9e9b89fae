/* SPDX-License-Identifier: MIT */
/*
 * shim/usdt.c: the semaphores of the USDT probes of shim/usdt.h.  The
 * kernel increments one while a tracer is attached to its probe.
 */
#include "shim/usdt.h"

#define BW_USDT_DEFINE(name) \
	unsigned short BW_USDT_SEMA(name) __attribute__((section(".probes")))

BW_USDT_DEFINE(init);
BW_USDT_DEFINE(breaker);
BW_USDT_DEFINE(reject);
BW_USDT_DEFINE(retry);
