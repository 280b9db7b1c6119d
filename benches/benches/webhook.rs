//! The webhook's work per review without the network: parse the body, decide against a
//! catalog of 10,000 ServiceEntries, build the response.
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use admission_webhook::catalog::Catalog;
use admission_webhook::review;
use criterion::{criterion_group, criterion_main, Criterion};
use fake_apiserver::admission::{review as api_server_review, Operation};
use policy::Options;
use std::hint::black_box;

fn review_against_10k(c: &mut Criterion) {
    let catalog = Catalog::new(Options::default());
    catalog.replace_all(&benches::entries(10_000));
    let fresh = serde_json::to_value(benches::entry(20_000)).unwrap_or_default();
    let mut duplicate = fresh.clone();
    duplicate["spec"]["addresses"] = serde_json::json!(["127.255.0.43"]);
    for (name, object) in [("allowed", fresh), ("denied duplicate", duplicate)] {
        let body = api_server_review(
            "admission.k8s.io/v1",
            "bench",
            Operation::Create,
            Some(&object),
            None,
            true,
        )
        .to_string();
        c.bench_function(&format!("review against 10k ({name})"), |b| {
            b.iter(|| {
                let (api_version, request) = match review::parse(black_box(body.as_bytes())) {
                    Ok(parsed) => parsed,
                    Err(e) => unreachable!("{e}"),
                };
                let decision = catalog.decide(&request);
                review::respond(&api_version, &request.uid, &decision.verdict)
            })
        });
    }
}

criterion_group!(benches, review_against_10k);
criterion_main!(benches);
