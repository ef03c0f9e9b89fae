/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/replay.c: runs LLVMFuzzerTestOneInput on every file named on
 * the command line, or in the directories named there (one level), so that
 * `make test` replays the corpus under ASan/UBSan without libFuzzer.
 * Prints TAP: "ok N - replay FILE"; a crash ends the run (sanitizers
 * abort), an unreadable file is "not ok".  Exit status 1 on any failure.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this are skipped: the fuzzer's own -max_len is far
 * smaller, and a policy file is at most 256 KiB. */
#define REPLAY_MAX (4u << 20)

static int n, failed;

static void replay(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0;
	struct stat st;

	if (!f || fstat(fileno(f), &st) || st.st_size > (off_t)REPLAY_MAX)
		goto bad;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		goto bad;
	len = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f))
		goto bad;
	fclose(f);
	/* An exact-size copy so that ASan catches reads past the end. */
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact)
		goto bad;
	memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	printf("ok %d - replay %s\n", ++n, path);
	fflush(stdout);
	return;
bad:
	if (f)
		fclose(f);
	free(buf);
	printf("not ok %d - replay %s\n", ++n, path);
	failed = 1;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t count = 0, cap = 0;

	if (!d) {
		replay(dir);
		return;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*names));
			if (!nn)
				break;
			names = nn;
		}
		size_t l = strlen(dir) + strlen(e->d_name) + 2;
		names[count] = malloc(l);
		if (!names[count])
			break;
		snprintf(names[count], l, "%s/%s", dir, e->d_name);
		count++;
	}
	closedir(d);
	if (count)
		qsort(names, count, sizeof(*names), by_name);
	for (size_t i = 0; i < count; i++) {
		struct stat st;
		if (!stat(names[i], &st) && S_ISREG(st.st_mode))
			replay(names[i]);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		replay_dir(argv[i]);
	printf("1..%d\n", n);
	return failed;
}
