//! Builds the address index for N synthetic entries (default 100,000), for profiling with
//! `valgrind --tool=callgrind`.
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
        .unwrap_or(100_000);
    let entries = benches::entries(n);
    let start = std::time::Instant::now();
    let index = policy::AddressIndex::build(&entries);
    println!("{} blocks in {:?}", index.len(), start.elapsed());
}
