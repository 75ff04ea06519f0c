# The README's commands. Everything a fresh machine needs is installed here:
# a virtualenv with the Python dependencies from pyproject.toml, and the
# extension built in release mode with maturin.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: setup build-dev build-prod test test-rust test-python demo bench fuzz lint clean

$(PY):
	python3 -m venv $(VENV)

# Dependencies come from pyproject.toml (runtime + dev extra), one list to keep.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print('\n'.join(['maturin>=1.9,<2'] + p['dependencies'] + p['optional-dependencies']['dev']))" \
	  > $(VENV)/requirements.txt
	$(PY) -m pip install -q -r $(VENV)/requirements.txt
	touch $@

setup: $(STAMP)

build-dev: setup
	maturin develop -q

build-prod: setup
	maturin develop -q --release

test-rust:
	cargo test -q -p rekorkit-core --release

# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
test-python: build-prod
	@$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc
	@REKORKIT_BENCH_QUICK=1 $(PY) -m pytest benches -q --benchmark-disable -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no benchmarks" >&2; exit 1; fi; exit $$rc

test: test-rust test-python

demo: build-prod
	$(PY) -m rekorkit.demo

bench: build-prod
	$(PY) -m pytest benches --benchmark-only --benchmark-json=.bench.json -q
	$(PY) benches/report.py .bench.json README.md

# Every fuzz target to FUZZ_RUNS inputs or FUZZ_SECONDS, whichever comes first
# (atheris, from the dev extra); inputs that raise anything but a
# RekorKitError are kept in fuzz/corpus/ and replayed by tests/fuzz as regression tests.
FUZZ_SECONDS ?= 300
FUZZ_RUNS ?= 1000000
fuzz: build-prod
	$(PY) -m fuzz.run --seconds $(FUZZ_SECONDS) --runs $(FUZZ_RUNS)

lint: setup
	cargo fmt --all -- --check
	cargo clippy -q --all-targets -- -D warnings
	$(PY) -m ruff check python tests benches
	$(PY) -m ruff format --check python tests benches
	$(PY) -m mypy
	$(PY) -m mypy.stubtest rekorkit._native

clean:
	rm -rf $(VENV) target .bench.json
