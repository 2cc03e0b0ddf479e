#!/bin/sh
# The Node benchmarks in one command: builds the release addon of omium-node, installs the
# SQLite peer of the checkpointer benchmark into benches/node/node_modules, then runs
# bench_saver.mjs (arguments go to it: --quick, --rounds N, --json FILE); `run.sh --steps`
# runs bench_steps.mjs instead. `--no-build` (first) uses the addon built already (the debug one
# of `make node` for a smoke run).
#
# better-sqlite3 is compiled from source against the headers of the installed Node
# (/usr/include/node on Debian), so nothing but the package registry is needed.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo/omium-node"
if [ "${1:-}" = "--no-build" ]; then
  shift
else
  if [ ! -d node_modules ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
  npm run --silent build:release
fi
cd "$here"
if [ ! -d node_modules/better-sqlite3/build ]; then
  nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  npm_config_nodedir="$nodedir" npm_config_build_from_source=true \
    npm ci --no-audit --no-fund --loglevel=error
fi
if [ "${1:-}" = "--steps" ]; then
  shift
  exec node "$here/bench_steps.mjs" "$@"
fi
exec node "$here/bench_saver.mjs" "$@"
