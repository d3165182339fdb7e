#!/usr/bin/env bash
# Hostile input against the real parleyd (tests/node/hostile.test.js).
source "$(dirname "$0")/../lib/node.sh"
run_node_test hostile.test.js
