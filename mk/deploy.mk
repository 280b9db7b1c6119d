# deploy/: the kustomize manifests. Rendered with a pinned kubectl and checked against the
# Kubernetes API schemas (strict: unknown fields fail) of the oldest version the manifests
# need (1.29, for native sidecars) and the newest the validator knows. Istio's kinds
# (WasmPlugin, EnvoyFilter) have no schema there; wasm-filter/tests/deploy.rs checks them.
SETUP_TARGETS += setup-deploy
TEST_TARGETS += test-deploy
# The Rust tests that render deploy/ use this kubectl.
export KUBECTL := $(TOOLS)/deploy/bin/kubectl

.PHONY: setup-deploy test-deploy
setup-deploy:
	@scripts/ensure-deploy-tools

test-deploy: setup-deploy
	@mkdir -p $(ROOT)/target/deploy
	$(KUBECTL) kustomize $(ROOT)/deploy > $(ROOT)/target/deploy/rendered.yaml
	$(TOOLS)/deploy/bin/kubernetes-validate --strict --quiet --no-warn -k 1.29.0 $(ROOT)/target/deploy/rendered.yaml
	$(TOOLS)/deploy/bin/kubernetes-validate --strict --quiet --no-warn -k 1.37.0 $(ROOT)/target/deploy/rendered.yaml
	@echo "deploy/: rendered and valid against Kubernetes 1.29 and 1.37"
