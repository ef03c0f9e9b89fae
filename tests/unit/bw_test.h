/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/bw_test.h: the unit-test harness.  Each tests/unit/test_X.c is
 * one binary; it lists its cases with BW_TEST() and ends with BW_TEST_MAIN.
 * Output is TAP ("ok 3 - name" / "not ok 3 - name"), which tests/run counts.
 * Assertions survive NDEBUG and report file:line and both values.
 */
#ifndef BW_TESTS_UNIT_BW_TEST_H
#define BW_TESTS_UNIT_BW_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bw_test {
	const char *name;
	void (*fn)(void);
};

extern int bw_test_failed;

#define BW_TEST(f)    \
	{             \
#f, f \
	}

#define BW_FAIL_(...)                                             \
	do {                                                      \
		fprintf(stderr, "# %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__);                     \
		fprintf(stderr, "\n");                            \
		bw_test_failed = 1;                               \
		return;                                           \
	} while (0)

#define BW_ASSERT(c)                                          \
	do {                                                  \
		if (!(c))                                     \
			BW_FAIL_("assertion failed: %s", #c); \
	} while (0)

#define BW_ASSERT_EQ(a, b)                                                  \
	do {                                                                \
		long long a_ = (long long)(a), b_ = (long long)(b);         \
		if (a_ != b_)                                               \
			BW_FAIL_("%s == %lld, expected %s == %lld", #a, a_, \
				 #b, b_);                                   \
	} while (0)

#define BW_ASSERT_STR(a, b)                                                    \
	do {                                                                   \
		const char *a_ = (a), *b_ = (b);                               \
		if (strcmp(a_, b_) != 0)                                       \
			BW_FAIL_("%s == \"%s\", expected \"%s\"", #a, a_, b_); \
	} while (0)

#define BW_ASSERT_NEAR(a, b, eps)                                      \
	do {                                                           \
		double a_ = (double)(a), b_ = (double)(b);             \
		if (a_ - b_ > (eps) || b_ - a_ > (eps))                \
			BW_FAIL_("%s == %g, expected %g", #a, a_, b_); \
	} while (0)

/* Runs every case; exit status 1 if any failed. */
#define BW_TEST_MAIN(list)                                              \
	int bw_test_failed;                                             \
	int main(void)                                                  \
	{                                                               \
		size_t n = sizeof(list) / sizeof(list[0]);              \
		int bad = 0;                                            \
		printf("1..%zu\n", n);                                  \
		for (size_t i = 0; i < n; i++) {                        \
			bw_test_failed = 0;                             \
			list[i].fn();                                   \
			bad += bw_test_failed;                          \
			printf("%s %zu - %s\n",                         \
			       bw_test_failed ? "not ok" : "ok", i + 1, \
			       list[i].name);                           \
			fflush(stdout);                                 \
		}                                                       \
		return bad ? 1 : 0;                                     \
	}

#endif
