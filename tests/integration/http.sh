#!/usr/bin/env bash
# The HTTP listener against the real parleyd: metrics format (and promtool when installed),
# health, query ops as JSON, HTTP/1.1 framing, bounds.
source "$(dirname "$0")/../lib/node.sh"
run_node_test http.test.js
