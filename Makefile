# Parley — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
PLUGIN_DIR := build/plugins
VENV := .venv-test
BIN := .build/debug
CONFIG ?= parley.yml
# Swift Testing runs suites in parallel; the machine has 2 cores.
SWIFT_TEST_FLAGS ?= --parallel

.PHONY: all deps build plugins run test lint format test-swift test-python bench bench-cluster fuzz clean

all: build plugins

## deps: install the missing Debian packages the build needs (libffi-dev, zlib1g-dev, libsqlite3-dev, libhiredis-dev, cc, rustc)
deps:
	@bash scripts/deps.sh build

## build: the runtime (debug)
build: deps
	$(SWIFT) build --product parley
	$(SWIFT) build --product parley-plugin-host
	$(SWIFT) build --product parley-protocol-server

## plugins: every example plugin in Plugins/ into build/plugins/
plugins: deps
	@mkdir -p $(PLUGIN_DIR)
	@for d in Plugins/*/; do \
	  if [ -f "$$d/Makefile" ]; then $(MAKE) --no-print-directory -C "$$d" OUT="$(abspath $(PLUGIN_DIR))" || exit 1; fi; \
	done
	$(SWIFT) build --product ParleyAssistant
	@cp -f $(BIN)/libParleyAssistant.so $(PLUGIN_DIR)/ 2>/dev/null || true

## run: serve the default bot on 127.0.0.1:5005 with the embedded store
run: build plugins
	$(BIN)/parley serve --config $(CONFIG)

## test: the format check, every test (Swift unit + socket tests, then black-box tests with the python-socketio client)
test: lint build plugins test-swift test-python

SWIFT_SOURCES := Sources Tests Benchmarks Plugins/assistant-swift/Sources Fuzz/Sources Package.swift Fuzz/Package.swift

## lint: the Swift sources follow .swift-format (`make format` rewrites them)
lint:
	@$(SWIFT) format lint --strict --recursive $(SWIFT_SOURCES) || { echo "make lint: run 'make format' (swift format, configured by .swift-format)"; exit 1; }

## format: rewrite the Swift sources in the .swift-format style
format:
	$(SWIFT) format format --in-place --recursive $(SWIFT_SOURCES)

## test-swift, test-python: each with a throw-away PostgreSQL (scripts/with-services.sh)
test-swift:
	@bash scripts/deps.sh test
	@# The plugins `make test` just built: the tests then load them instead of running make/cargo/swift build from
	@# inside the test process, where a build blocks a thread of Swift's cooperative pool for seconds.
	PARLEY_PLUGINS=$(abspath $(PLUGIN_DIR)) bash scripts/with-services.sh $(SWIFT) test $(SWIFT_TEST_FLAGS)

test-python:
	@bash scripts/deps.sh test
	@bash scripts/pyenv.sh $(VENV)
	@if ls Tests/python/test_*.py >/dev/null 2>&1; then \
	  PARLEY_BIN=$(abspath $(BIN)) PARLEY_PLUGINS=$(abspath $(PLUGIN_DIR)) bash scripts/with-services.sh $(VENV)/bin/python -m pytest -q Tests/python; \
	else echo "test-python: no black-box tests yet"; fi

## bench: release build, then Parley vs python-socketio vs raw SwiftNIO (not part of make test)
bench: deps
	@bash scripts/deps.sh bench
	bash scripts/bench.sh
	@bash scripts/deps.sh test
	SKIP_BUILD=1 bash scripts/bench_cluster.sh

## bench-cluster: S2 on 1 node SQLite / PostgreSQL / PostgreSQL + Redis and 2 nodes behind nginx (bench/cluster-results.md)
bench-cluster: deps
	@bash scripts/deps.sh test
	bash scripts/bench_cluster.sh

## fuzz: libFuzzer on the Engine.IO, Socket.IO, JSON, permessage-deflate and configuration decoders (FUZZ_SECONDS per target, default 60; not part of make test)
fuzz: deps
	bash scripts/fuzz.sh

clean:
	rm -rf .build .build-fuzz build $(VENV)
