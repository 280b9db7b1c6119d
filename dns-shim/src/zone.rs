//! The zone dns-shim answers from: the host table of `policy::resolve`, the records every local
//! answer is made of ([`Zone::local`], used by the hickory handler), and the same answers
//! pre-encoded when the table is built, for the UDP fast path (`fastpath.rs`).
//!
//! The pre-encoded answers are hickory's own encoding: each is made by running the answer for
//! the host's lowercase name through `MessageResponseBuilder`, as the handler sends it, and
//! keeping the bytes after the question. A query then only patches what differs from that
//! canonical query (ID, flags, the name's case, OPT); `tests/fastpath_properties.rs` holds the
//! fast path to the handler byte for byte.

use std::net::SocketAddr;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, HINFO, NS, SOA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::Request;
use hickory_server::zone_handler::MessageResponseBuilder;
use policy::resolve::{Host, HostTable, Resolution};

use crate::handler::HandlerError;

/// Where the apex's NS and the SOA's primary point: dns-shim answers on the pod's loopback, and
/// `localhost.` resolves there everywhere (unbound's locally served zones do the same).
const PRIMARY: &str = "localhost.";
/// SOA timers other than the minimum (RFC 1912 values; nothing transfers this zone).
const REFRESH: i32 = 3600;
const RETRY: i32 = 600;
const EXPIRE: i32 = 86400;

/// What every zone is built with: the suffix and the TTL of local answers.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    pub ttl: u32,
    /// Whether the addresses of an answer are shuffled (always, but in tests that compare two
    /// encodings byte for byte).
    pub shuffle: bool,
    apex: Name,
    primary: Name,
    hostmaster: Name,
}

impl ZoneConfig {
    pub fn new(suffix: &str, ttl: u32) -> Result<Self, HandlerError> {
        let name = |text: String| {
            Name::from_ascii(&text).map_err(|_| HandlerError::Suffix(suffix.to_string()))
        };
        Ok(Self {
            ttl,
            shuffle: true,
            apex: name(format!("{suffix}."))?,
            primary: name(PRIMARY.to_string())?,
            hostmaster: name(format!("hostmaster.{suffix}."))?,
        })
    }

    /// The apex: `global.`.
    pub fn apex(&self) -> &Name {
        &self.apex
    }
}

/// A run of bytes in [`Zone::arena`] and the records it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
    /// Records in the run (the answer count).
    pub count: u16,
}

/// The pre-encoded answer sections of one exact host (wildcard hosts answer for names of any
/// length, so they have none and take the handler's path).
#[derive(Debug, Clone, Copy, Default)]
struct Encoded {
    a: Span,
    aaaa: Span,
}

/// What a local answer is made of, before encoding.
#[derive(Debug, Default)]
pub struct LocalAnswer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

/// An immutable zone; the catalog builds a new one on every change and swaps it in.
pub struct Zone {
    pub table: HostTable,
    /// The SOA serial: raised on every load.
    pub serial: u32,
    config: ZoneConfig,
    soa: Record,
    ns: Record,
    /// Every pre-encoded section, back to back.
    arena: Vec<u8>,
    /// By host id; only exact hosts have spans.
    encoded: Vec<Encoded>,
    /// The authority section of a negative answer (the SOA), by the wire length of the
    /// question's name: hickory's encoding of it points back into itself, at an offset that
    /// depends on that length only.
    negative: Vec<Span>,
}

impl Zone {
    /// Builds the zone of `table` and pre-encodes its answers.
    pub fn new(table: HostTable, serial: u32, config: &ZoneConfig) -> Self {
        let soa = Record::from_rdata(
            config.apex.clone(),
            config.ttl,
            RData::SOA(SOA::new(
                config.primary.clone(),
                config.hostmaster.clone(),
                serial,
                REFRESH,
                RETRY,
                EXPIRE,
                config.ttl,
            )),
        );
        let ns = Record::from_rdata(
            config.apex.clone(),
            config.ttl,
            RData::NS(NS(config.primary.clone())),
        );
        let mut zone = Self {
            table,
            serial,
            config: config.clone(),
            soa,
            ns,
            arena: Vec::new(),
            encoded: Vec::new(),
            negative: Vec::new(),
        };
        zone.encode();
        zone
    }

    /// An empty, unready zone.
    pub fn empty(table: HostTable, config: &ZoneConfig) -> Self {
        Self::new(table, 0, config)
    }

    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The records of the local answer for `name` (the query's name, in its case) of type
    /// `qtype`; `None` when the name is not the zone's ([`Resolution::Outside`]). Addresses are
    /// in declaration order (the handler shuffles them).
    pub fn local(
        &self,
        name: &Name,
        qtype: RecordType,
        resolution: &Resolution<'_, '_>,
    ) -> Option<LocalAnswer> {
        let ttl = self.config.ttl;
        let mut out = LocalAnswer::default();
        match resolution {
            Resolution::Outside => return None,
            Resolution::Host(host) => self.records(name, host, qtype, &mut out.answers),
            Resolution::Expansion { target, host } => {
                let mut target = Name::from_ascii(target).ok()?;
                target.set_fqdn(true);
                out.answers.push(Record::from_rdata(
                    name.clone(),
                    ttl,
                    RData::CNAME(CNAME(target.clone())),
                ));
                if qtype != RecordType::CNAME {
                    self.records(&target, host, qtype, &mut out.answers);
                }
            }
            Resolution::Apex => {
                let mut apex = |record: &Record| {
                    let mut record = record.clone();
                    record.name = name.clone();
                    out.answers.push(record);
                };
                match qtype {
                    RecordType::SOA => apex(&self.soa),
                    RecordType::NS => apex(&self.ns),
                    RecordType::ANY => {
                        apex(&self.soa);
                        apex(&self.ns);
                    }
                    _ => {}
                }
            }
            Resolution::EmptyNonTerminal => {}
            Resolution::NoSuchName => out.code = ResponseCode::NXDomain,
        }
        if out.answers.is_empty() {
            out.authority.push(self.soa.clone());
        }
        Some(out)
    }

    /// The records of `host` of type `qtype`, owned by `owner`. ANY gets every address (one
    /// answer of the RRsets there are, as RFC 8482 allows), or a synthesised HINFO when the host
    /// has none.
    fn records(&self, owner: &Name, host: &Host, qtype: RecordType, out: &mut Vec<Record>) {
        let ttl = self.config.ttl;
        let a = |ip: &std::net::Ipv4Addr| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip)));
        let aaaa = |ip: &std::net::Ipv6Addr| {
            Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip)))
        };
        match qtype {
            RecordType::A => out.extend(host.ipv4.iter().map(a)),
            RecordType::AAAA => out.extend(host.ipv6.iter().map(aaaa)),
            RecordType::ANY => {
                out.extend(host.ipv4.iter().map(a));
                out.extend(host.ipv6.iter().map(aaaa));
                if out.is_empty() {
                    out.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::HINFO(HINFO::new("RFC8482".to_string(), String::new())),
                    ));
                }
            }
            _ => {}
        }
    }

    /// The pre-encoded answer section of exact host `id` for A or AAAA, if it has one.
    pub fn encoded(&self, id: usize, qtype: RecordType) -> Option<(&[u8], u16)> {
        let e = self.encoded.get(id)?;
        let span = match qtype {
            RecordType::A => e.a,
            RecordType::AAAA => e.aaaa,
            _ => return None,
        };
        (span.count > 0).then(|| (self.bytes(span), span.count))
    }

    /// The pre-encoded authority section (the SOA) of a negative answer to a question whose
    /// name is `name_len` bytes on the wire.
    pub fn negative(&self, name_len: usize) -> Option<&[u8]> {
        let span = *self.negative.get(name_len)?;
        (span.count > 0).then(|| self.bytes(span))
    }

    fn bytes(&self, span: Span) -> &[u8] {
        let start = span.start as usize;
        self.arena
            .get(start..start + span.len as usize)
            .unwrap_or_default()
    }

    fn encode(&mut self) {
        let mut encoded = vec![Encoded::default(); self.table.len()];
        let mut arena = Vec::new();
        for host in self.table.hosts() {
            if host.name.starts_with("*.") {
                continue;
            }
            let Ok(mut name) = Name::from_ascii(&host.name) else {
                continue;
            };
            name.set_fqdn(true);
            let Some(slot) = encoded.get_mut(host.id) else {
                continue;
            };
            for (qtype, span) in [
                (RecordType::A, &mut slot.a),
                (RecordType::AAAA, &mut slot.aaaa),
            ] {
                let mut answers = Vec::new();
                self.records(&name, host, qtype, &mut answers);
                if answers.is_empty() {
                    continue;
                }
                if let Some((bytes, count)) = sections(&name, qtype, &answers, &[]) {
                    *span = push(&mut arena, &bytes, count);
                }
            }
        }
        let mut negative = vec![Span::default(); 256];
        let apex_len = wire_len(&self.config.apex);
        for (len, span) in negative.iter_mut().enumerate() {
            let Some(name) = name_of_length(len, &self.config.apex, apex_len) else {
                continue;
            };
            let authority = [self.soa.clone()];
            if let Some((bytes, _)) = sections(&name, RecordType::AAAA, &[], &authority) {
                *span = push(&mut arena, &bytes, 1);
            }
        }
        arena.shrink_to_fit();
        self.arena = arena;
        self.encoded = encoded;
        self.negative = negative;
    }
}

fn push(arena: &mut Vec<u8>, bytes: &[u8], count: u16) -> Span {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    match (u32::try_from(start), u32::try_from(bytes.len())) {
        (Ok(start), Ok(len)) => Span { start, len, count },
        _ => Span::default(),
    }
}

/// hickory's encoding of the answer and authority sections of a NOERROR response to `name`
/// `qtype` (a query without EDNS, as the server builds it), and the answer count.
fn sections(
    name: &Name,
    qtype: RecordType,
    answers: &[Record],
    authority: &[Record],
) -> Option<(Vec<u8>, u16)> {
    let mut query = Vec::with_capacity(300);
    {
        let mut encoder = BinEncoder::new(&mut query);
        let mut metadata = Metadata::new(0, MessageType::Query, OpCode::Query);
        metadata.recursion_desired = true;
        let header = hickory_server::proto::op::Header {
            metadata,
            counts: hickory_server::proto::op::HeaderCounts {
                queries: 1,
                ..Default::default()
            },
        };
        use hickory_server::proto::serialize::binary::BinEncodable;
        header.emit(&mut encoder).ok()?;
        hickory_server::proto::op::Query::query(name.clone(), qtype)
            .emit(&mut encoder)
            .ok()?;
    }
    let question_end = query.len();
    let src = SocketAddr::from(([127, 0, 0, 1], 53));
    let request = Request::from_bytes(query, src, Protocol::Udp).ok()?;
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = true;
    metadata.recursion_available = true;
    let response = MessageResponseBuilder::new(&request.queries, None).build(
        metadata,
        answers,
        authority,
        [],
        [],
    );
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    let info = response.destructive_emit(&mut encoder).ok()?;
    if info.truncation {
        return None;
    }
    Some((bytes.get(question_end..)?.to_vec(), info.counts().answers))
}

/// The length of `name` on the wire, uncompressed.
pub fn wire_len(name: &Name) -> usize {
    name.iter().map(|label| label.len() + 1).sum::<usize>() + 1
}

/// A name under `apex` that is `len` bytes on the wire (`apex_len` is the apex's), made of
/// labels of `a`; `None` when no name has that length.
fn name_of_length(len: usize, apex: &Name, apex_len: usize) -> Option<Name> {
    let mut rest = len.checked_sub(apex_len)?;
    if rest < 2 || len > 255 {
        return None;
    }
    let mut labels: Vec<Vec<u8>> = Vec::new();
    while rest > 64 {
        let label = 63.min(rest - 3);
        labels.push(vec![b'a'; label]);
        rest -= label + 1;
    }
    labels.push(vec![b'a'; rest - 1]);
    Name::from_labels(labels).ok()?.append_domain(apex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_every_possible_length_are_made() {
        let config = ZoneConfig::new("global", 30).unwrap();
        let apex_len = wire_len(&config.apex);
        assert_eq!(apex_len, 8);
        for len in 10..=255 {
            let name = name_of_length(len, &config.apex, apex_len).unwrap();
            assert_eq!(wire_len(&name), len, "{name}");
        }
        assert!(name_of_length(9, &config.apex, apex_len).is_none());
        assert!(name_of_length(256, &config.apex, apex_len).is_none());
    }
}
