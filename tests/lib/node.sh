# Sourced by integration scripts that run Node.js tests: installs the test clients from the
# npm registry (pinned by tests/node/package-lock.json) the first time, then runs one file.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v node >/dev/null 2>&1; then
  echo "not ok - node is not installed (the integration tests need Node.js and npm)"
  exit 1
fi
# Installed once per lock file: a copy of the lock kept beside the modules says which.
stamp=tests/node/node_modules/.parley-installed-lock
if ! cmp -s tests/node/package-lock.json "$stamp" 2>/dev/null; then
  if ! npm ci --prefix tests/node --no-audit --no-fund --loglevel=error >/dev/null 2>&1; then
    echo "not ok - npm ci in tests/node failed (the npm registry must be reachable)"
    exit 1
  fi
  cp tests/node/package-lock.json "$stamp"
fi
run_node_test() { exec node "tests/node/$1"; }
