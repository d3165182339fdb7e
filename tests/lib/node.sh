# Sourced by integration scripts that run Node.js tests: installs the test clients from the
# npm registry (pinned by tests/node/package-lock.json) the first time, then runs one file.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v node >/dev/null 2>&1; then
  echo "not ok - node is not installed (the integration tests need Node.js and npm)"
  exit 1
fi
if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then
  if ! npm ci --prefix tests/node --no-audit --no-fund --loglevel=error >/dev/null 2>&1; then
    echo "not ok - npm ci in tests/node failed (the npm registry must be reachable)"
    exit 1
  fi
fi
run_node_test() { exec node "tests/node/$1"; }
