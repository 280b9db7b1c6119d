//! The UDP fast path holds to the hickory handler byte for byte: for any query it answers
//! (names of every kind in any case, any type, with or without EDNS of any payload size and
//! DO bit, any ID and RD/CD bits), its answer is exactly what the handler sends for the same
//! query through hickory's encoder. Addresses are not shuffled here, on either side.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dns_shim::catalog::Catalog;
use dns_shim::fastpath::{self, Verdict};
use dns_shim::forward::{ForwardConfig, Forwarder, Limit};
use dns_shim::handler::Handler;
use dns_shim::metrics::Metrics;
use dns_shim::zone::ZoneConfig;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

/// Encodes as the UDP loop's reply does: cut to the OPT's payload size, 512 without one.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = response.edns().map_or(512, |e| e.max_payload().max(512));
        let mut buf = Vec::new();
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        *self.0.lock().unwrap() = Some(buf);
        Ok(info)
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    handler: Handler,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ips = |n: usize, base: u8| -> Vec<String> {
        (1..=n).map(|i| format!("127.255.{base}.{i}")).collect()
    };
    common::service_entry(dir.path(), "one.yaml", "one.ns.global", &ips(1, 10));
    common::service_entry(dir.path(), "three.yaml", "three.ns.global", &ips(3, 11));
    common::service_entry(dir.path(), "forty.yaml", "forty.bar.global", &ips(40, 12));
    let mut dual = ips(2, 13);
    dual.extend(["fd00::1".to_string(), "fd00::2".to_string()]);
    common::service_entry(dir.path(), "dual.yaml", "dual.ns.global", &dual);
    common::service_entry(
        dir.path(),
        "six.yaml",
        "only.six.global",
        &["fd00::6".to_string()],
    );
    std::fs::copy(
        common::seed("serviceentry-direct.yaml"),
        dir.path().join("direct.yaml"),
    )
    .unwrap();
    std::fs::copy(common::data("multi.yaml"), dir.path().join("multi.yaml")).unwrap();
    let handler = runtime.block_on(async {
        let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let metrics = Arc::new(Metrics::new(&[upstream]));
        let mut config = ZoneConfig::new("global", 30).unwrap();
        config.shuffle = false;
        let catalog = Arc::new(Catalog::new(
            vec![dir.path().to_path_buf()],
            policy::Options::default(),
            vec!["svc.cluster.local".into()],
            Some("foo".into()),
            config,
            Arc::clone(&metrics),
        ));
        catalog.reload().unwrap();
        let forwarder = Forwarder::new(
            &[upstream],
            ForwardConfig {
                timeout: Duration::from_millis(50),
                randomize_case: true,
            },
            Arc::clone(&metrics),
        )
        .unwrap();
        Handler::new(
            catalog,
            Arc::new(forwarder),
            metrics,
            Limit::new(8),
            CancellationToken::new(),
        )
    });
    Fixture {
        runtime,
        handler,
        _dir: dir,
    }
}

fn query(id: u16, flags: u8, name: &str, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut q = common::raw_query(id, name, qtype, edns.map(|(p, d)| (p, 0, d)));
    q[2] = flags & 0x01;
    // RA and AD may be set by a client; CD is copied.
    q[3] = flags & 0xb0;
    q
}

/// The fast path's answer and the handler's, for one query.
fn both(f: &Fixture, packet: &[u8]) -> (Verdict, Vec<u8>, Option<Vec<u8>>) {
    let zone = f.handler.catalog().zone();
    let mut out = [0u8; 1232];
    let verdict = fastpath::answer(&zone, true, packet, &mut out);
    let fast = match verdict {
        Verdict::Answered { len, .. } => out[..len].to_vec(),
        _ => Vec::new(),
    };
    let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request = Request::from_bytes(packet.to_vec(), src, Protocol::Udp).unwrap();
    let capture = Capture::default();
    f.runtime.block_on(
        f.handler
            .handle_request::<_, TokioTime>(&request, capture.clone()),
    );
    let slow = capture.0.lock().unwrap().take();
    (verdict, fast, slow)
}

fn with_case(name: &str, upper: &[bool]) -> String {
    name.chars()
        .zip(upper.iter().cycle())
        .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
        .collect()
}

#[test]
fn the_common_queries_take_the_fast_path() {
    thread_local! { static F: Fixture = fixture(); }
    F.with(|f| {
        for (name, qtype) in [
            ("httpbin.bar.global", 1),
            ("HttpBin.BAR.global", 1),
            ("dual.ns.global", 28),
            ("httpbin.bar.global", 28),
            ("three.ns.global", 1),
            ("nope.ns.global", 1),
            ("ns.global", 1),
        ] {
            for edns in [None, Some((1232, false)), Some((4096, true))] {
                let (verdict, fast, slow) = both(f, &query(7, 1, name, qtype, edns));
                assert!(
                    matches!(verdict, Verdict::Answered { .. }),
                    "{name} {qtype} {edns:?}: {verdict:?}"
                );
                assert_eq!(Some(fast), slow, "{name} {qtype} {edns:?}");
            }
        }
        // Forwarded names are the forwarder's, and the rest the handler's.
        let (verdict, _, _) = both(f, &query(7, 1, "www.example.com", 1, None));
        assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
        let (verdict, _, _) = both(f, &query(7, 1, "x.bar.global", 1, None));
        assert_eq!(verdict, Verdict::Slow, "wildcard names go to the handler");
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_path_answers_as_hickory_encodes(
        name in prop_oneof![
            Just("httpbin.bar.global"),
            Just("one.ns.global"),
            Just("three.ns.global"),
            Just("forty.bar.global"),
            Just("dual.ns.global"),
            Just("only.six.global"),
            Just("multi.bar.global"),
            Just("nope.ns.global"),
            Just("ns.global"),
            Just("six.global"),
            Just("bar.global"),
            Just("a.very.long.name.that.does.not.exist.under.the.zone.global"),
            Just("x.deep.bar.global"),
            Just("global"),
        ],
        upper in prop::collection::vec(any::<bool>(), 1..16),
        qtype in prop_oneof![Just(1u16), Just(28), Just(5), Just(15), Just(16), Just(33), Just(6), Just(2), any::<u16>()],
        edns in prop::option::of((any::<u16>(), any::<bool>())),
        id in any::<u16>(),
        flags in any::<u8>(),
    ) {
        thread_local! { static F: Fixture = fixture(); }
        F.with(|f| {
            let packet = query(id, flags, &with_case(name, &upper), qtype, edns);
            let (verdict, fast, slow) = both(f, &packet);
            if let Verdict::Answered { .. } = verdict {
                prop_assert_eq!(Some(fast), slow, "{} {} {:?}", name, qtype, edns);
            }
            Ok(())
        })?;
    }
}
