#!/usr/bin/env bash
# Storage faults: map growth, hard limit, full disk, second daemon (tests/node/faults.test.js).
source "$(dirname "$0")/../lib/node.sh"
run_node_test faults.test.js
