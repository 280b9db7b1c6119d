//! The compact table (policy::table) for N synthetic `.global` entries, each with one port and
//! its endpoint labelled `cluster: cluster2` as the seed's versioned entry: its JSON size, the
//! bytes per entry, the pluginConfig of the WasmPlugin that carries it against etcd's 1.5 MiB
//! object limit, and the native time to build it, write it, and read it back into the
//! filter's decision table (what global_guard's on_configure does, without Envoy).
//!
//! `cargo run --release -p benches --example table_size -- 1000 10000 100000`
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use policy::options::Options;
use policy::table::Table;

/// etcd's default request limit, which the API server applies to every object.
const ETCD_LIMIT: usize = 1_572_864;

/// The median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number of entries"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    let options = Options::default();
    println!("| entries | table JSON | bytes per entry | under etcd's 1.5 MiB | build | write | read + check hash + decision table |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let mut entries = benches::entries(n);
        for entry in &mut entries {
            for endpoint in entry.spec.endpoint_list.iter_mut().flatten() {
                endpoint
                    .labels
                    .insert("cluster".to_string(), "cluster2".to_string());
            }
        }
        let table = Table::build(&entries, &options);
        assert_eq!(table.hosts.len(), n);
        let text = serde_json::to_string(&table).unwrap();
        let runs = if n >= 100_000 { 5 } else { 11 };
        let build = median(runs, || {
            std::hint::black_box(Table::build(&entries, &options));
        });
        let write = median(runs, || {
            std::hint::black_box(serde_json::to_string(&table).unwrap());
        });
        let read = median(runs, || {
            let read: Table = serde_json::from_str(&text).unwrap();
            std::hint::black_box(read.into_guard().unwrap());
        });
        // The WasmPlugin around it (pluginConfig.table plus its metadata and spec) adds well
        // under a kilobyte.
        println!(
            "| {n} | {} bytes | {:.1} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            text.len(),
            text.len() as f64 / n as f64,
            if text.len() + 1024 < ETCD_LIMIT {
                "yes"
            } else {
                "no"
            },
            build.as_secs_f64() * 1e3,
            write.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
        );
    }
}
