# prewarm's build. Sources are found by directory, so a new file needs no edit here.
#   make                 build everything (gcc, release) into build/release
#   make VARIANT=asan    the same with clang + ASan + UBSan into build/asan
#   make test            install what is missing, build both, run every suite (tests/run)
#   make demo            install, build, start kubesim + prewarmd, run a task (scripts/demo)
#   make bench           the quick benchmark (bench/run --quick)
#   make coverage        gcc --coverage build, the whole suite on it, lines/functions/branches per directory
#   make fuzz            libFuzzer drivers (tests/fuzz) into build/fuzz, each run FUZZ_TIME s (default 300)

VARIANT ?= release
B := build/$(VARIANT)

# -Wmissing-prototypes: a non-static function must have its prototype in a header (dead code cannot hide)
WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
ifeq ($(VARIANT),asan)
CC := clang
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN := -fsanitize=address,undefined
else ifeq ($(VARIANT),fuzz)
# every object carries libFuzzer's coverage hooks; only the drivers link libFuzzer's main
CC := clang
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
LDSAN := -fsanitize=fuzzer,address,undefined
else ifeq ($(VARIANT),coverage)
CC := gcc
OPT := -O0 -g --coverage
LDSAN := --coverage
else
CC ?= gcc
OPT := -O2 -g
LDSAN :=
endif
ifeq ($(origin CC),default)
CC := gcc
endif
ifeq ($(CC),gcc)
WARN += -Wmissing-declarations
endif

PKGS := libcurl libmicrohttpd gnutls jansson yaml-0.1 sqlite3 openssl hiredis libprotobuf-c
# A missing library is named here, not as a confusing compile error later ("make deps" installs it).
ifeq ($(filter deps test demo demo-stop bench clean format coverage,$(MAKECMDGOALS)),)
PKG_MISSING := $(shell for p in $(PKGS); do pkg-config --exists $$p || echo $$p; done)
ifneq ($(strip $(PKG_MISSING)),)
$(error missing libraries: $(PKG_MISSING): run scripts/install-deps (or make test / make demo, which run it))
endif
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Generated sources (protoc-c's CRI messages) live under $(GEN), never in src/.
GEN := $(B)/gen
CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Isrc -I$(GEN) -I. -MMD -MP $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS := $(PKG_LIBS) -lpthread -lm

# Library modules in dependency order (a module may use those after it).
MODULES := cli api policy predict cluster auth agent engine webhook ha store k8s http events metrics base
mod_src = $(wildcard src/$(1)/*.c)
mod_lib = $(B)/lib/libpw_$(1).a
# objects a module holds beyond its src/ files (generated code)
mod_gen_agent := $(B)/obj/gen/agent/cri.pb-c.o
mod_gen_api := $(B)/obj/gen/api/web_assets.o
LIBS := $(foreach m,$(MODULES),$(call mod_lib,$(m)))

SIM_SRC := $(wildcard sim/*.c)

PROGRAMS := $(B)/bin/prewarmd $(B)/bin/prewarmctl $(B)/bin/prewarm-agent $(B)/bin/prewarm-true $(B)/bin/kubesim

UNIT_SRC := $(wildcard tests/unit/*/test_*.c)
UNIT_BIN := $(patsubst tests/%.c,$(B)/tests/%,$(UNIT_SRC))
# Test-support code every unit test links (e.g. tests/unit/engine/fakeexec.c, a fake executor).
UNIT_SUPPORT := $(patsubst %.c,$(B)/obj/%.o,$(filter-out $(UNIT_SRC),$(wildcard tests/unit/*/*.c)))

.PHONY: all test unit deps demo demo-stop bench clean format programs coverage fuzz fuzz-build
all: programs $(UNIT_BIN) $(B)/bench/store_bench $(B)/bench/predict_mem $(B)/tests/e2e/cri_probe
programs: $(PROGRAMS)

deps:
	@scripts/install-deps test

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

define lib_rule
$(call mod_lib,$(1)): $(patsubst %.c,$(B)/obj/%.o,$(call mod_src,$(1))) $(mod_gen_$(1)) $(B)/obj/empty.o
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call lib_rule,$(m))))

$(B)/bin/prewarmd: $(B)/obj/src/cmd/prewarmd.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)

$(B)/bin/prewarm-agent: $(B)/obj/src/cmd/prewarm-agent.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)

$(B)/bin/prewarmctl: $(B)/obj/src/cmd/prewarmctl.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)

$(B)/bin/kubesim: $(patsubst %.c,$(B)/obj/%.o,$(SIM_SRC)) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $(filter %.o,$^) $(LIBS) $(LDLIBS)

# prewarm-true: static and tiny, with no sanitizer (it is copied into pods of any image).
$(B)/bin/prewarm-true: src/cmd/prewarm-true.c
	@mkdir -p $(dir $@)
	gcc -std=c11 -Os -static -nostartfiles -fno-asynchronous-unwind-tables -fno-stack-protector \
	    -Wl,--gc-sections -Wl,--build-id=none -Wl,-z,noseparate-code -s -o $@ $<

$(B)/tests/unit/%: tests/unit/%.c $(UNIT_SUPPORT) $(LIBS) $(patsubst %.c,$(B)/obj/%.o,$(filter-out sim/main.c,$(SIM_SRC)))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -Itests -o $@ $< $(UNIT_SUPPORT) $(filter-out $(B)/obj/sim/main.o,$(patsubst %.c,$(B)/obj/%.o,$(SIM_SRC))) $(LIBS) $(LDLIBS) -lcmocka

# tests/e2e/cri_probe: one CRI client call against a real runtime (tests/e2e).
$(B)/tests/e2e/cri_probe: tests/e2e/cri_probe.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)

# bench/store_bench: the store's throughput (issue 4); run build/release/bench/store_bench.
$(B)/bench/store_bench: bench/store_bench.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)

# bench/predict_mem: the prediction pod informer's memory at 100,000 pods (issue 14).
$(B)/bench/predict_mem: bench/predict_mem.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)

# The CRI messages (src/agent/cri.proto) through protoc-c; the agent's sources include agent/cri.pb-c.h.
$(GEN)/agent/cri.pb-c.c $(GEN)/agent/cri.pb-c.h &: src/agent/cri.proto
	@mkdir -p $(GEN)/agent
	protoc-c --c_out=$(GEN)/agent -Isrc/agent $<
$(B)/obj/gen/agent/cri.pb-c.o: $(GEN)/agent/cri.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(patsubst %.c,$(B)/obj/%.o,$(call mod_src,agent)): | $(GEN)/agent/cri.pb-c.h

# The web page's assets (web/) as a C table (src/api/web_int.h); the web directory itself is a
# prerequisite so that adding or removing a file regenerates it.
WEB_FILES := $(shell find web -type f ! -name '.*' 2>/dev/null)
$(GEN)/api/web_assets.c: $(WEB_FILES) web scripts/embed-web
	@mkdir -p $(GEN)/api
	scripts/embed-web web $@
$(B)/obj/gen/api/web_assets.o: $(GEN)/api/web_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Files the assembler embeds with .incbin (the compiler's -MMD does not see them).
$(B)/obj/src/api/openapi.o: src/api/openapi.json

# Fuzz drivers: tests/fuzz/fuzz_NAME.c -> build/fuzz/bin/fuzz_NAME, seeds in tests/fuzz/corpus/NAME
# (a new driver is that one file and its corpus; tests/fuzz/README.md).
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/bin/%,$(wildcard tests/fuzz/fuzz_*.c))
$(B)/bin/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(LIBS) $(patsubst %.c,$(B)/obj/%.o,$(filter-out sim/main.c,$(SIM_SRC)))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -Itests -o $@ $< $(filter-out $(B)/obj/sim/main.o,$(patsubst %.c,$(B)/obj/%.o,$(SIM_SRC))) $(LIBS) $(LDLIBS)
fuzz-build:
	$(MAKE) VARIANT=fuzz $(FUZZ_BIN)
fuzz: fuzz-build
	tests/fuzz/run $${FUZZ_TIME:-300}

$(B)/obj/empty.o:
	@mkdir -p $(dir $@)
	echo 'typedef int pw_empty_unit;' | $(CC) -x c -c - -o $@

# make test builds with every core and runs two suites at once (suites mostly wait on simulated
# time); TEST_JOBS=1 runs them one by one.
BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
TEST_JOBS ?= 2
test: deps
	$(MAKE) -j$(BUILD_JOBS) all VARIANT=release
	$(MAKE) -j$(BUILD_JOBS) all VARIANT=asan
	$(MAKE) -j$(BUILD_JOBS) fuzz-build
	tests/run -j $(TEST_JOBS)

unit: all
	tests/run --unit-only

demo:
	@scripts/install-deps test
	@echo "==> building (build/release)"
	@$(MAKE) -s --no-print-directory programs VARIANT=release
	@scripts/demo

demo-stop:
	@scripts/demo --stop

bench:
	@scripts/install-deps bench
	bench/run --quick

coverage: deps
	scripts/coverage

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
