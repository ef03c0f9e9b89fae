/* SPDX-License-Identifier: MIT */
/*
 * cli/reset.c: `bulwark reset [--state NAME] (DEST | --all)`
 * (bulwark(1) reset): zeroes the counters and closes the breaker of one
 * destination (every address of a host name, or a group) or of all, via
 * bw_state_reset_dest.  --all also gives back the slot of every destination not
 * forced and holding no bulkhead slot (bw_state_reclaim), so that a table
 * filled by a test suite's thousands of destinations is empty again.
 * Never: creates a segment or a destination; an unknown DEST is exit 1.
 * Bulkhead slots held by live connections stay counted (state.h).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/bulkhead.h"
#include "core/clock.h"

static const char usage[] =
	"Usage: bulwark reset [--state NAME] DEST\n"
	"       bulwark reset [--state NAME] --all\n"
	"\n"
	"Forgets what the programs sharing a state have learnt about a "
	"destination:\n"
	"its call counters are zeroed and its breaker closes.  Connections open "
	"now\n"
	"keep their bulkhead slots; the slots' count is checked against them and\n"
	"rebuilt if it is wrong.  A forced state (bulwark force) is left as "
	"it is.\n"
	"\n"
	"DEST is one of\n"
	"  IP:PORT        an IPv4 address and port, e.g. 10.0.0.7:5432\n"
	"  [IPV6]:PORT    an IPv6 address in brackets, e.g. [::1]:6379\n"
	"  HOST:PORT      every address HOST resolves to (getaddrinfo)\n"
	"  GROUP          a rule group's name (the rule key group=GROUP)\n"
	"or a destination exactly as 'bulwark status' prints it.\n"
	"\n"
	"Options:\n"
	"  -s, --state NAME  the shared state (default: $BULWARK_STATE, else\n"
	"                    'default')\n"
	"  -a, --all         reset every destination of the state, and free the\n"
	"                    slot of each one that is not forced and holds no\n"
	"                    bulkhead slot (it is made afresh at its next\n"
	"                    connect; status no longer lists it)\n"
	"  -h, --help        show this help\n"
	"\n"
	"Exit status: 0 done (also --all on a state no program has used yet),\n"
	"1 DEST is not in the state or the segment is unusable, 2 bad usage.\n"
	"\n"
	"Examples:\n"
	"  bulwark reset 127.0.0.1:6379\n"
	"  bulwark reset --state api db.internal:5432\n"
	"  bulwark reset --all\n";

/* The bulkhead's count of d rebuilt from its hold records if it is
 * wrong (a corrupt segment), after the slots of dead holders are freed:
 * a forced sweep.  Only for a destination that has had a bulkhead. */
static void repair_bulkhead(struct bw_state *st, struct bw_dest *d)
{
	struct bw_bulkhead_view v;

	bw_bulkhead_view(d, &v);
	if (v.max || v.active || v.waiting)
		bw_bulkhead_sweep(st, d, bw_clock_ns(), true);
}

static int reset_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = getenv("BULWARK_STATE"), *text = NULL;
	bool all = false;
	int c, rc = BW_CLI_OK;

	if (!name || !*name)
		name = "default";
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:s:ah", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			name = optarg;
			break;
		case 'a':
			all = true;
			break;
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_reset, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option("reset", argv, c);
		}
	}
	if (optind < argc)
		text = argv[optind++];
	if (optind < argc)
		return bw_cli_usage_error("reset", "unexpected argument '%s'",
					  argv[optind]);
	if (all == (text != NULL))
		return bw_cli_usage_error("reset", "give one DEST or --all");
	if (strcmp(name, "private") == 0)
		return bw_cli_usage_error("reset",
					  "state 'private' lives "
					  "inside each process; there is "
					  "nothing shared to reset");
	if (bw_cli_check_state("reset", name) != BW_CLI_OK)
		return BW_CLI_USAGE;

	struct bw_cli_dest *dest = calloc(1, sizeof(*dest));
	if (!dest) {
		bw_cli_err("reset", "out of memory");
		return BW_CLI_FAIL;
	}
	if (text) {
		rc = bw_cli_dest_parse("reset", text, dest);
		if (rc != BW_CLI_OK)
			goto out_free;
	}

	char path[160], why[256] = "";
	struct bw_state st;
	memset(&st, 0, sizeof(st));
	if (bw_cli_state_exists(name, path, sizeof(path)) != 1 ||
	    (rc = bw_state_attach(&st, name, false, why, sizeof(why))) ==
		    -ENOENT) {
		if (all) {
			printf("no state '%s' yet (no program has run under "
			       "bulwark with it): nothing to reset\n",
			       name);
			rc = BW_CLI_OK;
		} else {
			bw_cli_err("reset",
				   "no destination '%s': there is no "
				   "state '%s' yet (no program has run under "
				   "bulwark with it)",
				   text, name);
			rc = BW_CLI_FAIL;
		}
		goto out_free;
	}
	if (rc < 0) {
		bw_cli_state_unusable("reset", name, path, why, rc);
		rc = BW_CLI_FAIL;
		goto out_free;
	}

	int n = 0;
	char label[BW_STATE_LABEL_MAX];
	if (all) {
		/* Every slot not forced and holding no bulkhead slot is
		 * freed (its destination starts afresh at its next connect);
		 * the others are reset in place. */
		struct timespec ts;
		int freed = 0;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull +
			       (uint64_t)ts.tv_nsec;
		bw_bulkhead_sweep(&st, NULL, now, true);
		for (uint32_t i = 0; i < BW_STATE_SLOTS; i++) {
			struct bw_dest *d = bw_state_slot(&st, i);
			if (!d)
				continue;
			repair_bulkhead(&st, d);
			n++;
			if (bw_state_reclaim(&st, i, now, BW_RECLAIM_RESET))
				freed++;
			else
				bw_state_reset_dest(d);
		}
		printf("reset %d destination%s in state '%s': %d slot%s "
		       "freed",
		       n, n == 1 ? "" : "s", name, freed,
		       freed == 1 ? "" : "s");
		if (freed < n)
			printf(", %d kept (forced, or a bulkhead slot held)",
			       n - freed);
		putchar('\n');
		rc = BW_CLI_OK;
		goto out;
	}
	struct bw_dest *found[BW_CLI_DEST_MAX];
	n = bw_cli_dest_find(&st, dest, text, found, BW_CLI_DEST_MAX);
	if (n == 0) {
		bw_cli_err("reset",
			   "no destination '%s' in state '%s' (see "
			   "bulwark status --state %s)",
			   text, name, name);
		rc = BW_CLI_FAIL;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		bw_state_reset_dest(found[i]);
		repair_bulkhead(&st, found[i]);
		bw_state_label(found[i], label, sizeof(label));
		printf("reset %s\n", label);
	}
	rc = BW_CLI_OK;
out:
	bw_state_detach(&st);
out_free:
	free(dest);
	return rc;
}

const struct bw_cli_cmd bw_cli_cmd_reset = {
	.name = "reset",
	.main = reset_main,
	.summary = "zero a destination's counters and close its breaker",
	.usage = usage,
};
