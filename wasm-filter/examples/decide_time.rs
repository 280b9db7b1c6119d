//! Times the per-request decision natively, without Envoy: `cargo run --release -p wasm-filter
//! --example decide_time`; a table of 1,000 hosts, an allowed authority, best of 5 batches.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;

fn main() {
    let entries: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            json!({
                "apiVersion": "networking.istio.io/v1alpha3",
                "kind": "ServiceEntry",
                "metadata": {"name": format!("svc-{i}"), "namespace": "ns"},
                "spec": {
                    "hosts": [format!("svc-{i}.ns-{}.global", i % 50)],
                    "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
                    "resolution": "DNS",
                    "endpoints": [{"address": "198.18.0.1", "labels": {"cluster": "c1"}, "ports": {"http1": 15443}}]
                }
            })
        })
        .collect();
    let text = json!({ "service_entries": entries }).to_string();
    let config = match global_guard::config::parse(text.as_bytes()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("decide_time: {e}");
            std::process::exit(1);
        }
    };
    const N: u32 = 1_000_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..N {
            let decision = config.table.decide_with(
                black_box("svc-500.ns-0.global:8000"),
                || None,
                || None::<&str>,
            );
            black_box(decision);
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e9 / f64::from(N));
    }
    println!("decide: {best:.0} ns per allowed request (1,000 hosts, best of 5 x {N})");
}
