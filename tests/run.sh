#!/usr/bin/env bash
# Runs every test program and script, counts "ok" / "not ok" lines (TAP), and ends with
# the line "N passed, N failed". Usage: tests/run.sh BUILD_DIR [FILTER]
# A program that exits non-zero without reporting a failure counts as one failure.
set -u
BUILD=${1:-build}
FILTER=${2:-}
export PARLEY_BUILD=$(cd "$BUILD" && pwd)
export CMOCKA_MESSAGE_OUTPUT=TAP
cd "$(dirname "$0")/.."
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/parley-tests.XXXXXX")
passed=0
failed=0

run_one() { # name, timeout-seconds, command...
  local name=$1 limit=$2; shift 2
  local log="$LOGDIR/$(echo "$name" | tr '/ ' '__').log"
  local start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local ok=$(grep -cE '^ok ' "$log")
  local bad=$(grep -cE '^not ok ' "$log")
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
    bad=1
    echo "not ok - $name exited with status $rc" >>"$log"
  fi
  passed=$((passed + ok))
  failed=$((failed + bad))
  local secs=$(( $(date +%s) - start ))
  if [ "$bad" -gt 0 ]; then
    printf '%-40s %4d passed %4d FAILED (%ds)\n' "$name" "$ok" "$bad" "$secs"
    grep -E '^not ok |^# ' "$log" | head -40 | sed 's/^/    /'
    echo "    (full log: $log)"
  else
    printf '%-40s %4d passed (%ds)\n' "$name" "$ok" "$secs"
  fi
}

for t in "$BUILD"/tests/test-*; do
  [ -x "$t" ] || continue
  name=unit/$(basename "$t")
  case "$name" in *"$FILTER"*) ;; *) continue ;; esac
  run_one "$name" 600 "$t"
done
for t in tests/integration/*.sh tests/crash/*.sh tests/hostile/*.sh tests/fuzz/*.sh; do
  [ -f "$t" ] || continue
  name=${t#tests/}
  case "$name" in *"$FILTER"*) ;; *) continue ;; esac
  run_one "$name" 900 bash "$t"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && rm -rf "$LOGDIR"
[ "$failed" -eq 0 ]
