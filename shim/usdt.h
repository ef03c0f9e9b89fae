/* SPDX-License-Identifier: MIT */
/*
 * shim/usdt.h: USDT probes (provider "bulwark") for `bulwark trace`
 * (man/bulwark.1, probe/).  Only rare events have a probe: a hit costs
 * about a microsecond while a tracer is attached, so no probe fires per
 * call (the tracer measures calls with the kernel's socket tracepoints).  Each
 * probe is gated by its semaphore, which the kernel raises while a tracer is
 * attached (uprobe ref_ctr, found through the .note.stapsdt ELF note, not the
 * dynamic symbol table, so the hidden visibility and the version script do not
 * hide it): detached, a probe site costs one load and one branch, and the label
 * is never formatted.
 *
 *   bulwark:init                                 shim loaded in a process
 *   bulwark:breaker  (label, event)              breaker_open/_half_open/_close
 *   bulwark:reject   (label, event, errno)       reject_open, reject_bulkhead
 *   bulwark:retry    (label, attempt, errno, delay_ns)
 */
#ifndef BW_SHIM_USDT_H
#define BW_SHIM_USDT_H

#define _SDT_HAS_SEMAPHORES 1
#define SDT_USE_VARIADIC 1
#include <sys/sdt.h>

#include "core/state.h"

#define BW_USDT_SEMA(name) bulwark_##name##_semaphore
#define BW_USDT_DECLARE(name)                    \
	extern unsigned short BW_USDT_SEMA(name) \
		__attribute__((section(".probes")))
BW_USDT_DECLARE(init);
BW_USDT_DECLARE(breaker);
BW_USDT_DECLARE(reject);
BW_USDT_DECLARE(retry);

/* Whether a tracer listens to probe name: one load, one branch. */
#define BW_USDT_ENABLED(name) __builtin_expect(BW_USDT_SEMA(name) != 0, 0)

/* Fires probe name with the label of dest d (a struct bw_dest *) first. */
#define BW_USDT_DEST(name, d, ...)                                 \
	do {                                                       \
		if (BW_USDT_ENABLED(name)) {                       \
			char bw_usdt_label_[BW_STATE_LABEL_MAX];   \
			bw_state_label((d), bw_usdt_label_,        \
				       sizeof(bw_usdt_label_));    \
			STAP_PROBEV(bulwark, name, bw_usdt_label_, \
				    __VA_ARGS__);                  \
		}                                                  \
	} while (0)

#define BW_USDT_INIT()                             \
	do {                                       \
		if (BW_USDT_ENABLED(init))         \
			STAP_PROBE(bulwark, init); \
	} while (0)
#define BW_USDT_BREAKER(d, event) \
	BW_USDT_DEST(breaker, d, (const char *)(event))
#define BW_USDT_REJECT(d, event, err) \
	BW_USDT_DEST(reject, d, (const char *)(event), (int)(err))
#define BW_USDT_RETRY(d, attempt, err, delay_ns) \
	BW_USDT_DEST(retry, d, (int)(attempt), (int)(err), (uint64_t)(delay_ns))

#endif
