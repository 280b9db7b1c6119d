//! What the DNS RFCs ask of a server, probed with raw packets and dig against the real binary:
//! EDNS (RFC 6891, RFC 3225), negative answers and the zone's shape (RFC 2308, RFC 8020), ANY
//! (RFC 8482), truncation (RFC 1035, RFC 2181), TCP (RFC 7766).
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{
    raw_query, seed, service_entry, tcp_read, tcp_write, udp_exchange, FakeUpstream, Shim, Upstream,
};
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::RecordType;

const A: u16 = 1;
const NS: u16 = 2;
const SOA: u16 = 6;
const ANY: u16 = 255;

struct Zone {
    shim: Shim,
    _dir: tempfile::TempDir,
    _upstream: FakeUpstream,
}

/// The seed's httpbin.bar.global, `many.bar.global` with 60 addresses, `x.y.ns.global`, and a
/// blackhole upstream.
fn start(extra: &[&str]) -> Zone {
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<String> = (1..=60).map(|i| format!("127.255.1.{i}")).collect();
    service_entry(dir.path(), "many.yaml", "many.bar.global", &many);
    service_entry(
        dir.path(),
        "deep.yaml",
        "x.y.ns.global",
        &["127.255.2.1".to_string()],
    );
    std::fs::copy(
        seed("serviceentry-direct.yaml"),
        dir.path().join("direct.yaml"),
    )
    .unwrap();
    let upstream = FakeUpstream::start(Upstream::Blackhole);
    let up = upstream.addr.to_string();
    let mut args = vec![
        "--service-entries",
        dir.path().to_str().unwrap(),
        "--upstream",
        &up,
        "--upstream-timeout-ms",
        "1000",
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Zone {
        shim: Shim::start(&args),
        _dir: dir,
        _upstream: upstream,
    }
}

fn ask(zone: &Zone, packet: &[u8]) -> (Message, usize) {
    let answer = udp_exchange(zone.shim.dns, packet).expect("an answer");
    (Message::from_vec(&answer).unwrap(), answer.len())
}

#[test]
fn edns_version_above_0_gets_badvers_with_an_opt_of_version_0() {
    let zone = start(&[]);
    let (m, _) = ask(
        &zone,
        &raw_query(1, "httpbin.bar.global", A, Some((1232, 1, false))),
    );
    // 16 is BADVERS in an answer with an OPT (hickory names the value BADSIG when decoding).
    assert_eq!(u16::from(m.metadata.response_code), 16, "{m:?}");
    assert!(m.answers.is_empty());
    assert_eq!(m.edns.as_ref().unwrap().version(), 0);
    let dig = zone
        .shim
        .dig(&["httpbin.bar.global", "+edns=1", "+noednsnegotiation"]);
    assert_eq!(dig.status, "BADVERS", "{}", dig.text);
}

#[test]
fn the_do_bit_is_copied() {
    let zone = start(&[]);
    for dnssec_ok in [true, false] {
        for name in ["httpbin.bar.global", "nope.bar.global", "global"] {
            let (m, _) = ask(&zone, &raw_query(2, name, A, Some((1232, 0, dnssec_ok))));
            let edns = m.edns.as_ref().expect("an OPT");
            assert_eq!(edns.flags().dnssec_ok, dnssec_ok, "{name}");
        }
    }
}

#[test]
fn every_answer_to_an_edns_query_has_an_opt_errors_included() {
    let zone = start(&[]);
    let edns = Some((1232, 0, false));
    // NOTIMP: opcode STATUS.
    let mut status = raw_query(3, "httpbin.bar.global", A, edns);
    status[2] = (status[2] & 0x87) | (2 << 3);
    // REFUSED: class CH under the suffix.
    let mut chaos = raw_query(4, "httpbin.bar.global", A, edns);
    let at = chaos.len() - 11 - 2;
    chaos[at..at + 2].copy_from_slice(&[0, 3]);
    // FORMERR: two questions.
    let with = raw_query(5, "httpbin.bar.global", A, edns);
    let (question, opt) = with[12..].split_at(with.len() - 12 - 11);
    let mut two = with[..12].to_vec();
    two[5] = 2;
    two.extend_from_slice(question);
    two.extend_from_slice(question);
    two.extend_from_slice(opt);
    // SERVFAIL: a forwarded name whose upstream never answers.
    let servfail = raw_query(6, "www.blackhole.example", A, edns);
    for (packet, code) in [
        (status, ResponseCode::NotImp),
        (chaos, ResponseCode::Refused),
        (two, ResponseCode::FormErr),
        (servfail, ResponseCode::ServFail),
    ] {
        let (m, _) = ask(&zone, &packet);
        assert_eq!(m.metadata.response_code, code, "{m:?}");
        assert!(m.edns.is_some(), "{code}: no OPT in {m:?}");
    }
}

#[test]
fn answers_fit_the_payload_the_client_advertised() {
    let zone = start(&[]);
    // 60 addresses: 60 x 16 bytes of records, more than 512.
    for (edns, limit) in [
        (None, 512),
        (Some((512, 0, false)), 512),
        (Some((200, 0, false)), 512),
    ] {
        let (m, len) = ask(&zone, &raw_query(7, "many.bar.global", A, edns));
        assert!(len <= limit, "{len} bytes for {edns:?}");
        assert!(m.metadata.truncation, "no TC for {edns:?}");
        assert_eq!(
            m.edns.is_some(),
            edns.is_some(),
            "the OPT kept for {edns:?}"
        );
        assert!(!m.answers.is_empty() && m.answers.len() < 60);
    }
    let (m, len) = ask(
        &zone,
        &raw_query(8, "many.bar.global", A, Some((1232, 0, false))),
    );
    assert!(
        !m.metadata.truncation && m.answers.len() == 60 && len <= 1232,
        "{len}"
    );
    // dig retries over TCP on TC and gets them all.
    let dig = zone.shim.dig(&["many.bar.global", "A", "+noedns"]);
    assert_eq!(dig.data("A").len(), 60, "{}", dig.text);
}

#[test]
fn the_apex_answers_its_soa_and_ns_and_nodata_otherwise() {
    let zone = start(&[]);
    let (m, _) = ask(&zone, &raw_query(9, "global", SOA, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let (m, _) = ask(&zone, &raw_query(10, "GLOBAL", NS, None));
    assert_eq!(m.answers[0].record_type(), RecordType::NS);
    assert_eq!(m.answers[0].data.to_string(), "localhost.");
    let (m, _) = ask(&zone, &raw_query(11, "global", A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // Never forwarded.
    assert_eq!(
        zone._upstream
            .queries
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn names_above_hosts_are_nodata_and_names_below_nothing_nxdomain_both_with_the_soa() {
    let zone = start(&[]);
    for name in ["bar.global", "y.ns.global", "ns.global", "Y.NS.global"] {
        let (m, _) = ask(&zone, &raw_query(12, name, A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{name}");
    }
    for name in ["z.ns.global", "a.x.y.ns.global", "nope.global"] {
        let (m, _) = ask(&zone, &raw_query(13, name, A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{name}");
        assert_eq!(m.authorities[0].name.to_string(), "global.");
    }
}

#[test]
fn any_gets_the_addresses_there_are() {
    let zone = start(&[]);
    let (m, _) = ask(&zone, &raw_query(14, "httpbin.bar.global", ANY, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1, "{m:?}");
    assert_eq!(m.answers[0].data.to_string(), "127.255.0.2");
}

#[test]
fn tcp_answers_pipelined_queries_as_they_finish() {
    let zone = start(&[]);
    let mut stream = TcpStream::connect(zone.shim.dns).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // First a name the (silent) upstream is asked for, then a local one, on one connection.
    tcp_write(
        &mut stream,
        &raw_query(100, "slow.blackhole.example", A, None),
    );
    tcp_write(&mut stream, &raw_query(101, "httpbin.bar.global", A, None));
    tcp_write(&mut stream, &raw_query(102, "nope.bar.global", A, None));
    let first = Message::from_vec(&tcp_read(&mut stream).unwrap()).unwrap();
    let second = Message::from_vec(&tcp_read(&mut stream).unwrap()).unwrap();
    let third = Message::from_vec(&tcp_read(&mut stream).unwrap()).unwrap();
    let mut local = [first.metadata.id, second.metadata.id];
    local.sort_unstable();
    assert_eq!(local, [101, 102], "the local answers did not overtake");
    assert_eq!(third.metadata.id, 100);
    assert_eq!(third.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn tcp_connections_are_capped_and_closed_when_idle() {
    let zone = start(&["--tcp-connections", "2", "--tcp-idle-timeout-ms", "300"]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(zone.shim.dns).unwrap())
        .collect();
    // Let the two be accepted before the third.
    std::thread::sleep(Duration::from_millis(100));
    let mut third = TcpStream::connect(zone.shim.dns).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    tcp_write(&mut third, &raw_query(20, "httpbin.bar.global", A, None));
    assert!(
        tcp_read(&mut third).is_none(),
        "a third connection was served"
    );
    assert!(zone.shim.metric("dns_tcp_refused_connections_total") >= 1.0);
    // Idle connections are closed by the server: a read ends, bounded by the 5 s timeout.
    for mut stream in held {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1];
        let closed = matches!(std::io::Read::read(&mut stream, &mut buf), Ok(0));
        assert!(closed, "an idle connection stayed open");
    }
    // With them gone, a new connection is served.
    assert!(common::eventually(50, || {
        let Ok(mut s) = TcpStream::connect(zone.shim.dns) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp_write(&mut s, &raw_query(21, "httpbin.bar.global", A, None));
        tcp_read(&mut s).is_some()
    }));
}

/// Runs `kdig @addr -p port ARGS` (knot-dnsutils) and returns what it printed.
fn kdig(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let output = std::process::Command::new("kdig")
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+retry=0", "+time=5"])
        .args(args)
        .output()
        .expect("kdig is installed (make setup-dns)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn kdig_gets_badvers_and_several_answers_on_one_tcp_connection() {
    let zone = start(&[]);
    let out = kdig(zone.shim.dns, &["httpbin.bar.global", "+edns=1"]);
    assert!(out.contains("status: BADVERS"), "{out}");
    let out = kdig(
        zone.shim.dns,
        &[
            "+tcp",
            "+keepopen",
            "httpbin.bar.global",
            "nope.bar.global",
            "global",
            "SOA",
        ],
    );
    let statuses: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(';').next().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["NOERROR", "NXDOMAIN", "NOERROR"], "{out}");
    assert!(out.contains("127.255.0.2"), "{out}");
    assert!(out.contains("localhost. hostmaster.global."), "{out}");
}
