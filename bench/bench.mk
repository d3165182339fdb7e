# Benchmarks, included by the top Makefile: `make bench` (the suite, one table), `make
# bench-redis` (parley vs a private redis-server) and `make deps-bench` (redis-server and
# libhiredis-dev). BENCHMARKS.md has the variables and what each figure means.

.PHONY: bench bench-redis deps-bench

BENCH_DEB_PKGS = redis-server libhiredis-dev

# bench/redis.c talks to Redis through hiredis when it is installed; without it the rest
# of parley-bench still builds and `parley-bench redis` says what to install.
HIREDIS_LIBS := $(shell pkg-config --libs hiredis 2>/dev/null)
ifneq ($(HIREDIS_LIBS),)
HIREDIS_STATE = yes
$(OBJ)/bench/redis.o: CFLAGS += -DHAVE_HIREDIS $(shell pkg-config --cflags hiredis 2>/dev/null)
$(BUILD)/parley-bench: LDLIBS += $(HIREDIS_LIBS)
else
HIREDIS_STATE = no
endif

# redis.o is rebuilt when hiredis appears or goes away: it depends on a stamp named after
# the current state, and making a stamp removes the other one.
$(OBJ)/bench/redis.o: $(OBJ)/bench/.hiredis-$(HIREDIS_STATE)
$(OBJ)/bench/.hiredis-%:
	@mkdir -p $(dir $@)
	@rm -f $(OBJ)/bench/.hiredis-*
	@touch $@

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/parleyd $(BUILD)/parley-bench
	@bench/run.sh suite $(BUILD)

bench-redis: deps deps-bench
	@$(MAKE) --no-print-directory $(BUILD)/parleyd $(BUILD)/parley-bench
	@bench/run.sh redis $(BUILD)

deps-bench:
	@$(MAKE) --no-print-directory install-pkgs PKGS_WANTED="$(BENCH_DEB_PKGS)"
