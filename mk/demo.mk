# The seed scenario end to end (demo/): two clusters in network namespaces.
SETUP_TARGETS += setup-demo

.PHONY: setup-demo
setup-demo:
	@scripts/ensure-apt iproute2 iptables curl bind9-dnsutils util-linux
	@scripts/ensure-httpbin

# The demo's live step runs globalmesh-controller (it writes the sidecar's ECDS file).
.PHONY: build-demo-controller
demo: build-demo-controller
build-demo-controller:
	$(CARGO) build --quiet -p controller --bin globalmesh-controller
