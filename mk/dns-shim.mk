# dns-shim: dig, dnsperf, unbound and dnsmasq for its integration tests and benchmark, and
# iproute2 for the network-namespace test. The tests run in `cargo test --workspace`.
SETUP_TARGETS += setup-dns

.PHONY: setup-dns bench-dns

setup-dns:
	@scripts/ensure-apt bind9-dnsutils dnsperf unbound dnsmasq-base iproute2

bench-dns: setup
	benches/dns/run.sh
