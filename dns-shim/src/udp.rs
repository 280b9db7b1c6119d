//! The UDP receive loops: one per SO_REUSEPORT socket, each on a thread of its own with a
//! single-threaded runtime. Datagrams are read in batches (`recvmmsg`) and the answers the
//! fast path gives (`fastpath.rs`) are sent in batches (`sendmmsg`); nothing is allocated for
//! them. A forwarded query gets a task of its own, under its thread's and the process's
//! in-flight limits, so the loop keeps reading; everything else goes to the hickory handler,
//! inline, with its reply sent straight from the loop.
//!
//! hickory's own `Server::register_socket` loop is kept as an option (`--udp-loop hickory`);
//! it spawns a task per datagram and passes every reply through a channel to the socket's
//! stream, which costs throughput and latency (see benches/RESULTS.md).

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_server::proto::rr::{Record, RecordType};
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::fastpath::{self, Verdict, HEADER_LEN, MAX_PAYLOAD, PLAIN_PAYLOAD};
use crate::forward::Limit;
use crate::handler::Handler;
use crate::metrics::{Outcome, Requests};

/// Datagrams read, and answers sent, per system call.
const BATCH: usize = 32;
/// Queries are small; a datagram longer than this is cut and fails to parse (FORMERR).
const MAX_QUERY: usize = 4096;
/// The largest answer the fast path makes.
const MAX_ANSWER: usize = MAX_PAYLOAD as usize;
/// Forwarded queries in flight on a thread up to which each polls for its answer briefly.
const SPIN_WHEN_IN_FLIGHT: usize = 2;
/// How long a stopping loop waits at most for its forwarded queries (which a drain answers or
/// gives up on before then).
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// Sends one encoded response to the client from the socket the request came in on.
#[derive(Clone)]
struct Reply {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for Reply {
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
        // The handler's OPT carries the client's payload size (512 without EDNS).
        let max = response
            .edns()
            .map_or(PLAIN_PAYLOAD, |e| e.max_payload().max(PLAIN_PAYLOAD));
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let metadata = *response.metadata();
        // Records that do not fit are left out and TC is set by the encoder.
        match response.destructive_emit(&mut encoder) {
            Ok(info) => {
                self.socket.send_to(&bytes, self.dst).await?;
                Ok(info)
            }
            Err(e) => {
                // As hickory does: a bare SERVFAIL rather than no answer.
                let mut failed =
                    Metadata::new(metadata.id, MessageType::Response, metadata.op_code);
                failed.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                };
                let mut bytes = Vec::with_capacity(HEADER_LEN);
                header.emit(&mut BinEncoder::new(&mut bytes))?;
                self.socket.send_to(&bytes, self.dst).await?;
                Err(NetError::from(e.to_string()))
            }
        }
    }
}

/// Serves `socket` on a new thread named `udp-{index}` with its own single-threaded runtime,
/// until `stop`; then waits for its forwarded queries to be answered or given up on.
pub fn spawn(
    index: usize,
    socket: std::net::UdpSocket,
    handler: Arc<Handler>,
    max_in_flight: usize,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("udp-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let limit = Limit::new(max_in_flight);
                handler.forwarder().prepare();
                match UdpSocket::from_std(socket) {
                    Ok(socket) => serve(Arc::new(socket), handler, &limit, stop).await,
                    Err(e) => tracing::error!(error = %e, "udp socket not served"),
                }
                let deadline = Instant::now() + DRAIN_WAIT;
                while limit.in_flight() > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
}

/// Receive and send buffers for one loop, allocated once.
struct Batch {
    headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
    input: Vec<u8>,
    received: [(usize, Option<SocketAddr>); BATCH],
    output: Vec<u8>,
    /// Answers waiting in `output`: length and destination.
    queued: [(usize, Option<SockaddrStorage>); BATCH],
    count: usize,
}

impl Batch {
    fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
            input: vec![0; BATCH * MAX_QUERY],
            received: [(0, None); BATCH],
            output: vec![0; BATCH * MAX_ANSWER],
            queued: [(0, None); BATCH],
            count: 0,
        }
    }

    /// Reads up to [`BATCH`] datagrams without waiting; how many.
    fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        let mut chunks = self.input.chunks_exact_mut(MAX_QUERY);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::empty(),
            None,
        )?;
        let mut n = 0;
        for (slot, message) in self.received.iter_mut().zip(results) {
            *slot = (
                message.bytes,
                message.address.as_ref().and_then(socket_addr),
            );
            n += 1;
        }
        Ok(n)
    }

    /// Sends the queued answers, retrying a few times when the socket's buffer is full.
    async fn flush(&mut self, socket: &UdpSocket) {
        let mut done = 0;
        let mut tries = 0;
        while done < self.count && tries < 4 {
            tries += 1;
            let sent = socket.try_io(Interest::WRITABLE, || {
                let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                    let start = i * MAX_ANSWER;
                    let len = self.queued.get(i).map_or(0, |q| q.0);
                    [IoSlice::new(
                        self.output.get(start..start + len).unwrap_or_default(),
                    )]
                });
                let addrs: [Option<SockaddrStorage>; BATCH] =
                    std::array::from_fn(|i| self.queued.get(i).and_then(|q| q.1));
                let results = sendmmsg(
                    socket.as_raw_fd(),
                    &mut self.send_headers,
                    slices.get(done..self.count).unwrap_or_default(),
                    addrs.get(done..self.count).unwrap_or_default(),
                    [] as [ControlMessage<'_>; 0],
                    MsgFlags::empty(),
                )?;
                Ok(results.count())
            });
            match sent {
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = socket.writable().await;
                }
                Err(e) => {
                    debug!(error = %e, "udp send");
                    break;
                }
            }
        }
        self.count = 0;
    }
}

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

pub async fn serve(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    limit: &Arc<Limit>,
    stop: CancellationToken,
) {
    let counts = handler.metrics().shard();
    let mut batch = Batch::new();
    let catalog = Arc::clone(handler.catalog());
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            ready = socket.readable() => if let Err(e) = ready {
                debug!(error = %e, "udp readiness");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            },
        }
        let n = match socket.try_io(Interest::READABLE, || batch.receive(&socket)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                debug!(error = %e, "udp receive");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let zone = catalog.zone();
        let ready = catalog.is_ready();
        for i in 0..n {
            let Some(&(len, Some(src))) = batch.received.get(i) else {
                continue;
            };
            let start = i * MAX_QUERY;
            let Some(packet) = batch.input.get(start..start + len.min(MAX_QUERY)) else {
                continue;
            };
            // Nothing can be sent back to port 0 (such a source is spoofed); responses are
            // never answered (no reflection).
            if src.port() == 0
                || packet.len() < HEADER_LEN
                || packet.get(2).is_some_and(|f| f & 0x80 != 0)
            {
                continue;
            }
            let at = batch.count * MAX_ANSWER;
            let Some(out) = batch.output.get_mut(at..at + MAX_ANSWER) else {
                continue;
            };
            match fastpath::answer(&zone, ready, packet, out) {
                Verdict::Answered {
                    len,
                    qtype,
                    outcome,
                } => {
                    counts.count(qtype, outcome);
                    if let Some(q) = batch.queued.get_mut(batch.count) {
                        *q = (len, Some(SockaddrStorage::from(src)));
                        batch.count += 1;
                    }
                }
                Verdict::Forward {
                    question_end,
                    payload,
                } => {
                    let query = Forwarded {
                        query: packet.to_vec(),
                        src,
                        question_end,
                        payload,
                        request: None,
                    };
                    forward(&handler, &socket, limit, &counts, query);
                }
                Verdict::Slow => slow(&handler, &socket, limit, &counts, packet, src).await,
            }
        }
        drop(zone);
        batch.flush(&socket).await;
    }
}

/// Gives a query the fast path left to the hickory handler.
async fn slow(
    handler: &Arc<Handler>,
    socket: &Arc<UdpSocket>,
    limit: &Arc<Limit>,
    counts: &Arc<Requests>,
    packet: &[u8],
    src: SocketAddr,
) {
    let request = match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
        Ok(request) => request,
        Err(_) => {
            if let Some(answer) = formerr(packet) {
                let _ = socket.send_to(&answer, src).await;
            }
            counts.count(RecordType::Unknown(0), Outcome::Refused);
            return;
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return;
    }
    let reply = Reply {
        socket: Arc::clone(socket),
        dst: src,
    };
    if handler.forwards(&request) {
        let query = Forwarded {
            query: packet.to_vec(),
            src,
            question_end: HEADER_LEN + request.queries.as_bytes().len(),
            payload: request.max_payload(),
            request: Some(request),
        };
        forward(handler, socket, limit, counts, query);
    } else {
        handler
            .handle_request::<_, TokioTime>(&request, reply)
            .await;
    }
}

/// A query to forward and what its answer needs.
struct Forwarded {
    query: Vec<u8>,
    src: SocketAddr,
    question_end: usize,
    /// The most the client takes.
    payload: u16,
    /// The query decoded, if the handler had it decoded already.
    request: Option<Request>,
}

impl Forwarded {
    fn qtype(&self) -> RecordType {
        match self
            .query
            .get(self.question_end.saturating_sub(4)..self.question_end.saturating_sub(2))
        {
            Some([a, b]) => RecordType::from(u16::from_be_bytes([*a, *b])),
            _ => RecordType::Unknown(0),
        }
    }

    /// The query decoded by hickory, for the answers built with it.
    fn request(&mut self) -> Option<Request> {
        match self.request.take() {
            Some(request) => Some(request),
            None => Request::from_bytes(self.query.clone(), self.src, Protocol::Udp).ok(),
        }
    }
}

/// Forwards a query on a task of its own, or answers SERVFAIL at once when too many are in
/// flight.
fn forward(
    handler: &Arc<Handler>,
    socket: &Arc<UdpSocket>,
    limit: &Arc<Limit>,
    counts: &Arc<Requests>,
    mut query: Forwarded,
) {
    let handler = Arc::clone(handler);
    let reply = Reply {
        socket: Arc::clone(socket),
        dst: query.src,
    };
    let counts = Arc::clone(counts);
    let permit = handler.permit(Some(limit));
    let limit = Arc::clone(limit);
    tokio::spawn(async move {
        let Ok(_permit) = permit else {
            if let Some(request) = query.request() {
                handler.fail(&request, reply).await;
            }
            return;
        };
        // Spinning for the answer only pays, and only costs little, when this thread has
        // next to nothing else waiting upstream.
        let spin = limit.in_flight() <= SPIN_WHEN_IN_FLIGHT;
        match handler
            .forward_udp(&query.query, query.question_end, spin)
            .await
        {
            Ok(answer) if answer.len() <= query.payload as usize => {
                counts.count(query.qtype(), Outcome::Forwarded);
                if let Err(e) = reply.socket.send_to(&answer, reply.dst).await {
                    debug!(error = %e, "udp send");
                }
                handler.forwarder().prepare();
            }
            // Larger than the client takes: cut by hickory, with TC.
            Ok(answer) => {
                let Some(request) = query.request() else {
                    return;
                };
                match handler.relay(&request, reply.clone(), &answer).await {
                    Ok(_) => counts.count(query.qtype(), Outcome::Forwarded),
                    Err(_) => handler.fail(&request, reply).await,
                }
            }
            Err(_) => {
                if let Some(request) = query.request() {
                    handler.fail(&request, reply).await;
                }
            }
        }
    });
}

/// FORMERR for a query whose header can be read but not the rest: the ID, opcode, RD and CD of
/// the query, no sections (hickory's error message, as its own server sends it). `None` for a
/// response or fewer than 12 bytes.
pub fn formerr(packet: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
    let message = MessageResponseBuilder::new(&queries, None)
        .error_msg(&header.metadata, ResponseCode::FormErr);
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    message
        .destructive_emit(&mut BinEncoder::new(&mut bytes))
        .ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formerr_keeps_id_opcode_and_rd() {
        let query = [0xab, 0xcd, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 0, 3];
        assert_eq!(
            formerr(&query).unwrap(),
            [0xab, 0xcd, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut response = query;
        response[2] |= 0x80;
        assert!(formerr(&response).is_none());
        assert!(formerr(&query[..11]).is_none());
    }
}
