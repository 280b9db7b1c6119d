//! The seed scenario end to end, with assertions on every hop: it fails if a request reaches
//! httpbin without passing dns-shim, the sidecar's capture and filter, the gateway on 15443 and
//! httpbin's mutual-TLS sidecar. Needs root (network namespaces); CI runs as root.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use demo::host::{self, run_in, Host};
use demo::scenario::{Programs, Scenario, CLUSTER1, CLUSTER2, CLUSTER2_GW_ADDR, VIP};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn count(stats: &BTreeMap<String, u64>, name: &str) -> u64 {
    stats.get(name).copied().unwrap_or(0)
}

/// Bytes the ingress gateway received for httpbin's SNI: connections to it are reused, bytes
/// are not.
const INGRESS_RX: &str =
    "tcp.outbound_.8000_._.httpbin.bar.svc.cluster.local.downstream_cx_rx_bytes_total";
const EGRESS_RX: &str =
    "tcp.outbound_.8000_._.httpbin.bar.svc.cluster.local.downstream_cx_rx_bytes_total";
const INBOUND_RQ: &str = "http.inbound.downstream_rq_completed";
const GUARD_ALLOWED: &str = "wasmcustom.global_guard_allowed";

struct Counters {
    ingress: u64,
    inbound: u64,
    allowed: u64,
}

fn counters(s: &Scenario) -> Counters {
    Counters {
        ingress: count(
            &s.gateway_stats("downstream_cx_rx_bytes_total").unwrap(),
            INGRESS_RX,
        ),
        inbound: count(
            &s.server_sidecar_stats("downstream_rq_completed").unwrap(),
            INBOUND_RQ,
        ),
        allowed: count(&s.sidecar_stats("global_guard").unwrap(), GUARD_ALLOWED),
    }
}

/// Sends one request and checks it went through every hop exactly once.
fn assert_every_hop(s: &Scenario, args: &[&str]) -> Value {
    let before = counters(s);
    let exchange = s.curl(args).unwrap();
    assert_eq!(exchange.status, 200, "{exchange:?}");
    let after = counters(s);
    assert_eq!(
        after.allowed,
        before.allowed + 1,
        "the request did not pass global_guard in the sidecar"
    );
    assert!(
        after.ingress > before.ingress,
        "the request did not pass cluster2's gateway on 15443"
    );
    assert_eq!(
        after.inbound,
        before.inbound + 1,
        "the request did not pass httpbin's sidecar"
    );
    let body: Value = serde_json::from_str(&exchange.body).unwrap();
    let xfcc = body["headers"]["X-Forwarded-Client-Cert"]
        .as_str()
        .unwrap_or("");
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/foo/sa/sleep"),
        "httpbin's sidecar did not see sleep's mesh identity: {xfcc:?}"
    );
    body
}

/// A ServiceEntry created while everything runs is answered by dns-shim and allowed by the
/// sidecar's global_guard (its table from globalmesh-controller, by ECDS) within 2 s; deleted,
/// both refuse it again within 2 s. Nothing is restarted.
fn live_service_entry_is_followed_without_a_restart(s: &mut Scenario) {
    let processes = s.host.processes();
    let url = "live.bar.global:8000/headers";
    // After the deletion DNS no longer answers; a client that kept the address still tries.
    let cached = ["--resolve", "live.bar.global:8000:127.255.0.9", url];
    let refused = s.curl(&cached).unwrap();
    assert_eq!(refused.header("x-global-guard"), Some("unknown-host"));

    let mut entry = s.seed_copy("live-bar", "live.bar.global").unwrap();
    entry["spec"]["addresses"] = json!(["127.255.0.9"]);
    let written = Instant::now();
    let admission = s.create("live-bar.json", &entry).unwrap();
    assert!(admission.allowed, "{}", admission.message);
    let (_, answer) = s
        .until_dns(written, "live.bar.global", "NOERROR")
        .expect("dns-shim did not answer live.bar.global within 2 s");
    assert_eq!(answer.addresses, vec!["127.255.0.9".to_string()]);
    let (_, (exchange, before, after)) = s
        .until_allowed(written, &[url])
        .expect("global_guard did not allow live.bar.global within 2 s");
    assert!(after > before, "the allowed counter did not rise");
    assert_eq!(exchange.header("x-global-guard"), None, "{exchange:?}");
    assert_eq!(
        s.ecds_version().unwrap(),
        s.sidecar_ecds_version().unwrap(),
        "the sidecar does not run the table in the ECDS file"
    );

    let deleted = Instant::now();
    assert!(s.delete("live-bar.json").unwrap().allowed);
    s.until_dns(deleted, "live.bar.global", "NXDOMAIN")
        .expect("dns-shim still answered live.bar.global 2 s after its deletion");
    let (_, refused) = s
        .until_refused(deleted, &cached, "unknown-host")
        .expect("global_guard still allowed live.bar.global 2 s after its deletion");
    assert_eq!(refused.status, 404);
    assert_eq!(
        s.host.processes(),
        processes,
        "a process was restarted during the live step"
    );
}

// `make test` runs it with --include-ignored when it runs as root, as CI does.
#[test]
#[ignore = "needs root: network namespaces"]
fn seed_scenario_end_to_end() {
    let host = Host::default();
    {
        let mut s = Scenario::up(host.clone(), Programs::from_root(&root())).unwrap();

        // The ServiceEntry is admitted by the webhook before anything uses it.
        let admission = s.apply("serviceentry-direct.yaml").unwrap();
        assert!(admission.allowed, "{}", admission.message);

        // DNS: dns-shim answers the VIP, also through glibc's search list with ndots:5.
        assert!(s.dig("httpbin.bar.global").unwrap().contains(VIP));
        let resolved = s.resolve("httpbin.bar.global").unwrap();
        assert!(resolved.starts_with(&format!("{VIP} ")), "{resolved}");

        // The seed's verification.
        let verify = s.verify().unwrap();
        assert_eq!(verify.status_line, "HTTP/1.1 200 OK");
        assert_every_hop(&s, &["httpbin.bar.global:8000/headers"]);

        // No way around the gateway: httpbin listens on cluster2's loopback only, and the
        // gateway passes nothing but TLS with a known SNI.
        for port in [8000, 15443] {
            let url = format!("http://{CLUSTER2_GW_ADDR}:{port}/get");
            let plain = run_in(CLUSTER1, "curl", &["-sS", "--max-time", "5", &url]);
            assert!(
                plain.is_err(),
                "{url} answered plain HTTP from cluster1: {plain:?}"
            );
        }
        // Only the mesh's certificates get through httpbin's sidecar.
        let before = count(
            &s.server_sidecar_stats("downstream_rq_completed").unwrap(),
            INBOUND_RQ,
        );
        assert!(
            s.foreign_client().is_err(),
            "a certificate from another CA was accepted"
        );
        assert_eq!(
            count(
                &s.server_sidecar_stats("downstream_rq_completed").unwrap(),
                INBOUND_RQ
            ),
            before
        );

        // Egress variant: the sidecar sends to cluster1's egress gateway, which passes the
        // connection on to cluster2's gateway.
        assert!(s.apply("serviceentry-egress.yaml").unwrap().allowed);
        let egress_before = count(
            &s.egress_stats("downstream_cx_rx_bytes_total").unwrap(),
            EGRESS_RX,
        );
        assert_every_hop(&s, &["httpbin.bar.global:8000/headers"]);
        assert!(
            count(
                &s.egress_stats("downstream_cx_rx_bytes_total").unwrap(),
                EGRESS_RX
            ) > egress_before,
            "the request did not leave through the egress gateway"
        );

        // Version-aware routing: the filter keeps a valid subset, fills in the only one, and
        // rejects one that does not exist.
        assert!(s.apply("serviceentry-versioned.yaml").unwrap().allowed);
        let body = assert_every_hop(
            &s,
            &[
                "-H",
                "x-global-cluster: cluster2",
                "httpbin.bar.global:8000/headers",
            ],
        );
        assert_eq!(body["headers"]["X-Global-Cluster"], "cluster2");
        let body = assert_every_hop(&s, &["httpbin.bar.global:8000/headers"]);
        assert_eq!(
            body["headers"]["X-Global-Cluster"], "cluster2",
            "global_guard did not set the only subset"
        );
        let wrong = s
            .curl(&[
                "-H",
                "x-global-cluster: cluster9",
                "httpbin.bar.global:8000/headers",
            ])
            .unwrap();
        assert_eq!(wrong.status, 404);
        assert_eq!(wrong.header("x-global-guard"), Some("unknown-cluster"));

        // An unknown .global host gets the filter's 404, not an opaque 503.
        let unknown = s
            .curl(&[
                "-H",
                "Host: httpbin.baz.global:8000",
                "httpbin.bar.global:8000/headers",
            ])
            .unwrap();
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.header("x-global-guard"), Some("unknown-host"));
        assert!(
            unknown.body.contains("httpbin.baz.global"),
            "{}",
            unknown.body
        );

        // The webhook denies a duplicate VIP and a wrong gateway port.
        let duplicate = s.seed_copy("httpbin-copy", "httpbin2.bar.global").unwrap();
        let denied = s.review_only(&duplicate).unwrap();
        assert!(!denied.allowed);
        assert!(
            denied
                .message
                .contains("address 127.255.0.2 is already used by ServiceEntry foo/httpbin-bar"),
            "{}",
            denied.message
        );
        let mut wrong_port = s
            .seed_copy("httpbin-direct", "httpbin3.bar.global")
            .unwrap();
        wrong_port["spec"]["addresses"] = json!(["127.255.0.3"]);
        wrong_port["spec"]["endpoints"][0]["ports"]["http1"] = json!(8000);
        let denied = s.review_only(&wrong_port).unwrap();
        assert!(!denied.allowed);
        assert!(
            denied
                .message
                .contains("port 8000 is not the gateway port 15443"),
            "{}",
            denied.message
        );

        live_service_entry_is_followed_without_a_restart(&mut s);

        assert!(
            s.host.exited().is_empty(),
            "processes died: {:?}",
            s.host.exited()
        );
    }
    // Dropping the scenario removed everything it created.
    assert!(host.is_clean());
    let namespaces = host::run("ip", &["netns", "list"]).unwrap();
    assert!(
        !namespaces.contains(CLUSTER1) && !namespaces.contains(CLUSTER2),
        "{namespaces}"
    );
    assert!(!Path::new("/etc/netns").join(CLUSTER1).exists());
}
