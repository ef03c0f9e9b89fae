#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# tests/bats/deb.bats: the Debian package (make deb, pkg/deb/mkdeb).  The
# package is built from the current build into the test's directory,
# checked by lintian (no errors), extracted with dpkg-deb -x, and the
# extracted bulwark runs `status` and preloads the extracted shim into curl
# against a refusing port on 127.0.0.1 until its breaker opens.

load ../lib/common

setup() {
	bw_setup
	require_shim
	require_cli
	require_cmd dpkg-deb dpkg-shlibdeps curl
	unset BULWARK_LIB
	VERSION=$(sed -n 's/^VERSION := //p' "$BW_ROOT/Makefile")
	ARCH=$(dpkg --print-architecture)
	MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
	DEB=$BW_TMP/bulwark_${VERSION}_$ARCH.deb
	"$BW_ROOT/pkg/deb/mkdeb" "$BW_BUILD" "$VERSION" "$DEB" >/dev/null
	ROOT=$BW_TMP/root
	dpkg-deb -x "$DEB" "$ROOT"
}

@test "deb: the layout, the control fields, root-owned files" {
	[ -x "$ROOT/usr/bin/bulwark" ]
	[ -f "$ROOT/usr/lib/$MA/bulwark/libbulwark.so" ]
	[ -f "$ROOT/usr/share/man/man1/bulwark.1.gz" ]
	[ -f "$ROOT/usr/share/man/man7/bulwark-policy.7.gz" ]
	[ -f "$ROOT/usr/share/bulwark/prometheus/bulwark-rules.yml" ]
	[ -f "$ROOT/usr/share/doc/bulwark/changelog.gz" ]
	grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' \
		"$ROOT/usr/share/doc/bulwark/copyright"
	grep -q '^License: MIT' "$ROOT/usr/share/doc/bulwark/copyright"
	[ "$(dpkg-deb -f "$DEB" Package)" = bulwark ]
	[ "$(dpkg-deb -f "$DEB" Version)" = "$VERSION" ]
	[ "$(dpkg-deb -f "$DEB" Architecture)" = "$ARCH" ]
	[[ $(dpkg-deb -f "$DEB" Depends) == *"libc6 (>= "* ]]
	# every file root's, nothing writable by others
	run sh -c "dpkg-deb -c '$DEB' | awk '\$2 != \"root/root\" || \$1 ~ /w.\$/'"
	[ -z "$output" ]
	# the shim keeps its USDT notes after stripping (bulwark trace)
	if readelf -n "$BW_LIB" | grep -q stapsdt; then
		readelf -n "$ROOT/usr/lib/$MA/bulwark/libbulwark.so" | grep -q stapsdt
	fi
	# the man pages render
	run man --warnings -l "$ROOT/usr/share/man/man1/bulwark.1.gz"
	[ "$status" -eq 0 ]
	[[ $output == *"bulwark serve"* ]]
}

@test "deb: lintian reports no errors" {
	require_cmd lintian
	run lintian --fail-on error "$DEB"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output != *"E: "* ]]
}

@test "deb: the extracted bulwark runs status and shims curl with the packaged shim until its breaker opens" {
	require_faultsrv
	bw=$ROOT/usr/bin/bulwark
	run "$bw" --version
	[ "$output" = "bulwark $VERSION" ]
	run "$bw" status
	[ "$status" -eq 0 ]
	# the packaged shim is the one preloaded (found from the binary's own
	# place: ../lib/MULTIARCH/bulwark/)
	run "$bw" run --policy '127.0.0.1 retry.attempts=1' -- sh -c 'echo "$LD_PRELOAD"'
	[ "$output" = "$ROOT/usr/lib/$MA/bulwark/libbulwark.so" ]
	start_faultsrv --mode refuse
	for i in 1 2 3; do
		run "$bw" run --policy '127.0.0.1 breaker.failures=2 retry.attempts=1' --log off \
			-- curl -s --max-time 5 "http://127.0.0.1:$FS_PORT/"
		[ "$status" -eq 7 ] # curl: could not connect
	done
	run "$bw" status --json
	[ "$status" -eq 0 ]
	python3 -c '
import json, sys
rows = {r["destination"]: r for r in json.loads(sys.argv[1])}
r = rows["127.0.0.1:" + sys.argv[2]]
assert r["state"] == "open", r
assert r["failed_calls"] == 2 and r["rejected_calls"] >= 1, r' "$output" "$FS_PORT"
	# and the drop-in it prints names the packaged shim
	run "$bw" systemd nginx
	[[ $output == *"Environment=\"LD_PRELOAD=$ROOT/usr/lib/$MA/bulwark/libbulwark.so\""* ]]
}
