//! What a hostile or unlucky client can cost the real webhook, each case held to a bound on
//! the memory, the reply size or the connections it may take: the entries that once made a
//! 93 MiB reply or held every review for 52 s, VIP squatting by callers without a client
//! certificate, thousands of silent TLS connections, an idle HTTP/2 connection, SIGTERM with
//! reviews in flight, and a body over the limit on HTTP/2.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::h2::{tls_config, tls_connect, H2};
use common::{review, service_entry, Start, Webhook};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

const V1: &str = "admission.k8s.io/v1";
/// The memory limit deploy/ gives the webhook, and what the worst review may take of it.
const PEAK_RSS_LIMIT_KB: u64 = 128 * 1024;
/// A denial lists at most 20 violations of at most a few hundred bytes each.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Far above what any case costs; only a hang trips it.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client(webhook: &Webhook, runtime: &tokio::runtime::Runtime) -> H2 {
    runtime.block_on(H2::connect(webhook.addr, tls_config(&webhook.ca, None)))
}

fn create(name: &str, object: Value) -> Value {
    let _ = name;
    review(
        V1,
        &format!("u-{name}"),
        "CREATE",
        Some(object),
        None,
        false,
    )
}

/// Sends a review, within the hang guard; the status and the reply's bytes.
fn send(runtime: &tokio::runtime::Runtime, h2: &H2, path: &str, review: &Value) -> (u16, Vec<u8>) {
    runtime
        .block_on(async {
            tokio::time::timeout(HANG_GUARD, h2.post(path, review.to_string().into_bytes())).await
        })
        .expect("answered within the hang guard")
        .expect("a response")
}

#[test]
fn the_worst_entries_cost_a_bounded_reply_and_memory() {
    let webhook = Webhook::start(Start::default());
    let runtime = runtime();
    let h2 = client(&webhook, &runtime);

    // 4,000 ports and 4,096 endpoints each naming an undeclared port (292 KB).
    let mut worst = service_entry("worst", "127.255.0.9", 15443);
    worst["spec"]["ports"] = (0..4000)
        .map(|i| json!({"name": format!("p{i}"), "number": i + 1, "protocol": "HTTP"}))
        .collect();
    worst["spec"]["endpoints"] = (0..4096)
        .map(|i| json!({"address": "198.18.2.1", "ports": {format!("undeclared{i}"): 15443}}))
        .collect();
    // 100,000 addresses.
    let mut addresses = service_entry("addresses", "127.255.0.10", 15443);
    addresses["spec"]["resolution"] = json!("STATIC");
    addresses["spec"]["addresses"] = (0..100_000u32)
        .map(|i| json!(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)))
        .collect();
    // 100,000 hosts.
    let mut hosts = service_entry("hosts", "127.255.0.11", 15443);
    hosts["spec"]["hosts"] = (0..100_000)
        .map(|i| json!(format!("h{i}.foo.global")))
        .collect();
    for (name, object) in [("worst", worst), ("addresses", addresses), ("hosts", hosts)] {
        let body = create(name, object);
        assert!(
            body.to_string().len() < 6 * 1024 * 1024,
            "{name}: under the cap"
        );
        let (status, reply) = send(&runtime, &h2, "/validate", &body);
        assert_eq!(status, 200, "{name}");
        assert!(
            reply.len() <= MAX_REPLY_BYTES,
            "{name}: {} bytes",
            reply.len()
        );
        let answer: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(answer["response"]["allowed"], false, "{name}");
    }
    assert!(
        webhook.peak_rss_kb() < PEAK_RSS_LIMIT_KB,
        "peak RSS {} KiB",
        webhook.peak_rss_kb()
    );
    // And it serves on.
    let fine = create("fine", service_entry("fine", "127.255.0.12", 15443));
    let (status, reply) = send(&runtime, &h2, "/validate", &fine);
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
}

#[test]
fn squatting_callers_without_a_client_certificate_are_capped_and_hold_no_ranges() {
    // An empty cluster: nothing stored overlaps the squatter's ranges.
    let empty = tempfile::tempdir().unwrap();
    let webhook = Webhook::start(Start {
        service_entries: vec![empty.path().to_path_buf()],
        extra: vec!["--max-unstored-claims".into(), "5".into()],
        ..Start::default()
    });
    let runtime = runtime();
    let h2 = client(&webhook, &runtime);

    // CIDRs covering the VIP ranges, with resolution NONE: Istio admits such an entry (not
    // .global), and it claims nothing.
    let mut squatter = service_entry("squatter", "127.255.0.0/16", 15443);
    squatter["spec"]["hosts"] = json!(["squat.example.com"]);
    squatter["spec"]["resolution"] = json!("NONE");
    squatter["spec"]["addresses"] = json!(["127.255.0.0/16", "240.0.0.0/16", "240.240.0.0/16"]);
    squatter["spec"]
        .as_object_mut()
        .unwrap()
        .remove("endpoints");
    let (_, reply) = send(&runtime, &h2, "/validate", &create("squatter", squatter));
    let answer: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(webhook.metric("admission_claims"), 0.0);

    // Forged .global CREATEs that never get stored: each claims one VIP and its host, and
    // the namespace is refused past five such claims.
    let mut refused = None;
    for i in 0..10 {
        let mut forged = service_entry(
            &format!("forged{i}"),
            &format!("127.255.1.{}", i + 1),
            15443,
        );
        forged["metadata"]["namespace"] = json!("evil");
        forged["spec"]["hosts"] = json!([format!("forged{i}.evil.global")]);
        let mut body = create(&format!("forged{i}"), forged);
        body["request"]["namespace"] = json!("evil");
        let (_, reply) = send(&runtime, &h2, "/validate", &body);
        let answer: Value = serde_json::from_slice(&reply).unwrap();
        if answer["response"]["allowed"] == false {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("the cap is reached");
    let message = refused["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("namespace evil already holds"),
        "{message}"
    );
    assert_eq!(refused["response"]["status"]["code"], 429);
    // Another namespace is not held up, and a free VIP is still given.
    let legit = create("legit", service_entry("legit", "127.255.0.5", 15443));
    let (_, reply) = send(&runtime, &h2, "/validate", &legit);
    let answer: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[test]
fn two_thousand_silent_tls_connections_are_closed_and_do_not_block_others() {
    // The test's own descriptors: 2,000 connections and then some.
    let _ = rlimit::increase_nofile_limit(8192);
    let webhook = Webhook::start(Start {
        extra: vec!["--client-timeout".into(), "2".into()],
        ..Start::default()
    });
    let runtime = runtime();
    let config = tls_config(&webhook.ca, None);
    let silent = runtime.block_on(async {
        let mut open = Vec::new();
        for _ in 0..2000 {
            open.push(
                tls_connect(webhook.addr, Arc::clone(&config))
                    .await
                    .unwrap(),
            );
        }
        open
    });
    assert_eq!(silent.len(), 2000);
    // Reviews and the admin port still answer meanwhile.
    assert_eq!(webhook.admin_get("/healthz").0, 200);
    let h2 = client(&webhook, &runtime);
    let (status, _) = send(
        &runtime,
        &h2,
        "/validate",
        &create(
            "meanwhile",
            service_entry("meanwhile", "127.255.0.20", 15443),
        ),
    );
    assert_eq!(status, 200);
    // Every silent one is closed by the server after the client timeout.
    let closed = runtime.block_on(async {
        let reads = silent.into_iter().map(|mut tls| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 16];
            matches!(
                tokio::time::timeout(HANG_GUARD, tls.read(&mut buf)).await,
                Ok(Ok(0) | Err(_))
            )
        });
        futures::future::join_all(reads).await
    });
    assert!(
        closed.iter().all(|c| *c),
        "{} left open",
        closed.iter().filter(|c| !**c).count()
    );
    assert!(webhook.metric("admission_connections_closed_idle_total") >= 2000.0);
}

#[test]
fn an_idle_http2_connection_is_closed_after_the_client_timeout() {
    let webhook = Webhook::start(Start {
        extra: vec!["--client-timeout".into(), "1".into()],
        ..Start::default()
    });
    let runtime = runtime();
    let h2 = client(&webhook, &runtime);
    let (status, _) = send(
        &runtime,
        &h2,
        "/validate",
        &create("once", service_entry("once", "127.255.0.21", 15443)),
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + HANG_GUARD;
    while !h2.is_closed() {
        assert!(Instant::now() < deadline, "the idle connection stays open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_answers_the_reviews_in_flight_and_exits_zero() {
    let mut webhook = Webhook::start(Start {
        extra: vec!["--shutdown-delay".into(), "0".into()],
        ..Start::default()
    });
    let runtime = runtime();
    let config = tls_config(&webhook.ca, None);
    let addr = webhook.addr;
    // Twenty reviews whose bodies are on their way when SIGTERM comes.
    let (senders, answers): (Vec<_>, Vec<_>) = (0..20)
        .map(|i| {
            let body = create(
                &format!("inflight{i}"),
                service_entry(
                    &format!("inflight{i}"),
                    &format!("127.255.2.{}", i + 1),
                    15443,
                ),
            )
            .to_string()
            .into_bytes();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
            let config = Arc::clone(&config);
            let answer = runtime.spawn(async move {
                let tls = tls_connect(addr, config).await.unwrap();
                let (mut send, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let stream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                }));
                let request = hyper::Request::post("https://localhost/validate")
                    .header("content-type", "application/json")
                    .body(StreamBody::new(stream))
                    .unwrap();
                let response = send.send_request(request).await.unwrap();
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, body)
            });
            ((tx, body), answer)
        })
        .unzip();
    // Half of each body now, SIGTERM, the rest after.
    let rest: Vec<_> = runtime.block_on(async {
        let mut rest = Vec::new();
        for (tx, body) in senders {
            let half = body.len() / 2;
            tx.send(Ok(Frame::data(Bytes::copy_from_slice(&body[..half]))))
                .await
                .unwrap();
            rest.push((tx, Bytes::copy_from_slice(&body[half..])));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        rest
    });
    webhook.terminate();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(webhook.admin_get("/readyz").0, 503);
    runtime.block_on(async {
        for (tx, tail) in rest {
            tx.send(Ok(Frame::data(tail))).await.unwrap();
        }
    });
    for answer in answers {
        let (status, body) = runtime.block_on(answer).unwrap();
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    assert_eq!(webhook.wait_exit(), Some(0));
}

#[test]
fn a_body_over_the_limit_gets_its_413_over_http2() {
    let webhook = Webhook::start(Start::default());
    let runtime = runtime();
    let h2 = client(&webhook, &runtime);
    let big = vec![b' '; 7 * 1024 * 1024];
    let outcome = runtime
        .block_on(async { tokio::time::timeout(HANG_GUARD, h2.post("/validate", big)).await })
        .expect("answered within the hang guard");
    let (status, body) = outcome.expect("a response, not a reset stream");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("larger than"));
}
