//! Prints global_guard's plugin configuration in the table form for N hosts, as
//! globalmesh-controller writes it (`policy::table`): `cargo run --release -p wasm-filter
//! --example table_config -- <N>`. The hosts are those of benches/filter/envoy_config.py
//! (`svc-<i>.ns-<i % 50>.global`, port 8000, cluster label `cluster-<i % 3>`), so that the Lua
//! filter there checks the same table.

use policy::model::ServiceEntry;
use policy::table::Table;
use policy::Options;
use serde_json::json;

fn main() {
    let Some(count) = std::env::args()
        .nth(1)
        .and_then(|n| n.parse::<usize>().ok())
    else {
        eprintln!("table_config: usage: table_config <number of hosts>");
        std::process::exit(2);
    };
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let entry = json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "ServiceEntry",
            "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 50)},
            "spec": {
                "hosts": [format!("svc-{i}.ns-{}.global", i % 50)],
                "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
                "resolution": "DNS",
                "endpoints": [{
                    "address": format!("198.18.{}.1", i % 200),
                    "labels": {"cluster": format!("cluster-{}", i % 3)},
                    "ports": {"http1": 15443}
                }]
            }
        });
        match serde_json::from_value::<ServiceEntry>(entry) {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                eprintln!("table_config: entry {i}: {e}");
                std::process::exit(1);
            }
        }
    }
    let table = Table::build(&entries, &Options::default());
    println!("{}", json!({ "table": table }));
}
