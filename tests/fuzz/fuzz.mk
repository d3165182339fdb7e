# libFuzzer targets (clang): the Forward reader, the record validator, the query decoder.
#   make fuzz                 runs each target for FUZZ_SECONDS (default 60) on its corpus
#   make fuzz FUZZ_SECONDS=5  a short smoke (the test suite runs one through tests/fuzz/smoke.sh)
# Seeds live in tests/fuzz/corpus/<target>/; new inputs go to $(FUZZ_BUILD)/corpus/<target>/,
# crashes to $(FUZZ_BUILD)/crash-*. A crash found becomes a regression test.

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = forward record query
FUZZ_BINS     = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz-%)

.PHONY: fuzz fuzz-build
fuzz-build: deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) SAN=fuzz OPT="-O1 -g" $(FUZZ_BINS)

$(FUZZ_BUILD)/fuzz-%: tests/fuzz/fuzz-%.c $(FUZZ_BUILD)/libparley.a $(FUZZ_BUILD)/obj/tests/lib/testutil.o
	@$(if $(Q),echo "  FUZZ  $@")
	$(Q)$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/obj/tests/lib/testutil.o \
	  $(FUZZ_BUILD)/libparley.a $(LDLIBS)

fuzz: SHELL := /bin/bash
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  echo "fuzz-$$t: $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t 2>&1 | grep -E '^(#|Done|stat::number_of_executed_units|==|SUMMARY|.*ERROR)' | tail -4; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
