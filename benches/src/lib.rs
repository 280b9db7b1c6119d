//! Generators of realistic ServiceEntry sets for benchmarks.
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use policy::ServiceEntry;

/// The `i`-th synthetic `.global` entry: a unique host and a unique VIP, spread over the
/// default VIP ranges as a large cluster's would be.
pub fn entry(i: usize) -> ServiceEntry {
    let ranges = [[127u8, 255], [240, 0], [240, 240]];
    let block = (i / 65_000) % ranges.len();
    let offset = i % 65_000 + 1;
    let [a, b] = ranges[block];
    let address = format!("{a}.{b}.{}.{}", offset / 256, offset % 256);
    let value = serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": format!("svc-{i}"), "namespace": "foo"},
        "spec": {
            "hosts": [format!("svc-{i}.bar.global")],
            "location": "MESH_INTERNAL",
            "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
            "resolution": "DNS",
            "addresses": [address],
            "endpoints": [{"address": "198.18.2.1", "ports": {"http1": 15443}}]
        }
    });
    match serde_json::from_value(value) {
        Ok(se) => se,
        Err(e) => unreachable!("synthetic entry {i} does not decode: {e}"),
    }
}

/// `n` synthetic entries with distinct addresses.
pub fn entries(n: usize) -> Vec<ServiceEntry> {
    (0..n).map(entry).collect()
}

/// `n` synthetic entries in a fixed pseudo-random order, as a cluster whose VIPs were chosen
/// by hand would list them.
pub fn shuffled_entries(n: usize) -> Vec<ServiceEntry> {
    let mut entries = entries(n);
    // A fixed linear congruential sequence keeps runs comparable.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..entries.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from(state >> 33).unwrap_or(0) % (i + 1);
        entries.swap(i, j);
    }
    entries
}
