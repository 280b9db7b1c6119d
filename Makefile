# globalmesh: `make demo` runs the main job, `make test` runs every test.
# Each component adds its set-up and test steps in mk/<component>.mk.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
TOOLS := $(ROOT)/.tools
SEED := $(ROOT)/tests/data/seed

# Lists that mk/*.mk fragments append to.
SETUP_TARGETS := setup-rust
TEST_TARGETS := test-fmt test-clippy test-wasm-targets test-rust

include $(wildcard mk/*.mk)

.PHONY: demo test setup setup-rust test-fmt test-clippy test-wasm-targets test-rust bench clean

demo: setup
	$(CARGO) build --quiet -p admission-webhook
	@echo "== admission-webhook check over the seed's ServiceEntries"
	$(ROOT)/target/debug/admission-webhook check $(SEED)
	@echo
	@echo "== a ServiceEntry that reuses the seed's VIP and points at port 8000"
	$(ROOT)/target/debug/admission-webhook check --existing $(SEED)/serviceentry-direct.yaml $(ROOT)/tests/data/bad/duplicate-and-wrong-port.yaml || test $$? -eq 1

test: setup
	@$(MAKE) --no-print-directory $(TEST_TARGETS)

setup: $(SETUP_TARGETS)

setup-rust:
	@scripts/ensure-rust

test-fmt:
	$(CARGO) fmt --all -- --check

test-clippy:
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

# The policy core builds for the Envoy filter's and the browser's targets.
test-wasm-targets:
	$(CARGO) build --quiet -p policy --no-default-features --target wasm32-wasip1
	$(CARGO) build --quiet -p policy --target wasm32-unknown-unknown

test-rust:
	$(CARGO) test --workspace

bench: setup
	$(CARGO) bench -p benches

clean:
	$(CARGO) clean
