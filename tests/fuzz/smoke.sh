#!/usr/bin/env bash
# A short libFuzzer run of each target on its seed corpus (make fuzz runs longer). Every seed
# is also replayed, so a crash that once became a seed stays a regression test.
set -u
cd "$(dirname "$0")/../.."
SECONDS_EACH=${PARLEY_FUZZ_SECONDS:-10}
if ! command -v clang >/dev/null 2>&1; then
  echo "not ok - clang is needed for the fuzz targets (Debian package clang)"
  exit 1
fi
if ! make --no-print-directory fuzz-build >/tmp/parley-fuzz-build.log 2>&1; then
  echo "not ok - fuzz targets build"
  tail -20 /tmp/parley-fuzz-build.log | sed 's/^/# /'
  exit 1
fi
for t in forward record query; do
  out=$(mktemp -d)
  if build/fuzz/fuzz-$t -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" "$out" "tests/fuzz/corpus/$t" >"$out/log" 2>&1; then
    echo "ok - fuzz-$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/log" | awk '{print $2}') runs in ${SECONDS_EACH}s, no crash"
  else
    echo "not ok - fuzz-$t found a crash"
    # the reports, then only the stack frames in parley's own sources
    grep -E 'ERROR|SUMMARY|artifact|^ +#[0-9]+ .*[ /](src|tests)/[^ ]+\.c:' "$out/log" | head -12 |
      sed 's/^/# /'
    # The temporary directory goes away with the run: the input that crashed is printed, so
    # a failure seen only in CI can be replayed (base64 -d > f; build/fuzz/fuzz-$t f).
    for c in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*; do
      [ -f "$c" ] && echo "# input ($(basename "$c"), base64): $(head -c 4096 "$c" | base64 -w0)"
    done
  fi
  rm -rf "$out"
done
