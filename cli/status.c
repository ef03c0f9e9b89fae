/* SPDX-License-Identifier: MIT */
/*
 * cli/status.c: `bulwark status` (bulwark(1) status): one row per destination
 * of a shared state, as an aligned table, JSON (the keys bulwark(1) status
 * lists first, in that order, extras after) or the Prometheus text format;
 * --watch redraws the table until SIGINT/SIGTERM; --output writes a file whole.
 * Its printers write to any FILE and read snapshots (bw_cli_snap_take), which
 * bulwark serve (cli/serve.c) shares.
 * Never: creates a segment or writes to one; a missing segment is "no state
 * yet", exit 0.  Reads each counter with one relaxed atomic load, so a row
 * is a near-consistent snapshot, not a transaction.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cli/cli.h"
#include "core/breaker.h"
#include "core/bulkhead.h"

/* --watch interval bounds, seconds: faster than 0.1 s only burns CPU
 * mapping the segment; a day is plenty for a slow dashboard. */
#define BW_CLI_WATCH_MIN_S 0.1
#define BW_CLI_WATCH_MAX_S 86400.0
#define BW_CLI_WATCH_DEFAULT_S 1.0

enum fmt { FMT_TABLE, FMT_JSON, FMT_PROM };

/* One destination, copied out of the segment. */
struct bw_cli_row {
	struct bw_dest_key key;
	char dest[BW_STATE_LABEL_MAX];
	char rule[BW_STATE_RULE_MAX];
	const char *state;
	uint32_t breaker, forced, fails, breaker_corrupt;
	uint64_t total, ok, failed, rejected, slow;
	double success_rate, health;
	uint32_t bh_active, bh_max, bh_waiting, bh_corrupt;
	uint64_t bh_rejected, bh_saturated, bh_acquired;
	double bh_rejection_rate;
	uint64_t bh_wait_hist[BW_STATE_HIST_BUCKETS]; /* log2 µs */
	uint64_t retries, retries_ok, retries_denied, opened;
	int64_t open_remaining_ms;
	double avg_latency_ms;
};

static volatile sig_atomic_t stop_watch;

static const char usage[] =
	"Usage: bulwark status [--state NAME] [--json | --prometheus] "
	"[--output FILE]\n"
	"       bulwark status [--state NAME] --watch [--interval S]\n"
	"\n"
	"Shows what the programs sharing a state have learnt: one row per\n"
	"destination, sorted by destination, with\n"
	"\n"
	"  DESTINATION  ip:port, [ipv6]:port, or a rule group's name\n"
	"  RULE         the matching rule as written; '(observed)' when none\n"
	"               matched (counted only, nothing applied), '(forced)'\n"
	"               when added by bulwark force\n"
	"  STATE        closed, open, half_open; forced_open or disabled when\n"
	"               an operator forced it (bulwark force)\n"
	"  FAILS        consecutive failed calls\n"
	"  TOTAL OK FAILED REJECTED SLOW\n"
	"               calls: all, successful, failed, refused by the breaker "
	"or\n"
	"               bulkhead, slower than breaker.slow\n"
	"  SUCCESS      successful / total (100% with no calls)\n"
	"  HEALTH       success rate x (1 - slow rate x 0.5), in [0, 1]\n"
	"  BULKHEAD     connections open now / bulkhead.max ('-': no limit)\n"
	"  BH_REJ       connects the full bulkhead refused\n"
	"  RETRIES      connect retries made\n"
	"  OPEN_LEFT    time until an open breaker turns half-open\n"
	"\n"
	"Options:\n"
	"  -s, --state NAME   the shared state (default: $BULWARK_STATE, else\n"
	"                     'default'); its file is /dev/shm/bulwark-UID-NAME\n"
	"  -j, --json         a JSON array of objects with the keys destination,"
	"\n"
	"                     rule, state, failure_count, total_calls,\n"
	"                     successful_calls, failed_calls, rejected_calls,\n"
	"                     slow_calls, success_rate, health_score, bulkhead\n"
	"                     {active, max, rejected, then waiting, acquired,\n"
	"                     saturated, corrupt, rejection_rate, wait_us_log2:\n"
	"                     waits"
	" in log2 microsecond buckets}, retries,\n"
	"                     open_remaining_ms, then waiting, saturated,\n"
	"                     retries_succeeded, retries_denied, opened,\n"
	"                     avg_latency_ms, breaker_corrupt\n"
	"  -P, --prometheus   the Prometheus text format (metrics bulwark_*, "
	"labels\n"
	"                     destination, rule, state_name), for "
	"node_exporter's\n"
	"                     textfile collector or bulwark serve\n"
	"  -o, --output FILE  write to FILE, whole: a temporary file beside it,\n"
	"                     then renamed over it (not with --watch)\n"
	"  -w, --watch        redraw the table every interval until "
	"interrupted\n"
	"  -i, --interval S   seconds between redraws (default 1, at least "
	"0.1)\n"
	"  -h, --help         show this help\n"
	"\n"
	"The table ends with how many of the state's 16384 destination slots\n"
	"are in use (--prometheus: bulwark_state_slots_used, bulwark_state_slots);\n"
	"a destination idle for 10 minutes gives up its slot to a new one, and\n"
	"bulwark reset --all frees every slot not forced.\n"
	"\n"
	"A state no program has used yet is reported as such, with an empty "
	"table\n"
	"('[]' with --json); the status is still 0.\n"
	"\n"
	"Exit status: 0 done, 1 the segment is unusable (another owner, wrong\n"
	"size or version, corrupt), 2 bad usage.\n"
	"\n"
	"Examples:\n"
	"  bulwark status --state api\n"
	"  bulwark status --json | jq '.[] | select(.state != \"closed\")'\n"
	"  bulwark status --prometheus -o /var/lib/node_exporter/bulwark.prom\n";

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double clamp01(double v)
{
	return v < 0 ? 0 : v > 1 ? 1 : v;
}

static void fill_row(struct bw_dest *d, uint64_t now, struct bw_cli_row *r)
{
	memset(r, 0, sizeof(*r));
	r->key = d->key;
	bw_state_label(d, r->dest, sizeof(r->dest));
	bw_state_rule(d, r->rule, sizeof(r->rule));
	r->forced = LD(d->forced);
	r->fails = LD(d->consecutive_failures);
	r->ok = LD(d->successful_calls);
	r->failed = LD(d->failed_calls);
	r->total = r->ok + r->failed;
	r->rejected = LD(d->rejected_calls);
	r->slow = LD(d->slow_calls);
	struct bw_bulkhead_view bv;
	bw_bulkhead_view(d, &bv);
	r->bh_active = bv.active;
	r->bh_max = bv.max;
	r->bh_waiting = bv.waiting;
	r->bh_corrupt = bv.corrupt;
	r->bh_rejected = LD(d->bh_rejected);
	r->bh_saturated = LD(d->bh_saturated);
	r->bh_acquired = bv.acquired;
	r->bh_rejection_rate = bv.rejection_rate;
	memcpy(r->bh_wait_hist, bv.wait_hist, sizeof(r->bh_wait_hist));
	r->retries = LD(d->retries);
	r->retries_ok = LD(d->retries_ok);
	r->retries_denied = LD(d->retries_denied);
	r->opened = LD(d->opened_count);
	r->breaker_corrupt = LD(d->breaker_corrupt);

	/* The seed's health score; no calls yet counts as healthy. */
	if (r->total == 0) {
		r->success_rate = 1.0;
		r->health = 1.0;
	} else {
		double slow_rate = clamp01((double)r->slow / (double)r->total);
		r->success_rate = clamp01((double)r->ok / (double)r->total);
		r->health = clamp01(r->success_rate * (1.0 - slow_rate * 0.5));
	}
	uint64_t n = LD(d->connect_calls) + LD(d->exchange_calls);
	uint64_t ns = LD(d->connect_ns_sum) + LD(d->exchange_ns_sum);
	r->avg_latency_ms = n ? (double)ns / (double)n / 1e6 : 0.0;

	/* The breaker module owns the packed state word: its view is the
	 * one the next admit acts on (an open breaker past its deadline
	 * shows as half_open). */
	uint64_t left_ns = 0;
	r->breaker = bw_breaker_view(d, now, &left_ns);
	r->state = bw_breaker_state_name(d, now);
	if (r->forced == BW_FORCE_AUTO && r->breaker == BW_BREAKER_OPEN)
		r->open_remaining_ms = (int64_t)(left_ns / 1000000u);
}

/* Sort: IPv4, then IPv6, numerically, then groups by name. */
static int family_rank(uint8_t f)
{
	return f == AF_INET ? 0 : f == AF_INET6 ? 1 : 2;
}

static int row_cmp(const void *a, const void *b)
{
	const struct bw_cli_row *x = a, *y = b;
	int fx = family_rank(x->key.family), fy = family_rank(y->key.family);

	if (fx != fy)
		return fx - fy;
	if (fx < 2) {
		int c = memcmp(x->key.addr, y->key.addr, 16);
		if (c)
			return c;
		if (x->key.port != y->key.port)
			return x->key.port < y->key.port ? -1 : 1;
	}
	return strcmp(x->dest, y->dest);
}

/* Copies every destination of st into *out (malloc'ed, sorted). */
static int collect(struct bw_state *st, struct bw_cli_row **out, size_t *nout)
{
	size_t n = 0, cap = 64;
	struct bw_cli_row *rows = malloc(cap * sizeof(*rows));
	uint64_t now = now_ns();

	if (!rows)
		return -ENOMEM;
	/* Slots held by processes that died are given back first, so the
	 * table shows what is really open (the sweep is rate limited). */
	bw_bulkhead_sweep(st, NULL, now, false);
	for (uint32_t i = 0; i < BW_STATE_SLOTS; i++) {
		struct bw_dest *d = bw_state_slot(st, i);
		if (!d)
			continue;
		if (n == cap) {
			struct bw_cli_row *more =
				realloc(rows, 2 * cap * sizeof(*rows));
			if (!more) {
				free(rows);
				return -ENOMEM;
			}
			rows = more;
			cap *= 2;
		}
		fill_row(d, now, &rows[n++]);
	}
	qsort(rows, n, sizeof(*rows), row_cmp);
	*out = rows;
	*nout = n;
	return 0;
}

/* ---- table --------------------------------------------------------------- */

enum {
	COL_DEST,
	COL_RULE,
	COL_STATE,
	COL_FAILS,
	COL_TOTAL,
	COL_OK,
	COL_FAILED,
	COL_REJ,
	COL_SLOW,
	COL_SUCCESS,
	COL_HEALTH,
	COL_BH,
	COL_BHREJ,
	COL_RETRIES,
	COL_OPEN,
	NCOLS
};

static const char *const col_names[NCOLS] = {
	"DESTINATION", "RULE",	   "STATE",    "FAILS",	  "TOTAL",
	"OK",	       "FAILED",   "REJECTED", "SLOW",	  "SUCCESS",
	"HEALTH",      "BULKHEAD", "BH_REJ",   "RETRIES", "OPEN_LEFT",
};
/* Text columns are left-aligned, numbers right-aligned. */
static const bool col_left[NCOLS] = {
	[COL_DEST] = true,
	[COL_RULE] = true,
	[COL_STATE] = true,
};

#define CELL_MAX 72

static void format_ms(int64_t ms, char *buf, size_t cap)
{
	if (ms >= 3600000)
		snprintf(buf, cap, "%" PRId64 "h%02" PRId64 "m", ms / 3600000,
			 ms / 60000 % 60);
	else if (ms >= 60000)
		snprintf(buf, cap, "%" PRId64 "m%02" PRId64 "s", ms / 60000,
			 ms / 1000 % 60);
	else
		snprintf(buf, cap, "%.1fs", (double)ms / 1000.0);
}

static void row_cells(const struct bw_cli_row *r, char cells[NCOLS][CELL_MAX])
{
	snprintf(cells[COL_DEST], CELL_MAX, "%s", r->dest);
	snprintf(cells[COL_RULE], CELL_MAX, "%s", r->rule[0] ? r->rule : "-");
	snprintf(cells[COL_STATE], CELL_MAX, "%s", r->state);
	snprintf(cells[COL_FAILS], CELL_MAX, "%" PRIu32, r->fails);
	snprintf(cells[COL_TOTAL], CELL_MAX, "%" PRIu64, r->total);
	snprintf(cells[COL_OK], CELL_MAX, "%" PRIu64, r->ok);
	snprintf(cells[COL_FAILED], CELL_MAX, "%" PRIu64, r->failed);
	snprintf(cells[COL_REJ], CELL_MAX, "%" PRIu64, r->rejected);
	snprintf(cells[COL_SLOW], CELL_MAX, "%" PRIu64, r->slow);
	snprintf(cells[COL_SUCCESS], CELL_MAX, "%.1f%%",
		 r->success_rate * 100.0);
	snprintf(cells[COL_HEALTH], CELL_MAX, "%.2f", r->health);
	if (r->bh_max)
		snprintf(cells[COL_BH], CELL_MAX, "%" PRIu32 "/%" PRIu32,
			 r->bh_active, r->bh_max);
	else
		snprintf(cells[COL_BH], CELL_MAX, "%" PRIu32 "/-",
			 r->bh_active);
	snprintf(cells[COL_BHREJ], CELL_MAX, "%" PRIu64, r->bh_rejected);
	snprintf(cells[COL_RETRIES], CELL_MAX, "%" PRIu64, r->retries);
	if (r->forced == BW_FORCE_OPEN)
		snprintf(cells[COL_OPEN], CELL_MAX, "forced");
	else if (r->forced == BW_FORCE_AUTO && r->breaker == BW_BREAKER_OPEN)
		format_ms(r->open_remaining_ms, cells[COL_OPEN], CELL_MAX);
	else
		snprintf(cells[COL_OPEN], CELL_MAX, "-");
}

/* The table's last line: how full the state is (the JSON array has no
 * room for it; --prometheus has bulwark_state_slots_used). */
static void print_fullness(FILE *f, const struct bw_state *st)
{
	uint32_t used = bw_state_count_used(st);
	uint64_t full = LD(st->hdr->full_events);

	fprintf(f,
		"\nslots: %" PRIu32 " of %u in use (a destination idle for "
		"%d minutes gives up its slot to a new one)",
		used, (unsigned)BW_STATE_SLOTS, BW_STATE_IDLE_S / 60);
	if (full)
		fprintf(f,
			"; %" PRIu64 " new destination%s found no room and "
			"went unprotected",
			full, full == 1 ? "" : "s");
	fputc('\n', f);
}

static void print_table(FILE *f, const struct bw_cli_row *rows, size_t n,
			const struct bw_state *st)
{
	size_t width[NCOLS];
	char cells[NCOLS][CELL_MAX];

	for (int c = 0; c < NCOLS; c++)
		width[c] = strlen(col_names[c]);
	for (size_t i = 0; i < n; i++) {
		row_cells(&rows[i], cells);
		for (int c = 0; c < NCOLS; c++)
			if (strlen(cells[c]) > width[c])
				width[c] = strlen(cells[c]);
	}
	for (int c = 0; c < NCOLS; c++)
		fprintf(f,
			c + 1 < NCOLS ? (col_left[c] ? "%-*s  " : "%*s  ")
				      : (col_left[c] ? "%-*s\n" : "%*s\n"),
			(int)width[c], col_names[c]);
	for (size_t i = 0; i < n; i++) {
		row_cells(&rows[i], cells);
		for (int c = 0; c < NCOLS; c++) {
			if (c + 1 == NCOLS) {
				fprintf(f, "%*s\n", (int)width[c], cells[c]);
				break;
			}
			fprintf(f, col_left[c] ? "%-*s  " : "%*s  ",
				(int)width[c], cells[c]);
		}
	}
	if (st)
		print_fullness(f, st);
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		switch (*c) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*c < 0x20 || *c == 0x7f)
				fprintf(f, "\\u%04x", *c);
			else
				fputc(*c, f);
		}
	}
	fputc('"', f);
}

static void print_json(FILE *f, const struct bw_cli_row *rows, size_t n)
{
	if (n == 0) {
		fputs("[]\n", f);
		return;
	}
	fputs("[\n", f);
	for (size_t i = 0; i < n; i++) {
		const struct bw_cli_row *r = &rows[i];
		fputs("  {\"destination\": ", f);
		json_string(f, r->dest);
		fputs(", \"rule\": ", f);
		json_string(f, r->rule);
		fputs(", \"state\": ", f);
		json_string(f, r->state);
		fprintf(f,
			", \"failure_count\": %" PRIu32
			", \"total_calls\": %" PRIu64
			", \"successful_calls\": %" PRIu64
			", \"failed_calls\": %" PRIu64
			", \"rejected_calls\": %" PRIu64
			", \"slow_calls\": %" PRIu64
			", \"success_rate\": %.4f, \"health_score\": %.4f"
			", \"bulkhead\": {\"active\": %" PRIu32
			", \"max\": %" PRIu32 ", \"rejected\": %" PRIu64,
			r->fails, r->total, r->ok, r->failed, r->rejected,
			r->slow, r->success_rate, r->health, r->bh_active,
			r->bh_max, r->bh_rejected);
		/* after the keys bulwark(1) status lists: the rest of the
		 * bulkhead's metrics, and the wait-time distribution (bucket i:
		 * waits of 2^i to 2^(i+1) microseconds; bucket 0 also holds no
		 * wait) */
		fprintf(f,
			", \"waiting\": %" PRIu32 ", \"acquired\": %" PRIu64
			", \"saturated\": %" PRIu64 ", \"corrupt\": %" PRIu32
			", \"rejection_rate\": %.4f, \"wait_us_log2\": [",
			r->bh_waiting, r->bh_acquired, r->bh_saturated,
			r->bh_corrupt, r->bh_rejection_rate);
		for (int b = 0; b < BW_STATE_HIST_BUCKETS; b++)
			fprintf(f, "%s%" PRIu64, b ? ", " : "",
				r->bh_wait_hist[b]);
		fprintf(f,
			"]}"
			", \"retries\": %" PRIu64
			", \"open_remaining_ms\": %" PRId64,
			r->retries, r->open_remaining_ms);
		fprintf(f,
			", \"waiting\": %" PRIu32 ", \"saturated\": %" PRIu64
			", \"retries_succeeded\": %" PRIu64
			", \"retries_denied\": %" PRIu64
			", \"opened\": %" PRIu64 ", \"avg_latency_ms\": %.3f"
			", \"breaker_corrupt\": %" PRIu32 "}%s\n",
			r->bh_waiting, r->bh_saturated, r->retries_ok,
			r->retries_denied, r->opened, r->avg_latency_ms,
			r->breaker_corrupt, i + 1 < n ? "," : "");
	}
	fputs("]\n", f);
}

/* ---- Prometheus ---------------------------------------------------------- */

/* A label value: backslash, double quote and newline escaped. */
static void prom_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* name{destination="...",rule="...",state_name="..." without the closing
 * brace: a caller may add labels.  state_name is the shared state's name
 * (--state), so that several states can be scraped, or collected, side by
 * side; the label "state" is the breaker's. */
static void prom_sample(FILE *f, const char *metric, const char *state_name,
			const struct bw_cli_row *r)
{
	fputs(metric, f);
	fputs("{destination=\"", f);
	prom_label(f, r->dest);
	fputs("\",rule=\"", f);
	prom_label(f, r->rule);
	fputs("\",state_name=\"", f);
	prom_label(f, state_name);
	fputc('"', f);
}

/* A sample of a metric of the whole state: name{state_name="..."} */
static void prom_state_sample(FILE *f, const char *metric,
			      const char *state_name)
{
	fputs(metric, f);
	fputs("{state_name=\"", f);
	prom_label(f, state_name);
	fputs("\"} ", f);
}

static void prom_family(FILE *f, const char *name, const char *type,
			const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

struct metric {
	const char *name, *type, *help;
	size_t off; /* offset of the field in struct bw_cli_row */
	int size;   /* 4 or 8 for integers */
	bool is_double;
};

#define M_U64(n, t, h, f)                                         \
	{                                                         \
		n, t, h, offsetof(struct bw_cli_row, f), 8, false \
	}
#define M_U32(n, t, h, f)                                         \
	{                                                         \
		n, t, h, offsetof(struct bw_cli_row, f), 4, false \
	}
#define M_DBL(n, t, h, f)                                        \
	{                                                        \
		n, t, h, offsetof(struct bw_cli_row, f), 8, true \
	}

static const struct metric metrics[] = {
	M_U32("bulwark_consecutive_failures", "gauge",
	      "Consecutive failed calls.", fails),
	M_U64("bulwark_calls_total", "counter",
	      "Calls: connect attempts and request/response exchanges.", total),
	M_U64("bulwark_successful_calls_total", "counter",
	      "Calls that succeeded.", ok),
	M_U64("bulwark_failed_calls_total", "counter", "Calls that failed.",
	      failed),
	M_U64("bulwark_rejected_calls_total", "counter",
	      "Connects refused by the breaker or the bulkhead.", rejected),
	M_U64("bulwark_slow_calls_total", "counter",
	      "Calls slower than breaker.slow.", slow),
	M_DBL("bulwark_success_ratio", "gauge",
	      "Successful calls / all calls (1 with no calls).", success_rate),
	M_DBL("bulwark_health_score", "gauge",
	      "Success ratio x (1 - slow ratio x 0.5), in [0, 1].", health),
	M_U64("bulwark_breaker_opened_total", "counter",
	      "Times the breaker opened.", opened),
	M_U32("bulwark_breaker_corrupt_total", "counter",
	      "Impossible breaker states found in the segment and repaired "
	      "(to closed, or forced to auto).",
	      breaker_corrupt),
	M_U32("bulwark_bulkhead_active", "gauge",
	      "Connections holding a bulkhead slot.", bh_active),
	M_U32("bulwark_bulkhead_max", "gauge", "bulkhead.max (0: no limit).",
	      bh_max),
	M_U64("bulwark_bulkhead_acquired_total", "counter",
	      "Connects that got a bulkhead slot.", bh_acquired),
	M_DBL("bulwark_bulkhead_rejection_rate", "gauge",
	      "Bulkhead refusals over slot requests.", bh_rejection_rate),
	M_U32("bulwark_bulkhead_waiting", "gauge",
	      "Connects waiting for a bulkhead slot.", bh_waiting),
	M_U64("bulwark_bulkhead_rejected_total", "counter",
	      "Connects the full bulkhead refused.", bh_rejected),
	M_U64("bulwark_bulkhead_saturated_total", "counter",
	      "Connects that found the bulkhead full.", bh_saturated),
	M_U32("bulwark_bulkhead_corrupt_total", "counter",
	      "Impossible bulkhead counts found in the segment and rebuilt "
	      "from the hold records.",
	      bh_corrupt),
	M_U64("bulwark_retries_total", "counter", "Connect retries made.",
	      retries),
	M_U64("bulwark_retries_succeeded_total", "counter",
	      "Connect retries that succeeded.", retries_ok),
	M_U64("bulwark_retries_denied_total", "counter",
	      "Retries the retry budget or min_success refused.",
	      retries_denied),
};

static void prom_value(FILE *f, const struct metric *mt,
		       const struct bw_cli_row *r)
{
	const char *base = (const char *)r + mt->off;

	if (mt->is_double) {
		double v;
		memcpy(&v, base, sizeof(v));
		fprintf(f, "} %.6g\n", v);
	} else if (mt->size == 4) {
		uint32_t v;
		memcpy(&v, base, sizeof(v));
		fprintf(f, "} %" PRIu32 "\n", v);
	} else {
		uint64_t v;
		memcpy(&v, base, sizeof(v));
		fprintf(f, "} %" PRIu64 "\n", v);
	}
}

/* Every family once (HELP and TYPE, then the samples of every state in
 * snaps), as the text format wants: `bulwark serve --state a --state b`
 * prints the states side by side, told apart by state_name. */
void bw_cli_print_prometheus(FILE *f, const struct bw_cli_snap *snaps,
			     size_t nsnaps)
{
	static const char *const states[] = { "closed", "open", "half_open",
					      "forced_open", "disabled" };
	size_t rows = 0;

	prom_family(f, "bulwark_destinations", "gauge",
		    "Destinations in the state.");
	for (size_t k = 0; k < nsnaps; k++) {
		prom_state_sample(f, "bulwark_destinations", snaps[k].name);
		fprintf(f, "%zu\n", snaps[k].n);
		rows += snaps[k].n;
	}
	bool any = false;
	for (size_t k = 0; k < nsnaps; k++) {
		if (!snaps[k].exists)
			continue;
		if (!any)
			prom_family(f, "bulwark_state_full_total", "counter",
				    "Lookups refused because every "
				    "destination slot was taken.");
		any = true;
		prom_state_sample(f, "bulwark_state_full_total", snaps[k].name);
		fprintf(f, "%" PRIu64 "\n",
			(uint64_t)LD(snaps[k].st.hdr->full_events));
	}
	any = false;
	for (size_t k = 0; k < nsnaps; k++) {
		if (!snaps[k].exists)
			continue;
		if (!any)
			prom_family(f, "bulwark_state_slots_used", "gauge",
				    "Destination slots in use (an idle "
				    "destination gives its slot up to a new "
				    "one).");
		any = true;
		prom_state_sample(f, "bulwark_state_slots_used", snaps[k].name);
		fprintf(f, "%" PRIu32 "\n", bw_state_count_used(&snaps[k].st));
	}
	any = false;
	for (size_t k = 0; k < nsnaps; k++) {
		if (!snaps[k].exists)
			continue;
		if (!any)
			prom_family(f, "bulwark_state_slots", "gauge",
				    "Destination slots in the state.");
		any = true;
		prom_state_sample(f, "bulwark_state_slots", snaps[k].name);
		fprintf(f, "%u\n", (unsigned)BW_STATE_SLOTS);
	}
	if (rows == 0)
		return;
	prom_family(f, "bulwark_breaker_state", "gauge",
		    "Breaker state: 1 for the current one.");
	for (size_t k = 0; k < nsnaps; k++)
		for (size_t i = 0; i < snaps[k].n; i++)
			for (size_t s = 0;
			     s < sizeof(states) / sizeof(states[0]); s++) {
				const struct bw_cli_row *r = &snaps[k].rows[i];
				prom_sample(f, "bulwark_breaker_state",
					    snaps[k].name, r);
				fprintf(f, ",state=\"%s\"} %d\n", states[s],
					strcmp(r->state, states[s]) == 0);
			}
	for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
		const struct metric *mt = &metrics[m];
		prom_family(f, mt->name, mt->type, mt->help);
		for (size_t k = 0; k < nsnaps; k++)
			for (size_t i = 0; i < snaps[k].n; i++) {
				prom_sample(f, mt->name, snaps[k].name,
					    &snaps[k].rows[i]);
				prom_value(f, mt, &snaps[k].rows[i]);
			}
	}
	prom_family(f, "bulwark_bulkhead_wait_seconds", "histogram",
		    "Time connects waited for a bulkhead slot.");
	for (size_t k = 0; k < nsnaps; k++)
		for (size_t i = 0; i < snaps[k].n; i++) {
			const struct bw_cli_row *r = &snaps[k].rows[i];
			const char *nm = snaps[k].name;
			uint64_t cum = 0;
			for (int b = 0; b < BW_STATE_HIST_BUCKETS; b++) {
				cum += r->bh_wait_hist[b];
				prom_sample(
					f,
					"bulwark_bulkhead_wait_seconds_bucket",
					nm, r);
				fprintf(f, ",le=\"%g\"} %" PRIu64 "\n",
					(double)(2ull << b) / 1e6, cum);
			}
			prom_sample(f, "bulwark_bulkhead_wait_seconds_bucket",
				    nm, r);
			fprintf(f, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
			prom_sample(f, "bulwark_bulkhead_wait_seconds_count",
				    nm, r);
			fprintf(f, "} %" PRIu64 "\n", cum);
		}
	prom_family(f, "bulwark_breaker_open_remaining_seconds", "gauge",
		    "Time until an open breaker turns half-open.");
	for (size_t k = 0; k < nsnaps; k++)
		for (size_t i = 0; i < snaps[k].n; i++) {
			const struct bw_cli_row *r = &snaps[k].rows[i];
			prom_sample(f, "bulwark_breaker_open_remaining_seconds",
				    snaps[k].name, r);
			fprintf(f, "} %.3f\n",
				(double)r->open_remaining_ms / 1000.0);
		}
}

/* ---- snapshots ----------------------------------------------------------- */

int bw_cli_snap_take(const char *cmd, const char *name, struct bw_cli_snap *s,
		     char *why, size_t why_cap)
{
	char path[160];
	int rc, exists = bw_cli_state_exists(name, path, sizeof(path));

	memset(s, 0, sizeof(*s));
	s->name = name;
	if (why_cap)
		why[0] = '\0';
	if (exists == 1) {
		char w[256] = "";
		rc = bw_state_attach(&s->st, name, false, w, sizeof(w));
		if (rc == -ENOENT) {
			exists = 0;
		} else if (rc < 0) {
			if (why_cap)
				snprintf(why, why_cap,
					 "state '%s' (%s) is "
					 "unusable: %s",
					 name, path, w[0] ? w : strerror(-rc));
			if (cmd)
				bw_cli_state_unusable(cmd, name, path, w, rc);
			memset(&s->st, 0, sizeof(s->st));
			return BW_CLI_FAIL;
		}
	}
	if (exists != 1)
		return BW_CLI_OK;
	s->exists = true;
	rc = collect(&s->st, &s->rows, &s->n);
	if (rc < 0) {
		bw_state_detach(&s->st);
		memset(&s->st, 0, sizeof(s->st));
		s->exists = false;
		if (why_cap)
			snprintf(why, why_cap, "%s", strerror(-rc));
		if (cmd)
			bw_cli_err(cmd, "%s", strerror(-rc));
		return BW_CLI_FAIL;
	}
	return BW_CLI_OK;
}

void bw_cli_snap_drop(struct bw_cli_snap *s)
{
	free(s->rows);
	if (s->exists)
		bw_state_detach(&s->st);
	memset(s, 0, sizeof(*s));
}

void bw_cli_print_json(FILE *f, const struct bw_cli_snap *s)
{
	print_json(f, s->rows, s->n);
}

/* ---- the command --------------------------------------------------------- */

/* Prints one snapshot to f.  Returns BW_CLI_OK or BW_CLI_FAIL. */
static int show(FILE *f, const char *name, enum fmt fmt, bool quiet_missing)
{
	struct bw_cli_snap s;
	int rc = bw_cli_snap_take("status", name, &s, NULL, 0);

	if (rc != BW_CLI_OK)
		return rc;
	if (!s.exists && !quiet_missing)
		bw_cli_err(NULL,
			   "no state '%s' yet (no program has run "
			   "under bulwark with it)",
			   name);
	if (fmt == FMT_JSON)
		print_json(f, s.rows, s.n);
	else if (fmt == FMT_PROM)
		bw_cli_print_prometheus(f, &s, 1);
	else
		print_table(f, s.rows, s.n, s.exists ? &s.st : NULL);
	bw_cli_snap_drop(&s);
	return BW_CLI_OK;
}

/* show() into FILE, replaced at once (a temporary file beside it, then
 * rename): node_exporter's textfile collector never reads half a file. */
static int show_to_file(const char *path, const char *name, enum fmt fmt)
{
	char tmp[PATH_MAX];
	FILE *f = bw_cli_atomic_open("status", path, tmp, sizeof(tmp));

	if (!f)
		return BW_CLI_FAIL;
	int rc = show(f, name, fmt, false);
	return bw_cli_atomic_commit("status", f, tmp, path, rc == BW_CLI_OK);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_watch = 1;
}

static int watch(const char *name, double interval_s)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: wake nanosleep */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!stop_watch) {
		char clock[32];
		time_t t = time(NULL);
		struct tm tm;
		strftime(clock, sizeof(clock), "%H:%M:%S",
			 localtime_r(&t, &tm));
		fputs("\033[H\033[2J", stdout);
		printf("bulwark status --state %s  every %gs  %s  "
		       "(Ctrl-C to stop)\n\n",
		       name, interval_s, clock);
		char path[160];
		if (bw_cli_state_exists(name, path, sizeof(path)) != 1)
			printf("no state '%s' yet (no program has run under "
			       "bulwark with it)\n\n",
			       name);
		int rc = show(stdout, name, FMT_TABLE, true);
		fflush(stdout);
		if (rc != BW_CLI_OK)
			return rc;
		struct timespec ts = {
			.tv_sec = (time_t)interval_s,
			.tv_nsec = (long)((interval_s -
					   (double)(time_t)interval_s) *
					  1e9),
		};
		while (!stop_watch && nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return BW_CLI_OK;
}

static int status_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'P' },
		{ "watch", no_argument, NULL, 'w' },
		{ "interval", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = getenv("BULWARK_STATE"), *interval = NULL;
	const char *output = NULL;
	enum fmt fmt = FMT_TABLE;
	bool json = false, prom = false, do_watch = false;
	double interval_s = BW_CLI_WATCH_DEFAULT_S;
	int c;

	if (!name || !*name)
		name = "default";
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:s:jPwi:o:h", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 's':
			name = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'P':
			prom = true;
			break;
		case 'w':
			do_watch = true;
			break;
		case 'i':
			interval = optarg;
			break;
		case 'o':
			output = optarg;
			break;
		case 'h':
			bw_cli_print_usage(&bw_cli_cmd_status, stdout);
			return BW_CLI_OK;
		default:
			return bw_cli_bad_option("status", argv, c);
		}
	}
	if (optind < argc)
		return bw_cli_usage_error("status", "unexpected argument '%s'",
					  argv[optind]);
	if (json && prom)
		return bw_cli_usage_error("status", "--json and --prometheus "
						    "exclude each other");
	if (do_watch && (json || prom))
		return bw_cli_usage_error("status",
					  "--watch redraws the "
					  "table; use --json or --prometheus "
					  "without it");
	if (output && do_watch)
		return bw_cli_usage_error("status", "--output writes one "
						    "snapshot; it does not go "
						    "with --watch");
	if (output && !*output)
		return bw_cli_usage_error("status", "--output needs a file "
						    "name");
	if (interval && !do_watch)
		return bw_cli_usage_error("status", "--interval goes with "
						    "--watch");
	if (interval) {
		char *end;
		interval_s = strtod(interval, &end);
		if (end == interval || *end ||
		    !(interval_s >= BW_CLI_WATCH_MIN_S) ||
		    interval_s > BW_CLI_WATCH_MAX_S)
			return bw_cli_usage_error(
				"status",
				"bad interval "
				"'%s': seconds from 0.1 to 86400",
				interval);
	}
	if (!name || strcmp(name, "private") == 0)
		return bw_cli_usage_error("status",
					  "state 'private' lives "
					  "inside each process; there is "
					  "nothing shared to show");
	if (bw_cli_check_state("status", name) != BW_CLI_OK)
		return BW_CLI_USAGE;
	fmt = json ? FMT_JSON : prom ? FMT_PROM : FMT_TABLE;
	if (do_watch)
		return watch(name, interval_s);
	if (output)
		return show_to_file(output, name, fmt);
	return show(stdout, name, fmt, false);
}

const struct bw_cli_cmd bw_cli_cmd_status = {
	.name = "status",
	.main = status_main,
	.summary = "show the state of every destination",
	.usage = usage,
};
