//! Prints N synthetic `.global` ServiceEntries (default 10,000) as one `kind: List` JSON
//! document, for load tests of the servers.
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": benches::entries(n),
    });
    println!("{list}");
}
