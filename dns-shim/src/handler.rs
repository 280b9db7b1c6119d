//! The request handler: answers names under the suffix from the host table and relays every
//! other name from the upstreams. Errors become response codes; nothing here panics on input.

use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use policy::resolve::{Host, Resolution, MAX_NAME_LEN};
use tracing::{debug, warn};

use crate::catalog::Catalog;
use crate::forward::{Exhausted, Forwarder};
use crate::metrics::{Metrics, Outcome};

/// The UDP payload size advertised in local answers (the DNS flag day 2020 value).
const LOCAL_EDNS_PAYLOAD: u16 = 1232;

pub struct Handler {
    catalog: Arc<Catalog>,
    forwarder: Arc<Forwarder>,
    metrics: Arc<Metrics>,
    ttl: u32,
    zone: Name,
    soa_mname: Name,
    soa_rname: Name,
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
        ttl: u32,
        suffix: &str,
    ) -> Result<Self, HandlerError> {
        let name = |text: String| {
            Name::from_ascii(&text).map_err(|_| HandlerError::Suffix(suffix.to_string()))
        };
        Ok(Self {
            zone: name(format!("{suffix}."))?,
            soa_mname: name(format!("dns-shim.{suffix}."))?,
            soa_rname: name(format!("hostmaster.{suffix}."))?,
            catalog,
            forwarder,
            metrics,
            ttl,
        })
    }

    /// The same handler with another forwarder: each UDP thread forwards over sockets of its
    /// own runtime, so an upstream's answer wakes the task that waits for it on the same thread.
    pub fn with_forwarder(&self, forwarder: Arc<Forwarder>) -> Self {
        Self {
            catalog: Arc::clone(&self.catalog),
            forwarder,
            metrics: Arc::clone(&self.metrics),
            ttl: self.ttl,
            zone: self.zone.clone(),
            soa_mname: self.soa_mname.clone(),
            soa_rname: self.soa_rname.clone(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn soa(&self) -> Record {
        let soa = SOA::new(
            self.soa_mname.clone(),
            self.soa_rname.clone(),
            self.catalog.generation(),
            3600,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.zone.clone(), self.ttl, RData::SOA(soa))
    }

    /// The records of `host` of type `qtype`, owned by `owner`, in random order.
    fn records(&self, owner: &Name, host: &Host, qtype: RecordType, out: &mut Vec<Record>) {
        let start = out.len();
        match qtype {
            RecordType::A => out.extend(
                host.ipv4
                    .iter()
                    .map(|ip| Record::from_rdata(owner.clone(), self.ttl, RData::A(A(*ip)))),
            ),
            RecordType::AAAA => out.extend(
                host.ipv6
                    .iter()
                    .map(|ip| Record::from_rdata(owner.clone(), self.ttl, RData::AAAA(AAAA(*ip)))),
            ),
            _ => {}
        }
        if let Some(added) = out.get_mut(start..) {
            fastrand::shuffle(added);
        }
    }

    async fn local<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        code: ResponseCode,
        answers: &[Record],
    ) -> (Outcome, Result<ResponseInfo, String>) {
        let authority = if answers.is_empty() || code != ResponseCode::NoError {
            vec![self.soa()]
        } else {
            Vec::new()
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        metadata.response_code = code;
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(LOCAL_EDNS_PAYLOAD);
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let message = builder.build(metadata, answers, &authority, [], []);
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

    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        code: ResponseCode,
    ) -> Result<ResponseInfo, String> {
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let mut message = builder.error_msg(&request.metadata, code);
        message.metadata_mut().recursion_available = true;
        response
            .send_response(message)
            .await
            .map_err(|e| e.to_string())
    }

    async fn relay<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        answer: &[u8],
    ) -> Result<ResponseInfo, String> {
        let message = Message::from_vec(answer).map_err(|e| e.to_string())?;
        let mut metadata = message.metadata;
        metadata.id = request.metadata.id;
        // The client's buffer size bounds the answer; the upstream already answered within it.
        let edns = match (&request.edns, message.edns) {
            (Some(asked), Some(mut given)) => {
                given.set_max_payload(given.max_payload().min(asked.max_payload()).max(512));
                Some(given)
            }
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

    /// Whether answering `request` means asking an upstream; every other request is answered
    /// without waiting on anything but the reply's own send.
    pub fn forwards(&self, request: &Request) -> bool {
        if request.metadata.op_code != OpCode::Query {
            return false;
        }
        let [query] = request.queries.queries() else {
            return false;
        };
        let mut buf = [0u8; MAX_NAME_LEN];
        let Some(text) = ascii_name(query.original().name(), &mut buf) else {
            return true;
        };
        let table = self.catalog.table();
        if !self.catalog.is_ready() {
            return !table.is_ours(text);
        }
        // One pass over the table: `resolve` is `Outside` for every name it does not answer.
        matches!(table.resolve(text), Resolution::Outside)
    }

    /// For a request that [`Handler::forwards`]: the upstream's answer as it came, with the
    /// client's ID, for a transport that can send it unchanged (UDP: the upstream answered the
    /// client's own query, EDNS buffer size included, so the answer fits). Counted as
    /// forwarded; on `Err` the caller answers with [`Handler::fail`].
    pub async fn forward_raw(&self, request: &Request) -> Result<Vec<u8>, Exhausted> {
        let answer = self
            .forwarder
            .forward(request.as_slice(), request.queries.as_bytes(), false)
            .await;
        if answer.is_ok() {
            self.metrics.request(qtype_of(request), Outcome::Forwarded);
        }
        answer
    }

    /// SERVFAIL for a request that no upstream answered; counted.
    pub async fn fail<R: ResponseHandler>(&self, request: &Request, response: R) {
        self.metrics.request(qtype_of(request), Outcome::ServFail);
        if let Err(error) = self.error(request, response, ResponseCode::ServFail).await {
            warn!(%error, "response not sent");
        }
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
    ) -> (RecordType, Outcome, Result<ResponseInfo, String>) {
        if request.metadata.op_code != OpCode::Query {
            let sent = self.error(request, response, ResponseCode::NotImp).await;
            return (RecordType::Unknown(0), Outcome::Refused, sent);
        }
        let [query] = request.queries.queries() else {
            let sent = self.error(request, response, ResponseCode::FormErr).await;
            return (RecordType::Unknown(0), Outcome::Refused, sent);
        };
        let qtype = query.query_type();
        let owner = query.original().name();
        let mut buf = [0u8; MAX_NAME_LEN];
        let text = ascii_name(owner, &mut buf);
        let table = self.catalog.table();
        let resolution = match text {
            Some(text) if !self.catalog.is_ready() && table.is_ours(text) => {
                // No table yet: no answer at all rather than a wrong NXDOMAIN.
                let sent = self.error(request, response, ResponseCode::ServFail).await;
                return (qtype, Outcome::ServFail, sent);
            }
            Some(text) => table.resolve(text),
            None => Resolution::Outside,
        };
        if resolution != Resolution::Outside && query.query_class() != DNSClass::IN {
            let sent = self.error(request, response, ResponseCode::Refused).await;
            return (qtype, Outcome::Refused, sent);
        }
        let mut answers = Vec::new();
        let code = match resolution {
            Resolution::Host(host) => {
                self.records(owner, host, qtype, &mut answers);
                ResponseCode::NoError
            }
            Resolution::Expansion { target, host } => {
                let target = match Name::from_ascii(target) {
                    Ok(mut name) => {
                        name.set_fqdn(true);
                        name
                    }
                    Err(_) => {
                        let sent = self.error(request, response, ResponseCode::ServFail).await;
                        return (qtype, Outcome::ServFail, sent);
                    }
                };
                answers.push(Record::from_rdata(
                    owner.clone(),
                    self.ttl,
                    RData::CNAME(CNAME(target.clone())),
                ));
                if qtype != RecordType::CNAME {
                    self.records(&target, host, qtype, &mut answers);
                }
                ResponseCode::NoError
            }
            Resolution::NoSuchName => ResponseCode::NXDomain,
            Resolution::Outside => {
                drop(table);
                let tcp = !request.protocol().is_datagram();
                return match self
                    .forwarder
                    .forward(request.as_slice(), request.queries.as_bytes(), tcp)
                    .await
                {
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
            }
        };
        let (outcome, sent) = self.local(request, response, code, &answers).await;
        (qtype, outcome, sent)
    }
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

/// A handler shared between hickory's server (TCP) and the UDP loops.
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
