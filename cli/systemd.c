/* SPDX-License-Identifier: MIT */
/*
 * cli/systemd.c: `bulwark systemd SERVICE`: prints a systemd drop-in that
 * runs a service under the shim (the README's "A daemon under systemd").
 * Owns: the drop-in's text.
 * The shim's path is the one bulwark run would preload (bw_cli_find_shim:
 * the installed layout of this very binary), the policy file is checked
 * as bulwark check would, and log lines go to the journal (the service's
 * standard error) unless --log-file says otherwise.
 * Never: writes under /etc or talks to systemd; the operator installs the
 * text.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char usage[] =
	"Usage: bulwark systemd SERVICE [--policy-file F] [--state NAME]\n"
	"                       [--log-file F] [--log LEVEL]\n"
	"\n"
	"Prints a systemd drop-in that runs SERVICE under the shim, for\n"
	"/etc/systemd/system/SERVICE.service.d/bulwark.conf:\n"
	"\n"
	"  [Service]\n"
	"  Environment=LD_PRELOAD=/usr/lib/MULTIARCH/bulwark/libbulwark.so\n"
	"  Environment=BULWARK_POLICY_FILE=F\n"
	"  Environment=BULWARK_STATE=NAME\n"
	"\n"
	"The shim's path is the one 'bulwark run' would preload (see its "
	"--help).\n"
	"Log lines go to the service's standard error, so to the journal\n"
	"(journalctl -u SERVICE), unless --log-file is given.\n"
	"\n"
	"Options:\n"
	"  -p, --policy-file F  the policy (an absolute path); checked now when\n"
	"                       readable, as 'bulwark check' would\n"
	"  -s, --state NAME     the shared state (default: the shim's, "
	"'default')\n"
	"  -f, --log-file F     BULWARK_LOG_FILE: log lines to F (an absolute\n"
	"                       path the service's user can write)\n"
	"  -L, --log LEVEL      BULWARK_LOG: off, error, warn, info or debug\n"
	"  -h, --help           show this help\n"
	"\n"
	"Install it with:\n"
	"  mkdir -p /etc/systemd/system/nginx.service.d\n"
	"  bulwark systemd nginx --policy-file /etc/bulwark/nginx.policy \\\n"
	"      > /etc/systemd/system/nginx.service.d/bulwark.conf\n"
	"  systemctl daemon-reload && systemctl restart nginx\n"
	"\n"
	"Exit status: 0 printed, 1 the shim is not found, 2 bad usage or an "
	"invalid\n"
	"policy file.\n";

/* Characters of a unit name (systemd.unit(5)). */
static bool unit_name_ok(const char *s)
{
	if (!*s || strlen(s) > 200)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(":-_.\\@", *s)))
			return false;
	return true;
}

/* A value systemd takes as is in Environment="K=V": no quote, backslash,
 * control character or '%' (a specifier) to escape. */
static bool env_value_ok(const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || *s == '%' ||
		    (unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static int systemd_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy-file", required_argument, NULL, 'p' },
		{ "state", required_argument, NULL, 's' },
		{ "log-file", required_argument, NULL, 'f' },
		{ "log", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *policy = NULL, *state = NULL, *log_file = NULL,
		   *log_level = NULL;
	int c;

	opterr = 0;
	optind = 1;
	/* options may follow SERVICE */
	while ((c = getopt_long(argc, argv, ":p:s:f:L:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			policy = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'f':
			log_file = optarg;
			break;
		case 'L':
			log_level = optarg;
			break;
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_systemd, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option("systemd", argv, c);
		}
	}
	if (optind >= argc)
		return bw_cli_usage_error("systemd", "which service?");
	if (optind + 1 < argc)
		return bw_cli_usage_error("systemd", "unexpected argument '%s'",
					  argv[optind + 1]);

	char unit[256];
	const char *svc = argv[optind];
	size_t sl = strlen(svc);
	if (sl > 8 && !strcmp(svc + sl - 8, ".service"))
		sl -= 8;
	snprintf(unit, sizeof(unit), "%.*s", (int)(sl < 255 ? sl : 255), svc);
	if (!unit_name_ok(unit))
		return bw_cli_usage_error("systemd", "bad service name '%s'",
					  svc);
	if (state) {
		if (!strcmp(state, "private"))
			return bw_cli_usage_error(
				"systemd",
				"state 'private' is the shim's "
				"per-process state; give a shared name");
		if (bw_cli_check_state("systemd", state) != BW_CLI_OK)
			return BW_CLI_USAGE;
	}
	static const char *const levels[] = { "off", "error", "warn", "info",
					      "debug" };
	bool level_ok = !log_level;
	for (size_t i = 0; log_level && i < sizeof(levels) / sizeof(levels[0]);
	     i++)
		level_ok = level_ok || strcmp(log_level, levels[i]) == 0;
	if (!level_ok)
		return bw_cli_usage_error("systemd",
					  "bad log level '%s': off, error, "
					  "warn, info or debug",
					  log_level);
	const char *paths[2] = { policy, log_file };
	const char *what[2] = { "--policy-file", "--log-file" };
	for (int i = 0; i < 2; i++) {
		if (!paths[i])
			continue;
		if (paths[i][0] != '/')
			return bw_cli_usage_error(
				"systemd",
				"%s needs an absolute path (a service runs "
				"in /): '%s'",
				what[i], paths[i]);
		if (!env_value_ok(paths[i]))
			return bw_cli_usage_error(
				"systemd",
				"%s: '%s' has a character systemd "
				"would need escaped",
				what[i], paths[i]);
	}
	if (policy) {
		if (access(policy, R_OK) == 0) {
			struct bw_policy *p = NULL;
			int rc =
				bw_cli_load_policy("systemd", NULL, policy, &p);
			free(p);
			if (rc != BW_CLI_OK)
				return rc;
		} else {
			bw_cli_warn("%s: %s; not checked (run 'bulwark check "
				    "--policy-file %s' where it is)",
				    policy, strerror(errno), policy);
		}
	}
	char shim[PATH_MAX];
	if (bw_cli_find_shim("systemd", shim, sizeof(shim)) < 0)
		return BW_CLI_FAIL;
	if (!env_value_ok(shim) || strchr(shim, ' ') || strchr(shim, ':')) {
		bw_cli_err("systemd",
			   "the shim's path '%s' cannot be preloaded "
			   "(a space, ':' or a character systemd "
			   "would need escaped)",
			   shim);
		return BW_CLI_FAIL;
	}

	printf("# /etc/systemd/system/%s.service.d/bulwark.conf\n", unit);
	printf("# Runs %s.service under the bulwark shim (bulwark(1)).  Then:\n"
	       "#   systemctl daemon-reload && systemctl restart %s\n",
	       unit, unit);
	puts("# LD_PRELOAD here replaces one the unit itself sets; the shim "
	     "leaves\n"
	     "# statically linked and setuid programs alone.");
	printf("# Check with 'bulwark status%s%s' as the service's user (each "
	       "user has\n"
	       "# states of its own under /dev/shm; PrivateDevices=yes gives "
	       "the service\n"
	       "# a /dev/shm of its own).\n",
	       state ? " --state " : "", state ? state : "");
	puts("[Service]");
	printf("Environment=\"LD_PRELOAD=%s\"\n", shim);
	if (policy)
		printf("Environment=\"BULWARK_POLICY_FILE=%s\"\n", policy);
	if (state)
		printf("Environment=\"BULWARK_STATE=%s\"\n", state);
	if (log_level)
		printf("Environment=\"BULWARK_LOG=%s\"\n", log_level);
	if (log_file)
		printf("Environment=\"BULWARK_LOG_FILE=%s\"\n", log_file);
	else
		printf("# Log lines go to standard error: the journal "
		       "(journalctl -u %s).\n",
		       unit);
	return BW_CLI_OK;
}

const struct bw_cli_cmd bw_cli_cmd_systemd = {
	.name = "systemd",
	.main = systemd_main,
	.summary = "print a systemd drop-in running a service under the shim",
	.usage = usage,
};
