#!/usr/bin/env bash
# The parley client against the real parleyd (tests/node/cli.test.js).
source "$(dirname "$0")/../lib/node.sh"
run_node_test cli.test.js
