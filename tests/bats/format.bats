#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/format.bats: the layout of the C (.clang-format, doc/design.md
# H17).  clang-format leaves alone what must stay as written (a section
# banner past 80 columns, the order of the includes), keeps the lines of a
# trailing comment under its first when it aligns it, and breaks before
# `?` and `:`; make format-check, which .ci/run runs, names each file that
# differs and fails, and passes once make format ran.  No build, no
# network; skipped where clang-format is missing (make deps installs it).

load ../lib/common

setup() {
	bw_setup
	command -v clang-format >/dev/null ||
		skip "clang-format is missing (make deps installs it)"
}

@test "clang-format keeps banners and include order, aligns comments whole" {
	# want.c is laid out; in.c differs only in where stale's comment
	# starts, its second line moved with it.
	cat >"$BW_TMP/want.c" <<'EOF'
#include "shim/state.h"
#include <stdint.h>
#include <errno.h>

/* ---- a banner of 82 columns, past the 80-column limit ---------------------- */

struct bw_x {
	uint32_t refs;	/* fds pointing here */
	uint8_t stale;	/* an async connect failed: the next connect
			 * reports it again */
	uint64_t t0_ns; /* connect start */
};

static int pick(int a, int b)
{
	return a > b ? a + b + a + b + a + b + a + b + a + b + a + b + a + b + a
		     : b;
}
EOF
	sed -e 's|^\tuint8_t stale;\t/\*|\tuint8_t stale;          /*|' \
		-e 's|^\t\t\t \* reports|\t\t\t\t * reports|' \
		"$BW_TMP/want.c" >"$BW_TMP/in.c"
	run cmp -s "$BW_TMP/in.c" "$BW_TMP/want.c"
	[[ $status -eq 1 ]]
	clang-format --style="file:$BW_ROOT/.clang-format" \
		--assume-filename=in.c <"$BW_TMP/in.c" >"$BW_TMP/out.c"
	diff -u "$BW_TMP/want.c" "$BW_TMP/out.c"
}

@test "make format-check names the files that differ; make format lays them out" {
	command -v git >/dev/null || skip "git is missing"
	cd "$BW_TMP"
	cp "$BW_ROOT/Makefile" "$BW_ROOT/.clang-format" .
	mkdir src
	printf 'int ok(void)\n{\n\treturn 0;\n}\n' >src/ok.c
	printf 'int bad( void ) { return 0; }\n' >src/bad.c
	git init -q . && git add -A
	run make --no-print-directory format-check
	echo "$output"
	[[ $status -ne 0 ]]
	[[ $output == *"  src/bad.c"* ]]
	[[ $output != *"  src/ok.c"* ]]
	[[ $output == *"run: make format"* ]]
	make --no-print-directory format
	run make --no-print-directory format-check
	echo "$output"
	[[ $status -eq 0 ]]
	[[ $(cat src/bad.c) == $'int bad(void)\n{\n\treturn 0;\n}' ]]
}
