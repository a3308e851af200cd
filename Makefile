# Two commands for people: `make demo` and `make test`. Both install missing Debian packages first.
# `make test-matrix`: the busted suite under each LuaJIT CI tests with (.ci/matrix.sh names them).
PREFIX ?= /usr/local
BUILD ?= build
export PATH := $(PATH):/opt/swift/usr/bin
MAKEFLAGS += --no-print-directory

.PHONY: all deps build test test-matrix sanitize valgrind demo bench bench-quick install clean luanti-mod

all: build

deps:
	@bash .ci/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure

test-matrix: build
	@bash .ci/matrix.sh $(BUILD)

# Memory and thread checks of the core (docs/design.md, "Sanitizers and valgrind"): `sanitize`
# runs swift test and the concurrent modules' specs with ASan and TSan (own scratch paths in
# $(BUILD)/sanitize-*), `valgrind` runs C hosts and specs under memcheck with a LuaJIT built for it.
sanitize: build
	@bash tools/sanitize.sh $(BUILD)

valgrind: build
	@bash tools/valgrind.sh $(BUILD)

# The modules and the core straight from this tree: nothing needs installing.
RUN_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/?.lua;;" LJASYNC_CORE=$(CURDIR)/$(BUILD)/ljasync_core.so \
	LJASYNC_TESTC=$(CURDIR)/$(BUILD)/libljasync_testc.so

demo: build
	@$(RUN_ENV) luajit examples/demo.lua

# Each bench prints its own lines; its goal rows also go to BENCH_ROWS, and bench/summary.lua ends
# the run with one Markdown table of them (also in build/bench_rows.md). `make bench-quick`: 3 rounds.
BENCH_ROWS ?= $(CURDIR)/$(BUILD)/bench_rows.tsv
bench: build
	@$(RUN_ENV) BENCH_ROWS=$(BENCH_ROWS) luajit bench/summary.lua start
	@for f in bench/*_bench.lua; do echo; $(RUN_ENV) BENCH_ROWS=$(BENCH_ROWS) luajit $$f || exit 1; done
	@$(RUN_ENV) BENCH_ROWS=$(BENCH_ROWS) luajit bench/summary.lua | tee $(BENCH_ROWS:.tsv=.md)

bench-quick:
	@BENCH_ROUNDS=3 $(MAKE) bench

# The Luanti mod, ready to drop in a server's mods/: lj-async's modules and the core copied into it.
luanti-mod: build
	@bash luanti/pack.sh $(BUILD)/ljasync_core.so luanti/lj_async

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) .build
