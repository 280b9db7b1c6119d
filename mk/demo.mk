# The seed scenario end to end (demo/): two clusters in network namespaces.
SETUP_TARGETS += setup-demo

.PHONY: setup-demo
setup-demo:
	@scripts/ensure-apt iproute2 iptables curl bind9-dnsutils util-linux
	@scripts/ensure-httpbin
