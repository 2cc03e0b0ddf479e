#!/bin/sh
# `make dist`: the release artifacts, built in release mode into dist/:
#   omium-VERSION-cp310-abi3-linux_x86_64.whl   the Python package (RocksDB linked in, the CLI inside)
#   omium-VERSION.tgz                           the npm package with its prebuilt native addon
#   omium-c-sdk-VERSION-linux-x86_64.tar.gz     libomium.so, libomium.a, omium.h, pkg-config and CMake files
# RocksDB's C++ is the prebuilt archive of `make deps` (ROCKSDB_LIB_DIR).
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/dist"
version=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version = "\(.*\)"/\1/p}' Cargo.toml)
: "${CARGO_TARGET_DIR:?set CARGO_TARGET_DIR (the Makefile does)}"
: "${ROCKSDB_LIB_DIR:?set ROCKSDB_LIB_DIR (the Makefile does)}"
export ROCKSDB_STATIC=1
rm -rf "$out"
mkdir -p "$out"
started=$(date +%s)

echo "dist: the Python wheel"
maturin build --release --strip -q -m omium-py/Cargo.toml -o "$out"

echo "dist: the npm package"
(
  cd omium-node
  stage=$(mktemp -d)
  # A copy of the package, so the development build in native/ stays as it is.
  cp -r package.json README.md bin dist "$stage/"
  mkdir "$stage/native"
  CARGO=scripts/cargo-host.sh npx napi build --platform --release --strip --output-dir "$stage/native" --js index.js --dts index.d.ts >/dev/null
  cd "$stage" && npm pack --silent --pack-destination "$out" >/dev/null
  rm -rf "$stage"
)

echo "dist: the C SDK"
cargo build --release -q -p omium-ffi
sdk="omium-c-sdk-$version-linux-x86_64"
stage=$(mktemp -d)
mkdir -p "$stage/$sdk/include" "$stage/$sdk/lib/pkgconfig" "$stage/$sdk/lib/cmake/omium" "$stage/$sdk/examples"
cp omium-ffi/include/omium.h "$stage/$sdk/include/"
cp "$CARGO_TARGET_DIR/release/libomium.so" "$CARGO_TARGET_DIR/release/libomium.a" "$stage/$sdk/lib/"
strip --strip-unneeded "$stage/$sdk/lib/libomium.so"
strip --strip-debug "$stage/$sdk/lib/libomium.a"
cp examples/c/onboarding.c "$stage/$sdk/examples/"
for f in omium.pc omiumConfig.cmake omiumConfigVersion.cmake README.md; do
  sed "s/@VERSION@/$version/g" "omium-ffi/sdk/$f" > "$stage/$sdk/$(case $f in
    omium.pc) echo lib/pkgconfig/$f ;;
    omiumConfig*.cmake) echo lib/cmake/omium/$f ;;
    *) echo $f ;;
  esac)"
done
tar -C "$stage" -czf "$out/$sdk.tar.gz" "$sdk"
rm -rf "$stage"

echo "dist: built in $(( $(date +%s) - started )) s:"
ls -l "$out"
