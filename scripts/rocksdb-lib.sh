#!/bin/sh
# Builds RocksDB's C++ once per machine and keeps it as a static library in
# $OMIUM_ROCKSDB_DIR (default ~/.cache/omium-rocksdb/<version>).
#
# Why: librocksdb-sys compiles RocksDB (10-16 minutes on 2 cores) again whenever the features of
# any of its build tools change, and they do change between `cargo test --workspace`,
# `maturin develop` and the napi build, because cargo unifies features over what each command
# selects. With ROCKSDB_LIB_DIR set (the Makefile exports it), every one of those builds links
# this one library instead, and only the quick bindgen step runs per build.
set -eu
cd "$(dirname "$0")/.."
dir="${1:?usage: rocksdb-lib.sh DIR}"
# The CPU's CRC32C instructions: RocksDB checksums every WAL record with CRC32C and picks the
# hardware version at compile time only (librocksdb-sys passes -msse4.2 only when rustc targets
# it, which the default x86_64 target does not); without them every write runs a table-driven
# CRC (docs/decisions/prebuilt-rocksdb.md). The library is built for the machine it runs on.
flags=""
if [ "$(uname -m)" = x86_64 ] && grep -qw sse4_2 /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo; then
  flags="-msse4.2 -mpclmul"
fi
stamp="cxxflags=$flags"
if [ -f "$dir/librocksdb.a" ] && [ "$(cat "$dir/build-flags" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
target="${CARGO_TARGET_DIR:-$HOME/.cache/omium-target}"
echo "rocksdb-lib: building RocksDB's C++ once into $dir (10-16 minutes on 2 cores; $stamp)" >&2
# Through omium-core, so librocksdb-sys gets exactly the features the workspace asks for (lz4).
env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CXXFLAGS="${CXXFLAGS:-} $flags" CARGO_TARGET_DIR="$target" \
  cargo build -q -p omium-core --lib
lib=$(ls -t "$target"/debug/build/librocksdb-sys-*/out/librocksdb.a | head -1)
mkdir -p "$dir"
cp "$lib" "$dir/librocksdb.a.tmp"
# Debug info makes it 1.2 GB; without it, 40 MB and every link is fast.
strip --strip-debug "$dir/librocksdb.a.tmp"
mv "$dir/librocksdb.a.tmp" "$dir/librocksdb.a"
echo "$stamp" > "$dir/build-flags"
