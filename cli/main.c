/* SPDX-License-Identifier: MIT */
/*
 * cli/main.c: the bulwark command's entry point: --version, --help,
 * `help CMD`, and dispatch to one subcommand per file (run, check, status,
 * reset, force, trace, serve, systemd, policy).  Owns: main and the subcommand
 * table. Never: parses subcommand options; each subcommand owns its own, --help
 * included.  Exit statuses (bulwark(1) EXIT STATUS): 0 done, 1 runtime failure,
 * 2 bad usage or bad policy.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const struct bw_cli_cmd *const cmds[] = {
	&bw_cli_cmd_run,   &bw_cli_cmd_check,	&bw_cli_cmd_status,
	&bw_cli_cmd_reset, &bw_cli_cmd_force,	&bw_cli_cmd_trace,
	&bw_cli_cmd_serve, &bw_cli_cmd_systemd, &bw_cli_cmd_policy,
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct bw_cli_cmd *find_cmd(const char *name);
static const char *closest_cmd(const char *name);
static void print_help(FILE *f);

static const struct bw_cli_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i]->name, name) == 0)
			return cmds[i];
	return NULL;
}

/* Edit distance, for "did you mean"; names are short, O(n*m) is fine. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[32];

	if (la >= 32 || lb >= 32)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* The subcommand within two edits of name, or NULL. */
static const char *closest_cmd(const char *name)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (size_t i = 0; i < NCMDS; i++) {
		size_t d = edit_distance(name, cmds[i]->name);
		if (d < best_d) {
			best_d = d;
			best = cmds[i]->name;
		}
	}
	return best;
}

static void print_help(FILE *f)
{
	fputs("Usage: bulwark COMMAND [OPTIONS] [ARGS]\n"
	      "       bulwark run [OPTIONS] -- PROGRAM [ARGS...]\n"
	      "\n"
	      "Circuit breakers, bulkheads and connect retries for the outgoing "
	      "TCP\n"
	      "connections of unmodified programs, through an LD_PRELOAD "
	      "shim.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-8s %s\n", cmds[i]->name, cmds[i]->summary);
	fputs("  help     show the usage of a command: bulwark help COMMAND\n"
	      "\n"
	      "Options:\n"
	      "  -h, --help     show this help and exit\n"
	      "  -V, --version  show the version and exit\n"
	      "\n"
	      "Environment (read by the shim; see bulwark(1)):\n"
	      "  BULWARK_POLICY, BULWARK_POLICY_FILE, BULWARK_<KEY>, "
	      "BULWARK_STATE,\n"
	      "  BULWARK_LOG, BULWARK_LOG_FILE, BULWARK_STRICT, "
	      "BULWARK_DISABLE\n"
	      "\n"
	      "Exit status: 0 done, 1 runtime failure, 2 bad usage or bad "
	      "policy;\n"
	      "'bulwark run' exits with the program's status.\n"
	      "\n"
	      "Run 'bulwark COMMAND --help' for a command's options, and see "
	      "bulwark(1)\n"
	      "and bulwark-policy(7).\n",
	      f);
}

int main(int argc, char **argv)
{
	const struct bw_cli_cmd *cmd;

	if (argc < 2) {
		print_help(stderr);
		return BW_CLI_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
		print_help(stdout);
		return BW_CLI_OK;
	}
	if (!strcmp(name, "--version") || !strcmp(name, "-V") ||
	    !strcmp(name, "version")) {
		printf("bulwark %s\n", BW_VERSION);
		return BW_CLI_OK;
	}
	if (!strcmp(name, "help")) {
		if (argc == 2) {
			print_help(stdout);
			return BW_CLI_OK;
		}
		if (argc > 3)
			return bw_cli_usage_error("help",
						  "one command at a time");
		cmd = find_cmd(argv[2]);
		if (!cmd) {
			const char *near = closest_cmd(argv[2]);
			if (near)
				return bw_cli_usage_error(
					NULL,
					"unknown command '%s'; did you mean "
					"'%s'?",
					argv[2], near);
			return bw_cli_usage_error(NULL, "unknown command '%s'",
						  argv[2]);
		}
		bw_cli_print_usage(cmd, stdout);
		return BW_CLI_OK;
	}
	if (name[0] == '-')
		return bw_cli_usage_error(NULL, "unknown option '%s'", name);
	cmd = find_cmd(name);
	if (!cmd) {
		const char *near = closest_cmd(name);
		if (near)
			return bw_cli_usage_error(
				NULL,
				"unknown command '%s'; did you mean '%s'?",
				name, near);
		return bw_cli_usage_error(NULL, "unknown command '%s'", name);
	}
	int rc = cmd->main(argc - 1, argv + 1);
	if (fflush(stdout) != 0 && rc == BW_CLI_OK) {
		/* e.g. `bulwark status > /dev/full` */
		bw_cli_err(cmd->name, "cannot write the output");
		rc = BW_CLI_FAIL;
	}
	return rc;
}
