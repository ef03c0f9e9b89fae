/* SPDX-License-Identifier: MIT */
/*
 * bench/stats.c: every statistic bench/run reports, and how each number is
 * printed in its reports (bench/results/).  bench/run compiles it next to
 * the bench programs ($BW_BUILD/bench/driver/stats) and calls it once per
 * number; the sections (bench/lib/) only lay out the tables around it.
 *
 *   stats median FILE [PLACES]   median of the numbers in FILE (one a line,
 *                                the first word counts), PLACES decimals (1);
 *                                nothing when FILE is missing or empty
 *   stats spread FILE            round-to-round noise: half the interquartile
 *                                range over the median, "±S%"; "n/a"
 *   stats paired BASE VARIANT    files of "ROUND VALUE": each VARIANT round
 *                                paired with BASE's run of the same round;
 *                                "RATIO SE DIFF DIFF_SE N", the medians of
 *                                the per-round ratios VARIANT/BASE and
 *                                differences VARIANT-BASE, each with its
 *                                standard error; nothing under 2 pairs
 *   stats div A B [PLACES]       A / B (3 decimals); nothing when either is
 *                                not a plain number or B is 0
 *   stats diff A B               A - B as "%+.0f"
 *   stats verdict VALUE TARGET [ge]
 *                                PASS when VALUE <= TARGET (>= with ge);
 *                                "n/a" when VALUE is not a plain number
 *   stats cell MEDIAN PAIRED [TARGET]
 *                                a section 1-2 table cell:
 *                                "×R ±S% (M ns) VERDICT"; "M ns" without
 *                                PAIRED; "n/a" without MEDIAN
 *   stats scale-cell PAIRED [TARGET]
 *                                "×R ±S%" and " (target ≤ ×T: VERDICT)"
 *   stats added PAIRED           the added latency: "+D ns ±S"
 *   stats added-x PAIRED_BULWARK PAIRED_SIDECAR
 *                                "X BOUND": the sidecar's added latency over
 *                                bulwark's, and over bulwark's plus one
 *                                standard error (the bound a verdict uses);
 *                                "inf" where bulwark's is <= 0
 *   stats worst-verdict TARGET ADDED_X...
 *                                the verdict (>= TARGET) of the least BOUND
 *   stats ns VALUE               "%.1f", or "n/a"
 *   stats us NS                  "12.34 µs", "1.2 ms" or "1.20 s"
 *   stats mode FILE FIELD        the most frequent word in column FIELD
 *
 * Numbers are read as awk reads them (the leading number of a word, 0 when
 * there is none) and computed in double.  The medians and standard errors
 * are the median of the sorted values (mean of the middle two for an even
 * count) and 1.253 x IQR / 1.349 / sqrt(N), robust to a stalled round.
 * Where the report has always printed a value it had rounded before, the
 * second rounding is made as the shell's printf made it (from the decimal
 * text, in long double): a ratio is shown as its 4-place value rounded to
 * 3 places (1.0125 shows as 1.013), and the verdict of a table cell is
 * taken on what it shows, so that a report reads as those written before
 * the statistics moved here.  tests/bats/bench_stats.bats checks every
 * command on known samples.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ------------------------------------------------------------ */

/* The FIELD-th (1-based) blank-separated word of LINE copied to OUT (empty
 * when the line has fewer). */
static void word_of(const char *line, int field, char *out, size_t cap)
{
	const char *p = line;
	out[0] = '\0';
	for (int i = 1;; i++) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			return;
		const char *e = p;
		while (*e && *e != ' ' && *e != '\t' && *e != '\n')
			e++;
		if (i == field) {
			size_t n = (size_t)(e - p) < cap - 1 ? (size_t)(e - p)
							     : cap - 1;
			memcpy(out, p, n);
			out[n] = '\0';
			return;
		}
		p = e;
	}
}

/* A word's value as awk takes it: its leading number, 0 when none. */
static double num(const char *s)
{
	return strtod(s, NULL);
}

/* Every line of PATH, as an array of strings; 0 lines when it cannot be
 * read.  A last line without its newline counts, as in awk. */
static char **lines_of(const char *path, size_t *n)
{
	FILE *f = fopen(path, "r");
	char **v = NULL, *line = NULL;
	size_t cap = 0, lcap = 0;
	ssize_t len;
	*n = 0;
	if (!f)
		return NULL;
	while ((len = getline(&line, &lcap, f)) >= 0) {
		if (len > 0 && line[len - 1] == '\n')
			line[len - 1] = '\0';
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = strdup(line);
	}
	free(line);
	fclose(f);
	return v;
}

static void free_lines(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The first word of every line of PATH, sorted; NULL (and *n 0) when PATH
 * is missing or empty. */
static double *sorted_values(const char *path, size_t *n)
{
	size_t nl;
	char **l = lines_of(path, &nl), w[256];
	double *v = nl ? malloc(nl * sizeof(*v)) : NULL;
	*n = 0;
	for (size_t i = 0; v && i < nl; i++) {
		word_of(l[i], 1, w, sizeof(w));
		v[(*n)++] = num(w);
	}
	free_lines(l, nl);
	if (v)
		qsort(v, *n, sizeof(*v), cmp_double);
	return v;
}

/* ---- statistics ---------------------------------------------------------- */

/* Median of N >= 1 sorted values. */
static double median(const double *v, size_t n)
{
	return n % 2 ? v[(n + 1) / 2 - 1] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The lower and upper quartiles of N >= 1 sorted values (the ranks the
 * report has always used: floor and ceiling of (N - 1) / 4 and 3(N - 1)/4). */
static void quartiles(const double *v, size_t n, double *lo, double *hi)
{
	*lo = v[(size_t)((double)(n - 1) * 0.25)];
	*hi = v[(size_t)((double)(n - 1) * 0.75 + 0.999)];
}

/* Standard error of the median of N sorted values, from their IQR. */
static double median_se(const double *v, size_t n)
{
	double lo, hi;
	quartiles(v, n, &lo, &hi);
	return 1.253 * (hi - lo) / 1.349 / sqrt((double)n);
}

/* ^[0-9]+(\.[0-9]+)?$: what the report accepts as a measured number. */
static int is_num(const char *s)
{
	const char *p = s;
	if (!s || *p < '0' || *p > '9')
		return 0;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return 0;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	return *p == '\0';
}

/* A value printed with PLACES decimals after it was read as the shell's
 * printf reads it (long double), which is how the report always rounded
 * an already-rounded value a second time. */
static void print_ld(const char *s, int places)
{
	printf("%.*Lf", places, strtold(s, NULL));
}

static const char *verdict(const char *value, const char *target, int ge)
{
	if (!is_num(value))
		return "n/a";
	double v = num(value), t = num(target);
	return (ge ? v >= t : v <= t) ? "PASS" : "FAIL";
}

/* The five words of a `paired` line (RATIO SE DIFF DIFF_SE N) as strings;
 * returns how many there were. */
static int paired_words(const char *p, char w[5][64])
{
	int k = 0;
	for (int i = 0; i < 5; i++) {
		word_of(p, i + 1, w[i], sizeof(w[i]));
		k += w[i][0] != '\0';
	}
	return k;
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_median(int argc, char **argv)
{
	size_t n;
	double *v = sorted_values(argv[0], &n);
	int places = argc > 1 ? atoi(argv[1]) : 1;
	if (n)
		printf("%.*f\n", places, median(v, n));
	free(v);
	return 0;
}

static int cmd_spread(int argc, char **argv)
{
	size_t n;
	double *v = sorted_values(argv[0], &n), lo, hi, m;
	(void)argc;
	if (!n) {
		puts("n/a");
		return 0;
	}
	quartiles(v, n, &lo, &hi);
	m = median(v, n);
	if (m > 0)
		printf("±%.1f%%\n", 50 * (hi - lo) / m);
	else
		puts("n/a");
	free(v);
	return 0;
}

static int cmd_paired(int argc, char **argv)
{
	size_t nb, nv, n = 0;
	char **b = lines_of(argv[0], &nb), **v = lines_of(argv[1], &nv);
	double *r = nv ? malloc(nv * sizeof(*r)) : NULL;
	double *d = nv ? malloc(nv * sizeof(*d)) : NULL;
	char k[256], bk[256], w[256];
	(void)argc;
	for (size_t i = 0; r && d && nb && i < nv; i++) {
		word_of(v[i], 1, k, sizeof(k));
		/* the base's value for this round: its last line for it */
		int found = 0;
		double base = 0;
		for (size_t j = 0; j < nb; j++) {
			word_of(b[j], 1, bk, sizeof(bk));
			if (strcmp(bk, k) == 0) {
				word_of(b[j], 2, w, sizeof(w));
				base = num(w);
				found = 1;
			}
		}
		if (!found || !(base > 0))
			continue;
		word_of(v[i], 2, w, sizeof(w));
		r[n] = num(w) / base;
		d[n] = num(w) - base;
		n++;
	}
	if (n >= 2) {
		qsort(r, n, sizeof(*r), cmp_double);
		qsort(d, n, sizeof(*d), cmp_double);
		printf("%.4f %.4f %.1f %.1f %zu\n", median(r, n),
		       median_se(r, n), median(d, n), median_se(d, n), n);
	}
	free(r);
	free(d);
	free_lines(b, nb);
	free_lines(v, nv);
	return 0;
}

static int cmd_div(int argc, char **argv)
{
	int places = argc > 2 ? atoi(argv[2]) : 3;
	if (!is_num(argv[0]) || !is_num(argv[1]) || num(argv[1]) == 0)
		return 0;
	printf("%.*f\n", places, num(argv[0]) / num(argv[1]));
	return 0;
}

static int cmd_diff(int argc, char **argv)
{
	(void)argc;
	printf("%+.0f\n", num(argv[0]) - num(argv[1]));
	return 0;
}

static int cmd_verdict(int argc, char **argv)
{
	puts(verdict(argv[0], argv[1], argc > 2 && strcmp(argv[2], "ge") == 0));
	return 0;
}

static int cmd_ns(int argc, char **argv)
{
	(void)argc;
	if (!is_num(argv[0])) {
		puts("n/a");
		return 0;
	}
	print_ld(argv[0], 1);
	putchar('\n');
	return 0;
}

static int cmd_cell(int argc, char **argv)
{
	const char *m = argv[0], *p = argc > 1 ? argv[1] : "";
	const char *target = argc > 2 ? argv[2] : "";
	char w[5][64], r[64];
	if (!is_num(m)) {
		puts("n/a");
		return 0;
	}
	if (!*p) {
		print_ld(m, 1);
		puts(" ns");
		return 0;
	}
	paired_words(p, w);
	snprintf(r, sizeof(r), "%.3Lf", strtold(w[0], NULL));
	printf("×%s ±%.1f%% (", r, 100 * num(w[1]));
	print_ld(m, 1);
	printf(" ns)");
	if (*target)
		printf(" %s", verdict(r, target, 0));
	putchar('\n');
	return 0;
}

static int cmd_scale_cell(int argc, char **argv)
{
	const char *p = argv[0], *target = argc > 1 ? argv[1] : "";
	char w[5][64], se[64];
	if (!*p) {
		puts("n/a");
		return 0;
	}
	paired_words(p, w);
	/* the standard error in percent as awk's print gives it (%.6g, or
	 * an integer), then rounded to one place */
	double s = 100 * num(w[1]);
	if (s == (double)(long)s)
		snprintf(se, sizeof(se), "%ld", (long)s);
	else
		snprintf(se, sizeof(se), "%.6g", s);
	printf("×");
	print_ld(w[0], 3);
	printf(" ±");
	print_ld(se, 1);
	printf("%%");
	if (*target)
		printf(" (target ≤ ×%s: %s)", target, verdict(w[0], target, 0));
	putchar('\n');
	return 0;
}

static int cmd_added(int argc, char **argv)
{
	char w[5][64];
	(void)argc;
	if (!*argv[0]) {
		puts("n/a");
		return 0;
	}
	paired_words(argv[0], w);
	printf("%+.0f ns ±%.0f\n", num(w[2]), num(w[3]));
	return 0;
}

static int cmd_added_x(int argc, char **argv)
{
	char b[5][64], s[5][64];
	(void)argc;
	if (!*argv[0] || !*argv[1])
		return 0;
	paired_words(argv[0], b);
	paired_words(argv[1], s);
	double bd = num(b[2]), bse = num(b[3]), sd = num(s[2]);
	if (bd <= 0)
		printf("inf");
	else
		printf("%.1f", sd / bd);
	if (bd + bse > 0)
		printf(" %.1f\n", sd / (bd + bse));
	else
		printf(" inf\n");
	return 0;
}

/* The least BOUND of the ADDED_X arguments ("X BOUND") that starts with a
 * digit or is "inf" (counted as 1e99), and its verdict (>= TARGET).  A
 * negative bound is left out, and "inf" alone reads n/a, as they always
 * have. */
static int cmd_worst_verdict(int argc, char **argv)
{
	char worst[64] = "";
	double wv = 0;
	for (int i = 1; i < argc; i++) {
		const char *sp = strchr(argv[i], ' ');
		const char *bound = sp ? sp + 1 : argv[i];
		if (!((bound[0] >= '0' && bound[0] <= '9') ||
		      strstr(bound, "inf")))
			continue;
		if (strcmp(bound, "inf") == 0)
			bound = "1e99";
		if (!*worst || num(bound) < wv) {
			snprintf(worst, sizeof(worst), "%s", bound);
			wv = num(bound);
		}
	}
	puts(*worst ? verdict(worst, argv[0], 1) : "n/a");
	return 0;
}

static int cmd_us(int argc, char **argv)
{
	double n = num(argv[0]);
	(void)argc;
	if (n >= 1e9)
		printf("%.2f s\n", n / 1e9);
	else if (n >= 1e6)
		printf("%.1f ms\n", n / 1e6);
	else
		printf("%.2f µs\n", n / 1e3);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_mode(int argc, char **argv)
{
	size_t n, best_n = 0;
	char **l = lines_of(argv[0], &n), w[256];
	const char *best = NULL;
	int field = atoi(argv[1]);
	(void)argc;
	for (size_t i = 0; i < n; i++) {
		word_of(l[i], field, w, sizeof(w));
		free(l[i]);
		l[i] = strdup(w);
	}
	if (n)
		qsort(l, n, sizeof(*l), cmp_str);
	/* the most frequent word; of equally frequent ones the last in byte
	 * order (what `sort | uniq -c | sort -rn | head -n1` picks) */
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i; j < n && strcmp(l[j], l[i]) == 0; j++)
			;
		if (j - i >= best_n) {
			best_n = j - i;
			best = l[i];
		}
	}
	if (n)
		puts(best);
	free_lines(l, n);
	return 0;
}

/* ---- main ------------------------------------------------------------------ */

static const struct {
	const char *name;
	int min_args;
	int (*fn)(int, char **);
	const char *usage;
} cmds[] = {
	{ "median", 1, cmd_median, "FILE [PLACES]" },
	{ "spread", 1, cmd_spread, "FILE" },
	{ "paired", 2, cmd_paired, "BASE VARIANT" },
	{ "div", 2, cmd_div, "A B [PLACES]" },
	{ "diff", 2, cmd_diff, "A B" },
	{ "verdict", 2, cmd_verdict, "VALUE TARGET [ge]" },
	{ "cell", 1, cmd_cell, "MEDIAN [PAIRED [TARGET]]" },
	{ "scale-cell", 1, cmd_scale_cell, "PAIRED [TARGET]" },
	{ "added", 1, cmd_added, "PAIRED" },
	{ "added-x", 2, cmd_added_x, "PAIRED_BULWARK PAIRED_SIDECAR" },
	{ "worst-verdict", 1, cmd_worst_verdict, "TARGET ADDED_X..." },
	{ "ns", 1, cmd_ns, "VALUE" },
	{ "us", 1, cmd_us, "NS" },
	{ "mode", 2, cmd_mode, "FILE FIELD" },
};

int main(int argc, char **argv)
{
	for (size_t i = 0; argc > 1 && i < sizeof(cmds) / sizeof(cmds[0]);
	     i++) {
		if (strcmp(argv[1], cmds[i].name) != 0)
			continue;
		if (argc - 2 < cmds[i].min_args) {
			fprintf(stderr, "usage: stats %s %s\n", cmds[i].name,
				cmds[i].usage);
			return 2;
		}
		return cmds[i].fn(argc - 2, argv + 2);
	}
	fprintf(stderr,
		"usage: stats COMMAND ARGS (bench/stats.c lists them)\n");
	return 2;
}
