#!/usr/bin/env bash
# Crash loop and graceful stop (tests/node/crash.test.js). PARLEY_CRASH_KILLS=N for more.
source "$(dirname "$0")/../lib/node.sh"
if ! command -v mdb_dump >/dev/null || ! command -v mdb_copy >/dev/null; then
  echo "not ok - mdb_dump and mdb_copy are needed (Debian package lmdb-utils)"
  exit 1
fi
run_node_test crash.test.js
