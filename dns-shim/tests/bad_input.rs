//! Malformed input never takes the shim down: garbage datagrams, broken TCP frames.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::{seed, Shim};

fn start() -> Shim {
    let direct = seed("serviceentry-direct.yaml");
    let dead = format!("127.0.0.1:{}", common::free_port());
    Shim::start(&[
        "--service-entries",
        direct.to_str().unwrap(),
        "--upstream",
        &dead,
        "--upstream-timeout-ms",
        "200",
    ])
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A query for httpbin.bar.global A, with EDNS.
fn query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in ["httpbin", "bar", "global"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    q
}

fn malformed(rng: &mut XorShift, i: usize) -> Vec<u8> {
    let valid = query(i as u16);
    match i % 8 {
        // Random bytes of any length, including empty and header-only.
        0 => (0..rng.below(600)).map(|_| rng.next() as u8).collect(),
        // A valid query cut short.
        1 => valid[..rng.below(valid.len())].to_vec(),
        // A valid query with a few bytes flipped.
        2 => {
            let mut p = valid;
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(p.len());
                p[at] ^= rng.next() as u8 | 1;
            }
            p
        }
        // A name that points at itself (compression loop).
        3 => {
            let mut p = valid[..12].to_vec();
            p.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
            p
        }
        // Counts far beyond the content.
        4 => {
            let mut p = valid;
            p[4..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
            p
        }
        // A response, which must not be answered (no reflection).
        5 => {
            let mut p = valid;
            p[2] |= 0x80;
            p
        }
        // An unknown opcode.
        6 => {
            let mut p = valid;
            p[2] = (p[2] & 0x87) | (15 << 3);
            p
        }
        // A label longer than 63 bytes and a name longer than 255.
        _ => {
            let mut p = valid[..12].to_vec();
            for _ in 0..5 {
                p.push(63 + rng.below(3) as u8);
                p.extend(std::iter::repeat_n(b'a', 65));
            }
            p.extend_from_slice(&[0, 0, 1, 0, 1]);
            p
        }
    }
}

#[test]
fn a_thousand_malformed_packets_then_a_correct_answer() {
    let mut shim = start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(shim.dns).unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..1000 {
        socket.send(&malformed(&mut rng, i)).unwrap();
        if i % 100 == 99 {
            // Let the server keep up rather than testing the socket buffer.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let dig = shim.dig(&["httpbin.bar.global", "A"]);
    assert_eq!(dig.data("A"), vec!["127.255.0.2"], "{}", dig.text);
    assert!(shim.is_running());
}

#[test]
fn a_question_that_cannot_be_read_gets_formerr() {
    let shim = start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.connect(shim.dns).unwrap();
    let mut packet = query(0x4242);
    packet.truncate(20);
    socket.send(&packet).unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap();
    assert!(n >= 12);
    assert_eq!(&buf[..2], &[0x42, 0x42]);
    assert_eq!(buf[2] & 0x80, 0x80, "a response");
    assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
}

#[test]
fn two_questions_get_formerr() {
    let shim = start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.connect(shim.dns).unwrap();
    let one = query(7);
    let question = &one[12..one.len() - 11];
    let mut packet = vec![0, 7, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(question);
    packet.extend_from_slice(question);
    socket.send(&packet).unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap();
    assert!(n >= 12);
    assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
}

#[test]
fn broken_tcp_frames_do_not_stop_the_server() {
    let mut shim = start();
    // A length prefix promising more than is sent, then close.
    let mut s = TcpStream::connect(shim.dns).unwrap();
    s.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
    drop(s);
    // Garbage inside a well-formed frame.
    let mut s = TcpStream::connect(shim.dns).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(&[0, 4, 0xde, 0xad, 0xbe, 0xef]).unwrap();
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
    drop(s);
    // A zero-length frame.
    let mut s = TcpStream::connect(shim.dns).unwrap();
    s.write_all(&[0, 0]).unwrap();
    drop(s);
    let dig = shim.dig(&["httpbin.bar.global", "A", "+tcp"]);
    assert_eq!(dig.data("A"), vec!["127.255.0.2"], "{}", dig.text);
    assert!(shim.is_running());
}
