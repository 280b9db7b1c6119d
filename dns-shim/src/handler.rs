//! The request handler (hickory-server's `RequestHandler`): answers names under the suffix from
//! the zone and relays every other name from the upstreams. Every answer and every error is
//! built with hickory's types; nothing here panics on input.
//!
//! What the RFCs ask of it, beyond the answers themselves (see `zone.rs`):
//! - EDNS (RFC 6891, RFC 3225): a query with an OPT gets one in every answer, errors included,
//!   with the DO bit copied; a version above 0 gets BADVERS; the answer fits the payload size
//!   the client advertised (512 without EDNS, at most 1,232), else it is cut to what fits,
//!   with TC set and the OPT kept (RFC 2181 section 9).
//! - Negative answers carry the zone's SOA (RFC 2308); the apex has its SOA and NS; a name with
//!   hosts below it is NODATA, never NXDOMAIN (RFC 8020).
//! - ANY gets the addresses there are, or a synthesised HINFO (RFC 8482); AXFR and IXFR are
//!   refused (nothing transfers this zone).

use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use policy::resolve::{Resolution, MAX_NAME_LEN};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::catalog::Catalog;
use crate::fastpath::{MAX_PAYLOAD, PLAIN_PAYLOAD};
use crate::forward::{Exhausted, Forwarder, Limit, Overload, Permit, Transport};
use crate::metrics::{Metrics, Outcome};

pub struct Handler {
    catalog: Arc<Catalog>,
    forwarder: Arc<Forwarder>,
    metrics: Arc<Metrics>,
    /// Forwarded queries in flight, in all.
    limit: Arc<Limit>,
    /// Cancelled when a drain's grace is over: every query still waiting upstream gets SERVFAIL.
    give_up: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("domain suffix {0:?} is not a DNS name")]
    Suffix(String),
}

impl Handler {
    pub fn new(
        catalog: Arc<Catalog>,
        forwarder: Arc<Forwarder>,
        metrics: Arc<Metrics>,
        limit: Arc<Limit>,
        give_up: CancellationToken,
    ) -> Self {
        Self {
            catalog,
            forwarder,
            metrics,
            limit,
            give_up,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn forwarder(&self) -> &Arc<Forwarder> {
        &self.forwarder
    }

    /// The limit on forwarded queries in flight in all.
    pub fn limit(&self) -> &Arc<Limit> {
        &self.limit
    }

    /// A permit to forward one query, from the limit of `thread` (a UDP thread's) and the
    /// total; a refusal is counted.
    pub fn permit(&self, thread: Option<&Arc<Limit>>) -> Result<Permit, Overload> {
        let permit = Permit::acquire(&self.limit, thread);
        if let Err(limit) = permit {
            self.metrics.overload(limit);
        }
        permit
    }

    /// Whether answering `request` means asking an upstream; every other request is answered
    /// without waiting on anything but the reply's own send.
    pub fn forwards(&self, request: &Request) -> bool {
        if request.metadata.op_code != OpCode::Query
            || request.edns.as_ref().is_some_and(|e| e.version() > 0)
        {
            return false;
        }
        let [query] = request.queries.queries() else {
            return false;
        };
        let mut buf = [0u8; MAX_NAME_LEN];
        let Some(text) = ascii_name(query.original().name(), &mut buf) else {
            return true;
        };
        let zone = self.catalog.zone();
        if !self.catalog.is_ready() {
            return !zone.table.is_ours(text);
        }
        matches!(zone.table.resolve(text), Resolution::Outside)
    }

    /// For a query that [`Handler::forwards`] (a whole message whose question ends at
    /// `question_end`): the upstream's answer over UDP with the client's ID and question, as
    /// it came. `Err` when no upstream answered, or a drain gave up on it; the caller answers
    /// SERVFAIL ([`Handler::fail`]).
    pub async fn forward_udp(
        &self,
        query: &[u8],
        question_end: usize,
        spin: bool,
    ) -> Result<Vec<u8>, Exhausted> {
        tokio::select! {
            answer = self.forwarder.forward(query, question_end, Transport::Udp { spin }) => answer,
            () = self.give_up.cancelled() => Err(Exhausted),
        }
    }

    /// SERVFAIL for a request that no upstream answered; counted.
    pub async fn fail<R: ResponseHandler>(&self, request: &Request, response: R) {
        self.metrics.request(qtype_of(request), Outcome::ServFail);
        if let Err(error) = self.error(request, response, ResponseCode::ServFail).await {
            warn!(%error, "response not sent");
        }
    }

    /// The OPT of the answer to `request`, if it had one: version 0, the DO bit copied, and
    /// the payload size the answer is cut to (the client's, between 512 and 1,232), which is
    /// also what every UDP sender here and in hickory limits the message to.
    fn edns(request: &Request) -> Option<Edns> {
        request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().clamp(PLAIN_PAYLOAD, MAX_PAYLOAD));
            edns.set_version(0);
            edns.set_dnssec_ok(asked.flags().dnssec_ok);
            edns
        })
    }

    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        code: ResponseCode,
    ) -> Result<ResponseInfo, String> {
        let edns = Self::edns(request);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut message = builder.error_msg(&request.metadata, code);
        message.metadata_mut().recursion_available = true;
        response
            .send_response(message)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends an upstream's answer through hickory (decoded and encoded again), cut to the
    /// client's payload size on UDP: for TCP clients, and for UDP answers larger than the
    /// client takes.
    pub async fn relay<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        answer: &[u8],
    ) -> Result<ResponseInfo, String> {
        let message = Message::from_vec(answer).map_err(|e| e.to_string())?;
        let mut metadata = message.metadata;
        metadata.id = request.metadata.id;
        let edns = match (&request.edns, message.edns) {
            (Some(asked), Some(mut given)) => {
                given.set_max_payload(
                    given
                        .max_payload()
                        .min(asked.max_payload().clamp(PLAIN_PAYLOAD, u16::MAX)),
                );
                Some(given)
            }
            (Some(_), None) => Self::edns(request),
            _ => None,
        };
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let out = builder.build(
            metadata,
            &message.answers,
            &message.authorities,
            [],
            &message.additionals,
        );
        response.send_response(out).await.map_err(|e| e.to_string())
    }

    async fn local<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        code: ResponseCode,
        mut answers: Vec<Record>,
        mut authority: Vec<Record>,
    ) -> (Outcome, Result<ResponseInfo, String>) {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        metadata.response_code = code;
        let edns = Self::edns(request);
        if request.protocol().is_datagram() {
            let limit = edns.as_ref().map_or(PLAIN_PAYLOAD, Edns::max_payload);
            if let Some(kept) = fit(
                request,
                metadata,
                &answers,
                &authority,
                edns.as_ref(),
                limit,
            ) {
                // Cut to whole records, the OPT kept, TC set: the client asks again over TCP.
                answers.truncate(kept);
                authority.clear();
                metadata.truncation = true;
            }
        }
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let message = builder.build(metadata, &answers, &authority, [], []);
        let outcome = match code {
            ResponseCode::NXDomain => Outcome::NxDomain,
            ResponseCode::NoError if answers.is_empty() => Outcome::NoData,
            ResponseCode::NoError => Outcome::Local,
            ResponseCode::ServFail => Outcome::ServFail,
            _ => Outcome::Refused,
        };
        let sent = response
            .send_response(message)
            .await
            .map_err(|e| e.to_string());
        (outcome, sent)
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
    ) -> (RecordType, Outcome, Result<ResponseInfo, String>) {
        let qtype = qtype_of(request);
        if request.metadata.op_code != OpCode::Query {
            return self
                .refuse(request, response, qtype, ResponseCode::NotImp)
                .await;
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return self
                .refuse(request, response, qtype, ResponseCode::BADVERS)
                .await;
        }
        let [query] = request.queries.queries() else {
            return self
                .refuse(request, response, qtype, ResponseCode::FormErr)
                .await;
        };
        let owner = query.original().name();
        let mut buf = [0u8; MAX_NAME_LEN];
        let text = ascii_name(owner, &mut buf);
        let zone = self.catalog.zone_full();
        let resolution = match text {
            Some(text) if !self.catalog.is_ready() && zone.table.is_ours(text) => {
                // No zone yet: no answer at all rather than a wrong NXDOMAIN.
                return self
                    .refuse(request, response, qtype, ResponseCode::ServFail)
                    .await;
            }
            Some(text) => zone.table.resolve(text),
            None => Resolution::Outside,
        };
        if resolution == Resolution::Outside {
            drop(zone);
            return self.forward(request, response, qtype).await;
        }
        if query.query_class() != DNSClass::IN
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
        {
            return self
                .refuse(request, response, qtype, ResponseCode::Refused)
                .await;
        }
        let Some(mut local) = zone.local(owner, qtype, &resolution) else {
            return self
                .refuse(request, response, qtype, ResponseCode::ServFail)
                .await;
        };
        if zone.config().shuffle {
            // The CNAME of a search expansion stays first.
            let start = usize::from(matches!(resolution, Resolution::Expansion { .. }));
            if let Some(addresses) = local.answers.get_mut(start..) {
                fastrand::shuffle(addresses);
            }
        }
        drop(zone);
        let (outcome, sent) = self
            .local(
                request,
                response,
                local.code,
                local.answers,
                local.authority,
            )
            .await;
        (qtype, outcome, sent)
    }

    async fn refuse<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
        qtype: RecordType,
        code: ResponseCode,
    ) -> (RecordType, Outcome, Result<ResponseInfo, String>) {
        let sent = self.error(request, response, code).await;
        let outcome = if code == ResponseCode::ServFail {
            Outcome::ServFail
        } else {
            Outcome::Refused
        };
        (qtype, outcome, sent)
    }

    /// A request for a name that is not the zone's, from the hickory path (TCP, or UDP through
    /// hickory's own loop): relayed through hickory's encoding.
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
        qtype: RecordType,
    ) -> (RecordType, Outcome, Result<ResponseInfo, String>) {
        let Ok(_permit) = self.permit(None) else {
            let sent = self.error(request, response, ResponseCode::ServFail).await;
            return (qtype, Outcome::ServFail, sent);
        };
        let transport = if request.protocol().is_datagram() {
            Transport::Udp { spin: false }
        } else {
            Transport::Tcp
        };
        let question_end = 12 + request.queries.as_bytes().len();
        let answer = tokio::select! {
            answer = self.forwarder.forward(request.as_slice(), question_end, transport) => answer,
            () = self.give_up.cancelled() => Err(Exhausted),
        };
        let result = match answer {
            Ok(answer) => match self.relay(request, response.clone(), &answer).await {
                Ok(info) => (qtype, Outcome::Forwarded, Ok(info)),
                Err(e) => {
                    debug!(error = %e, "upstream answer not relayed");
                    let sent = self.error(request, response, ResponseCode::ServFail).await;
                    (qtype, Outcome::ServFail, sent)
                }
            },
            Err(_) => {
                let sent = self.error(request, response, ResponseCode::ServFail).await;
                (qtype, Outcome::ServFail, sent)
            }
        };
        result
    }
}

/// `None` when the answer fits in `limit` bytes; else how many of `answers` do, with the OPT
/// (and without the authority section). Encoded with hickory, as it will be sent.
fn fit(
    request: &Request,
    metadata: Metadata,
    answers: &[Record],
    authority: &[Record],
    edns: Option<&Edns>,
    limit: u16,
) -> Option<usize> {
    let size = |answers: &[Record], authority: &[Record]| {
        let mut bytes = Vec::with_capacity(1024);
        let mut encoder = BinEncoder::new(&mut bytes);
        let message = MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            answers,
            authority,
            [],
            [],
        );
        message
            .destructive_emit(&mut encoder)
            .map_or(usize::MAX, |_| bytes.len())
    };
    if size(answers, authority) <= limit as usize {
        return None;
    }
    let mut kept = answers.len();
    while kept > 0 && size(answers.get(..kept).unwrap_or_default(), &[]) > limit as usize {
        kept -= 1;
    }
    Some(kept)
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let (qtype, outcome, sent) = self.respond(request, response).await;
        self.metrics.request(qtype, outcome);
        match sent {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, "response not sent");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

fn qtype_of(request: &Request) -> RecordType {
    request
        .queries
        .queries()
        .first()
        .map_or(RecordType::Unknown(0), |q| q.query_type())
}

/// A handler shared between the UDP loops, the TCP server and hickory's server.
#[derive(Clone)]
pub struct Shared(pub Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        self.0.handle_request::<R, T>(request, response).await
    }
}

/// The name as dotted ASCII text without the trailing dot, in `buf`; `None` for names with
/// bytes that a host name cannot hold (they are never the table's) or that are too long.
fn ascii_name<'b>(name: &Name, buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b str> {
    let mut len = 0;
    for label in name.iter() {
        if label.iter().any(|b| *b == b'.' || !b.is_ascii_graphic()) {
            return None;
        }
        if len > 0 {
            *buf.get_mut(len)? = b'.';
            len += 1;
        }
        buf.get_mut(len..len + label.len())?.copy_from_slice(label);
        len += label.len();
    }
    std::str::from_utf8(buf.get(..len)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_name_keeps_case_and_drops_root() {
        let name = Name::from_ascii("HttpBin.bar.GLOBAL.").unwrap();
        let mut buf = [0u8; MAX_NAME_LEN];
        assert_eq!(ascii_name(&name, &mut buf), Some("HttpBin.bar.GLOBAL"));
        assert_eq!(ascii_name(&Name::root(), &mut buf), Some(""));
    }

    #[test]
    fn ascii_name_refuses_dots_inside_labels() {
        let name = Name::from_labels(vec![b"a.b".as_slice(), b"global".as_slice()]).unwrap();
        let mut buf = [0u8; MAX_NAME_LEN];
        assert_eq!(ascii_name(&name, &mut buf), None);
    }
}
