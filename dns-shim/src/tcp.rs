//! DNS over TCP (RFC 7766), served by dns-shim's own loop into the same hickory handler: at
//! most `--tcp-connections` connections (one more is accepted and closed at once, counted),
//! each closed after `--tcp-idle-timeout-ms` without a query (a frame that arrives slowly
//! counts against the same timeout), queries on one connection handled concurrently (up to
//! [`PIPELINE`]) and answered in the order they finish. An accept error (out of file
//! descriptors) backs off from 10 ms to 1 s instead of spinning.
//!
//! hickory-server 0.26's own TCP loop answers the queries of a connection one at a time, caps
//! nothing and retries a failed accept at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::handler::Handler;
use crate::udp::formerr;

/// Queries of one connection handled at once; the connection is not read further until one
/// of them is answered.
pub const PIPELINE: usize = 32;
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// Sends each answer as a length-prefixed frame to the connection's writer.
#[derive(Clone)]
struct Reply {
    frames: mpsc::Sender<Vec<u8>>,
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
        let mut bytes = Vec::with_capacity(512);
        let metadata = *response.metadata();
        let result = response.destructive_emit(&mut BinEncoder::new(&mut bytes));
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                let mut failed =
                    Metadata::new(metadata.id, MessageType::Response, metadata.op_code);
                failed.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                };
                bytes.clear();
                header.emit(&mut BinEncoder::new(&mut bytes))?;
                warn!(error = %e, "answer not encoded; SERVFAIL sent");
                ResponseInfo::from(header)
            }
        };
        let len = u16::try_from(bytes.len()).map_err(|_| NetError::from("answer too long"))?;
        let mut frame = Vec::with_capacity(bytes.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&bytes);
        self.frames
            .send(frame)
            .await
            .map_err(|_| NetError::from("connection closed"))?;
        Ok(info)
    }
}

/// Accepts connections until `stop`.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    config: TcpConfig,
    stop: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, src) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(e) => {
                debug!(error = %e, ?backoff, "tcp accept; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            handler.metrics().tcp_refused();
            drop(stream);
            continue;
        };
        let handler = Arc::clone(&handler);
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, src, handler, config.idle_timeout, stop).await;
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    src: SocketAddr,
    handler: Arc<Handler>,
    idle: Duration,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(PIPELINE);
    let write = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let pipeline = Arc::new(Semaphore::new(PIPELINE));
    loop {
        let read = async {
            let len = reader.read_u16().await? as usize;
            let mut message = vec![0u8; len];
            reader.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(message)
        };
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = tokio::time::timeout(idle, read) => match message {
                Ok(Ok(message)) if !message.is_empty() => message,
                // Idle too long, closed, broken, or an empty frame.
                _ => break,
            },
        };
        let Ok(slot) = Arc::clone(&pipeline).acquire_owned().await else {
            break;
        };
        let handler = Arc::clone(&handler);
        let reply = Reply {
            frames: frames.clone(),
        };
        tokio::spawn(async move {
            match Request::from_bytes(message.clone(), src, Protocol::Tcp) {
                Ok(request) if request.metadata.message_type == MessageType::Query => {
                    handler
                        .handle_request::<_, TokioTime>(&request, reply)
                        .await;
                }
                Ok(_) => {}
                Err(_) => {
                    if let Some(answer) = formerr(&message) {
                        if let Ok(len) = u16::try_from(answer.len()) {
                            let mut frame = len.to_be_bytes().to_vec();
                            frame.extend_from_slice(&answer);
                            let _ = reply.frames.send(frame).await;
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    // The writer ends once every query still being answered has sent its answer.
    drop(frames);
    let _ = write.await;
}
