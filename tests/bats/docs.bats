#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/docs.bats: the repository explains itself.  Every reference a
# source file makes resolves to a file in the repository: no comment cites
# the old contract or lessons documents that lived outside it; every
# "doc/design.md L7" (or E6, H4) names an entry doc/design.md has; every
# man page section cited ("bulwark(1) FILES", "bulwark-policy(7) CALLS",
# "bulwark(1) status") exists; doc/design.md and the README's layout name
# every source file.  No build, no network.

load ../lib/common

# Sources whose comments are checked (not build output, fuzz inputs or
# bench results), relative to the repository, which the tests cd to.
sources() {
	local d
	for d in shim core policy cli probe tests bench man; do
		[[ -d $d ]] && find "$d" \( -name .output -o -name corpus \
			-o -name results \) -prune -o -type f -print
	done
	for d in Makefile .clang-format README.md; do
		[[ -f $d ]] && echo "$d"
	done
}

@test "no source cites a document that is not in the repository" {
	# Spelt in pieces so that this file does not match itself.
	local spec="SPE""C" lessons="LESSON""S" style="STYL""E" sect=$'\xc2\xa7'
	local pat="\\b${spec}\\b|${sect}|\\b${lessons}\\b|\\b${style}(\\.md)? [0-9]"
	local hits
	cd "$BW_ROOT"
	hits=$(sources | xargs grep -nIE -- "$pat" || true)
	if [[ -n $hits ]]; then
		echo "cite bulwark(1), bulwark-policy(7), the README or doc/design.md instead:"
		echo "$hits"
		return 1
	fi
}

@test "every doc/design.md L<n>, E<n>, H<n> cited exists there" {
	cd "$BW_ROOT"
	[[ -f doc/design.md ]]
	local refs id bad=""
	refs=$(sources | xargs grep -hoIE \
		'doc/design\.md,? [LEH][0-9]+((, ?| and |-)[LEH][0-9]+)*' || true)
	for id in $(grep -oE '[LEH][0-9]+' <<<"$refs" | sort -u); do
		grep -qE "^(- )?\*\*${id}\." "$BW_ROOT/doc/design.md" ||
			bad+=" $id"
	done
	[[ -z $bad ]] || { echo "doc/design.md has no:$bad"; return 1; }
	# and the entries are numbered without gaps
	local kind n
	for kind in L E H; do
		n=$(grep -cE "^(- )?\*\*${kind}[0-9]+\." "$BW_ROOT/doc/design.md")
		for ((i = 1; i <= n; i++)); do
			grep -qE "^(- )?\*\*${kind}${i}\." "$BW_ROOT/doc/design.md" ||
				{ echo "doc/design.md: ${kind}${i} missing"; return 1; }
		done
	done
}

@test "every man page section cited exists" {
	local refs ref page sec file bad=""
	cd "$BW_ROOT"
	refs=$(sources | grep -v '^man/' | xargs grep -hoIE \
		'bulwark(-policy)?\((1|7)\) ([A-Z]{2,}( [A-Z]{2,})*|run|check|status|reset|force|trace|serve|systemd|policy)\b' ||
		true)
	while IFS= read -r ref; do
		[[ -n $ref ]] || continue
		page=${ref%% *} sec=${ref#* }
		case $page in
		'bulwark(1)') file=$BW_ROOT/man/bulwark.1 ;;
		*) file=$BW_ROOT/man/bulwark-policy.7 ;;
		esac
		grep -qE "^\.S[HS] \"?${sec}\"?\$" "$file" || bad+=$'\n'"$ref"
	done < <(sort -u <<<"$refs")
	[[ -z $bad ]] || { echo "no such section:$bad"; return 1; }
}

@test "doc/design.md and the README's layout name every source file" {
	local f name missing=""
	cd "$BW_ROOT"
	for f in shim/*.c shim/pgo/*.c core/*.c policy/*.c cli/*.c probe/*.c; do
		[[ -f $f ]] || continue
		name=${f#*/}
		grep -qF "$name" doc/design.md || missing+=" doc/design.md:$f"
	done
	for f in shim/*.c core/*.c; do
		name=${f#*/}
		sed -n '/^## Layout/,/^## /p' README.md | grep -qF "\`$name\`" ||
			missing+=" README.md:$f"
	done
	[[ -z $missing ]] || { echo "not described:$missing"; return 1; }
}
