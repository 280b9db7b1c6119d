# policy-js: the policy core compiled with wasm-bindgen, as a Node package (dist/js/) and the
# ServiceEntry checker page (dist/web/); `make js` builds both, `test-js` runs the Node tests
# (same verdicts as `admission-webhook check`) and the browser test in headless Chromium.

# The CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' $(ROOT)/Cargo.lock)
WASM_BINDGEN := $(TOOLS)/wasm-bindgen/bin/wasm-bindgen
POLICY_WASM := $(ROOT)/target/wasm32-unknown-unknown/release/policy_js.wasm
JS_DIST := $(ROOT)/dist/js
WEB_DIST := $(ROOT)/dist/web
JS_TESTS := $(ROOT)/policy-js/tests/js

# Not in SETUP_TARGETS: only `js` and `test-js` need them, and they name them directly.
TEST_TARGETS += test-js

.PHONY: js js-serve setup-wasm-bindgen setup-browser test-js

setup-wasm-bindgen:
	@if [ "$$($(WASM_BINDGEN) --version 2>/dev/null)" != "wasm-bindgen $(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) into $(TOOLS)/wasm-bindgen"; \
	  $(CARGO) install --quiet --force --root $(TOOLS)/wasm-bindgen wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

# Debian's chromium and playwright-core from the lock file; npm ci only when the lock changed.
setup-browser:
	@scripts/ensure-apt chromium
	@if ! cmp -s $(JS_TESTS)/package-lock.json $(JS_TESTS)/node_modules/.installed-lock.json; then \
	  (cd $(JS_TESTS) && npm ci --no-audit --no-fund --loglevel=error) && \
	  cp $(JS_TESTS)/package-lock.json $(JS_TESTS)/node_modules/.installed-lock.json; \
	fi

js: setup-rust setup-wasm-bindgen
	$(CARGO) build --quiet -p policy-js --release --target wasm32-unknown-unknown
	rm -rf $(JS_DIST) $(WEB_DIST)
	$(WASM_BINDGEN) --target nodejs --out-dir $(JS_DIST) $(POLICY_WASM)
	cp $(ROOT)/policy-js/pkg/package.json $(JS_DIST)/
	$(WASM_BINDGEN) --target web --no-typescript --out-dir $(WEB_DIST) $(POLICY_WASM)
	cp $(ROOT)/policy-js/web/index.html $(ROOT)/policy-js/web/style.css $(ROOT)/policy-js/web/app.js $(WEB_DIST)/
	cp $(SEED)/serviceentry-direct.yaml $(WEB_DIST)/example.yaml
	@echo "built $(JS_DIST) (Node package) and $(WEB_DIST) (checker page)"

# Serves the page on http://127.0.0.1:8080/.
js-serve: js
	node $(ROOT)/policy-js/serve.mjs $(WEB_DIST) 8080

test-js: js setup-browser
	$(CARGO) build --quiet -p admission-webhook
	cd $(JS_TESTS) && ADMISSION_WEBHOOK=$(ROOT)/target/debug/admission-webhook \
	  node --test --test-reporter=spec --test-reporter-destination=stdout
