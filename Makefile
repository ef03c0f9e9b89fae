# bulwark: build, test, bench, demo, install.
#
#   make            build/libbulwark.so and build/bulwark (+ the eBPF reporter
#                   when clang, bpftool and libbpf are present)
#   make deps       install the Debian packages the build and tests need
#   make test       unit tests (plain and ASan+UBSan), fuzz corpus replay,
#                   bats integration tests; ends with "N passed, N failed"
#   make conformance  CPython's networking tests (libpython3.11-testsuite),
#                   plain and under the shim with a breaker, a bulkhead and
#                   retries on every destination: fails when any test's
#                   result differs (about 5 minutes; .ci/run runs it too)
#   make bench      benchmarks (QUICK=1 for a one-minute smoke run)
#   make demo       a real client against the fault server, with and without
#   make install    PREFIX=/usr/local DESTDIR=
#   make B=build-debug DEBUG=1 PGO=0
#                   a shim that checks its invariants (BW_INVARIANT,
#                   shim/assert.h: abort on a breach); its own build
#                   directory, as objects are not rebuilt when flags change
#   make deb        build/bulwark_VERSION_ARCH.deb (dpkg-deb; pkg/deb/mkdeb)
#   make fuzz       run the libFuzzer target for the policy parser
#   make format     lay out all C with clang-format (.clang-format, the
#                   kernel's style); make format-check lists the files that
#                   differ and fails (.ci/run runs it)
#   make lint       cppcheck and clang-tidy (.clang-tidy) on the shim, the
#                   policy, the core and the command; any warning fails
#                   (.ci/run runs it)

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
B := build
VERSION := 0.1.0

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE := -std=c11 -D_GNU_SOURCE -I. $(WARN) -g -DBW_VERSION='"$(VERSION)"'
# doc/design.md L2: hidden by default, no _FILE_OFFSET_BITS=64 in the shim.
# The shim's cost is mostly its code coming back into the CPU's caches
# after the kernel ran (bench/results): link-time optimisation inlines
# across modules, -fno-plt calls libc through the GOT and functions start
# on a cache line, so a connection's life runs in fewer cache lines and
# pages.  LTO with GCC only: clang's needs a linker plugin Debian does not
# install with it.
SHIM_LTO := $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null)),,-flto=auto)
SHIM_CFLAGS := $(BASE) -O2 -fPIC -fvisibility=hidden -fno-strict-aliasing \
	-U_FILE_OFFSET_BITS -fno-plt -falign-functions=64 $(SHIM_LTO) \
	$(if $(filter 1,$(DEBUG)),-DBW_DEBUG)
# The Debian package installs the shim under /usr/lib/MULTIARCH/bulwark/,
# where bulwark run and bulwark systemd look for it.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
CLI_CFLAGS := $(BASE) -O2 -DBW_MULTIARCH='"$(MULTIARCH)"'
# Profile-guided build (GCC, like LTO; PGO=0 skips it): the shim is first
# built instrumented (build/pgo), run by shim/pgo/train.c against an echo
# server on loopback, then built with the profile that run wrote, so the
# code a connection runs lies on one straight path, its cold branches
# aside (half the shim's cost in the connect loop: bench/results).  If the
# training cannot run here, the shim is built without a profile and the
# build says so.
PGO ?= 1
SHIM_PGO := $(if $(SHIM_LTO),$(filter 1,$(PGO)))
PGO_USE := $(if $(SHIM_PGO),-fprofile-use -fprofile-partial-training \
	-Wno-missing-profile)
PGO_PROFILE := $(if $(SHIM_PGO),$(B)/pgo/profile)
# Both builds of an object name its profile alike (build/pgo/data), as
# the compiler keys a file's static functions by that name.
PGO_AUX = -dumpdir $(abspath $(B)/pgo/data)/ -dumpbase $(subst /,-,$<)
# Read when an object is compiled, after the training ran.
PGO_NOW = $(if $(SHIM_PGO),$(if $(filter trained,$(shell cat $(B)/pgo/profile \
	2>/dev/null)),$(PGO_USE) $(PGO_AUX)))
# The unit tests under sanitizers check the shim's invariants too
# (BW_INVARIANT, shim/assert.h); `make DEBUG=1` does in the shim itself.
SAN_CFLAGS := $(BASE) -O1 -fno-omit-frame-pointer -DBW_DEBUG \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
TSAN_CFLAGS := $(BASE) -O1 -fsanitize=thread -DBW_DEBUG

POLICY_SRC := $(sort $(wildcard policy/*.c))
# The core (doc/design.md Layers): the shared segment and the pure
# decisions, with the system calls and the clock they need; no hook, no
# bw_g, no bw_real.  With policy/ it makes libcore.a, all the command
# links (each program pulls only what it uses).
CORE_SRC := $(sort $(wildcard core/*.c))
# Shim modules without interposed symbols (orchestration, per-process
# tables, the shim's seams): libshim.a, which the unit tests and the
# benchmarks link before libcore.a.  Files named hook_*.c define libc
# symbols; init.c holds the constructor and bw_g, so it is only ever
# part of the shim.
SHIM_LIB_SRC := $(sort $(filter-out shim/hook_%.c shim/init.c,$(wildcard shim/*.c)))
SHIM_HOOK_SRC := $(sort $(wildcard shim/hook_*.c))
CLI_SRC := $(sort $(wildcard cli/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_HELP := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))
FIXTURE_SRC := $(sort $(wildcard tests/fixtures/*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))

LIB := $(B)/libbulwark.so
CLI := $(B)/bulwark
UNITS := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
UNITS_SAN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests-san/%)
TSAN_SRC := $(sort $(wildcard tests/unit/test_*threads*.c) tests/unit/test_fd_table.c)
UNITS_TSAN := $(TSAN_SRC:tests/unit/%.c=$(B)/tests-tsan/%)
FIXTURES := $(FIXTURE_SRC:tests/fixtures/%.c=$(B)/fixtures/%)
BENCHES := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

obj = $(patsubst %.c,$(B)/obj/$(1)/%.o,$(2))

.PHONY: all deps test unit bats bench demo install uninstall clean fuzz \
	probe lint check-deps deb conformance format format-check
all: $(LIB) $(CLI) $(FIXTURES) probe

# ---- objects ---------------------------------------------------------------
$(B)/obj/shim/%.o: %.c $(PGO_PROFILE)
	@mkdir -p $(dir $@)
	$(CC) $(SHIM_CFLAGS) $(PGO_NOW) -MMD -MP -c $< -o $@
$(B)/pgo/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(SHIM_CFLAGS) -fprofile-generate $(PGO_AUX) -MMD -MP -c $< -o $@
$(B)/obj/cli/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -MMD -MP -c $< -o $@
$(B)/obj/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -MMD -MP -c $< -o $@
$(B)/obj/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(TSAN_CFLAGS) -MMD -MP -c $< -o $@

SHIM_SRC := $(POLICY_SRC) $(CORE_SRC) $(SHIM_LIB_SRC) shim/init.c $(SHIM_HOOK_SRC)
SHIM_LINK = $(CC) -shared -O2 $(SHIM_LTO) $(1) -o $@ $(filter %.o,$^) \
	-Wl,--version-script=shim/libbulwark.map -Wl,-z,now -Wl,-z,relro \
	-ldl -lpthread
$(LIB): $(call obj,shim,$(SHIM_SRC)) shim/libbulwark.map
	$(call SHIM_LINK)

# The training run writes the profile (build/pgo/data, one file per
# object); a stale one is never left behind.
$(B)/pgo/libbulwark.so: $(patsubst %.c,$(B)/pgo/obj/%.o,$(SHIM_SRC)) shim/libbulwark.map
	$(call SHIM_LINK,-fprofile-generate)
$(B)/pgo/train: shim/pgo/train.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -o $@ $<
$(B)/pgo/profile: $(B)/pgo/libbulwark.so $(B)/pgo/train
	@rm -rf $(B)/pgo/data && mkdir -p $(B)/pgo/data; \
	if $(B)/pgo/train $(abspath $(B)/pgo/libbulwark.so); then \
		echo "pgo: trained on loopback; the shim is built with its profile"; \
		echo trained >$@; \
	else \
		rm -rf $(B)/pgo/data; \
		echo "pgo: the training run failed (above); the shim is built without a profile" >&2; \
		echo untrained >$@; \
	fi

CORE := $(B)/obj/cli/libcore.a
CORE_SAN := $(B)/obj/san/libcore.a
CORE_TSAN := $(B)/obj/tsan/libcore.a
$(CORE): $(call obj,cli,$(POLICY_SRC) $(CORE_SRC))
	rm -f $@ && ar rcs $@ $^
$(CORE_SAN): $(call obj,san,$(POLICY_SRC) $(CORE_SRC))
	rm -f $@ && ar rcs $@ $^
$(CORE_TSAN): $(call obj,tsan,$(POLICY_SRC) $(CORE_SRC))
	rm -f $@ && ar rcs $@ $^
SHIMLIB := $(B)/obj/cli/libshim.a
SHIMLIB_SAN := $(B)/obj/san/libshim.a
SHIMLIB_TSAN := $(B)/obj/tsan/libshim.a
$(SHIMLIB): $(call obj,cli,$(SHIM_LIB_SRC))
	rm -f $@ && ar rcs $@ $^
$(SHIMLIB_SAN): $(call obj,san,$(SHIM_LIB_SRC))
	rm -f $@ && ar rcs $@ $^
$(SHIMLIB_TSAN): $(call obj,tsan,$(SHIM_LIB_SRC))
	rm -f $@ && ar rcs $@ $^

$(CLI): $(call obj,cli,$(CLI_SRC)) $(CORE)
	$(CC) -o $@ $^ -ldl -lpthread

# ---- tests -----------------------------------------------------------------
$(B)/tests/%: $(call obj,cli,tests/unit/%.c $(UNIT_HELP)) $(SHIMLIB) $(CORE)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ -ldl -lpthread
$(B)/tests-san/%: $(call obj,san,tests/unit/%.c $(UNIT_HELP)) $(SHIMLIB_SAN) $(CORE_SAN)
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=address,undefined -o $@ $^ -ldl -lpthread
# Concurrency tests (test_*threads*.c, and the fd table) also run under
# ThreadSanitizer, compiled whole from source.
$(B)/tests-tsan/%: $(call obj,tsan,tests/unit/%.c $(UNIT_HELP)) $(SHIMLIB_TSAN) $(CORE_TSAN)
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=thread -o $@ $^ -ldl -lpthread
$(B)/fixtures/%: tests/fixtures/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -o $@ $< -lpthread
$(B)/fuzz/replay_policy: tests/fuzz/fuzz_policy.c tests/fuzz/replay.c $(POLICY_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -o $@ $^
$(B)/fuzz/fuzz_policy: tests/fuzz/fuzz_policy.c $(POLICY_SRC)
	@mkdir -p $(dir $@)
	clang $(BASE) -O1 -fsanitize=fuzzer,address,undefined -o $@ $^

# bench_alloc reads jemalloc's per-thread counters; --no-as-needed because
# only a weak reference to mallctl keeps the library linked.
$(B)/bench/bench_alloc: bench/bench_alloc.c bench/bench.h
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -o $@ $< -Wl,--no-as-needed -ljemalloc -lpthread
$(B)/bench/%: bench/%.c $(SHIMLIB) $(CORE)
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -o $@ $^ -ldl -lpthread

unit: $(UNITS) $(UNITS_SAN) $(UNITS_TSAN) $(B)/fuzz/replay_policy
bats: all

# The README's test command.  tests/run prints "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory all unit $(BENCHES)
	@tests/run

# Other people's tests: every test of CPython's networking modules must
# end the same plain and under the shim (tests/conformance/run, which
# prints "N passed, N failed, N skipped" like tests/run).
conformance: deps
	@$(MAKE) --no-print-directory all
	@tests/conformance/run

fuzz: $(B)/fuzz/fuzz_policy
	mkdir -p $(B)/fuzz/corpus
	$(B)/fuzz/fuzz_policy -max_total_time=$${FUZZ_SECONDS:-60} \
		$(B)/fuzz/corpus tests/fuzz/corpus

bench: all $(BENCHES)
	@bench/run

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo/demo.sh

# ---- the optional eBPF reporter (issue: probe/) ----------------------------
probe:
	@if [ -f probe/Makefile ]; then $(MAKE) -s -C probe B=$(abspath $(B)); fi

# ---- dependencies ----------------------------------------------------------
DEB_PKGS := build-essential clang llvm libbpf-dev bpftool libelf-dev \
	zlib1g-dev systemtap-sdt-dev libjemalloc-dev libjemalloc2 bats curl \
	wget python3 redis-server redis-tools socat netcat-openbsd nftables \
	iproute2 haproxy nginx libnginx-mod-stream gnuplot-nox util-linux procps psmisc \
	libclang-rt-14-dev libpython3.11-testsuite \
	prometheus lintian clang-format clang-tidy cppcheck
# Acceptance tests of the event-loop work (tests/bats/eventloop_*.bats).
DEB_PKGS += nodejs

deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
			grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all installed"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "deps: missing:$$missing"; \
		echo "run: sudo apt-get install -y$$missing"; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing

# ---- install ---------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/lib/bulwark $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/bulwark/libbulwark.so
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/bulwark
	install -m 0644 man/bulwark.1 $(DESTDIR)$(PREFIX)/share/man/man1/bulwark.1
	install -m 0644 man/bulwark-policy.7 $(DESTDIR)$(PREFIX)/share/man/man7/bulwark-policy.7
	if [ -x $(B)/bulwark-trace ]; then install -m 0755 $(B)/bulwark-trace \
		$(DESTDIR)$(PREFIX)/lib/bulwark/bulwark-trace; fi

# ---- Debian package ----------------------------------------------------------
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB := $(B)/bulwark_$(VERSION)_$(DEB_ARCH).deb
deb: $(DEB)
$(DEB): all pkg/deb/mkdeb pkg/deb/copyright pkg/deb/changelog man/bulwark.1 \
		man/bulwark-policy.7 contrib/prometheus/bulwark-rules.yml
	pkg/deb/mkdeb $(B) $(VERSION) $@

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/bulwark/libbulwark.so \
		$(DESTDIR)$(PREFIX)/lib/bulwark/bulwark-trace \
		$(DESTDIR)$(PREFIX)/bin/bulwark \
		$(DESTDIR)$(PREFIX)/share/man/man1/bulwark.1 \
		$(DESTDIR)$(PREFIX)/share/man/man7/bulwark-policy.7
	-rmdir $(DESTDIR)$(PREFIX)/lib/bulwark 2>/dev/null

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--inline-suppr -I. --suppress=missingIncludeSystem policy core shim cli
	clang-tidy --quiet --warnings-as-errors='*' $(POLICY_SRC) $(CORE_SRC) $(SHIM_LIB_SRC) $(SHIM_HOOK_SRC) $(CLI_SRC) shim/pgo/train.c \
		-- $(BASE)

# ---- layout (doc/design.md H17, .clang-format) -----------------------------
# The C both targets lay out: every .c and .h git knows or would add
# (build/, probe/.output/ and other ignored output are left out), so a new
# file is covered before its first commit.  Outside a git checkout the
# list is empty and both targets say so.
FORMAT_SRC = $(wildcard $(shell git ls-files --cached --others \
	--exclude-standard -- '*.c' '*.h' 2>/dev/null))
CLANG_FORMAT ?= clang-format
# The layout is checked with Debian 12's clang-format, 14 (make deps);
# another version lays some lines out differently.
FORMAT_TOOL = @if ! command -v $(CLANG_FORMAT) >/dev/null; then \
		echo "$@: $(CLANG_FORMAT) not found: install the Debian package" \
			"clang-format (make deps does)" >&2; exit 1; fi; \
	v=$$($(CLANG_FORMAT) --version | sed -n 's/.*version \([0-9]*\).*/\1/p'); \
	[ "$$v" = 14 ] || echo "$@: warning: $(CLANG_FORMAT) $$v, the layout" \
		"is checked with 14 (Debian 12): lines may differ" >&2; \
	if [ -z "$(strip $(FORMAT_SRC))" ]; then \
		echo "$@: no C files found (the list comes from git)" >&2; exit 1; fi

format:
	$(FORMAT_TOOL)
	@$(CLANG_FORMAT) -i $(FORMAT_SRC)
	@echo "format: $(words $(FORMAT_SRC)) files laid out (.clang-format)"

# One clang-format per file, so the list names each file that differs;
# the start of the first five differences shows what would change.
format-check:
	$(FORMAT_TOOL)
	@bad=""; for f in $(FORMAT_SRC); do \
		$(CLANG_FORMAT) --dry-run --Werror "$$f" >/dev/null 2>&1 || \
			bad="$$bad $$f"; \
	done; \
	if [ -z "$$bad" ]; then \
		echo "format-check: $(words $(FORMAT_SRC)) files laid out as" \
			".clang-format says"; exit 0; fi; \
	for f in $$(printf '%s\n' $$bad | head -n 5); do \
		$(CLANG_FORMAT) "$$f" | diff -u --label "$$f" \
			--label "$$f (make format)" "$$f" - | head -n 30; done; \
	echo "format-check: not laid out as .clang-format says:"; \
	for f in $$bad; do echo "  $$f"; done; \
	echo "run: make format"; exit 1

clean:
	rm -rf $(B) probe/.output

-include $(shell find $(B) -name '*.d' 2>/dev/null)
.SECONDARY:
