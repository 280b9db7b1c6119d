//! globalmesh-controller's lag: from a ServiceEntry written to the API server to the WasmPlugin
//! holding a table with it, with N entries already in the cluster (default 10,000), over M
//! single changes (default 100) spaced apart so that each is written on its own; then one burst
//! of B creates (default 1,000): the writes it took and the time to the last one.
//!
//! The API server is the in-process stand-in; the controller is the release binary (one
//! replica, with its Lease). Run from the repository root after
//! `cargo build --release -p controller`:
//! `cargo run --release -p benches --example controller_lag -- 10000 100 1000`
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::{service_entry, FakeApiServer, WASM_PLUGINS};
use serde_json::{json, Value};

fn address(i: usize) -> String {
    format!("127.{}.{}.{}", 200 + i / 65_536, (i / 256) % 256, i % 256)
}

fn plugin_hosts(api: &FakeApiServer) -> (usize, Value) {
    let plugin = api
        .objects(WASM_PLUGINS)
        .remove(&("istio-system".to_string(), "global-guard".to_string()))
        .unwrap();
    let hosts = plugin["spec"]["pluginConfig"]["table"]["hosts"].clone();
    (hosts.as_array().map_or(0, Vec::len), hosts)
}

fn holds(hosts: &Value, host: &str) -> bool {
    hosts
        .as_array()
        .is_some_and(|list| list.iter().any(|h| h["host"] == host))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("counts"))
        .collect();
    let preloaded = args.first().copied().unwrap_or(10_000);
    let changes = args.get(1).copied().unwrap_or(100);
    let burst = args.get(2).copied().unwrap_or(1_000);
    let binary = std::env::current_dir()
        .unwrap()
        .join("target/release/globalmesh-controller");
    assert!(
        binary.is_file(),
        "{} missing: cargo build --release -p controller",
        binary.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = runtime.block_on(FakeApiServer::start());
    api.preload((0..preloaded).map(|i| {
        service_entry(
            &format!("ns{}", i % 100),
            &format!("svc{i}"),
            &format!("svc{i}.ns{}.global", i % 100),
            &address(i),
        )
    }));
    api.put(
        WASM_PLUGINS,
        json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "global-guard", "namespace": "istio-system"},
               "spec": {"url": "file:///var/local/wasm/global_guard.wasm", "pluginConfig": {}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let mut child = Command::new(&binary)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--lease-namespace", "globalmesh", "--identity", "bench"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while plugin_hosts(&api).0 < preloaded {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no first table"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "first table of {preloaded} entries written {:.2} s after start",
        started.elapsed().as_secs_f64()
    );

    let patches = |api: &FakeApiServer| {
        api.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count()
    };
    let mut lags = Vec::with_capacity(changes);
    for i in 0..changes {
        let host = format!("lag{i}.bench.global");
        let object = service_entry("bench", &format!("lag{i}"), &host, &address(preloaded + i));
        let written = Instant::now();
        api.create(object);
        loop {
            if holds(&plugin_hosts(&api).1, &host) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(30),
                "{host} never written"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        lags.push(written.elapsed().as_secs_f64() * 1000.0);
        // Past the debounce and the source's batching: the next change is a burst of its own.
        std::thread::sleep(Duration::from_millis(700));
    }
    lags.sort_by(f64::total_cmp);
    println!(
        "lag over {changes} single changes with {preloaded} entries: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&lags, 0.5),
        percentile(&lags, 0.9),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0.0)
    );

    let before = patches(&api);
    let first = Instant::now();
    let last_host = format!("burst{}.bench.global", burst - 1);
    for i in 0..burst {
        api.create(service_entry(
            "burst",
            &format!("burst{i}"),
            &format!("burst{i}.bench.global"),
            &address(preloaded + changes + i),
        ));
    }
    let created = first.elapsed();
    while !holds(&plugin_hosts(&api).1, &last_host) {
        assert!(
            first.elapsed() < Duration::from_secs(60),
            "burst never written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "burst of {burst} creates over {:.2} s: {} writes, the last {:.2} s after the first create",
        created.as_secs_f64(),
        patches(&api) - before,
        first.elapsed().as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}
