# The front door. `make demo` and `make test` set everything up themselves (a virtual
# environment in .venv, pinned dependencies, a release build of the native core) and are
# quick when nothing changed: each step is a stamp file that depends on its inputs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps
RUST_SOURCES := $(shell find rust -name '*.rs') Cargo.toml Cargo.lock

.PHONY: all demo test test-rust test-python lint benchmark bench bench-load bench-speed bench-router soak clean fmt

all: $(STAMPS)/build

$(STAMPS)/venv:
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip==26.3
	@touch $@

$(STAMPS)/deps: $(STAMPS)/venv requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	@touch $@

Cargo.lock:
	cargo generate-lockfile

$(STAMPS)/build: $(STAMPS)/deps $(RUST_SOURCES) pyproject.toml
	$(BIN)/maturin develop --release --quiet
	@touch $@

demo: $(STAMPS)/build
	$(BIN)/hedgerow demo

test: lint test-rust test-python

test-rust:
	cargo test --release --quiet

test-python: $(STAMPS)/build
	$(BIN)/python -m pytest

lint: $(STAMPS)/build
	cargo clippy --release --quiet --all-targets --features python -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest hedgerow._core --allowlist .stubtest-allowlist

fmt: $(STAMPS)/deps
	cargo fmt
	$(BIN)/ruff format python tests benches
	$(BIN)/ruff check --fix python tests benches

# Microbenchmarks (pytest-benchmark).
benchmark bench: $(STAMPS)/build
	$(BIN)/python -m pytest benches --benchmark-only -p no:cacheprovider $(BENCH_ARGS)

# Load benchmarks (processes pinned to cores; minutes, not seconds).
bench-load: $(STAMPS)/build
	$(BIN)/python benches/load_gateway.py $(BENCH_ARGS)

# Speed and scale-out: direct / aiohttp floor / hedgerow / LiteLLM, streams, workers.
bench-speed: $(STAMPS)/build
	$(BIN)/python benches/speed.py $(BENCH_ARGS)

bench-router: $(STAMPS)/build
	$(BIN)/python benches/router_bench.py $(BENCH_ARGS)

soak: $(STAMPS)/build
	$(BIN)/python benches/soak.py --minutes 10 $(BENCH_ARGS)

clean:
	rm -rf $(STAMPS) target python/hedgerow/*.so
