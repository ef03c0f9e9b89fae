/* SPDX-License-Identifier: MIT */
/*
 * cli/check.c: `bulwark check [POLICY]` (bulwark(1) check): compiles a policy
 * as the shim would and prints every rule with every effective setting and
 * where it comes from (bw_policy_describe's text), or the first error as
 * "bulwark: policy:LINE:COL: message".
 * Without arguments it checks what the shim would read: BULWARK_POLICY and
 * BULWARK_POLICY_FILE.  Exit 0 valid, 2 not.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
	"Usage: bulwark check [--policy-file F] [POLICY]\n"
	"\n"
	"Checks a policy as the shim would compile it and prints the rules in\n"
	"order (first match wins) with every effective setting, one key=value "
	"a\n"
	"line, then the defaults every rule starts from.  A value set by the "
	"rule\n"
	"is marked '# rule', one from a BULWARK_<KEY> variable '# env'; the "
	"others\n"
	"are the built-in defaults.  A destination no rule matches is observed\n"
	"only: counted and shown by status, nothing applied.  With no rules "
	"but\n"
	"some BULWARK_<KEY> variables, those act as the one rule '*'.\n"
	"\n"
	"An invalid policy prints its first error and exits with status 2:\n"
	"\n"
	"  bulwark: policy:LINE:COL: message\n"
	"\n"
	"('file:LINE:COL' for an error in a policy file, 'env' for a bad\n"
	"BULWARK_<KEY> value); a misspelt key gets a suggestion.\n"
	"\n"
	"Arguments:\n"
	"  POLICY               the rules to check (quote them: one argument)\n"
	"  -f, --policy-file F  also check the rules in file F, after POLICY\n"
	"  -h, --help           show this help\n"
	"\n"
	"With neither, the policy comes from the environment, as the shim "
	"reads it:\n"
	"BULWARK_POLICY then BULWARK_POLICY_FILE; BULWARK_STATE and "
	"BULWARK_LOG are\n"
	"checked too.  BULWARK_<KEY> defaults always apply.\n"
	"\n"
	"Exit status: 0 valid, 2 invalid or bad usage.\n"
	"\n"
	"Examples:\n"
	"  bulwark check 'redis.internal:6379 breaker.failures=3 "
	"breaker.open=30s'\n"
	"  bulwark check --policy-file /etc/bulwark/api.policy\n"
	"  BULWARK_POLICY='*:443 retry.attempts=5' bulwark check\n";

static bool valid_log_level(const char *s)
{
	return !strcmp(s, "off") || !strcmp(s, "error") || !strcmp(s, "warn") ||
	       !strcmp(s, "info") || !strcmp(s, "debug");
}

static int check_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy-file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *text = NULL, *file = NULL;
	bool from_env = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			file = optarg;
			break;
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_check, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option("check", argv, c);
		}
	}
	if (argc - optind > 1)
		return bw_cli_usage_error("check", "give the policy as one "
						   "argument (quote it)");
	if (optind < argc)
		text = argv[optind];
	if (!text && !file) {
		from_env = true;
		text = getenv("BULWARK_POLICY");
		file = getenv("BULWARK_POLICY_FILE");
		if (file && !*file)
			file = NULL;
		const char *state = getenv("BULWARK_STATE");
		if (state && *state && bw_policy_check_state_name(state) < 0) {
			bw_cli_err(NULL,
				   "env: BULWARK_STATE='%s': use 1 to 64 "
				   "letters, digits, '.', '_' or '-'",
				   state);
			return BW_CLI_USAGE;
		}
		const char *log = getenv("BULWARK_LOG");
		if (log && *log && !valid_log_level(log)) {
			bw_cli_err(NULL,
				   "env: BULWARK_LOG='%s': use off, "
				   "error, warn, info or debug",
				   log);
			return BW_CLI_USAGE;
		}
	}

	struct bw_policy *p = NULL;
	int rc = bw_cli_load_policy("check", text, file, &p);
	if (rc != BW_CLI_OK)
		return rc;

	int from_text = 0, from_file = 0, from_vars = 0;
	for (int i = 0; i < p->nrules; i++) {
		if (strcmp(p->rules[i].origin, "file") == 0)
			from_file++;
		else if (strcmp(p->rules[i].origin, "env") == 0)
			from_vars++;
		else
			from_text++;
	}
	if (!p->nrules) {
		printf("policy ok: no rules; every destination is observed "
		       "only\n\n");
		goto describe;
	}
	printf("policy ok: %d rule%s", p->nrules, p->nrules == 1 ? "" : "s");
	if (from_vars)
		printf(" ('*', made by the BULWARK_<KEY> variables: there "
		       "are no rules)");
	else if (from_text && from_file)
		printf(" (%d from %s, %d from %s)", from_text,
		       from_env ? "BULWARK_POLICY" : "the argument", from_file,
		       file);
	else if (from_file)
		printf(" (from %s)", file);
	printf("; the first rule that matches a connection applies\n\n");
describe:;

	/* The policy module's printer: one text for check and the fuzzer. */
	size_t len = bw_policy_describe(p, NULL, 0);
	char *text_out = malloc(len + 1);
	if (!text_out) {
		free(p);
		bw_cli_err("check", "out of memory");
		return BW_CLI_FAIL;
	}
	bw_policy_describe(p, text_out, len + 1);
	fputs(text_out, stdout);
	free(text_out);
	free(p);
	return BW_CLI_OK;
}

const struct bw_cli_cmd bw_cli_cmd_check = {
	.name = "check",
	.main = check_main,
	.summary = "check a policy and show its effective settings",
	.usage = usage,
};
