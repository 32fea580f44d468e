# pysandbox task runner: CI calls these same targets (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
PY ?= $(shell command -v python3.11 >/dev/null && python3.11 -c 'import sys; print(sys.executable)' || command -v python3)

.PHONY: demo deps build python test test-rust test-python lint bench bench-throughput bench-server bench-ray soak fuzz fuzz-build fuzz-ci

## One command from a fresh machine: install what is missing, build, run a sandboxed example.
demo: deps build
	./target/release/pysandbox doctor
	./target/release/pysandbox run --preset stdlib -c 'import sys, platform; print("hello from", platform.python_implementation(), sys.version.split()[0], "inside pysandbox")'
	./target/release/pysandbox run --feature math -c 'import math; print("math works:", math.sqrt(2))'
	./target/release/pysandbox run -c 'import socket' || true
	./target/release/pysandbox run --preset stdlib --json -c 'print(open("/etc/passwd").read())' || true
	@echo '# warm pool: 200 fresh, isolated runs through `pysandbox batch` (JSON lines in and out)'
	@seq 200 | awk '{printf "{\"id\": %d, \"code\": \"print(%d ** 2)\"}\n", $$1, $$1}' | /usr/bin/time -f '200 runs in %e s' ./target/release/pysandbox batch | tail -1

## System packages and Python tools the tests use (idempotent), and the packages with C
## extensions the tests import in the sandbox (crates/cli/tests/packages.rs,
## tests/python/test_packages.py) in the interpreter the tests use.
deps:
	@if ! command -v bwrap >/dev/null || ! command -v hyperfine >/dev/null || [ ! -x /usr/bin/python3.11 ] || [ ! -x /usr/bin/time ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap hyperfine python3.11 time >/dev/null; fi
	$(PY) -m pip install -q --disable-pip-version-check maturin pytest pytest-timeout jsonschema
	@# The wheel's manylinux check (tests/python/test_install.py: `auditwheel show`).
	$(PY) -m pip install -q --disable-pip-version-check auditwheel
	$(PY) -m pip install -q --disable-pip-version-check numpy pandas matplotlib pillow ipython
	@# The playground's browser test (tests/python/test_playground.py): Playwright drives
	@# Debian's chromium through its path; no browser is downloaded.
	@if [ ! -x /usr/bin/chromium ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
	$(PY) -m pip install -q --disable-pip-version-check playwright
	@# The real clients of the server's compatible APIs (tests/python/test_server_compat.py):
	@# SandboxFusion's, and aiopyston (module `pyston`; PyPI's `pyston` is an unrelated JIT) for Piston.
	$(PY) -m pip install -q --disable-pip-version-check sandbox-fusion aiopyston requests
	$(PY) -m pip install -q --disable-pip-version-check 'e2b-code-interpreter>=2,<3'
	@# pysandbox.ray (tests/python/test_ray.py, examples/rl_reward.py, bench/ray_bench.py).
	$(PY) -m pip install -q --disable-pip-version-check 'ray[default]>=2.9'

	@# The fuzz targets (docs/fuzzing.md): cargo-fuzz, a C++ compiler for libFuzzer, and
	@# libpython3.11 for the result codec's target (an embedded CPython).
	@if ! command -v g++ >/dev/null || [ ! -e /usr/lib/x86_64-linux-gnu/libpython3.11.so ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ libpython3.11-dev >/dev/null; fi
	@command -v cargo-fuzz >/dev/null || $(CARGO) install -q --locked cargo-fuzz@0.13.2

build:
	$(CARGO) build --release --workspace

## All tests: Rust unit and end-to-end tests, then the Python package's tests.
test: build test-rust test-python

test-rust: build
	$(CARGO) test --release --workspace

## The Python package: `pip install .` builds everything it ships (tools/pysandbox_build.py: the
## binary and the zygote library with cargo, then the native module with maturin).
python:
	$(PY) -m pip install -q --disable-pip-version-check .

test-python: python
	$(PY) -m pytest -q tests/python

lint:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path crates/py/Cargo.toml --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	PYO3_PYTHON=$(PY) $(CARGO) clippy --manifest-path crates/py/Cargo.toml -- -D warnings

## Latency against plain python and bubblewrap, warm pool, throughput (prints a table). The
## Python package is installed for its row; Monty's row appears if pydantic-monty installs.
bench: build python
	-$(PY) -m pip install -q --disable-pip-version-check pydantic-monty
	./target/release/pysandbox-bench 200

## `pysandbox batch` against the bare-fork ceiling alone: three interleaved rounds, with the CPU
## and page faults per run of each (docs/performance.md).
bench-throughput: build
	./target/release/pysandbox-bench 2000 throughput

## The HTTP server under load: concurrency 1, 8, 64 and paced, next to `pysandbox batch`; 10x the
## queue bound; the server's RSS over 20,000 requests (docs/server.md).
bench-server: build
	./target/release/pysandbox-bench 2000 server

## The soak (docs/soak.md; not part of `test`): 20,000 mixed requests (benign, failing,
## limit-tripping, hostile) at concurrency 8 through the cold path, the warm pool, sessions and
## the HTTP server, then host-side checks (nothing left behind, memory flat). N=... to change it.
N ?= 20000
soak: build
	./target/release/pysandbox-bench soak $(N)

## pysandbox.ray: SandboxPool.map on a local two-node Ray cluster against the local warm pool
## (`pysandbox batch`, a Sandbox with pool=True) in the same run, with the per-call overhead.
bench-ray: build python
	$(PY) bench/ray_bench.py

## Fuzzing (docs/fuzzing.md): cargo-fuzz's libFuzzer targets on the stable toolchain
## (RUSTC_BOOTSTRAP lets stable take the flags cargo-fuzz passes; no sanitizer: the decoders are
## safe Rust, so a panic, an overflow under debug assertions, a timeout or an allocation past the
## RSS limit is the failure). New inputs go to target/fuzz-corpus, never into fuzz/corpus.
FUZZ = cd fuzz && RUSTC_BOOTSTRAP=1 PYO3_PYTHON=/usr/bin/python3.11 $(CARGO) fuzz
FUZZ_FLAGS = --sanitizer none --debug-assertions
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 12
FUZZ_TARGETS = $(shell sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | tail -n +2)
# One target: its corpora (new inputs into target/fuzz-corpus, the committed seeds read only), its
# dictionary, a 10 s bound per input and 2 GB of memory. $$t is the target, $(1) the seconds.
FUZZ_RUN = mkdir -p target/fuzz-corpus/$$t; \
	case $$t in policy_toml) d=toml;; to_zygote|from_zygote|request_frame|report_stream|relay_frames) d=;; *) d=json;; esac; \
	$(FUZZ) run $(FUZZ_FLAGS) $$t $(CURDIR)/target/fuzz-corpus/$$t $(CURDIR)/fuzz/corpus/$$t -- \
		-max_total_time=$(1) -timeout=10 -rss_limit_mb=2048 $${d:+-dict=$(CURDIR)/fuzz/dicts/$$d.dict}

fuzz-build:
	$(FUZZ) build $(FUZZ_FLAGS)

## Every target for FUZZ_SECONDS (default 600) each, one after the other.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do ( $(call FUZZ_RUN,$(FUZZ_SECONDS)) -print_final_stats=1 ) || exit 1; done

## CI: build every target and run each for FUZZ_CI_SECONDS; a crash fails (its input is saved in
## fuzz/artifacts/<target>/).
fuzz-ci: fuzz-build
	@mkdir -p target/fuzz-corpus; for t in $(FUZZ_TARGETS); do log=$(CURDIR)/target/fuzz-corpus/$$t.log; \
		if ! ( $(call FUZZ_RUN,$(FUZZ_CI_SECONDS)) ) >$$log 2>&1; then \
			tail -n 60 $$log; echo "fuzz target $$t failed (input in fuzz/artifacts/$$t)"; exit 1; fi; \
		echo "$$t: $$(grep -o '#[0-9]*.*DONE.*' $$log | tail -n 1)"; done
