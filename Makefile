# parley: one Makefile. Override any variable on the command line, e.g.
#   make OPT=-O0            make WERROR=1            make BUILD=/tmp/pb
# Targets: all (default) run test asan bench fuzz deps clean. Binaries go to $(BUILD)/.
# V=1 shows full compiler command lines.

OPT     ?= -O2 -g
WERROR  ?= 0
SAN     ?=
BUILD   ?= build
CONFIG  ?= config/parleyd.conf

PKGS     = libuv msgpack lmdb zlib inih jansson libcrypto
TESTPKGS = cmocka
DEB_PKGS = pkg-config libuv1-dev libmsgpack-dev liblmdb-dev zlib1g-dev libinih-dev \
           libjansson-dev libssl-dev libcmocka-dev libhttp-parser-dev
# Only the test suite needs these: LMDB's tools, Node.js for real protocol clients, a
# headless browser for the dashboard test, and promtool (in prometheus) to check /metrics.
DEB_TEST_PKGS = lmdb-utils nodejs npm chromium prometheus

WARN    = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
          -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN   += -Werror
endif
ifeq ($(SAN),fuzz)
SANFLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
else ifneq ($(SAN),)
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  += -std=gnu11 $(OPT) $(WARN) $(SANFLAGS) -D_GNU_SOURCE -pthread -Iinclude -Itests/lib $(PKG_CFLAGS) -MMD -MP
LDFLAGS += $(SANFLAGS) -pthread
LDLIBS  += $(PKG_LIBS) -lhttp_parser -lm

LIB_SRC   := $(filter-out src/main.c,$(wildcard src/*.c))
CLI_SRC   := $(wildcard src/cli/*.c)
BENCH_SRC := $(wildcard bench/*.c)
TEST_SRC  := $(wildcard tests/unit/test-*.c)
TESTLIB_SRC := $(wildcard tests/lib/*.c)

OBJ = $(BUILD)/obj
EXTRA_LIB_OBJ :=
# Generated sources (the dashboard page compiled into the daemon) add to EXTRA_LIB_OBJ.
.DEFAULT_GOAL := all
-include web/web.mk
LIB_OBJ   := $(LIB_SRC:%.c=$(OBJ)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(OBJ)/%.o)
BENCH_OBJ := $(BENCH_SRC:%.c=$(OBJ)/%.o)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(OBJ)/%.o)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

ifeq ($(V),1)
Q =
else
Q = @
endif

PROGRAMS = $(BUILD)/parleyd $(BUILD)/parley $(BUILD)/parley-bench

.PHONY: all run test asan deps deps-test install-pkgs clean tests
.SECONDARY:
all: $(PROGRAMS)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libparley.a: $(LIB_OBJ) $(EXTRA_LIB_OBJ)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(BUILD)/parleyd: $(OBJ)/src/main.o $(BUILD)/libparley.a
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/parley: $(CLI_OBJ) $(BUILD)/libparley.a
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/parley-bench: $(BENCH_OBJ) $(BUILD)/libparley.a
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(TESTLIB_OBJ) $(BUILD)/libparley.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs $(TESTPKGS) 2>/dev/null)

tests: $(PROGRAMS) $(TEST_BIN)

# Installs the Debian packages the build needs (deps) and the tests need (deps-test), when
# one is missing.
deps:
	@$(MAKE) --no-print-directory install-pkgs PKGS_WANTED="$(DEB_PKGS)"

deps-test: deps
	@$(MAKE) --no-print-directory install-pkgs PKGS_WANTED="$(DEB_TEST_PKGS)"

install-pkgs:
	@missing=""; for p in $(PKGS_WANTED); do \
	  case $$p in nodejs|npm) command -v $${p%js} >/dev/null 2>&1 && continue;; esac; \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# Starts parleyd in the foreground on the default config (data in ./data).
run: deps
	@$(MAKE) --no-print-directory all
	exec $(BUILD)/parleyd --config $(CONFIG)

# Builds everything and runs the whole suite; the last line is "N passed, N failed".
test: deps-test
	@$(MAKE) --no-print-directory tests
	@tests/run.sh $(BUILD)

# The same suite under AddressSanitizer and UBSan, in its own build directory.
asan: deps-test
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 OPT="-O1 -g" tests
	@PARLEY_SAN=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=64 \
	  UBSAN_OPTIONS=print_stacktrace=1 \
	  tests/run.sh build/asan

clean:
	rm -rf $(BUILD) build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Benchmarks (bench/bench.mk) and fuzzing (tests/fuzz/fuzz.mk) live beside their code.
-include bench/bench.mk
-include tests/fuzz/fuzz.mk
