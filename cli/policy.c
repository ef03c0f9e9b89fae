/* SPDX-License-Identifier: MIT */
/*
 * cli/policy.c: `bulwark policy push|show|history|rollback|clear`: the
 * policy of running programs, kept in their shared state (README
 * "Changing the policy of running programs", man/bulwark.1 POLICY).
 * A push is validated exactly as `bulwark check` validates (same
 * messages, exit 2, nothing stored), then stored with a new generation
 * (core/livestore.c); every process sharing the state applies it at its
 * next connect, request or name lookup (shim/live.c).  rollback pushes the
 * generation before the one in force again, as a new generation; clear
 * pushes a record that puts every process back on its own policy.
 * show and history read the records; show also counts the live processes
 * on each generation (the table of core/livestore.c, judged alive with
 * kill(pid, 0); entries of dead processes are emptied on the way).
 * Owns: bw_cli_cmd_policy.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/livestore.h"

static const char usage[] =
	"Usage: bulwark policy push [--state NAME] (POLICY | --file F)\n"
	"       bulwark policy show [--state NAME]\n"
	"       bulwark policy history [--state NAME]\n"
	"       bulwark policy rollback [--state NAME]\n"
	"       bulwark policy clear [--state NAME]\n"
	"\n"
	"Changes the rules of every program sharing a state, running ones\n"
	"included, without a restart.\n"
	"\n"
	"  push      validates POLICY (or the rules in file F) as 'bulwark "
	"check'\n"
	"            does (an invalid one is said as check says it, exit 2, "
	"and\n"
	"            nothing changes), then stores it with a new generation "
	"number.\n"
	"            Every process sharing the state applies it within a "
	"second\n"
	"            (at its next connect, request or name lookup; an idle "
	"one\n"
	"            at the next it makes), and a process started "
	"later\n"
	"            starts with it.  It replaces the process's own rules\n"
	"            (BULWARK_POLICY, BULWARK_POLICY_FILE); BULWARK_<KEY> "
	"defaults\n"
	"            still apply.  Counters, open breakers and bulkhead slots "
	"are\n"
	"            kept; the new limits apply from the next call: a "
	"connection\n"
	"            open before takes the new rule for its peer at its next\n"
	"            request.  At most 64 KiB of rules.\n"
	"  show      the generation in force: when and by whom (uid, pid) it "
	"was\n"
	"            pushed, how many live processes run it, its text and "
	"its rules\n"
	"            as 'bulwark check' prints them\n"
	"  history   the generations kept (the last 8), newest first; '*' "
	"marks\n"
	"            the one in force\n"
	"  rollback  pushes the generation before the one in force again, as "
	"a\n"
	"            new generation (twice in a row toggles between two); "
	"before\n"
	"            the first push that is each process's own policy\n"
	"  clear     every process goes back to its own policy (a new "
	"generation\n"
	"            too, so that rollback can undo it)\n"
	"\n"
	"Options:\n"
	"  -s, --state NAME  the shared state (default: $BULWARK_STATE, else\n"
	"                    'default')\n"
	"  -f, --file F      push the rules in file F (same grammar, '#' "
	"comments)\n"
	"  -h, --help        show this help\n"
	"\n"
	"Each process logs 'event=policy_applied generation=N' at info level "
	"once\n"
	"per generation, and 'event=policy_error' (the policy in force is "
	"kept)\n"
	"when a stored policy is corrupt.\n"
	"\n"
	"Exit status: 0 done, 1 runtime failure (segment unusable, nothing to\n"
	"roll back to), 2 bad usage or invalid policy.\n"
	"\n"
	"Examples:\n"
	"  bulwark policy push '10.0.0.7:5432 breaker.failures=2 "
	"breaker.open=30s'\n"
	"  bulwark policy push --state api --file /etc/bulwark/api.policy\n"
	"  bulwark policy show\n"
	"  bulwark policy rollback\n";

#define CMD "policy"

static bool alive(uint32_t pid)
{
	return pid && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static void fmt_time(uint64_t ns, char *buf, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	if (!gmtime_r(&t, &tm) ||
	    !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, cap, "?");
}

/* Attaches state name; create for the commands that write. */
static int attach(const char *name, bool create, struct bw_state *st,
		  bool *none)
{
	char path[160], why[256] = "";
	*none = false;
	memset(st, 0, sizeof(*st));
	if (!create && bw_cli_state_exists(name, path, sizeof(path)) != 1) {
		*none = true;
		return BW_CLI_OK;
	}
	int rc = bw_state_attach(st, name, create, why, sizeof(why));
	if (rc == -ENOENT && !create) {
		*none = true;
		return BW_CLI_OK;
	}
	if (rc < 0) {
		bw_state_path(name, (unsigned)getuid(), path, sizeof(path));
		bw_cli_state_unusable(CMD, name, path, why, rc);
		return BW_CLI_FAIL;
	}
	return BW_CLI_OK;
}

static int store(struct bw_state *st, const char *name, const char *text,
		 size_t len, uint32_t flags, const char *what)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t g = bw_livestore_push(
		st, text, len, flags, (uint32_t)getuid(), (uint32_t)getpid(),
		(uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	if (g < 0) {
		bw_cli_err(CMD, "cannot store the policy in state '%s': %s",
			   name,
			   g == -EBUSY ? "another push holds its record"
				       : strerror((int)-g));
		return BW_CLI_FAIL;
	}
	uint64_t p = bw_livestore_published(st);
	printf("%s: generation %lld in state '%s'", what, (long long)g, name);
	if (p > (uint64_t)g)
		printf(" (generation %llu, pushed meanwhile, is in force)",
		       (unsigned long long)p);
	putchar('\n');
	return BW_CLI_OK;
}

static char *read_whole(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!f)
		return NULL;
	char *buf = malloc(BW_POLICY_TEXT_MAX + 2);
	size_t n = buf ? fread(buf, 1, BW_POLICY_TEXT_MAX + 1, f) : 0;
	if (f != stdin)
		fclose(f);
	if (buf)
		buf[n] = 0;
	*len = n;
	return buf;
}

static int push(const char *name, const char *text, const char *file)
{
	struct bw_policy *p = NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc = bw_cli_load_policy(
		CMD, text, file && strcmp(file, "-") != 0 ? file : NULL, &p);
	if (rc == BW_CLI_OK && file && strcmp(file, "-") == 0) {
		/* Standard input: read, then validated as a string. */
		buf = read_whole(file, &len);
		free(p);
		p = NULL;
		if (!buf) {
			bw_cli_err(CMD, "cannot read standard input");
			return BW_CLI_FAIL;
		}
		rc = bw_cli_load_policy(CMD, buf, NULL, &p);
	} else if (rc == BW_CLI_OK && file) {
		buf = read_whole(file, &len);
		if (!buf) {
			bw_cli_err(CMD, "cannot read policy file '%s': %s",
				   file, strerror(errno));
			free(p);
			return BW_CLI_FAIL;
		}
	} else if (text) {
		len = strlen(text);
	}
	if (rc != BW_CLI_OK)
		goto out;
	if (p->nrules == 0) {
		rc = bw_cli_usage_error(CMD, "the policy has no rules (to go "
					     "back to each program's own "
					     "policy: bulwark policy clear)");
		goto out;
	}
	if (len > BW_POLICY_TEXT_MAX) {
		bw_cli_err(CMD, "the policy is larger than %d KiB",
			   BW_POLICY_TEXT_MAX / 1024);
		rc = BW_CLI_USAGE;
		goto out;
	}
	struct bw_state st;
	bool none;
	rc = attach(name, true, &st, &none);
	if (rc != BW_CLI_OK)
		goto out;
	rc = store(&st, name, buf ? buf : text, len, 0, "pushed");
	bw_state_detach(&st);
out:
	free(p);
	free(buf);
	return rc;
}

/* Live processes on generation gen, and on any other (*other). */
static int count_live(struct bw_state *st, uint64_t gen, int *other)
{
	int n = 0;
	*other = 0;
	for (int i = 0; i < BW_POLICY_PROCS; i++) {
		uint64_t w = atomic_load(&st->pol->procs[i]);
		if (!w)
			continue;
		if (!alive((uint32_t)(w >> 32))) {
			atomic_compare_exchange_strong(&st->pol->procs[i], &w,
						       0);
			continue;
		}
		if ((uint32_t)w == (uint32_t)gen)
			n++;
		else
			(*other)++;
	}
	return n;
}

static void print_text_line(const char *text)
{
	for (const char *c = text; *c; c++) {
		if (*c == '\n') {
			if (c[1])
				fputs("; ", stdout);
		} else {
			putchar(*c);
		}
	}
}

static int show(const char *name)
{
	struct bw_state st;
	bool none;
	int rc = attach(name, false, &st, &none);
	if (rc != BW_CLI_OK)
		return rc;
	if (none) {
		printf("state: %s\ngeneration: none (no program has used "
		       "state '%s' yet)\n",
		       name, name);
		return BW_CLI_OK;
	}
	uint64_t gen = bw_livestore_published(&st);
	struct bw_livestore_meta m;
	char *text = malloc(BW_POLICY_TEXT_MAX + 1);
	int other = 0;
	int live = count_live(&st, gen, &other);
	printf("state: %s\n", name);
	if (!text) {
		rc = BW_CLI_FAIL;
		goto out;
	}
	if (gen == 0) {
		printf("generation: none (every process runs its own "
		       "policy)\nprocesses: %d live\n",
		       live + other);
		goto out;
	}
	int r = -EAGAIN;
	for (int i = 0; i < 100 && r == -EAGAIN; i++) {
		r = bw_livestore_read(&st, gen, &m, text,
				      BW_POLICY_TEXT_MAX + 1);
		if (r == -EAGAIN)
			usleep(10000);
	}
	printf("generation: %llu\n", (unsigned long long)gen);
	if (r < 0) {
		bw_cli_err(CMD, "generation %llu cannot be read: %s",
			   (unsigned long long)gen,
			   r == -EBADMSG ? "corrupt (processes keep the "
					   "policy they had)"
					 : "being rewritten");
		rc = BW_CLI_FAIL;
		goto out;
	}
	char when[64];
	fmt_time(m.time_ns, when, sizeof(when));
	printf("pushed: %s by uid %u pid %u\n", when, m.uid, m.pid);
	printf("processes: %d live running generation %llu, %d on another\n",
	       live, (unsigned long long)gen, other);
	if (m.flags & BW_POLICY_REC_CLEAR) {
		printf("policy: cleared (every process runs its own policy)\n");
		goto out;
	}
	fputs("policy: ", stdout);
	print_text_line(text);
	putchar('\n');
	struct bw_policy *p = NULL;
	if (bw_cli_load_policy(CMD, text, NULL, &p) == BW_CLI_OK) {
		size_t need = bw_policy_describe(p, NULL, 0) + 1;
		char *d = malloc(need);
		if (d) {
			bw_policy_describe(p, d, need);
			fputs("rules:\n", stdout);
			fputs(d, stdout);
			free(d);
		}
		free(p);
	}
out:
	free(text);
	bw_state_detach(&st);
	return rc;
}

static int history(const char *name)
{
	struct bw_state st;
	bool none;
	int rc = attach(name, false, &st, &none);
	if (rc != BW_CLI_OK || none) {
		if (none)
			printf("no generation: no program has used state "
			       "'%s' yet\n",
			       name);
		return rc;
	}
	uint64_t gen = bw_livestore_published(&st);
	uint64_t top = atomic_load(&st.pol->next_gen);
	char *text = malloc(BW_POLICY_TEXT_MAX + 1);
	int shown = 0;
	for (uint64_t g = top; text && g > 0 && top - g < BW_POLICY_RECS; g--) {
		struct bw_livestore_meta m;
		int r = bw_livestore_read(&st, g, &m, text,
					  BW_POLICY_TEXT_MAX + 1);
		if (r == -ENOENT || r == -EAGAIN)
			continue;
		char when[64] = "?";
		if (r == 0)
			fmt_time(m.time_ns, when, sizeof(when));
		printf("%c %llu  %s  uid=%u pid=%u  ", g == gen ? '*' : ' ',
		       (unsigned long long)g, when, r == 0 ? m.uid : 0,
		       r == 0 ? m.pid : 0);
		if (r < 0)
			fputs("(corrupt)", stdout);
		else if (m.flags & BW_POLICY_REC_CLEAR)
			fputs("(cleared: each process's own policy)", stdout);
		else
			print_text_line(text);
		putchar('\n');
		shown++;
	}
	if (!shown)
		printf("no generation pushed to state '%s'\n", name);
	free(text);
	bw_state_detach(&st);
	return BW_CLI_OK;
}

static int rollback(const char *name)
{
	struct bw_state st;
	bool none;
	int rc = attach(name, false, &st, &none);
	if (rc != BW_CLI_OK)
		return rc;
	uint64_t gen = none ? 0 : bw_livestore_published(&st);
	if (gen == 0) {
		bw_cli_err(CMD,
			   "nothing to roll back: no policy was pushed "
			   "to state '%s'",
			   name);
		if (!none)
			bw_state_detach(&st);
		return BW_CLI_FAIL;
	}
	if (gen == 1) {
		/* Before the first push: each process's own policy. */
		rc = store(&st, name, "", 0, BW_POLICY_REC_CLEAR,
			   "rolled back to each process's own policy");
		bw_state_detach(&st);
		return rc;
	}
	char *text = malloc(BW_POLICY_TEXT_MAX + 1);
	struct bw_livestore_meta m;
	int r = text ? bw_livestore_read(&st, gen - 1, &m, text,
					 BW_POLICY_TEXT_MAX + 1)
		     : -ENOMEM;
	if (r < 0) {
		bw_cli_err(CMD, "generation %llu cannot be read: %s",
			   (unsigned long long)(gen - 1),
			   r == -EBADMSG  ? "corrupt"
			   : r == -ENOENT ? "no longer kept"
					  : "being rewritten, try again");
		rc = BW_CLI_FAIL;
	} else {
		char what[96];
		snprintf(what, sizeof(what), "rolled back to generation %llu",
			 (unsigned long long)(gen - 1));
		rc = store(&st, name, text, m.len, m.flags, what);
	}
	free(text);
	bw_state_detach(&st);
	return rc;
}

static int clear(const char *name)
{
	struct bw_state st;
	bool none;
	int rc = attach(name, true, &st, &none);
	if (rc != BW_CLI_OK)
		return rc;
	rc = store(&st, name, "", 0, BW_POLICY_REC_CLEAR,
		   "cleared (each process's own policy)");
	bw_state_detach(&st);
	return rc;
}

static int policy_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = getenv("BULWARK_STATE"), *file = NULL;
	int c;

	if (!name || !*name)
		name = "default";
	if (argc < 2)
		return bw_cli_usage_error(CMD, "give a subcommand: push, show, "
					       "history, rollback or clear");
	const char *sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		bw_cli_print_usage(&bw_cli_cmd_policy, stdout);
		return BW_CLI_OK;
	}
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:s:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': /* getopt gives a required argument, never NULL */
			name = optarg ? optarg : name;
			break;
		case 'f':
			file = optarg;
			break;
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_policy, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option(CMD, argv, c);
		}
	}
	bool is_push = strcmp(sub, "push") == 0;
	if (!is_push && strcmp(sub, "show") != 0 &&
	    strcmp(sub, "history") != 0 && strcmp(sub, "rollback") != 0 &&
	    strcmp(sub, "clear") != 0)
		return bw_cli_usage_error(CMD,
					  "unknown subcommand '%s' (push, "
					  "show, history, rollback, clear)",
					  sub);
	const char *text = NULL;
	if (is_push && optind < argc)
		text = argv[optind++];
	if (optind < argc)
		return bw_cli_usage_error(CMD, "unexpected argument '%s'",
					  argv[optind]);
	if (!is_push && file)
		return bw_cli_usage_error(CMD, "--file is for push only");
	if (is_push && (text != NULL) == (file != NULL))
		return bw_cli_usage_error(CMD, "push takes one POLICY or "
					       "--file F");
	if (strcmp(name, "private") == 0)
		return bw_cli_usage_error(CMD, "state 'private' lives inside "
					       "each process; nothing shared "
					       "to change");
	if (bw_cli_check_state(CMD, name) != BW_CLI_OK)
		return BW_CLI_USAGE;
	if (is_push)
		return push(name, text, file);
	if (!strcmp(sub, "show"))
		return show(name);
	if (!strcmp(sub, "history"))
		return history(name);
	if (!strcmp(sub, "rollback"))
		return rollback(name);
	return clear(name);
}

const struct bw_cli_cmd bw_cli_cmd_policy = {
	.name = "policy",
	.main = policy_main,
	.summary = "change the policy of running programs (push, show, "
		   "history, rollback, clear)",
	.usage = usage,
};
