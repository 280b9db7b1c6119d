//! Forwarding to the upstream resolvers. The client's query goes upstream as it came (only the
//! ID is replaced on UDP) and the upstream's answer comes back whole: rcode, authority section,
//! TTLs, EDNS and the TC bit are the upstream's.
//!
//! UDP queries share a few long-lived sockets per upstream, matched to answers by ID and
//! question; no socket is opened per query. A query that came over TCP goes upstream over TCP,
//! on a kept-open connection when one is idle.
//! A timeout, a network error or REFUSED moves on to the next upstream.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tracing::debug;

use crate::metrics::{Metrics, UpstreamFailure};

const HEADER_LEN: usize = 12;
const RCODE_REFUSED: u8 = 5;
/// Idle TCP connections kept per upstream.
const TCP_IDLE: usize = 4;
/// Tries to find a free query ID on a socket before giving up on it.
const ID_ATTEMPTS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot open a socket to upstream {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Every upstream failed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no upstream answered")]
pub struct Exhausted;

struct Pending {
    question: Box<[u8]>,
    reply: oneshot::Sender<Vec<u8>>,
}

/// One shared UDP socket to an upstream and the queries waiting on it.
struct Lane {
    socket: UdpSocket,
    pending: Mutex<HashMap<u16, Pending>>,
}

impl Lane {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Pending>> {
        // A panic while holding the lock cannot leave the map inconsistent; carry on.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn receive(self: Arc<Self>) {
        let mut buf = vec![0u8; u16::MAX as usize];
        loop {
            let n = match self.socket.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors from a dead upstream surface here; the query times out.
                    debug!(error = %e, "upstream socket error");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            };
            let Some(answer) = buf.get(..n).filter(|b| b.len() >= HEADER_LEN) else {
                continue;
            };
            let Some(id) = message_id(answer) else {
                continue;
            };
            let mut pending = self.pending();
            let Some(waiting) = pending.remove(&id) else {
                continue;
            };
            if question_matches(answer, &waiting.question) {
                drop(pending);
                let _ = waiting.reply.send(answer.to_vec());
            } else {
                // Not the answer to this query; keep waiting for the real one.
                pending.insert(id, waiting);
            }
        }
    }
}

/// Removes a query's ID from its lane however the wait ends (answer, timeout, cancellation).
struct Registration<'a> {
    lane: &'a Lane,
    id: u16,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.lane.pending().remove(&self.id);
    }
}

struct Upstream {
    addr: SocketAddr,
    lanes: Vec<Arc<Lane>>,
    next: AtomicUsize,
    /// TCP connections that answered and wait for the next query over TCP.
    idle: Mutex<Vec<TcpStream>>,
}

impl Upstream {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<TcpStream>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Forwarder {
    upstreams: Vec<Upstream>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// Opens `sockets` UDP sockets to each upstream and starts their receive tasks; must run
    /// inside a tokio runtime.
    pub async fn new(
        addrs: &[SocketAddr],
        sockets: usize,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ForwardError> {
        let mut upstreams = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let mut lanes = Vec::with_capacity(sockets);
            for _ in 0..sockets.max(1) {
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let err = |source| ForwardError::Socket {
                    addr: *addr,
                    source,
                };
                let socket = UdpSocket::bind(local).await.map_err(err)?;
                socket.connect(addr).await.map_err(err)?;
                let lane = Arc::new(Lane {
                    socket,
                    pending: Mutex::new(HashMap::new()),
                });
                tokio::spawn(Arc::clone(&lane).receive());
                lanes.push(lane);
            }
            upstreams.push(Upstream {
                addr: *addr,
                lanes,
                next: AtomicUsize::new(0),
                idle: Mutex::new(Vec::new()),
            });
        }
        Ok(Self {
            upstreams,
            timeout,
            metrics,
        })
    }

    /// Sends `query` (a whole DNS message whose question section is `question`) to the
    /// upstreams in order and returns the first usable answer with the query's ID.
    pub async fn forward(
        &self,
        query: &[u8],
        question: &[u8],
        tcp: bool,
    ) -> Result<Vec<u8>, Exhausted> {
        if query.len() < HEADER_LEN {
            return Err(Exhausted);
        }
        for (i, upstream) in self.upstreams.iter().enumerate() {
            self.metrics.upstream_request(i);
            let start = Instant::now();
            let result = if tcp {
                self.query_tcp(i, upstream, query, question).await
            } else {
                self.query_udp(upstream, query, question).await
            };
            match result {
                Ok(mut answer) => {
                    self.metrics.upstream_latency(i, start.elapsed());
                    if answer.get(3).is_some_and(|b| b & 0x0f == RCODE_REFUSED) {
                        self.metrics.upstream_failure(i, UpstreamFailure::Refused);
                        continue;
                    }
                    set_message_id(&mut answer, message_id(query).unwrap_or(0));
                    return Ok(answer);
                }
                Err(failure) => {
                    debug!(upstream = %upstream.addr, ?failure, "upstream failed");
                    self.metrics.upstream_failure(i, failure);
                }
            }
        }
        Err(Exhausted)
    }

    async fn query_udp(
        &self,
        upstream: &Upstream,
        query: &[u8],
        question: &[u8],
    ) -> Result<Vec<u8>, UpstreamFailure> {
        let turn = upstream.next.fetch_add(1, Ordering::Relaxed);
        let lane = upstream
            .lanes
            .get(turn % upstream.lanes.len().max(1))
            .ok_or(UpstreamFailure::Network)?;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = lane.pending();
            let id = (0..ID_ATTEMPTS)
                .map(|_| fastrand::u16(..))
                .find(|id| !pending.contains_key(id))
                .ok_or(UpstreamFailure::Network)?;
            pending.insert(
                id,
                Pending {
                    question: question.into(),
                    reply: tx,
                },
            );
            id
        };
        let _registration = Registration { lane, id };
        let mut packet = query.to_vec();
        set_message_id(&mut packet, id);
        lane.socket
            .send(&packet)
            .await
            .map_err(|_| UpstreamFailure::Network)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(UpstreamFailure::Network),
            Err(_) => Err(UpstreamFailure::Timeout),
        }
    }

    /// Over TCP, on an idle connection to the upstream when there is one (the upstream may
    /// have closed it; then on a new one), which is kept for the next query if it answered.
    async fn query_tcp(
        &self,
        index: usize,
        upstream: &Upstream,
        query: &[u8],
        question: &[u8],
    ) -> Result<Vec<u8>, UpstreamFailure> {
        let pooled = upstream.idle().pop();
        if let Some(stream) = pooled {
            if let Ok(Ok((stream, answer))) =
                tokio::time::timeout(self.timeout, exchange(stream, query)).await
            {
                return finish_tcp(upstream, stream, answer, query, question);
            }
        }
        let fresh = async {
            let stream = TcpStream::connect(upstream.addr).await?;
            stream.set_nodelay(true)?;
            self.metrics.upstream_connection(index);
            exchange(stream, query).await
        };
        match tokio::time::timeout(self.timeout, fresh).await {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Err(_)) => Err(UpstreamFailure::Network),
            Ok(Ok((stream, answer))) => finish_tcp(upstream, stream, answer, query, question),
        }
    }
}

/// One query and its answer on a TCP connection (two-byte length prefix, RFC 7766).
async fn exchange(mut stream: TcpStream, query: &[u8]) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut frame = Vec::with_capacity(query.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(query);
    stream.write_all(&frame).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).await?;
    Ok((stream, answer))
}

/// Checks a TCP answer against its query and keeps the connection for reuse if it matched.
fn finish_tcp(
    upstream: &Upstream,
    stream: TcpStream,
    answer: Vec<u8>,
    query: &[u8],
    question: &[u8],
) -> Result<Vec<u8>, UpstreamFailure> {
    if answer.len() < HEADER_LEN
        || message_id(&answer) != message_id(query)
        || !question_matches(&answer, question)
    {
        return Err(UpstreamFailure::Malformed);
    }
    let mut idle = upstream.idle();
    if idle.len() < TCP_IDLE {
        idle.push(stream);
    }
    Ok(answer)
}

/// Whether `answer` carries `question` (the raw question section of the query) as its own.
/// Letters may differ in case: some servers do not echo 0x20-randomised names exactly.
fn question_matches(answer: &[u8], question: &[u8]) -> bool {
    answer.get(4..6) == Some(&[0, 1])
        && answer
            .get(HEADER_LEN..HEADER_LEN + question.len())
            .is_some_and(|q| q.eq_ignore_ascii_case(question))
}

/// The ID of a DNS message (its first two bytes).
fn message_id(message: &[u8]) -> Option<u16> {
    match message {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

fn set_message_id(message: &mut [u8], id: u16) {
    if let Some(slot) = message.get_mut(..2) {
        slot.copy_from_slice(&id.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_must_match_ignoring_case() {
        let question = b"\x03WwW\x07example\x00\x00\x01\x00\x01";
        let mut answer = vec![0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        answer.extend_from_slice(b"\x03www\x07EXAMPLE\x00\x00\x01\x00\x01");
        assert!(question_matches(&answer, question));
        answer[HEADER_LEN + 1] = b'x';
        assert!(!question_matches(&answer, question));
        assert!(!question_matches(&answer[..14], question));
    }
}
