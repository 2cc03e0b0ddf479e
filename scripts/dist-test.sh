#!/bin/sh
# `make dist-test`: installs each artifact of `make dist` where a user would — a new virtualenv,
# a new npm project, a C build with pkg-config and with CMake — with no Rust toolchain on the
# PATH, and runs a demo from it. Prints the install-to-demo time of each.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
dist="$root/dist"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# No cargo, rustc or maturin: only what a machine without Rust has.
export PATH=/usr/local/bin:/usr/bin:/bin
unset CARGO_TARGET_DIR ROCKSDB_LIB_DIR ROCKSDB_STATIC VIRTUAL_ENV
for tool in cargo rustc maturin; do
  if command -v "$tool" >/dev/null 2>&1; then
    echo "dist-test: $tool is on the PATH ($(command -v "$tool")); the test needs a PATH without Rust" >&2
    exit 1
  fi
done
timings=""
elapsed() { echo $(( $(date +%s%N) / 1000000 - $1 )); }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

echo "dist-test: the wheel, in a new virtualenv"
t=$(now_ms)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$dist"/omium-*.whl
"$work/venv/bin/omium" --version
(cd "$work" && "$work/venv/bin/python" "$root/examples/python/onboarding.py" > "$work/py-demo.txt")
grep -q "verify: ok" "$work/py-demo.txt" || { cat "$work/py-demo.txt"; echo "dist-test: the Python demo did not verify" >&2; exit 1; }
hint=$(sed -n 's/.*inspect it yourself: //p' "$work/py-demo.txt")
# The demo's last hint works as printed (from the directory it ran in).
(cd "$work" && sh -c "$hint" > "$work/hint.txt")
grep -q "kyc_doc_validated" "$work/hint.txt" || { cat "$work/hint.txt"; echo "dist-test: the demo's hint failed: $hint" >&2; exit 1; }
timings="$timings python=$(elapsed "$t")ms"

echo "dist-test: the npm tarball, in a new npm project"
t=$(now_ms)
mkdir "$work/app" && cd "$work/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error "$dist"/omium-*.tgz
npx omium --version
sed 's|"../../omium-node/dist/index.mjs"|"omium"|' "$root/examples/node/onboarding.mjs" > demo.mjs
node demo.mjs > "$work/node-demo.txt"
grep -q "verify: ok" "$work/node-demo.txt" || { cat "$work/node-demo.txt"; echo "dist-test: the Node demo did not verify" >&2; exit 1; }
timings="$timings node=$(elapsed "$t")ms"
cd "$root"

echo "dist-test: the C SDK, with pkg-config and with CMake"
t=$(now_ms)
tar -C "$work" -xzf "$dist"/omium-c-sdk-*.tar.gz
sdk=$(echo "$work"/omium-c-sdk-*)
export PKG_CONFIG_PATH="$sdk/lib/pkgconfig"
cc -std=c11 -O1 -o "$work/onboarding" "$sdk/examples/onboarding.c" $(pkg-config --cflags --libs omium)
ONBOARDING_STEP_MS=0 "$work/onboarding" "$work/c-store" > "$work/c-demo.txt"
ONBOARDING_STEP_MS=0 "$work/onboarding" "$work/c-store" > "$work/c-demo2.txt"
grep -q "replayed" "$work/c-demo2.txt" || { cat "$work/c-demo2.txt"; echo "dist-test: the C demo did not replay" >&2; exit 1; }
mkdir "$work/cmake-app"
cp "$sdk/examples/onboarding.c" "$work/cmake-app/"
cat > "$work/cmake-app/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(onboarding C)
find_package(omium 0.1 REQUIRED)
add_executable(onboarding onboarding.c)
target_link_libraries(onboarding PRIVATE omium::omium_static)
CMAKE
cmake -S "$work/cmake-app" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$sdk" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
ONBOARDING_STEP_MS=0 "$work/cmake-build/onboarding" "$work/c-store-2" > "$work/c-demo3.txt"
grep -q "completed" "$work/c-demo3.txt" || { cat "$work/c-demo3.txt"; echo "dist-test: the CMake-built demo failed" >&2; exit 1; }
timings="$timings c=$(elapsed "$t")ms"

echo "dist-test: ok; install to demo:$timings"
ls -l "$dist"
