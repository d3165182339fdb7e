#!/usr/bin/env bash
# Real Forward clients (npm fluent-logger, @fluent-org/logger) and Fluentd/Fluent Bit frame
# shapes against the real parleyd.
source "$(dirname "$0")/../lib/node.sh"
run_node_test clients.test.js
