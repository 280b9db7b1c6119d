//! Hot paths of the policy core: validating one entry, building the address index, and
//! checking one entry against a cluster of 100,000.
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use policy::{check_entry, parse_str, validate, AddressIndex, Cluster, Options};

const SEED: &str = include_str!("../../tests/data/seed/serviceentry-direct.yaml");

fn seed() -> policy::ServiceEntry {
    match parse_str(SEED)
        .ok()
        .and_then(|mut p| p.pop())
        .map(|p| p.entry)
    {
        Some(Ok(se)) => se,
        _ => unreachable!("the seed ServiceEntry parses"),
    }
}

fn validate_one(c: &mut Criterion) {
    let se = seed();
    let options = Options::default();
    c.bench_function("validate one ServiceEntry", |b| {
        b.iter(|| validate(black_box(&se), &options))
    });
    c.bench_function("parse and validate one ServiceEntry (YAML)", |b| {
        b.iter(|| {
            let parsed = parse_str(black_box(SEED)).unwrap_or_default();
            parsed
                .iter()
                .filter_map(|p| p.entry.as_ref().ok())
                .map(|se| validate(se, &options).len())
                .sum::<usize>()
        })
    });
}

fn build_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("build index");
    group.sample_size(20);
    for n in [10_000, 100_000] {
        let entries = benches::entries(n);
        group.bench_function(format!("{n} entries"), |b| {
            b.iter(|| AddressIndex::build(black_box(&entries)))
        });
    }
    let shuffled = benches::shuffled_entries(100_000);
    group.bench_function("100000 entries, shuffled", |b| {
        b.iter(|| AddressIndex::build(black_box(&shuffled)))
    });
    group.finish();
}

fn check_against_cluster(c: &mut Criterion) {
    let entries = benches::entries(100_000);
    let options = Options::default();
    let cluster = Cluster::build(&entries, &options);
    let index = cluster.addresses.clone();
    let fresh = benches::entry(150_000);
    let mut duplicate = benches::entry(150_001);
    duplicate.spec.addresses = entries[42].spec.addresses.clone();
    c.bench_function("check one entry against 100k (free address)", |b| {
        b.iter(|| check_entry(black_box(&fresh), &cluster, &options))
    });
    c.bench_function(
        "check one entry against 100k (duplicate, with suggestion)",
        |b| b.iter(|| check_entry(black_box(&duplicate), &cluster, &options)),
    );
    let mut group = c.benchmark_group("index update");
    group.bench_function("replace one owner in 100k", |b| {
        b.iter_batched(
            || index.clone(),
            |mut index| {
                index.insert_entry(&fresh);
                index
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, validate_one, build_index, check_against_cluster);
criterion_main!(benches);
