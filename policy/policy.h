/* SPDX-License-Identifier: MIT */
/*
 * policy/policy.h: the policy language of bulwark-policy(7), shared by the shim
 * and the bulwark command.  Types for compiled rules and settings, the parser,
 * the matcher and the printer.
 *
 * Nothing here allocates: a policy is one fixed-size struct filled in place,
 * so the shim can compile it in its constructor before the host's allocator
 * is usable (doc/design.md L1).  Internal functions return 0 or -errno and
 * never touch errno (doc/design.md H4).
 */
#ifndef BW_POLICY_POLICY_H
#define BW_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Most rules in one policy.  Real policies hold a handful; 256 leaves room
 * for generated ones.  Past it the parser reports an error. */
#define BW_POLICY_RULES_MAX 256
/* Longest host name in a rule (RFC 1035 limit, 253, plus the dot). */
#define BW_POLICY_HOST_MAX 256
/* Longest group name; also the longest state name (BULWARK_STATE in bulwark(1):
 * at most 64). */
#define BW_POLICY_NAME_MAX 65
/* Largest policy file read at start. */
#define BW_POLICY_FILE_MAX ((size_t)256 * 1024)

enum bw_match_kind {
	BW_MATCH_ANY = 0, /* "*" */
	BW_MATCH_HOST,	  /* a name: matches what the program resolved */
	BW_MATCH_SUFFIX,  /* "*.name": every subdomain of name */
	BW_MATCH_ADDR,	  /* an IPv4 literal or CIDR, or [IPv6[/prefix]] */
};

struct bw_match {
	enum bw_match_kind kind;
	/* BW_MATCH_HOST / SUFFIX: lower case, no trailing dot; for SUFFIX the
	 * name without the "*." */
	char host[BW_POLICY_HOST_MAX];
	/* BW_MATCH_ADDR: family AF_INET or AF_INET6, network address in
	 * network byte order (4 or 16 bytes used), prefix length. */
	int family;
	uint8_t addr[16];
	uint8_t prefix;
	/* Ports, inclusive, host byte order.  No ports or "*": 0-65535. */
	uint16_t port_lo, port_hi;
};

/* retry.on classes (bit mask). */
enum {
	BW_RETRY_ON_REFUSED = 1u << 0,	   /* ECONNREFUSED */
	BW_RETRY_ON_TIMEOUT = 1u << 1,	   /* ETIMEDOUT */
	BW_RETRY_ON_UNREACHABLE = 1u << 2, /* ENETUNREACH, EHOSTUNREACH,
					      ENETDOWN, EHOSTDOWN */
	BW_RETRY_ON_RESET = 1u << 3,	   /* ECONNRESET, ECONNABORTED */
};

enum bw_scope { BW_SCOPE_SHARED = 0, BW_SCOPE_PROCESS = 1 };

/* Longest duration any key accepts: 24 days, so that every duration in
 * milliseconds fits poll()'s int timeout.  Longer values are an error. */
#define BW_POLICY_DURATION_MAX_NS (24ull * 24 * 3600 * 1000000000)
/* Largest count (failures, window, bulkhead.max...) any key accepts. */
#define BW_POLICY_COUNT_MAX 1000000u

/* Key indices: bit i of bw_rule.set_mask / bw_policy.env_mask is key i, in
 * the order of bulwark-policy(7) KEYS (also the order bulwark check prints
 * them). */
enum bw_policy_key {
	BW_KEY_BREAKER = 0,
	BW_KEY_BREAKER_FAILURES,
	BW_KEY_BREAKER_RATE,
	BW_KEY_BREAKER_WINDOW,
	BW_KEY_BREAKER_MIN_CALLS,
	BW_KEY_BREAKER_SLOW,
	BW_KEY_BREAKER_SLOW_CALLS,
	BW_KEY_BREAKER_SLOW_RATE,
	BW_KEY_BREAKER_OPEN,
	BW_KEY_BREAKER_OPEN_MAX,
	BW_KEY_BREAKER_PROBES,
	BW_KEY_BREAKER_ERRNO,
	BW_KEY_BULKHEAD_MAX,
	BW_KEY_BULKHEAD_WAIT,
	BW_KEY_BULKHEAD_QUEUE,
	BW_KEY_BULKHEAD_SCOPE,
	BW_KEY_BULKHEAD_ERRNO,
	BW_KEY_RETRY_ATTEMPTS,
	BW_KEY_RETRY_BACKOFF,
	BW_KEY_RETRY_MAX_BACKOFF,
	BW_KEY_RETRY_MULTIPLIER,
	BW_KEY_RETRY_JITTER,
	BW_KEY_RETRY_ON,
	BW_KEY_RETRY_BUDGET,
	BW_KEY_RETRY_MIN_SUCCESS,
	BW_KEY_RETRY_ADAPTIVE,
	BW_KEY_CONNECT_TIMEOUT,
	BW_KEY_CONNECT_TIMEOUT_GROWTH,
	BW_KEY_IO_TIMEOUT,
	BW_KEY_HEDGE_DELAY,
	BW_KEY_GROUP,
	BW_KEY_COUNT
};
enum bw_growth { BW_GROWTH_FIXED = 0, BW_GROWTH_LINEAR = 1 };

/*
 * Every key of bulwark-policy(7), compiled.  Durations are in nanoseconds;
 * rates and percents are fractions in [0, 1]; "off" for an optional rate or
 * duration is a negative rate or a zero duration as noted.
 */
struct bw_settings {
	bool breaker_on;       /* breaker */
	uint32_t failures;     /* breaker.failures (0: never by count) */
	double rate;	       /* breaker.rate, < 0: off */
	uint32_t window_calls; /* breaker.window as a count, else 0 */
	uint64_t window_ns;    /* breaker.window as a duration, else 0 */
	uint32_t min_calls;    /* breaker.min_calls */
	uint64_t slow_ns;      /* breaker.slow, 0: off */
	uint32_t slow_calls;   /* breaker.slow_calls */
	double slow_rate;      /* breaker.slow_rate, < 0: off */
	uint64_t open_ns;      /* breaker.open */
	uint64_t open_max_ns;  /* breaker.open_max, 0: = open_ns; in a
				* compiled rule always >= open_ns */
	uint32_t probes;       /* breaker.probes */
	int breaker_errno;     /* breaker.errno */

	uint32_t bulkhead_max;	      /* bulkhead.max, 0: none */
	uint64_t bulkhead_wait_ns;    /* bulkhead.wait */
	uint32_t bulkhead_queue;      /* bulkhead.queue, 0: no limit */
	enum bw_scope bulkhead_scope; /* bulkhead.scope */
	int bulkhead_errno;	      /* bulkhead.errno */

	uint32_t retry_attempts;       /* retry.attempts, >= 1 */
	uint64_t retry_backoff_ns;     /* retry.backoff */
	uint64_t retry_max_backoff_ns; /* retry.max_backoff */
	double retry_multiplier;       /* retry.multiplier */
	double retry_jitter;	       /* retry.jitter as a factor in [0, 1] */
	bool retry_jitter_full;	       /* retry.jitter=full */
	uint32_t retry_on;	       /* retry.on, BW_RETRY_ON_* mask */
	double retry_budget;	       /* retry.budget */
	double retry_min_success;      /* retry.min_success, 0: off */
	bool retry_adaptive;	       /* retry.adaptive */

	uint64_t connect_timeout_ns; /* connect.timeout, 0: kernel's */
	enum bw_growth connect_timeout_growth; /* connect.timeout_growth */
	uint64_t io_timeout_ns;		       /* io.timeout, 0: none */
	uint64_t hedge_delay_ns;	       /* hedge.delay, 0: off */

	char group[BW_POLICY_NAME_MAX]; /* group, "" : none */
};

struct bw_rule {
	struct bw_match match;
	bool off;	      /* the "off" setting: nothing applied */
	struct bw_settings s; /* effective settings (precedence applied) */
	uint64_t set_mask;    /* keys the rule itself set, bit = key index */
	int line;	      /* where the rule starts in its source */
	char origin[16];      /* "policy" or "file" */
	char text[96];	      /* the match as written, for status/check */
};

struct bw_policy {
	int nrules;
	struct bw_rule rules[BW_POLICY_RULES_MAX];
	/* Where every rule's settings start: built-in defaults overridden by
	 * BULWARK_<KEY>.  A destination no rule matches does not get them:
	 * it is observed only (bw_policy_match returns -1). */
	struct bw_settings defaults;
	bool has_host_rules; /* any BW_MATCH_HOST / SUFFIX rule */
	uint64_t env_mask;   /* keys set by BULWARK_<KEY>, bit = key */
};

/* One error: "policy:LINE:COL: message" (bulwark-policy(7) ERRORS). */
struct bw_policy_error {
	char origin[16]; /* "policy", "file" or "env" */
	int line, col;	 /* 1-based; 0 when not applicable */
	char msg[256];	 /* message, with "; did you mean ...?" */
};

/* Looks up an environment variable; the shim passes its own AS-safe
 * lookup over the initial environment, tests pass a fake. */
typedef const char *(*bw_getenv_fn)(const char *name);

/*
 * Compiles the built-in defaults overridden by BULWARK_<KEY> variables
 * (looked up through getenv_fn, which may be NULL for none) into
 * p->defaults, and empties the rule list.  Returns 0, or -EINVAL with *err
 * filled for a bad BULWARK_<KEY> value.
 */
int bw_policy_init(struct bw_policy *p, bw_getenv_fn getenv_fn,
		   struct bw_policy_error *err);

/*
 * Appends the rules in text (len bytes, need not be NUL-terminated) to p.
 * origin is "policy" for BULWARK_POLICY and "file" for a policy file;
 * rules are separated by ';' or newlines, '#' starts a comment to the end
 * of the line.  Each rule's settings start from p->defaults.  Returns 0, or
 * -EINVAL with *err filled at the first error (p is then unusable), or
 * -E2BIG past BW_POLICY_RULES_MAX.
 */
int bw_policy_parse(struct bw_policy *p, const char *text, size_t len,
		    const char *origin, struct bw_policy_error *err);

/*
 * Completes p once every source is parsed: with no rules at all but some
 * BULWARK_<KEY> variables, those act as the one rule "*" (origin "env"),
 * so that BULWARK_RETRY_ATTEMPTS=5 alone applies to every destination.
 * With no rules and no variables p stays empty: every destination is then
 * observed only (counted, nothing applied).  Returns 0 or what
 * bw_policy_parse returns.
 */
int bw_policy_finish(struct bw_policy *p);

/*
 * Formats err as one line without newline: "bulwark: policy:3:14: unknown
 * key 'breaker.failure'; did you mean 'breaker.failures'?".  Returns the
 * length written (truncated to cap, always NUL-terminated).
 */
size_t bw_policy_error_format(const struct bw_policy_error *err, char *buf,
			      size_t cap);

/*
 * First-match-wins lookup for a TCP destination.  sa is AF_INET or AF_INET6
 * (IPv4-mapped IPv6 is matched as IPv4).  host_rule_hit(ctx, i) tells
 * whether rule i (a HOST or SUFFIX rule) has a name that the program
 * resolved to this address; it may be NULL (no names known).  Returns the
 * rule index, or -1 when no rule matches: the destination is observed
 * only (its calls counted, nothing applied).
 * AS-safe: yes; allocates nothing.
 */
int bw_policy_match(const struct bw_policy *p, const struct sockaddr *sa,
		    socklen_t len, bool (*host_rule_hit)(void *ctx, int rule),
		    void *ctx);

/*
 * Whether a resolved name matches rule r's host (exact, case-insensitive,
 * trailing dot ignored; "*.x" matches every subdomain of x).  Used by the
 * resolver hooks to record which host rules a name belongs to.
 */
bool bw_policy_name_matches(const struct bw_rule *r, const char *name);

/* Key metadata for bulwark check and BULWARK_<KEY> help. */
int bw_policy_nkeys(void);
const char *bw_policy_key_name(int i);	  /* "breaker.failures" */
const char *bw_policy_key_default(int i); /* built-in default text */

/*
 * Writes the effective value of key i in s as the grammar spells it
 * ("60s", "50%", "ECONNREFUSED", "off").  Returns the length.
 */
size_t bw_policy_format_value(const struct bw_settings *s, int key, char *buf,
			      size_t cap);

/*
 * Writes what bulwark check prints: every compiled rule (origin:line, the
 * match as written and as compiled, "off", then one key=value per line with
 * "# rule" / "# env" for values not built in), then the defaults a rule
 * starts from, and a line saying that destinations no rule matches are
 * observed only.  Returns the full length (like snprintf:
 * may exceed cap; the text is truncated to cap - 1 and NUL-terminated).
 */
size_t bw_policy_describe(const struct bw_policy *p, char *buf, size_t cap);

/* Index of the key named name (len bytes), or -1. */
int bw_policy_key_index(const char *name, size_t len);

/* Parses an errno name ("ECONNREFUSED") or returns -1. */
int bw_policy_errno_from_name(const char *name, size_t len);
/* The name of an errno value, or NULL. */
const char *bw_policy_errno_name(int e);

/*
 * Validates a state name (BULWARK_STATE in bulwark(1): letters, digits, '.',
 * '_', '-', 1 to 64 characters).  Returns 0 or -EINVAL.
 */
int bw_policy_check_state_name(const char *name);

#endif
