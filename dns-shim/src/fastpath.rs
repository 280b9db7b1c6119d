//! The UDP fast path for names the zone answers: the query's header and question are parsed
//! and checked in place, the name is looked up once, and the answer is the zone's pre-encoded
//! sections (`zone.rs`, hickory's own encoding) behind a header and question patched from the
//! query's, with the negotiated OPT. No allocation.
//!
//! Whatever it does not recognise as plainly valid and plainly its own (EDNS options, versions
//! or flags beyond DO, other classes, meta types, wildcard and search-list names, the apex, an
//! answer larger than the client takes, a zone not loaded yet) goes to the hickory handler,
//! which answers everything. `tests/fastpath_properties.rs` holds the two to the same bytes.

use hickory_server::proto::rr::RecordType;
use policy::resolve::{Resolution, MAX_NAME_LEN};

use crate::metrics::Outcome;
use crate::zone::Zone;

pub const HEADER_LEN: usize = 12;
/// The UDP payload a query without EDNS may get (RFC 1035 section 4.2.1).
pub const PLAIN_PAYLOAD: u16 = 512;
/// The most a UDP answer is made of, whatever the client advertises (the DNS flag day 2020
/// value, which avoids fragmentation on any path).
pub const MAX_PAYLOAD: u16 = 1232;
/// An OPT record without options: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// What the fast path made of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The answer is in the output buffer, this many bytes.
    Answered {
        len: usize,
        qtype: RecordType,
        outcome: Outcome,
    },
    /// A name the zone does not answer: forward it; the question ends at `question_end`, and
    /// the client takes an answer of `payload` bytes (what it advertised, 512 at least).
    Forward { question_end: usize, payload: u16 },
    /// Not for the fast path: give it to the hickory handler.
    Slow,
}

/// The header fields and question of a query, parsed in place.
#[derive(Debug, Clone, Copy)]
pub struct Query<'p> {
    packet: &'p [u8],
    /// The question's name on the wire, terminating zero included.
    name: &'p [u8],
    qtype: u16,
    qclass: u16,
    /// Where the question ends (and the OPT, if any, begins).
    question_end: usize,
    /// The client's payload size and DO bit, if it sent an OPT.
    edns: Option<(u16, bool)>,
}

impl<'p> Query<'p> {
    /// Parses a query the fast path can answer or forward: opcode QUERY, one question whose
    /// name is plain labels, no answer or authority records, and at most an OPT of version 0
    /// with no options and no flags but DO, ending the packet. `None` for anything else.
    pub fn parse(packet: &'p [u8]) -> Option<Self> {
        let header = packet.get(..HEADER_LEN)?;
        let (flags, counts) = header.split_at(4);
        // QR, opcode, AA, TC: a query, QUERY, none of the response bits.
        if flags.get(2)? & 0xfe != 0 || flags.get(3)? & 0x4f != 0 {
            return None;
        }
        let arcount = match counts {
            [0, 1, 0, 0, 0, 0, 0, a] if *a <= 1 => *a,
            _ => return None,
        };
        let mut at = HEADER_LEN;
        loop {
            let len = *packet.get(at)? as usize;
            if len == 0 {
                at += 1;
                break;
            }
            // A pointer or an extended label type, or a label too long.
            if len > 63 {
                return None;
            }
            at += 1 + len;
            if at - HEADER_LEN > 254 {
                return None;
            }
        }
        let name = packet.get(HEADER_LEN..at)?;
        let qtype = u16_at(packet, at)?;
        let qclass = u16_at(packet, at + 2)?;
        let question_end = at + 4;
        let edns = if arcount == 1 {
            // Root name, type OPT, class = payload, extended RCODE 0, version 0, flags, no RDATA.
            match packet.get(question_end..)? {
                [0, 0, 41, p0, p1, 0, 0, f0, 0, 0, 0] if f0 & 0x7f == 0 => {
                    Some((u16::from_be_bytes([*p0, *p1]), f0 & 0x80 != 0))
                }
                _ => return None,
            }
        } else if packet.len() == question_end {
            None
        } else {
            return None;
        };
        Some(Self {
            packet,
            name,
            qtype,
            qclass,
            question_end,
            edns,
        })
    }

    /// The record type asked for.
    pub fn qtype(&self) -> RecordType {
        RecordType::from(self.qtype)
    }

    /// The name as lowercase dotted text without the trailing dot, in `buf`; `None` for bytes
    /// that no host name holds.
    fn text<'b>(&self, buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b str> {
        let mut len = 0;
        let mut at = 0;
        while let Some(&label) = self.name.get(at) {
            let label = label as usize;
            if label == 0 {
                break;
            }
            if len > 0 {
                *buf.get_mut(len)? = b'.';
                len += 1;
            }
            let bytes = self.name.get(at + 1..at + 1 + label)?;
            let out = buf.get_mut(len..len + label)?;
            for (o, b) in out.iter_mut().zip(bytes) {
                if !b.is_ascii_graphic() || *b == b'.' {
                    return None;
                }
                *o = b.to_ascii_lowercase();
            }
            len += label;
            at += 1 + label;
        }
        std::str::from_utf8(buf.get(..len)?).ok()
    }

    /// The payload size the answer must fit in, and whether it carries an OPT (with DO).
    fn limit(&self) -> (usize, Option<bool>) {
        match self.edns {
            None => (PLAIN_PAYLOAD as usize, None),
            Some((payload, dnssec_ok)) => (
                payload.clamp(PLAIN_PAYLOAD, MAX_PAYLOAD) as usize,
                Some(dnssec_ok),
            ),
        }
    }
}

fn u16_at(packet: &[u8], at: usize) -> Option<u16> {
    match packet.get(at..at + 2)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Answers `packet` from `zone` into `out` if it can; see [`Verdict`]. `ready` is whether the
/// zone has been loaded (before that, the zone's names go to the handler for SERVFAIL).
pub fn answer(zone: &Zone, ready: bool, packet: &[u8], out: &mut [u8]) -> Verdict {
    let Some(query) = Query::parse(packet) else {
        return Verdict::Slow;
    };
    let mut buf = [0u8; MAX_NAME_LEN];
    let Some(text) = query.text(&mut buf) else {
        return Verdict::Slow;
    };
    let forward = Verdict::Forward {
        question_end: query.question_end,
        payload: query
            .edns
            .map_or(PLAIN_PAYLOAD, |(p, _)| p.max(PLAIN_PAYLOAD)),
    };
    if !ready {
        return if zone.table.is_ours(text) {
            Verdict::Slow
        } else {
            forward
        };
    }
    let resolution = zone.table.resolve(text);
    if resolution == Resolution::Outside {
        return forward;
    }
    let qtype = query.qtype();
    // Meta and reserved types (ANY, AXFR, OPT as a question...) and other classes.
    if query.qclass != CLASS_IN || query.qtype == 0 || query.qtype == TYPE_OPT || query.qtype >= 128
    {
        return Verdict::Slow;
    }
    let (answers, count, authority, rcode, outcome) = match resolution {
        Resolution::Host(host) if !host.name.starts_with("*.") => {
            match zone.encoded(host.id, qtype) {
                Some((bytes, count)) => (bytes, count, &[][..], 0, Outcome::Local),
                None => match zone.negative(query.name.len()) {
                    Some(soa) => (&[][..], 0, soa, 0, Outcome::NoData),
                    None => return Verdict::Slow,
                },
            }
        }
        Resolution::EmptyNonTerminal | Resolution::NoSuchName => {
            let (rcode, outcome) = if resolution == Resolution::NoSuchName {
                (3, Outcome::NxDomain)
            } else {
                (0, Outcome::NoData)
            };
            match zone.negative(query.name.len()) {
                Some(soa) => (&[][..], 0, soa, rcode, outcome),
                None => return Verdict::Slow,
            }
        }
        _ => return Verdict::Slow,
    };
    let (limit, opt) = query.limit();
    let question = query.packet.get(HEADER_LEN..query.question_end);
    let len = query.question_end
        + answers.len()
        + authority.len()
        + if opt.is_some() { OPT_LEN } else { 0 };
    let (Some(question), true) = (question, len <= limit) else {
        return Verdict::Slow;
    };
    let Some(out) = out.get_mut(..len) else {
        return Verdict::Slow;
    };
    let (header, rest) = out.split_at_mut(HEADER_LEN);
    let (q, rest) = rest.split_at_mut(question.len());
    let (an, rest) = rest.split_at_mut(answers.len());
    let (ns, ar) = rest.split_at_mut(authority.len());
    let [id0, id1, f0, f1, ..] = packet else {
        return Verdict::Slow;
    };
    let nscount = u8::from(!authority.is_empty());
    let [c0, c1] = count.to_be_bytes();
    header.copy_from_slice(&[
        *id0,
        *id1,
        // QR, AA, and RD as asked.
        0x84 | (f0 & 0x01),
        // RA, and CD as asked.
        0x80 | (f1 & 0x10) | rcode,
        0,
        1,
        c0,
        c1,
        0,
        nscount,
        0,
        u8::from(opt.is_some()),
    ]);
    q.copy_from_slice(question);
    an.copy_from_slice(answers);
    // The first answer's owner is the name in full, as the client wrote it.
    if let Some(owner) = an.get_mut(..query.name.len()) {
        owner.copy_from_slice(query.name);
    }
    ns.copy_from_slice(authority);
    if let Some(dnssec_ok) = opt {
        let [p0, p1] = (limit as u16).to_be_bytes();
        ar.copy_from_slice(&[
            0,
            0,
            41,
            p0,
            p1,
            0,
            0,
            if dnssec_ok { 0x80 } else { 0 },
            0,
            0,
            0,
        ]);
    }
    if count > 1 && zone.config().shuffle {
        shuffle_addresses(an, query.name.len(), qtype, count);
    }
    Verdict::Answered {
        len,
        qtype,
        outcome,
    }
}

/// Shuffles the addresses of an answer section of `count` A or AAAA records whose first owner is
/// `owner_len` bytes and the others two-byte pointers: the same bytes as encoding the records in
/// the shuffled order. Leaves a section of any other layout alone.
fn shuffle_addresses(section: &mut [u8], owner_len: usize, qtype: RecordType, count: u16) {
    let rdata = match qtype {
        RecordType::A => 4,
        RecordType::AAAA => 16,
        _ => return,
    };
    let count = count as usize;
    let first = owner_len + 10 + rdata;
    let rest = 2 + 10 + rdata;
    if section.len() != first + (count - 1) * rest {
        return;
    }
    let start = |i: usize| {
        if i == 0 {
            owner_len + 10
        } else {
            first + (i - 1) * rest + 12
        }
    };
    for i in (1..count).rev() {
        let j = fastrand::usize(..=i);
        if i == j {
            continue;
        }
        let mut tmp = [0u8; 16];
        let (a, b) = (start(i), start(j));
        let (Some(t), Some(x)) = (tmp.get_mut(..rdata), section.get(a..a + rdata)) else {
            return;
        };
        t.copy_from_slice(x);
        section.copy_within(b..b + rdata, a);
        if let (Some(y), Some(t)) = (section.get_mut(b..b + rdata), tmp.get(..rdata)) {
            y.copy_from_slice(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut q = vec![
            0xab,
            0xcd,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some(opt) = opt {
            q.extend_from_slice(opt);
        }
        q
    }

    #[test]
    fn parses_a_plain_query_and_its_opt() {
        let q = query(
            "HttpBin.bar.global",
            1,
            Some(&[0, 0, 41, 4, 0, 0, 0, 0x80, 0, 0, 0]),
        );
        let parsed = Query::parse(&q).unwrap();
        assert_eq!(parsed.edns, Some((1024, true)));
        assert_eq!(parsed.qtype(), RecordType::A);
        let mut buf = [0u8; MAX_NAME_LEN];
        assert_eq!(parsed.text(&mut buf), Some("httpbin.bar.global"));
    }

    #[test]
    fn leaves_unusual_queries_to_the_handler() {
        // EDNS version 1, an option, a pointer, trailing bytes, two questions.
        let v1 = query("a.global", 1, Some(&[0, 0, 41, 4, 0, 0, 1, 0, 0, 0, 0]));
        assert!(Query::parse(&v1).is_none());
        let cookie = query(
            "a.global",
            1,
            Some(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 0]),
        );
        assert!(Query::parse(&cookie).is_none());
        let mut pointer = query("a.global", 1, None);
        pointer.splice(12..13, [0xc0, 0x0c]);
        assert!(Query::parse(&pointer).is_none());
        let mut trailing = query("a.global", 1, None);
        trailing.push(0);
        assert!(Query::parse(&trailing).is_none());
        let mut two = query("a.global", 1, None);
        two[5] = 2;
        assert!(Query::parse(&two).is_none());
        let mut response = query("a.global", 1, None);
        response[2] |= 0x80;
        assert!(Query::parse(&response).is_none());
    }

    #[test]
    fn payload_is_clamped_between_512_and_1232() {
        let small = query("a.global", 1, Some(&[0, 0, 41, 0, 100, 0, 0, 0, 0, 0, 0]));
        assert_eq!(Query::parse(&small).unwrap().limit(), (512, Some(false)));
        let big = query(
            "a.global",
            1,
            Some(&[0, 0, 41, 0xff, 0xff, 0, 0, 0, 0, 0, 0]),
        );
        assert_eq!(Query::parse(&big).unwrap().limit(), (1232, Some(false)));
        let plain = query("a.global", 1, None);
        assert_eq!(Query::parse(&plain).unwrap().limit(), (512, None));
    }

    #[test]
    fn shuffling_permutes_the_addresses_only() {
        // owner (10 bytes) + 3 A records.
        let owner = b"\x01a\x06global\x00";
        let mut section = owner.to_vec();
        section.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 1, 1, 1, 1]);
        for ip in [2u8, 3] {
            section.extend_from_slice(&[0xc0, 0x1a, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, ip, ip, ip, ip]);
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let mut s = section.clone();
            shuffle_addresses(&mut s, owner.len(), RecordType::A, 3);
            let firsts = [s[20], s[36], s[52]];
            let mut sorted = firsts;
            sorted.sort_unstable();
            assert_eq!(sorted, [1, 2, 3]);
            assert_eq!(s[..20], section[..20]);
            seen.insert(firsts);
        }
        assert!(seen.len() > 1, "never shuffled");
    }
}
