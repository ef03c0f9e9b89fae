/* SPDX-License-Identifier: MIT */
/*
 * cli/force.c: `bulwark force [--state NAME] DEST (open | disabled | auto)`
 * (bulwark(1) force): the operator override in bw_dest.forced.  An address that
 * no program has reached yet is created (rule "(forced)"), so a
 * destination can be forced before traffic starts; so is the segment.
 * Never: creates a group (its key is the shim's hash of the rule's group)
 * or anything at all for "auto".
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char usage[] =
	"Usage: bulwark force [--state NAME] DEST open|disabled|auto\n"
	"\n"
	"Overrides the breaker of a destination for every program sharing the "
	"state:\n"
	"  open      refuse every new connect at once (with breaker.errno), as "
	"an open\n"
	"            breaker does, until forced back to auto\n"
	"  disabled  let every connect through: no breaker, bulkhead or retry\n"
	"  auto      end the override; the breaker decides again\n"
	"\n"
	"An address no program has connected to yet is added to the state "
	"(rule\n"
	"'(forced)'), so it can be forced before traffic starts; the state is\n"
	"created if needed.  Established connections are left alone.\n"
	"\n"
	"DEST is IP:PORT, [IPV6]:PORT, HOST:PORT (every address HOST resolves "
	"to),\n"
	"or the name of a rule group that is already in the state.\n"
	"\n"
	"Options:\n"
	"  -s, --state NAME  the shared state (default: $BULWARK_STATE, else\n"
	"                    'default')\n"
	"  -h, --help        show this help\n"
	"\n"
	"Exit status: 0 done, 1 DEST unknown (a group, or auto on an absent "
	"address)\n"
	"or the state is unusable or full, 2 bad usage.\n"
	"\n"
	"Examples:\n"
	"  bulwark force 10.0.0.7:5432 open       # take a replica out\n"
	"  bulwark force 10.0.0.7:5432 auto       # and back\n"
	"  bulwark force --state api payments disabled\n";

static int force_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = getenv("BULWARK_STATE");
	uint32_t mode;
	int c, rc;

	if (!name || !*name)
		name = "default";
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			name = optarg;
			break;
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_force, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option("force", argv, c);
		}
	}
	if (argc - optind != 2)
		return bw_cli_usage_error("force", "give DEST and one of open, "
						   "disabled, auto");
	const char *text = argv[optind], *how = argv[optind + 1];
	if (strcmp(how, "open") == 0)
		mode = BW_FORCE_OPEN;
	else if (strcmp(how, "disabled") == 0)
		mode = BW_FORCE_DISABLED;
	else if (strcmp(how, "auto") == 0)
		mode = BW_FORCE_AUTO;
	else
		return bw_cli_usage_error("force",
					  "'%s' is not open, disabled "
					  "or auto",
					  how);
	if (strcmp(name, "private") == 0)
		return bw_cli_usage_error("force",
					  "state 'private' lives "
					  "inside each process; name a shared "
					  "state");
	if (bw_cli_check_state("force", name) != BW_CLI_OK)
		return BW_CLI_USAGE;

	struct bw_cli_dest *dest = calloc(1, sizeof(*dest));
	if (!dest) {
		bw_cli_err("force", "out of memory");
		return BW_CLI_FAIL;
	}
	rc = bw_cli_dest_parse("force", text, dest);
	if (rc != BW_CLI_OK)
		goto out_free;

	char path[160] = "", why[256] = "";
	struct bw_state st;
	memset(&st, 0, sizeof(st));
	bw_state_path(name, (unsigned)getuid(), path, sizeof(path));
	bool create = mode != BW_FORCE_AUTO && !dest->is_group;
	if (!create && bw_cli_state_exists(name, path, sizeof(path)) != 1) {
		bw_cli_err("force",
			   "no destination '%s': there is no state "
			   "'%s' yet (no program has run under bulwark with "
			   "it)",
			   text, name);
		rc = BW_CLI_FAIL;
		goto out_free;
	}
	rc = bw_state_attach(&st, name, create, why, sizeof(why));
	if (rc < 0) {
		bw_cli_state_unusable("force", name, path, why, rc);
		rc = BW_CLI_FAIL;
		goto out_free;
	}

	/* Each address found or, when forcing, created; else by label (a
	 * group, or a label as status prints it). */
	struct bw_dest *found[BW_CLI_DEST_MAX];
	int n = 0;
	for (int i = 0; i < dest->nkeys; i++) {
		struct bw_dest *d = bw_state_find(&st, &dest->keys[i]);
		if (!d && create)
			d = bw_state_get(&st, &dest->keys[i], dest->labels[i],
					 "(forced)");
		if (!d && create) {
			bw_cli_err("force", "state '%s' has no room for %s",
				   name, dest->labels[i]);
			rc = BW_CLI_FAIL;
			goto out;
		}
		if (d)
			found[n++] = d;
	}
	if (n == 0)
		n = bw_cli_dest_find(&st, dest, text, found, BW_CLI_DEST_MAX);
	if (n == 0) {
		bw_cli_err("force", "no destination '%s' in state '%s'%s", text,
			   name,
			   dest->is_group ? " (a group appears once a "
					    "program has used its rule)"
					  : "");
		rc = BW_CLI_FAIL;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char label[BW_STATE_LABEL_MAX];
		atomic_store_explicit(&found[i]->forced, mode,
				      memory_order_release);
		bw_state_label(found[i], label, sizeof(label));
		printf("%s: %s\n", label,
		       mode == BW_FORCE_OPEN	   ? "forced open"
		       : mode == BW_FORCE_DISABLED ? "disabled"
						   : "automatic (not forced)");
	}
	rc = BW_CLI_OK;
out:
	bw_state_detach(&st);
out_free:
	free(dest);
	return rc;
}

const struct bw_cli_cmd bw_cli_cmd_force = {
	.name = "force",
	.main = force_main,
	.summary = "force a destination's breaker open, disabled or auto",
	.usage = usage,
};
