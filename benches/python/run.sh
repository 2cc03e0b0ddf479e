#!/bin/sh
# The Python benchmark in one command: builds omium in release mode into its own virtualenv
# (benches/python/.venv, next to DBOS and LangGraph at the versions in requirements.txt), then
# runs bench.py, which prints the tables with ratios. Arguments go to bench.py
# (--quick for a smoke run, --rounds N, --json FILE); `run.sh --profile` runs profile_step.py,
# `run.sh --integrations` runs bench_integrations.py.
#
# Builds share the repository's cargo target directory and prebuilt RocksDB (see the Makefile),
# so nothing but the omium crates is compiled.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/omium-target}"
rocksdb_version=$(sed -n '/^name = "librocksdb-sys"/{n;s/.*"\(.*\)"/\1/p;}' Cargo.lock | sed 's/.*+//')
export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-$HOME/.cache/omium-rocksdb/$rocksdb_version}"
export ROCKSDB_STATIC=1
scripts/ensure-deps.sh
scripts/rocksdb-lib.sh "$ROCKSDB_LIB_DIR"

venv="$here/.venv"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  python3 -m venv "$venv"
fi
"$py" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"

# Release build of the wheel (the dev venv's `maturin develop` is a debug build: not for timing).
wheels="$venv/wheels"
rm -rf "$wheels"
"$venv/bin/maturin" build --release -q -m omium-py/Cargo.toml -i "$py" -o "$wheels"
"$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/omium-*.whl

if [ "${1:-}" = "--profile" ]; then
  shift
  exec "$py" "$here/profile_step.py" "$@"
fi
# `run.sh --integrations`: OmiumSaver / OmiumFlowPersistence against LangGraph's and CrewAI's
# own persistence (bench_integrations.py).
if [ "${1:-}" = "--integrations" ]; then
  shift
  exec "$py" "$here/bench_integrations.py" "$@"
fi
# `run.sh --fanout`: fsyncs per super-step of a graph with 8 parallel nodes (bench_fanout.py).
if [ "${1:-}" = "--fanout" ]; then
  shift
  exec "$py" "$here/bench_fanout.py" "$@"
fi
exec "$py" "$here/bench.py" "$@"
