# dns-shim: dig and kdig (bind9-dnsutils, knot-dnsutils), dnsperf, unbound and dnsmasq for its
# integration tests and benchmark, valgrind for the benchmark's instruction counts, and
# iproute2 for the network-namespace test. The tests run in `cargo test --workspace`.
SETUP_TARGETS += setup-dns

.PHONY: setup-dns bench-dns

setup-dns:
	@scripts/ensure-apt bind9-dnsutils knot-dnsutils dnsperf unbound dnsmasq-base iproute2 valgrind

bench-dns: setup
	benches/dns/run.sh
