//! The UDP receive loops: one per SO_REUSEPORT socket, each on a thread of its own with a
//! single-threaded runtime (thread per socket, no work stealing between them). A request answered from the table is
//! handled inline and its reply sent straight from the loop, with no task spawned and no
//! channel crossed; a request that goes upstream gets a task of its own so that the loop keeps
//! reading, and the upstream's answer is sent on byte for byte (with the client's ID). The
//! request and response types are hickory-server's, and so is the handler trait.
//!
//! hickory's own `Server::register_socket` loop is kept as an option (`--udp-loop hickory`);
//! it spawns a task per datagram and passes every reply through a channel to the socket's
//! stream, which costs throughput and latency (see benches/RESULTS.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::MessageType;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::forward::Forwarder;
use crate::handler::Handler;

const HEADER_LEN: usize = 12;
/// Queries are small; a datagram longer than this is cut and fails to parse (FORMERR).
const MAX_QUERY: usize = 4096;
/// The payload size that a request without EDNS may receive (RFC 1035 section 4.2.1).
const PLAIN_UDP_PAYLOAD: u16 = 512;

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
        let max = response.edns().map_or(PLAIN_UDP_PAYLOAD, |e| {
            e.max_payload().max(PLAIN_UDP_PAYLOAD)
        });
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let id = response.metadata().id;
        let op_code = u8::from(response.metadata().op_code);
        // Records that do not fit are left out and TC is set by the encoder.
        match response.destructive_emit(&mut encoder) {
            Ok(info) => {
                self.socket.send_to(&bytes, self.dst).await?;
                Ok(info)
            }
            Err(e) => {
                // As hickory does: a bare SERVFAIL rather than no answer.
                let mut servfail = [0u8; HEADER_LEN];
                servfail[..2].copy_from_slice(&id.to_be_bytes());
                servfail[2] = 0x80 | ((op_code & 0x0f) << 3);
                servfail[3] = 2;
                self.socket.send_to(&servfail, self.dst).await?;
                Err(NetError::from(e.to_string()))
            }
        }
    }
}

/// Serves `socket` on a new thread named `udp-{index}` with its own single-threaded runtime
/// and its own upstream socket per upstream.
pub fn spawn(
    index: usize,
    socket: std::net::UdpSocket,
    handler: Arc<Handler>,
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("udp-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let metrics = Arc::clone(handler.metrics());
                let handler = match Forwarder::new(&upstreams, 1, timeout, metrics).await {
                    Ok(forwarder) => Arc::new(handler.with_forwarder(Arc::new(forwarder))),
                    Err(e) => {
                        tracing::warn!(error = %e, "udp thread forwards through the shared sockets");
                        handler
                    }
                };
                match UdpSocket::from_std(socket) {
                    Ok(socket) => serve(socket, handler).await,
                    Err(e) => tracing::error!(error = %e, "udp socket not served"),
                }
            })
        })?;
    Ok(())
}

pub async fn serve(socket: UdpSocket, handler: Arc<Handler>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_QUERY];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                debug!(error = %e, "udp receive");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        // Nothing can be sent back to port 0; such a source is spoofed.
        if src.port() == 0 || n < HEADER_LEN {
            continue;
        }
        let Some(packet) = buf.get(..n) else {
            continue;
        };
        let request = match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
            Ok(request) => request,
            Err(_) => {
                if packet.get(2).is_some_and(|flags| flags & 0x80 == 0) {
                    let _ = socket.send_to(&formerr(packet), src).await;
                }
                continue;
            }
        };
        // Responses are never answered: no reflection.
        if request.metadata.message_type == MessageType::Response {
            continue;
        }
        let reply = Reply {
            socket: Arc::clone(&socket),
            dst: src,
        };
        if handler.forwards(&request) {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                match handler.forward_raw(&request).await {
                    Ok(answer) => {
                        if let Err(e) = reply.socket.send_to(&answer, reply.dst).await {
                            debug!(error = %e, "udp send");
                        }
                    }
                    Err(_) => handler.fail(&request, reply).await,
                }
            });
        } else {
            handler
                .handle_request::<_, TokioTime>(&request, reply)
                .await;
        }
    }
}

/// A FORMERR response to a query whose header could be read but not the rest: the ID, opcode
/// and RD of the query, no sections.
fn formerr(query: &[u8]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    if let ([id0, id1, flags, ..], [o0, o1, o2, o3, ..]) = (query, &mut out) {
        (*o0, *o1) = (*id0, *id1);
        *o2 = 0x80 | (flags & 0x79);
        *o3 = 0x01;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formerr_keeps_id_opcode_and_rd() {
        let query = [0xab, 0xcd, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 0, 3];
        assert_eq!(
            formerr(&query),
            [0xab, 0xcd, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
