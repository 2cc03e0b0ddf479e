# Omium — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need on a fresh machine (libclang-dev for RocksDB's bindings, a
# Python venv, npm packages) and share one cargo target directory, so RocksDB's C++ is built
# once for tests, demos and bindings.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/omium-target
# RocksDB's C++ is compiled once per machine into this folder and linked by every build
# (scripts/rocksdb-lib.sh explains why).
ROCKSDB_VERSION := $(shell sed -n '/^name = "librocksdb-sys"/{n;s/.*"\(.*\)"/\1/p;}' Cargo.lock | sed 's/.*+//')
export ROCKSDB_LIB_DIR ?= $(HOME)/.cache/omium-rocksdb/$(ROCKSDB_VERSION)
export ROCKSDB_STATIC = 1
CARGO ?= cargo
# Kills of the crash test: at least 20 in CI; `make crash` runs more.
OMIUM_CRASH_KILLS ?= 20
export OMIUM_CRASH_KILLS

.PHONY: all deps deps-build dist dist-test demo demo-rust test test-rust test-python test-node node python cli lint crash fault fuzz bench bench-python bench-all bench-smoke test-otlp

VENV ?= .venv
PY := $(VENV)/bin/python

all: test

# What building the library needs (the demo installs no more); `deps` adds the test tools.
deps-build:
	@scripts/ensure-deps.sh build
	@scripts/rocksdb-lib.sh "$(ROCKSDB_LIB_DIR)"

deps: deps-build
	@scripts/ensure-deps.sh

# The main demo, in Python: a run SIGKILLed mid-way, resumed, rolled back, re-run. It installs
# only what it needs: the package (with its `omium` command) in $(VENV), no test tools.
demo: deps-build
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check "maturin>=1.9,<2" "msgpack>=1.0"
	cd omium-py && VIRTUAL_ENV=$(abspath $(VENV)) PATH="$(abspath $(VENV))/bin:$$PATH" maturin develop -q
	$(PY) examples/python/onboarding.py

demo-rust: deps
	$(CARGO) run -q -p omium-examples --bin demo

test: deps lint test-rust test-python test-node bench-smoke

# Release artifacts in dist/: the abi3 wheel, the npm tarball with its prebuilt addon, the C SDK
# (scripts/dist.sh); `dist-test` installs each with no Rust on the PATH and runs a demo from it.
dist: deps node
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check "maturin>=1.9,<2"
	PATH="$(abspath $(VENV))/bin:$$PATH" scripts/dist.sh

dist-test: dist
	scripts/dist-test.sh

# A virtualenv with the test tools, and the omium package built in place (same cargo profile
# and target directory as the Rust tests, so nothing is compiled twice).
python: deps
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r omium-py/requirements-dev.txt -r omium-py/requirements-integrations.txt
	cd omium-py && VIRTUAL_ENV=$(abspath $(VENV)) PATH="$(abspath $(VENV))/bin:$$PATH" maturin develop -q

# The `omium` binary the Python and Node serve tests start as a daemon (the same build the CLI
# tests use).
cli: deps
	$(CARGO) build -q -p omium-cli

# Every Python file of the repository: the package, its tests, examples, scripts, benchmarks and
# the fixtures other suites run.
PY_SOURCES := omium-py examples/python scripts benches/python omium-core/tests omium-node/test

test-python: python cli
	$(PY) -m ruff check $(PY_SOURCES)
	$(PY) -m ruff format --check $(PY_SOURCES)
	cd omium-py && OMIUM_BIN=$(CARGO_TARGET_DIR)/debug/omium ../$(PY) -m pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && { echo "pytest collected no tests" >&2; exit 1; }; exit $$rc

# The npm package: the napi-rs native layer (same target directory and dev profile as the
# Rust tests), the TypeScript layer, then node --test and LangGraph.js's conformance suite.
node: deps
	cd omium-node && npm ci --no-audit --no-fund --loglevel=error && npm run build

test-node: node cli python
	cd omium-node && OMIUM_BIN=$(CARGO_TARGET_DIR)/debug/omium npm test && npm run test:langgraph
	# The addon without the cluster (consensus, remote sync): built, then checked to work and say so.
	cd omium-node && npm run build:small && OMIUM_NODE_SMALL=native-small/omium.linux-x64-gnu.node node --test test/small/*.test.mjs
	node examples/node/onboarding.mjs >/dev/null
	node examples/node/vercel_ai.mjs | grep -q 'output: order o-7 charged and shipped'

test-rust:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The small C library: storage and engine without the cluster crate.
	$(CARGO) clippy -p omium-ffi --no-default-features -- -D warnings

# The long crash run: 60 SIGKILLs of a real writer process.
crash: deps
	OMIUM_CRASH_KILLS=60 $(CARGO) test -p omium-core --test it crash:: -- --nocapture

# The long consensus fault run: five rounds of SIGKILLing the leader, then a follower, of a
# 3-node cluster of real `omium node` processes (`cargo test` runs one round).
fault: deps
	OMIUM_FAULT_ROUNDS=5 $(CARGO) test -p omium-cli --test it consensus_fault:: -- --nocapture

# The long fuzz and property run (`make test` runs each briefly): the Rust decoders and the
# store model with proptest, the Python codecs with hypothesis, the Node codec with fast-check.
# docs/testing.md has the numbers of the last run.
FUZZ_CASES ?= 100000
fuzz: python node
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p omium-core --lib fuzz_tests -- --nocapture --test-threads=1
	PROPTEST_CASES=$$(( $(FUZZ_CASES) / 100 )) $(CARGO) test -p omium-core --test it model:: -- --nocapture
	cd omium-py && OMIUM_FUZZ_EXAMPLES=$(FUZZ_CASES) ../$(PY) -m pytest -q tests/test_codecs.py -k "stored_bytes or json_like_values_round_trip"
	cd omium-node && OMIUM_FUZZ_EXAMPLES=$(FUZZ_CASES) node --test test/codec.property.test.mjs

bench: deps
	$(CARGO) bench -p omium-core

# Python: @omium.checkpoint overhead, and Omium against DBOS and LangGraph in one run (own venv).
bench-python: deps
	benches/python/run.sh

# Every same-run comparison of the performance targets (core, consensus, Python steps and
# spans, the savers against SQLite, Node), one after another, release builds; writes
# docs/bench-summary.json (the ratios beside docs/performance.md's tables). About 25 minutes.
bench-all: deps node python
	python3 scripts/bench-all.py

# The same benchmarks, briefly, on the debug builds the tests use: they run and report every
# figure (not figures to quote). `make test` runs it.
bench-smoke: deps node python
	python3 scripts/bench-all.py --smoke

# OTLP export against a real receiver: Arize Phoenix from PyPI in its own venv, on 127.0.0.1.
# Opt-in (a large install); not part of `make test`.
PHOENIX_VENV ?= $(HOME)/.cache/omium-phoenix
test-otlp: python
	@test -x $(PHOENIX_VENV)/bin/phoenix || { python3 -m venv $(PHOENIX_VENV) && $(PHOENIX_VENV)/bin/pip install -q --disable-pip-version-check "arize-phoenix>=12,<30"; }
	cd omium-py && OMIUM_PHOENIX=$(PHOENIX_VENV)/bin/phoenix ../$(PY) -m pytest -q tests_otlp
