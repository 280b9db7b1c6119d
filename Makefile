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

# The seed scenario: two clusters in network namespaces (needs root), each hop printed.
demo: setup build-filter
	$(CARGO) build --quiet -p dns-shim -p admission-webhook -p demo
	$(ROOT)/target/debug/demo

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

# Tests that need root (network namespaces) are #[ignore = "needs root: ..."]; as root, as in
# CI, they run too.
test-rust:
	$(CARGO) test --workspace $(if $(filter 0,$(shell id -u)),-- --include-ignored)

bench: setup
	$(CARGO) bench -p benches

clean:
	$(CARGO) clean
