//! Forwarding to the upstream resolvers, as a resolver that may be attacked must (unbound,
//! BIND, CoreDNS's forward plugin):
//!
//! - **Bounded.** Every forwarded query holds a [`Permit`] from the limits of its UDP thread and
//!   of the whole process; without one it is answered SERVFAIL at once. Memory and sockets stay
//!   bounded however many queries arrive for an upstream that never answers.
//! - **Unpoisonable.** Each UDP query goes out on a socket of its own, bound to a port drawn
//!   from a CSPRNG (`rand`'s thread RNG, ChaCha seeded from the OS) and connected to the
//!   upstream, so the kernel delivers only datagrams from the upstream's address and port; the
//!   ID comes from the same CSPRNG, the name's letters are randomly upper- or lowercased (0x20),
//!   and an answer is taken only when its ID and question (name byte for byte, type, class)
//!   are what was sent. Anything else is counted and ignored while the real answer is awaited.
//!   The client gets its own ID and question back.
//! - **Fast to fail.** An upstream that refuses (ICMP port unreachable, seen as ECONNREFUSED on
//!   the connected socket) or times out three times in a row is marked down for a back-off
//!   period (1 s, doubling to 16 s while it stays down) and skipped; one query then probes it.
//!   When every upstream is down the answer is SERVFAIL without waiting.
//!
//! The client's query goes upstream as it came but for ID and case, and the answer comes back
//! whole: rcode, flags, sections, TTLs and EDNS are the upstream's. A query that came over TCP
//! goes upstream over TCP, on a kept-open connection when one is idle.

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngExt;
use socket2::{Domain, Protocol, Socket, Type};
use std::os::fd::AsRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use crate::metrics::{Metrics, Mismatch, UpstreamFailure};

const HEADER_LEN: usize = 12;
const RCODE_REFUSED: u8 = 5;
/// Idle TCP connections kept per upstream.
const TCP_IDLE: usize = 4;
/// Consecutive timeouts after which an upstream is marked down.
const MAX_TIMEOUTS: u32 = 3;
/// How long an upstream stays down after it first fails, and at most.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(16);
/// Attempts at binding a random source port before letting the kernel pick one.
const BIND_ATTEMPTS: usize = 8;
/// The largest UDP datagram.
const MAX_DATAGRAM: usize = 65535;
/// How long a query polls for its answer before sleeping on it, when it may.
const SPIN: Duration = Duration::from_micros(60);
/// Sockets kept ready per upstream and thread.
const READY_PER_UPSTREAM: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot read the local port range: {0}")]
    PortRange(String),
}

/// Every upstream failed, refused or is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no upstream answered")]
pub struct Exhausted;

/// A cap on queries in flight; [`Limit::acquire`] hands out permits until it is reached.
#[derive(Debug)]
pub struct Limit {
    in_flight: AtomicUsize,
    max: usize,
}

impl Limit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max,
        })
    }

    /// Queries holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn take(&self) -> bool {
        let mut now = self.in_flight.load(Ordering::Relaxed);
        loop {
            if now >= self.max {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => now = actual,
            }
        }
    }

    fn give(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which limit refused a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    Thread,
    Total,
}

/// A forwarded query's place under its limits, given back on drop.
#[derive(Debug)]
pub struct Permit {
    total: Arc<Limit>,
    thread: Option<Arc<Limit>>,
}

impl Permit {
    /// A permit from `thread` (if the query came in on a UDP thread) and `total`.
    pub fn acquire(total: &Arc<Limit>, thread: Option<&Arc<Limit>>) -> Result<Self, Overload> {
        if let Some(thread) = thread {
            if !thread.take() {
                return Err(Overload::Thread);
            }
        }
        if !total.take() {
            if let Some(thread) = thread {
                thread.give();
            }
            return Err(Overload::Total);
        }
        Ok(Self {
            total: Arc::clone(total),
            thread: thread.map(Arc::clone),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.total.give();
        if let Some(thread) = &self.thread {
            thread.give();
        }
    }
}

/// Whether an upstream may be asked, kept in atomics shared by every thread: milliseconds
/// since the forwarder started until which it is down (0: up), its current back-off, and its
/// consecutive timeouts.
#[derive(Debug, Default)]
struct Health {
    down_until: AtomicU64,
    backoff_ms: AtomicU64,
    timeouts: AtomicU32,
}

impl Health {
    /// Whether to ask the upstream now. When its back-off has passed, one caller (the one that
    /// moves `down_until` on) probes it while the others go on skipping it.
    fn usable(&self, now: u64, probe_for: u64) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        until <= now
            && self
                .down_until
                .compare_exchange(until, now + probe_for, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    fn is_up(&self) -> bool {
        self.down_until.load(Ordering::Acquire) == 0
    }

    fn answered(&self) {
        self.timeouts.store(0, Ordering::Relaxed);
        self.backoff_ms.store(0, Ordering::Relaxed);
        self.down_until.store(0, Ordering::Release);
    }

    fn timed_out(&self, now: u64) {
        if self.timeouts.fetch_add(1, Ordering::AcqRel) + 1 >= MAX_TIMEOUTS {
            self.down(now);
        }
    }

    fn down(&self, now: u64) {
        let last = self.backoff_ms.load(Ordering::Relaxed);
        let backoff = if last == 0 {
            BACKOFF_MIN.as_millis() as u64
        } else {
            (last * 2).min(BACKOFF_MAX.as_millis() as u64)
        };
        self.backoff_ms.store(backoff, Ordering::Relaxed);
        self.timeouts.store(0, Ordering::Relaxed);
        self.down_until
            .store(now + backoff.max(1), Ordering::Release);
    }
}

struct Upstream {
    addr: SocketAddr,
    health: Health,
    /// TCP connections that answered and wait for the next query over TCP.
    idle: Mutex<Vec<TcpStream>>,
}

impl Upstream {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<TcpStream>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a query reached dns-shim, and so how it goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Over UDP; `spin`: poll for the answer for a moment before sleeping on it (when the
    /// thread has next to nothing else in flight).
    Udp {
        spin: bool,
    },
    Tcp,
}

/// Settings of the forwarder.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub timeout: Duration,
    /// Randomise the case of the name sent upstream (0x20); off for an upstream that does not
    /// echo it.
    pub randomize_case: bool,
}

pub struct Forwarder {
    upstreams: Vec<Upstream>,
    config: ForwardConfig,
    metrics: Arc<Metrics>,
    /// The source ports drawn from: the kernel's ephemeral range, which services do not bind.
    ports: (u16, u16),
    epoch: Instant,
}

thread_local! {
    /// Sockets opened ahead of time for this thread's next queries, by upstream.
    static READY: RefCell<Vec<(SocketAddr, UdpSocket)>> = const { RefCell::new(Vec::new()) };
    /// One receive buffer per thread: a forwarded query's task reads its answer here and keeps
    /// only its bytes, so a query in flight holds no large buffer.
    static RECEIVE: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
}

impl Forwarder {
    pub fn new(
        addrs: &[SocketAddr],
        config: ForwardConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ForwardError> {
        Ok(Self {
            upstreams: addrs
                .iter()
                .map(|addr| Upstream {
                    addr: *addr,
                    health: Health::default(),
                    idle: Mutex::new(Vec::new()),
                })
                .collect(),
            config,
            metrics,
            ports: local_port_range()?,
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether upstream `i` is up (not in back-off).
    pub fn is_up(&self, i: usize) -> bool {
        self.upstreams.get(i).is_some_and(|u| u.health.is_up())
    }

    /// Sends `query` (a whole DNS message whose question section ends at `question_end`) to
    /// the upstreams in order, skipping those that are down, and returns the first usable
    /// answer with the query's own ID and question.
    pub async fn forward(
        &self,
        query: &[u8],
        question_end: usize,
        transport: Transport,
    ) -> Result<Vec<u8>, Exhausted> {
        let Some(question) = query.get(HEADER_LEN..question_end) else {
            return Err(Exhausted);
        };
        if question.len() < 5 {
            return Err(Exhausted);
        }
        let probe_for = self.config.timeout.as_millis() as u64;
        for (i, upstream) in self.upstreams.iter().enumerate() {
            if !upstream.health.usable(self.now_ms(), probe_for) {
                self.metrics.upstream_skipped(i);
                continue;
            }
            self.metrics.upstream_request(i);
            let start = Instant::now();
            let result = match transport {
                Transport::Tcp => self.query_tcp(i, upstream, query, question).await,
                Transport::Udp { spin } => {
                    self.query_udp(i, upstream, query, question_end, spin).await
                }
            };
            match result {
                Ok(mut answer) => {
                    upstream.health.answered();
                    self.metrics.upstream_latency(i, start.elapsed());
                    self.metrics.upstream_health(i, true);
                    if answer.get(3).is_some_and(|b| b & 0x0f == RCODE_REFUSED) {
                        self.metrics.upstream_failure(i, UpstreamFailure::Refused);
                        continue;
                    }
                    restore(&mut answer, query, question_end);
                    return Ok(answer);
                }
                Err(failure) => {
                    debug!(upstream = %upstream.addr, ?failure, "upstream failed");
                    self.metrics.upstream_failure(i, failure);
                    match failure {
                        UpstreamFailure::Unreachable => upstream.health.down(self.now_ms()),
                        UpstreamFailure::Timeout => upstream.health.timed_out(self.now_ms()),
                        _ => {}
                    }
                    self.metrics.upstream_health(i, upstream.health.is_up());
                }
            }
        }
        Err(Exhausted)
    }

    /// One query on a socket of its own, bound to a random port and connected to the
    /// upstream.
    async fn query_udp(
        &self,
        index: usize,
        upstream: &Upstream,
        query: &[u8],
        question_end: usize,
        spin: bool,
    ) -> Result<Vec<u8>, UpstreamFailure> {
        let socket = self
            .take_socket(upstream.addr)
            .map_err(|_| UpstreamFailure::Network)?;
        let mut packet = query.to_vec();
        let id = {
            let mut rng = rand::rng();
            let id: u16 = rng.random();
            if self.config.randomize_case {
                if let Some(name) = packet.get_mut(HEADER_LEN..question_end.saturating_sub(4)) {
                    randomize_case(name, &mut rng);
                }
            }
            id
        };
        set_message_id(&mut packet, id);
        let sent = packet.get(HEADER_LEN..question_end).unwrap_or_default();
        socket.send(&packet).await.map_err(io_failure)?;
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        if spin {
            // A nearby upstream answers within tens of microseconds, less than it takes to put
            // this thread to sleep and wake it again (a halted vCPU, an IPI). Poll without
            // blocking for a moment, yielding to the thread's other tasks in between.
            let until = Instant::now() + SPIN;
            while Instant::now() < until {
                match receive_now(&socket) {
                    Ok(answer) => match check(&answer, id, sent) {
                        Ok(()) => return Ok(answer),
                        Err(mismatch) => self.metrics.upstream_mismatch(index, mismatch),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        tokio::task::yield_now().await;
                    }
                    Err(e) => return Err(io_failure(e)),
                }
            }
        }
        loop {
            let received = tokio::time::timeout_at(deadline, async {
                loop {
                    // ERROR too: an ICMP port unreachable is only an error on the socket, which
                    // readability alone never reports.
                    let ready = socket.ready(Interest::READABLE | Interest::ERROR).await?;
                    // try_io with both interests never runs (tokio 1.54): one at a time.
                    let interest = if ready.is_error() {
                        Interest::ERROR
                    } else {
                        Interest::READABLE
                    };
                    let got = socket.try_io(interest, || {
                        RECEIVE.with(|buf| {
                            let mut buf = buf.borrow_mut();
                            let n = nix::sys::socket::recv(
                                socket.as_raw_fd(),
                                &mut buf,
                                nix::sys::socket::MsgFlags::empty(),
                            )?;
                            Ok(buf.get(..n).unwrap_or_default().to_vec())
                        })
                    });
                    match got {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        other => return other,
                    }
                }
            })
            .await;
            let answer = match received {
                Err(_) => return Err(UpstreamFailure::Timeout),
                Ok(Err(e)) => return Err(io_failure(e)),
                Ok(Ok(answer)) => answer,
            };
            match check(&answer, id, sent) {
                Ok(()) => return Ok(answer),
                Err(mismatch) => self.metrics.upstream_mismatch(index, mismatch),
            }
        }
    }

    /// A socket for one query to `upstream`: one made ahead of time by [`Forwarder::prepare`]
    /// on this thread if there is one (never used before: ports are not reused), else a new one.
    fn take_socket(&self, upstream: SocketAddr) -> std::io::Result<UdpSocket> {
        let ready = READY.with(|ready| {
            let mut ready = ready.borrow_mut();
            let at = ready.iter().position(|(addr, _)| *addr == upstream)?;
            Some(ready.swap_remove(at).1)
        });
        match ready {
            Some(socket) => Ok(socket),
            None => self.socket(upstream),
        }
    }

    /// Opens, on this thread, the sockets that the next query to each upstream that is up
    /// will take, so that binding and connecting them is not on that query's way. Call it
    /// after an answer has gone out.
    pub fn prepare(&self) {
        for upstream in &self.upstreams {
            if !upstream.health.is_up() {
                continue;
            }
            let missing = READY.with(|ready| {
                ready
                    .borrow()
                    .iter()
                    .filter(|(a, _)| *a == upstream.addr)
                    .count()
                    < READY_PER_UPSTREAM
            });
            if missing {
                if let Ok(socket) = self.socket(upstream.addr) {
                    READY.with(|ready| ready.borrow_mut().push((upstream.addr, socket)));
                }
            }
        }
    }

    /// A non-blocking UDP socket connected to `upstream` from a port drawn at random.
    fn socket(&self, upstream: SocketAddr) -> std::io::Result<UdpSocket> {
        let domain = Domain::for_address(upstream);
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_nonblocking(true)?;
        let any = |port| -> SocketAddr {
            if upstream.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, port).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, port).into()
            }
        };
        let (low, high) = self.ports;
        let mut bound = false;
        for _ in 0..BIND_ATTEMPTS {
            let port = rand::rng().random_range(low..=high);
            if socket.bind(&any(port).into()).is_ok() {
                bound = true;
                break;
            }
        }
        if !bound {
            // Every attempt found its port taken: the kernel's pick is random too.
            socket.bind(&any(0).into())?;
        }
        socket.connect(&upstream.into())?;
        UdpSocket::from_std(socket.into())
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
        let timeout = self.config.timeout;
        let pooled = upstream.idle().pop();
        if let Some(stream) = pooled {
            if let Ok(Ok((stream, answer))) =
                tokio::time::timeout(timeout, exchange(stream, query)).await
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
        match tokio::time::timeout(timeout, fresh).await {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => Err(io_failure(e)),
            Ok(Ok((stream, answer))) => finish_tcp(upstream, stream, answer, query, question),
        }
    }
}

/// One datagram from `socket` if one is there, without waiting (and an ICMP error as such).
fn receive_now(socket: &UdpSocket) -> std::io::Result<Vec<u8>> {
    RECEIVE.with(|buf| {
        let mut buf = buf.borrow_mut();
        let n = nix::sys::socket::recv(
            socket.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )?;
        Ok(buf.get(..n).unwrap_or_default().to_vec())
    })
}

fn io_failure(e: std::io::Error) -> UpstreamFailure {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => UpstreamFailure::Unreachable,
        _ => UpstreamFailure::Network,
    }
}

/// Whether `answer` answers a query with `id` whose question section was `question`: a
/// response with that ID, one question, and the question's bytes exactly.
fn check(answer: &[u8], id: u16, question: &[u8]) -> Result<(), Mismatch> {
    let header = answer.get(..HEADER_LEN).ok_or(Mismatch::Malformed)?;
    if message_id(header) != Some(id) {
        return Err(Mismatch::Id);
    }
    if header.get(2).is_none_or(|flags| flags & 0x80 == 0) || header.get(4..6) != Some(&[0, 1]) {
        return Err(Mismatch::Malformed);
    }
    match answer.get(HEADER_LEN..HEADER_LEN + question.len()) {
        Some(q) if q == question => Ok(()),
        _ => Err(Mismatch::Question),
    }
}

/// Gives the client's ID and question (its case) back to an upstream's answer.
fn restore(answer: &mut [u8], query: &[u8], question_end: usize) {
    if let (Some(to), Some(from)) = (answer.get_mut(..question_end), query.get(..question_end)) {
        let (to_id, to_question) = to.split_at_mut(2);
        let (from_id, from_question) = from.split_at(2);
        to_id.copy_from_slice(from_id);
        if let (Some(t), Some(f)) = (to_question.get_mut(10..), from_question.get(10..)) {
            t.copy_from_slice(f);
        }
    }
}

/// Upper- or lowercases each letter of `name` (wire format: length bytes are below 64 and so
/// never letters) at random.
fn randomize_case(name: &mut [u8], rng: &mut impl rand::Rng) {
    let mut bits = 0u64;
    for (i, b) in name.iter_mut().enumerate() {
        if i % 64 == 0 {
            bits = rng.next_u64();
        }
        if b.is_ascii_alphabetic() {
            *b = if bits & 1 == 1 {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
        }
        bits >>= 1;
    }
}

/// The kernel's ephemeral port range (`ip_local_port_range`), or Linux's default.
fn local_port_range() -> Result<(u16, u16), ForwardError> {
    let text = match std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
        Ok(text) => text,
        Err(_) => return Ok((32768, 60999)),
    };
    let mut words = text.split_whitespace().map(str::parse::<u16>);
    match (words.next(), words.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low > 0 && low <= high => Ok((low, high)),
        _ => Err(ForwardError::PortRange(text.trim().to_string())),
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
    let id = message_id(query).unwrap_or(0);
    if check(&answer, id, question).is_err() {
        return Err(UpstreamFailure::Malformed);
    }
    let mut idle = upstream.idle();
    if idle.len() < TCP_IDLE {
        idle.push(stream);
    }
    Ok(answer)
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

    const QUESTION: &[u8] = b"\x03WwW\x07example\x00\x00\x01\x00\x01";

    fn answer(id: u16, question: &[u8]) -> Vec<u8> {
        let mut a = id.to_be_bytes().to_vec();
        a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        a.extend_from_slice(question);
        a
    }

    #[test]
    fn an_answer_must_match_id_and_question_byte_for_byte() {
        assert_eq!(check(&answer(7, QUESTION), 7, QUESTION), Ok(()));
        assert_eq!(check(&answer(8, QUESTION), 7, QUESTION), Err(Mismatch::Id));
        let lower = b"\x03www\x07example\x00\x00\x01\x00\x01";
        assert_eq!(
            check(&answer(7, lower), 7, QUESTION),
            Err(Mismatch::Question)
        );
        let mut query = answer(7, QUESTION);
        query[2] = 0x01;
        assert_eq!(check(&query, 7, QUESTION), Err(Mismatch::Malformed));
        assert_eq!(
            check(&answer(7, QUESTION)[..14], 7, QUESTION),
            Err(Mismatch::Question)
        );
    }

    #[test]
    fn case_randomisation_keeps_the_name_but_its_case() {
        let mut rng = rand::rng();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..32 {
            let mut name = b"\x07example\x03com\x00".to_vec();
            randomize_case(&mut name, &mut rng);
            assert!(name.eq_ignore_ascii_case(b"\x07example\x03com\x00"));
            assert_eq!((name[0], name[8], name[12]), (7, 3, 0));
            seen.insert(name);
        }
        assert!(seen.len() > 16, "{} distinct of 32", seen.len());
    }

    #[test]
    fn the_client_gets_its_id_and_case_back() {
        let mut query = answer(0x1234, QUESTION);
        query[2] = 0x01;
        let mut got = answer(0x9999, b"\x03www\x07EXAMPLE\x00\x00\x01\x00\x01");
        got.extend_from_slice(b"rest");
        restore(&mut got, &query, HEADER_LEN + QUESTION.len());
        assert_eq!(&got[..2], &[0x12, 0x34]);
        assert_eq!(&got[HEADER_LEN..HEADER_LEN + QUESTION.len()], QUESTION);
        assert!(got.ends_with(b"rest"));
    }

    #[test]
    fn permits_are_bounded_per_thread_and_in_all() {
        let total = Limit::new(3);
        let thread = Limit::new(2);
        let a = Permit::acquire(&total, Some(&thread)).unwrap();
        let _b = Permit::acquire(&total, Some(&thread)).unwrap();
        assert_eq!(
            Permit::acquire(&total, Some(&thread)).unwrap_err(),
            Overload::Thread
        );
        let _c = Permit::acquire(&total, None).unwrap();
        assert_eq!(Permit::acquire(&total, None).unwrap_err(), Overload::Total);
        drop(a);
        assert_eq!(thread.in_flight(), 1);
        assert!(Permit::acquire(&total, Some(&thread)).is_ok());
    }

    #[test]
    fn an_upstream_is_down_after_refusing_and_probed_once_after_backoff() {
        let health = Health::default();
        assert!(health.usable(1, 100));
        health.down(10);
        assert!(!health.usable(11, 100));
        let after = 10 + BACKOFF_MIN.as_millis() as u64;
        assert!(health.usable(after, 100), "the prober");
        assert!(!health.usable(after, 100), "everyone else while it probes");
        health.down(after);
        assert_eq!(
            health.backoff_ms.load(Ordering::Relaxed),
            2 * BACKOFF_MIN.as_millis() as u64
        );
        health.answered();
        assert!(health.usable(after + 1, 100));
        for _ in 0..MAX_TIMEOUTS - 1 {
            health.timed_out(5);
        }
        assert!(health.is_up());
        health.timed_out(5);
        assert!(!health.is_up());
    }
}
