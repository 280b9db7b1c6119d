//! Regression tests: the entries that once made the webhook's reply 93 MiB or held it for 52 s
//! now cost a bounded report, read through the real path (text → parse → every rule).
//!
//! Each case is held to stated bounds on what it produces: the number of findings and the
//! bytes of their messages. Time is left to the benchmark (benches/benches/policy.rs, "worst
//! entries"), except for a hang guard far above any linear cost.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use policy::finding::MAX_FINDINGS;
use policy::rules::istio;
use policy::{check_objects, parse_str, AddressIndex, Finding, Findings, Options, ServiceEntry};
use serde_json::{json, Value};

/// A report may hold [`MAX_FINDINGS`] findings and the count of the rest.
const MAX_REPORTED: usize = MAX_FINDINGS + 1;
/// Bytes of all messages and paths of one entry's report.
const MAX_REPORT_BYTES: usize = 64 * 1024;
/// Far above what any of these costs when each rule is O(n log n) (milliseconds); a
/// quadratic rule took 52 s.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn entry(spec: Value) -> String {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "worst", "namespace": "foo"},
        "spec": spec
    })
    .to_string()
}

/// Parses and checks `text` on a thread, within the hang guard.
fn check_text(text: String) -> Vec<Finding> {
    run_guarded(move || {
        let parsed = parse_str(&text).expect("the text parses");
        assert_eq!(parsed.len(), 1);
        let checked = check_objects(parsed.iter().map(|p| &p.entry), [], &Options::default());
        checked.into_iter().flat_map(|c| c.findings).collect()
    })
}

fn run_guarded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(work());
    });
    result
        .recv_timeout(HANG_GUARD)
        .expect("the check finished within the hang guard")
}

fn assert_bounded(findings: &[Finding], what: &str) {
    assert!(!findings.is_empty(), "{what}: expected findings");
    assert!(
        findings.len() <= MAX_REPORTED,
        "{what}: {} findings",
        findings.len()
    );
    let bytes: usize = findings
        .iter()
        .map(|f| f.message.len() + f.path.len())
        .sum();
    assert!(
        bytes <= MAX_REPORT_BYTES,
        "{what}: {bytes} bytes of findings"
    );
}

fn ports(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"name": format!("p{i}"), "number": i % 65535 + 1, "protocol": "HTTP"}))
        .collect()
}

#[test]
fn four_thousand_ports_and_4096_endpoints_naming_undeclared_ports() {
    // 292 KB that made a 93 MiB denial: each endpoint's message listed every declared port.
    let endpoints: Vec<Value> = (0..4096)
        .map(|i| json!({"address": "198.18.2.1", "ports": {format!("undeclared{i}"): 15443}}))
        .collect();
    let text = entry(json!({
        "hosts": ["worst.foo.global"],
        "addresses": ["127.255.0.9"],
        "location": "MESH_INTERNAL",
        "resolution": "DNS",
        "ports": ports(4000),
        "endpoints": endpoints,
    }));
    let findings = check_text(text.clone());
    assert_bounded(&findings, "4000 ports x 4096 endpoints");
    // The API server refuses it (256 ports at most) before any webhook would see it.
    assert!(findings
        .iter()
        .any(|f| f.path == "spec.ports" && f.message.contains("Too many: 4000")));

    // Istio's rules alone, as if the API server had let it through, are bounded too.
    let se: ServiceEntry = serde_json::from_str(&text).unwrap();
    let found = run_guarded(move || {
        let mut out = Findings::new();
        istio::validate(&se, &mut out);
        out.into_vec()
    });
    assert_bounded(&found, "Istio's rules on 4000 x 4096");
    // Each message names a handful of the declared ports.
    let undeclared = found
        .iter()
        .find(|f| f.path == "spec.endpoints[0].ports.undeclared0")
        .expect("the undeclared port is reported");
    assert!(
        undeclared
            .message
            .contains("p0, p1, p10, p100, p1000 and 3995 more"),
        "{}",
        undeclared.message
    );
    let omitted = found.last().unwrap();
    assert!(
        omitted.message.contains("more findings not shown"),
        "{omitted}"
    );
}

#[test]
fn one_hundred_thousand_addresses() {
    // Each address was compared with every earlier one: 52 s of CPU.
    let addresses: Vec<String> = (0..100_000u32)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let text = entry(json!({
        "hosts": ["worst.foo.global"],
        "addresses": addresses,
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "ports": [{"name": "http1", "number": 8000, "protocol": "HTTP"}],
        "endpoints": [{"address": "198.18.2.1", "ports": {"http1": 15443}}],
    }));
    let findings = check_text(text.clone());
    assert_bounded(&findings, "100,000 addresses");

    // The address check on its own, against an index holding every one of them.
    let se: ServiceEntry = serde_json::from_str(&text).unwrap();
    let found = run_guarded(move || {
        let mut other = se.clone();
        other.metadata.name = Some("other".into());
        let index = AddressIndex::build([&other]);
        policy::check_addresses(&se, &index, &Options::default())
    });
    assert_bounded(&found, "100,000 addresses against an index of 100,000");
}

#[test]
fn one_hundred_thousand_hosts() {
    let hosts: Vec<String> = (0..100_000).map(|i| format!("h{i}.foo.global")).collect();
    let text = entry(json!({
        "hosts": hosts,
        "addresses": ["127.255.0.9"],
        "resolution": "DNS",
        "ports": [{"name": "tcp", "number": 9000, "protocol": "TCP"}],
    }));
    let findings = check_text(text.clone());
    assert_bounded(&findings, "100,000 hosts");
    let se: ServiceEntry = serde_json::from_str(&text).unwrap();
    let found = run_guarded(move || {
        let mut out = Findings::new();
        istio::validate(&se, &mut out);
        out.into_vec()
    });
    assert_bounded(&found, "Istio's rules on 100,000 hosts");
}

#[test]
fn one_hundred_thousand_ports() {
    let text = entry(json!({
        "hosts": ["worst.foo.global"],
        "addresses": ["127.255.0.9"],
        "resolution": "DNS",
        "ports": ports(100_000),
        "endpoints": [{"address": "198.18.2.1", "ports": {"nope": 15443}}],
    }));
    let findings = check_text(text.clone());
    assert_bounded(&findings, "100,000 ports");
    let se: ServiceEntry = serde_json::from_str(&text).unwrap();
    let found = run_guarded(move || {
        let mut out = Findings::new();
        istio::validate(&se, &mut out);
        out.into_vec()
    });
    assert_bounded(&found, "Istio's rules on 100,000 ports");
}

#[test]
fn one_label_key_of_a_megabyte() {
    let key = "k".repeat(1 << 20);
    let text = entry(json!({
        "hosts": ["worst.foo.global"],
        "addresses": ["127.255.0.9"],
        "resolution": "DNS",
        "ports": [{"name": "http1", "number": 8000, "protocol": "HTTP"}],
        "endpoints": [{"address": "198.18.2.1", "ports": {"http1": 15443}, "labels": {key: "v"}}],
    }));
    let findings = check_text(text);
    assert_bounded(&findings, "a 1 MiB label key");
}
