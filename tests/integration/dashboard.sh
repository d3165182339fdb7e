#!/usr/bin/env bash
# The dashboard end to end in headless Chromium (Debian package chromium) against the real
# parleyd, empty and loaded with the sample data. PARLEY_DASHBOARD_PNG=docs/dashboard.png
# also keeps the screenshot there.
source "$(dirname "$0")/../lib/node.sh"
run_node_test dashboard.test.js
