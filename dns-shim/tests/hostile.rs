//! Forwarding under attack, with the real binary: an upstream that never answers (a flood of
//! forwarded queries must not take memory or local answers with it), an upstream port that is
//! closed (SERVFAIL without waiting for the timeout), an upstream that sends forged answers
//! before the genuine one (never relayed), and SIGTERM with queries in flight (each answered).
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{eventually, raw_query, rss_kib, seed, udp_exchange, FakeUpstream, Shim, Upstream};
use hickory_server::proto::op::{Message, ResponseCode};

fn shim(upstream: &str, extra: &[&str]) -> Shim {
    let direct = seed("serviceentry-direct.yaml");
    let mut args = vec![
        "--service-entries",
        direct.to_str().unwrap(),
        "--upstream",
        upstream,
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Shim::start(&args)
}

fn local_answer(shim: &Shim, id: u16) -> Option<Message> {
    let answer = udp_exchange(shim.dns, &raw_query(id, "httpbin.bar.global", 1, None))?;
    Message::from_vec(&answer).ok()
}

#[test]
fn a_flood_at_a_blackhole_upstream_keeps_memory_bounded_and_local_answers_coming() {
    let blackhole = FakeUpstream::start(Upstream::Blackhole);
    let upstream = blackhole.addr.to_string();
    let mut shim = shim(
        &upstream,
        &[
            "--upstream-timeout-ms",
            "2000",
            "--max-in-flight",
            "200",
            "--max-in-flight-per-thread",
            "150",
        ],
    );
    let pid = shim.proc.0.id();
    let before = rss_kib(pid);
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut answered_locally = 0;
    // 20 rounds of 500 forwarded queries (distinct names) and one local query: bounded.
    for round in 0..20u16 {
        for i in 0..500u16 {
            let name = format!("q{round}x{i}.flood.example");
            let _ = flood.send_to(&raw_query(i, &name, 1, None), shim.dns);
        }
        if let Some(answer) = local_answer(&shim, round) {
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert_eq!(answer.answers.len(), 1, "{answer:?}");
            answered_locally += 1;
        }
    }
    assert_eq!(answered_locally, 20, "local answers lost during the flood");
    let after = rss_kib(pid);
    assert!(
        after < before + 48 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Over the cap, SERVFAIL at once (counted); the blackhole made the upstream down.
    let overload = shim.metric("dns_forward_overload_total{limit=\"thread\"}")
        + shim.metric("dns_forward_overload_total{limit=\"total\"}");
    assert!(overload > 0.0, "no query was over the in-flight cap");
    assert!(shim.metric("dns_forward_in_flight") <= 200.0);
    assert!(shim.is_running());
}

#[test]
fn a_closed_upstream_port_fails_fast_and_is_then_skipped() {
    let closed = format!("127.0.0.1:{}", common::free_port());
    // A timeout long enough that a SERVFAIL inside dig's 5 s can only come from the ICMP error.
    let shim = shim(&closed, &["--upstream-timeout-ms", "20000"]);
    for _ in 0..3 {
        let dig = shim.dig(&["www.up.test", "A"]);
        assert_eq!(dig.status, "SERVFAIL", "{}", dig.text);
    }
    let series = |name: &str| format!("{name}{{upstream=\"{closed}\"}}");
    assert_eq!(
        shim.metric(&format!(
            "dns_upstream_failures_total{{upstream=\"{closed}\",reason=\"unreachable\"}}"
        )),
        1.0
    );
    assert!(shim.metric(&series("dns_upstream_skipped_total")) >= 2.0);
    assert_eq!(shim.metric(&series("dns_upstream_healthy")), 0.0);
    // Local answers do not depend on the upstream.
    assert_eq!(
        shim.dig(&["httpbin.bar.global", "A"]).data("A"),
        vec!["127.255.0.2"]
    );
}

#[test]
fn forged_answers_before_the_genuine_one_are_never_relayed() {
    let spoofer = FakeUpstream::start(Upstream::Spoofer);
    let upstream = spoofer.addr.to_string();
    let shim = shim(&upstream, &[]);
    // A long name: 0x20 then leaves the lowercased forgery a chance of 2^-30 per query.
    let name = "spoofedanswerprobe.upstream.example";
    for id in 0..60u16 {
        let answer = udp_exchange(shim.dns, &raw_query(id, name, 1, None)).unwrap();
        let message = Message::from_vec(&answer).unwrap();
        assert_eq!(message.metadata.id, id);
        let data: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(data, vec!["192.0.2.10"], "query {id}");
        // The client's own case comes back.
        assert_eq!(message.queries[0].name().to_string(), format!("{name}."));
        assert_eq!(
            &answer[12..12 + name.len() + 2],
            &raw_query(id, name, 1, None)[12..12 + name.len() + 2]
        );
    }
    let mismatch = |reason: &str| {
        shim.metric(&format!(
            "dns_upstream_mismatched_answers_total{{upstream=\"{upstream}\",reason=\"{reason}\"}}"
        ))
    };
    // Every forgery that arrived before the genuine answer was seen and counted.
    assert!(mismatch("id") >= 1.0, "no wrong-ID forgery counted");
    assert!(mismatch("question") >= 1.0, "no lowercased forgery counted");
}

#[test]
fn upstream_queries_come_from_random_ports_with_random_ids_and_case() {
    // An upstream that echoes each query as its answer, and records what it got.
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    relay
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let upstream = relay.local_addr().unwrap().to_string();
    let shim = shim(&upstream, &["--upstream-timeout-ms", "300"]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut ports = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    let mut buf = [0u8; 512];
    for id in 0..20u16 {
        client
            .send_to(&raw_query(7, "randomness.probe.example", 1, None), shim.dns)
            .unwrap();
        let (n, from) = relay.recv_from(&mut buf).unwrap();
        assert!(n > 12);
        ports.insert(from.port());
        ids.insert(u16::from_be_bytes([buf[0], buf[1]]));
        names.insert(buf[12..n - 4].to_vec());
        buf[2] |= 0x80;
        relay.send_to(&buf[..n], from).unwrap();
        let mut answer = [0u8; 512];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let got = client.recv(&mut answer).unwrap();
        assert_eq!(&answer[..2], &[0, 7], "query {id}: the client's ID");
        assert_eq!(
            &answer[12..got - 4],
            &raw_query(7, "randomness.probe.example", 1, None)[12..got - 4]
        );
    }
    assert!(
        ports.len() >= 18,
        "{} source ports for 20 queries",
        ports.len()
    );
    assert!(ids.len() >= 18, "{} IDs for 20 queries", ids.len());
    assert!(
        names.len() >= 18,
        "{} spellings of one name for 20 queries",
        names.len()
    );
}

#[test]
fn sigterm_answers_every_forwarded_query_before_exit() {
    let blackhole = FakeUpstream::start(Upstream::Blackhole);
    let upstream = blackhole.addr.to_string();
    let mut shim = shim(
        &upstream,
        &[
            "--upstream-timeout-ms",
            "30000",
            "--drain-timeout-ms",
            "300",
        ],
    );
    let clients: Vec<UdpSocket> = (0..5)
        .map(|i| {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.send_to(
                &raw_query(i, &format!("d{i}.drain.example"), 1, None),
                shim.dns,
            )
            .unwrap();
            c
        })
        .collect();
    assert!(
        eventually(100, || blackhole
            .queries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5),
        "the queries never reached the upstream"
    );
    let status = Command::new("kill")
        .args(["-TERM", &shim.proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for (i, client) in clients.iter().enumerate() {
        let mut buf = [0u8; 512];
        let n = client.recv(&mut buf).expect("an answer before exit");
        let message = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(message.metadata.id, i as u16);
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
    }
    assert!(
        eventually(100, || !shim.is_running()),
        "still running after SIGTERM"
    );
    let code = shim.proc.0.wait().unwrap();
    assert!(code.success(), "{code:?}");
}
