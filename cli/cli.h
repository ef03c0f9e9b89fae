/* SPDX-License-Identifier: MIT */
/*
 * cli/cli.h: what the files of the bulwark command share: the subcommand
 * table, exit statuses (bulwark(1) EXIT STATUS), message helpers, the policy
 * loader used by run and check, and destination parsing used by reset and
 * force.
 */
#ifndef BW_CLI_CLI_H
#define BW_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/state.h"
#include "policy/policy.h"

#ifndef BW_VERSION
#define BW_VERSION "0.1.0"
/* Says why the segment of state name (file path) cannot be used: why
 * from bw_state_attach, else rc (-errno). */
void bw_cli_state_unusable(const char *cmd, const char *name, const char *path,
			   const char *why, int rc);

#endif

/* Exit statuses of the bulwark command (bulwark(1) EXIT STATUS). */
enum {
	BW_CLI_OK = 0,	  /* done */
	BW_CLI_FAIL = 1,  /* runtime failure */
	BW_CLI_USAGE = 2, /* bad usage or bad policy */
};

/* One subcommand.  main gets argv[0] == name; usage is the full --help
 * text, summary one line for `bulwark --help`. */
struct bw_cli_cmd {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *summary;
	const char *usage;
};

extern const struct bw_cli_cmd bw_cli_cmd_run;
extern const struct bw_cli_cmd bw_cli_cmd_check;
extern const struct bw_cli_cmd bw_cli_cmd_status;
extern const struct bw_cli_cmd bw_cli_cmd_reset;
extern const struct bw_cli_cmd bw_cli_cmd_force;
extern const struct bw_cli_cmd bw_cli_cmd_trace;
extern const struct bw_cli_cmd bw_cli_cmd_serve;
extern const struct bw_cli_cmd bw_cli_cmd_systemd;
extern const struct bw_cli_cmd bw_cli_cmd_policy;

/* "bulwark CMD: message\n" on standard error. */
void bw_cli_err(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "bulwark: warning: message\n" on standard error. */
void bw_cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: the message, a pointer to --help; returns BW_CLI_USAGE. */
int bw_cli_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Reports getopt_long's '?' or ':' (optstring starting with "+:") for
 * argv[optind - 1]; returns BW_CLI_USAGE. */
int bw_cli_bad_option(const char *cmd, char **argv, int c);
/* Prints cmd's usage text to f. */
void bw_cli_print_usage(const struct bw_cli_cmd *cmd, FILE *f);

/* The directory holding the running binary (from /proc/self/exe), no
 * trailing slash.  Returns 0 or -errno. */
int bw_cli_exe_dir(char *buf, size_t cap);

/* getenv() with the type policy.h wants. */
const char *bw_cli_getenv(const char *name);

/*
 * Compiles a policy as the shim would: bw_policy_init with the BULWARK_<KEY>
 * environment, then text (may be NULL) with origin "policy", then the file
 * at path (may be NULL) with origin "file".  On a bad policy prints the
 * error as `bulwark check` does and returns BW_CLI_USAGE; an unreadable
 * file is reported as "bulwark CMD: ..." and is also BW_CLI_USAGE.
 * Returns BW_CLI_OK with *out holding a calloc'ed policy to free().
 */
int bw_cli_load_policy(const char *cmd, const char *text, const char *path,
		       struct bw_policy **out);

/* Validates a --state NAME argument; prints why not and returns
 * BW_CLI_USAGE, else BW_CLI_OK. */
int bw_cli_check_state(const char *cmd, const char *name);

/* Most addresses one DEST may name (a host with many A/AAAA records). */
#define BW_CLI_DEST_MAX 64

/* DEST as an operator wrote it (bulwark(1) reset, force). */
struct bw_cli_dest {
	bool is_group; /* a group name: keys unused, match by label */
	int nkeys;
	struct bw_dest_key keys[BW_CLI_DEST_MAX];
	char labels[BW_CLI_DEST_MAX][BW_STATE_LABEL_MAX]; /* "ip:port" */
};

/*
 * Parses "ip:port", "[ipv6]:port", "host:port" (every address getaddrinfo
 * gives) or a group name.  Prints the reason and returns BW_CLI_USAGE for
 * a malformed DEST, BW_CLI_FAIL when a host does not resolve; else
 * BW_CLI_OK.
 */
int bw_cli_dest_parse(const char *cmd, const char *text,
		      struct bw_cli_dest *out);

/* Formats an address key as the shim labels it: "1.2.3.4:80",
 * "[::1]:80". */
void bw_cli_key_label(const struct bw_dest_key *k, char *buf, size_t cap);

/*
 * Every destination in st that text names: by key, or else by label (a
 * group name, or a label exactly as `bulwark status` prints it).  Fills
 * found[] (at most cap) and returns how many.
 */
int bw_cli_dest_find(struct bw_state *st, const struct bw_cli_dest *d,
		     const char *text, struct bw_dest **found, int cap);

/* Whether the segment of state name exists; *path gets its file name.
 * Returns 1 yes, 0 no, -errno when the name is bad. */
int bw_cli_state_exists(const char *name, char *path, size_t cap);

/* Says why the segment of state name (file path) cannot be used: why
 * from bw_state_attach, else rc (-errno). */
void bw_cli_state_unusable(const char *cmd, const char *name, const char *path,
			   const char *why, int rc);

/* ---- status's snapshots (cli/status.c), also served by bulwark serve ---- */

struct bw_cli_row; /* one destination, copied out of the segment */

/* What one shared state holds now. */
struct bw_cli_snap {
	const char *name;	 /* the state's name (not copied) */
	bool exists;		 /* false: no program has used it yet */
	struct bw_state st;	 /* attached read-only while exists */
	struct bw_cli_row *rows; /* malloc'ed, sorted by destination */
	size_t n;
};

/*
 * Reads state name as bulwark status does (never creates a segment; a
 * missing one is a snapshot with no rows and exists false; the only
 * change made is giving back the bulkhead slots of dead processes).  An
 * unusable segment returns BW_CLI_FAIL: said as "bulwark CMD: ..." when cmd is
 * not NULL, and in why (may be NULL with why_cap 0).  Else BW_CLI_OK; release
 * with bw_cli_snap_drop.
 */
int bw_cli_snap_take(const char *cmd, const char *name, struct bw_cli_snap *s,
		     char *why, size_t why_cap);
void bw_cli_snap_drop(struct bw_cli_snap *s);
/* `bulwark status --json` of one snapshot, into f. */
void bw_cli_print_json(FILE *f, const struct bw_cli_snap *s);
/* `bulwark status --prometheus` of n snapshots, into f: each family once,
 * samples labelled state_name="NAME". */
void bw_cli_print_prometheus(FILE *f, const struct bw_cli_snap *snaps,
			     size_t n);

/*
 * A file replaced at once: bw_cli_atomic_open creates a temporary file
 * beside path (tmp gets its name; mode 0644 less the umask) and returns it
 * open for writing, or NULL after saying why.  bw_cli_atomic_commit closes
 * it and, when ok, renames it over path; else removes it.  Returns
 * BW_CLI_OK, or BW_CLI_FAIL after saying why (the old file is left).
 */
FILE *bw_cli_atomic_open(const char *cmd, const char *path, char *tmp,
			 size_t cap);
int bw_cli_atomic_commit(const char *cmd, FILE *f, const char *tmp,
			 const char *path, bool ok);

/*
 * The shim bulwark run preloads: BULWARK_LIB if set, else libbulwark.so
 * beside the running binary (the build tree), else the installed layouts
 * relative to it: ../lib/MULTIARCH/bulwark/ (the Debian package), then
 * ../lib/bulwark/ (make install).  Returns 0 with an absolute path, or
 * -ENOENT after saying where it looked (as "bulwark CMD: ...").
 */
int bw_cli_find_shim(const char *cmd, char *out, size_t cap);

#endif
