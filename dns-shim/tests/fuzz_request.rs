//! Property test over raw packets into the request path, in-process: whatever the bytes, the
//! handler answers or drops without panicking, and every answer it sends can be decoded. The
//! upstream is an echo server that returns each query with the QR bit set, so the relay path
//! also parses arbitrary upstream bytes.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dns_shim::catalog::Catalog;
use dns_shim::forward::{ForwardConfig, Forwarder, Limit};
use dns_shim::handler::Handler;
use dns_shim::metrics::Metrics;
use dns_shim::zone::ZoneConfig;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

/// Keeps the encoded response, bounded at 512 bytes as on UDP without EDNS.
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
        let mut buf = Vec::new();
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(512);
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
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handler = runtime.block_on(async {
        let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream: SocketAddr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                if n > 2 {
                    buf[2] |= 0x80;
                }
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let metrics = Arc::new(Metrics::new(&[upstream]));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let catalog = Arc::new(Catalog::new(
            vec![
                root.join("../tests/data/seed/serviceentry-direct.yaml"),
                root.join("tests/data/multi.yaml"),
            ],
            policy::Options::default(),
            vec!["svc.cluster.local".into()],
            Some("foo".into()),
            ZoneConfig::new("global", 30).unwrap(),
            Arc::clone(&metrics),
        ));
        catalog.reload().unwrap();
        let forwarder = Forwarder::new(
            &[upstream],
            ForwardConfig {
                timeout: Duration::from_millis(100),
                randomize_case: true,
            },
            Arc::clone(&metrics),
        )
        .unwrap();
        Handler::new(
            catalog,
            Arc::new(forwarder),
            metrics,
            Limit::new(64),
            CancellationToken::new(),
        )
    });
    Fixture { runtime, handler }
}

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    q
}

fn packets() -> impl Strategy<Value = Vec<u8>> {
    let names = prop_oneof![
        Just("httpbin.bar.global"),
        Just("MULTI.bar.global"),
        Just("x.deep.bar.global"),
        Just("nope.baz.global"),
        Just("httpbin.bar.global.svc.cluster.local"),
        Just("www.example.test"),
    ];
    let valid = (
        names,
        prop_oneof![Just(1u16), Just(28), Just(5), Just(255), any::<u16>()],
    )
        .prop_map(|(n, t)| query(n, t));
    let mutated = (
        valid.clone(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    )
        .prop_map(|(mut p, flips)| {
            for (at, byte) in flips {
                let i = at.index(p.len());
                p[i] = byte;
            }
            p
        });
    let cut = (valid.clone(), any::<prop::sample::Index>())
        .prop_map(|(p, at)| p[..at.index(p.len())].to_vec());
    prop_oneof![
        valid,
        mutated,
        cut,
        prop::collection::vec(any::<u8>(), 0..600),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_packet_is_answered_or_dropped_without_panic(packet in packets(), tcp in any::<bool>()) {
        thread_local! {
            static FIXTURE: Fixture = fixture();
        }
        FIXTURE.with(|f| {
            let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
            let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
            // Requests that hickory cannot decode never reach the handler (FORMERR or drop).
            let Ok(request) = Request::from_bytes(packet, src, protocol) else {
                return Ok(());
            };
            let capture = Capture::default();
            f.runtime.block_on(f.handler.handle_request::<_, TokioTime>(&request, capture.clone()));
            if let Some(answer) = capture.0.lock().unwrap().take() {
                let message = Message::from_vec(&answer);
                prop_assert!(message.is_ok(), "undecodable answer {answer:?}");
                prop_assert_eq!(message.unwrap().metadata.id, request.metadata.id);
            }
            Ok(())
        })?;
    }
}
