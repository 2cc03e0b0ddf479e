#!/bin/sh
# `napi build` runs cargo through $CARGO when it is set, and always passes `--target <triple>`.
# With an explicit target cargo builds into a folder of its own, so every dependency the
# workspace already compiled (tokio, openraft, RocksDB's bindings, ...) was compiled a second
# time: 15-17 minutes on a 2-core machine. When the triple is this machine's own, this wrapper
# drops it, so the addon is built in the workspace's shared folder with the dependencies the
# Rust tests and the Python package use, and copies the addon to where napi looks for it
# (<target-dir>/<triple>/<profile>/). Any other triple (a real cross build) passes through.
set -eu
host=$(rustc -vV | sed -n 's/^host: //p')
target=""
profile=debug
n=$#
i=0
while [ "$i" -lt "$n" ]; do
  a=$1
  shift
  i=$((i + 1))
  if [ "$a" = "--target" ] && [ "$i" -lt "$n" ]; then
    t=$1
    shift
    i=$((i + 1))
    if [ "$t" = "$host" ]; then
      target=$t
      continue
    fi
    set -- "$@" "$a" "$t"
    continue
  fi
  case "$a" in
    --release) profile=release ;;
  esac
  set -- "$@" "$a"
done
cargo "$@"
[ "${1:-}" = "build" ] && [ -n "$target" ] || exit 0
dir=$(cargo metadata --format-version 1 --no-deps |
  node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
mkdir -p "$dir/$target/$profile"
cp -f "$dir/$profile/libomium_node.so" "$dir/$target/$profile/"
