//! Shared set-up of the integration tests: the real dns-shim binary, a real unbound as the
//! upstream, and `dig` as the client. Every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/seed")
        .join(name)
}

/// A loopback port free for both UDP and TCP at the time of the call.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port for UDP and TCP");
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// unbound on a loopback port, authoritative (`local-zone static`) for `up.test.` with:
/// `www.up.test A 192.0.2.10` (TTL 300), `big.up.test` with 12 TXT records of 100 bytes
/// (larger than 512 bytes), and an SOA so that NXDOMAIN carries one.
pub struct Unbound {
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    _proc: Proc,
}

impl Unbound {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-ip6: no\n  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  num-threads: 1\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  local-zone: \"up.test.\" static\n  local-data: \"up.test. 3600 IN SOA ns.up.test. admin.up.test. 7 3600 600 86400 300\"\n  local-data: \"www.up.test. 300 IN A 192.0.2.10\"\n",
            dir = dir.path().display()
        );
        for i in 0..12 {
            conf.push_str(&format!(
                "  local-data: 'big.up.test. 300 IN TXT \"{i:02}{}\"'\n",
                "x".repeat(98)
            ));
        }
        conf.push_str("remote-control:\n  control-enable: no\n");
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound is installed (make setup-dns)");
        let unbound = Unbound {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
            _proc: Proc(child),
        };
        // Ready when it answers; bounded.
        for _ in 0..100 {
            if dig(unbound.addr, &["www.up.test", "A", "+time=1"]).status == "NOERROR" {
                return unbound;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("unbound did not start on {}", unbound.addr);
    }
}

/// The dns-shim binary, started with `args` plus a free listen and admin port.
pub struct Shim {
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    pub proc: Proc,
}

impl Shim {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_dns-shim")), args)
    }

    /// Starts the binary through `command` (for `ip netns exec NS`), adding listen and admin
    /// addresses on free ports unless `args` names them.
    pub fn start_with(mut command: Command, args: &[&str]) -> Self {
        if !command
            .get_program()
            .to_string_lossy()
            .ends_with("dns-shim")
        {
            command.arg(env!("CARGO_BIN_EXE_dns-shim"));
        }
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--admin") {
            command.args(["--admin", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .args(["--udp-sockets", "2", "--threads", "2"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("dns-shim starts");
        let stdout = child.stdout.take().unwrap();
        let proc = Proc(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("dns-shim prints its addresses");
        // "dns-shim listening on 127.0.0.1:PORT (udp, tcp), admin on 127.0.0.1:PORT"
        let words: Vec<&str> = line.split_whitespace().collect();
        let dns = words[3].parse().unwrap();
        let admin = words[words.len() - 1].parse().unwrap();
        Shim { dns, admin, proc }
    }

    pub fn dig(&self, args: &[&str]) -> Dig {
        dig(self.dns, args)
    }

    /// `GET path` on the admin endpoint: status code and body.
    pub fn http(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    /// The value of one metric line, such as `dns_catalog_reload_errors_total`.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.http("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {series}"))
            .trim()
            .parse()
            .unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.0.try_wait().unwrap().is_none()
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // One request per connection: the server keeps HTTP/1.1 connections open otherwise.
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap();
    (status, body)
}

/// What dig printed, split up.
#[derive(Debug, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    pub edns: bool,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

impl Dig {
    pub fn data(&self, rtype: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        out.sort();
        out
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Runs `dig @addr -p port ARGS` (one try, 5 s) and parses its output.
pub fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let output = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+tries=1", "+time=5"])
        .args(args)
        .output()
        .expect("dig is installed (make setup-dns)");
    parse_dig(&String::from_utf8_lossy(&output.stdout))
}

pub fn parse_dig(text: &str) -> Dig {
    let mut dig = Dig {
        text: text.to_string(),
        ..Default::default()
    };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap_or("").to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            dig.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        if line.starts_with("; EDNS:") {
            dig.edns = true;
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = "";
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        let record = Record {
            name: fields[0].to_string(),
            ttl: fields[1].parse().unwrap_or(0),
            rtype: fields[3].to_string(),
            data: fields[4..].join(" "),
        };
        match section {
            "answer" => dig.answer.push(record),
            "authority" => dig.authority.push(record),
            _ => {}
        }
    }
    dig
}

/// Polls `check` every 100 ms, at most `tries` times; whether it became true.
pub fn eventually(tries: usize, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A raw DNS query: `name` `qtype`, class IN, RD, and an OPT when `edns` is given as
/// `(payload, version, dnssec_ok)`.
pub fn raw_query(id: u16, name: &str, qtype: u16, edns: Option<(u16, u8, bool)>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((payload, version, dnssec_ok)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    q
}

/// Sends `packet` over UDP from a fresh socket and waits up to 5 s for the answer.
pub fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(packet, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// One length-prefixed DNS message read from a TCP stream.
pub fn tcp_read(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut message = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}

pub fn tcp_write(stream: &mut TcpStream, message: &[u8]) {
    let mut frame = (message.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(message);
    stream.write_all(&frame).unwrap();
}

/// What a test upstream on a loopback UDP port does with each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Takes every datagram and TCP connection and never answers.
    Blackhole,
    /// Answers `A 192.0.2.10`, after sending a datagram with a wrong ID and one with the right
    /// ID but the question lowercased (an off-path guess that 0x20 defeats).
    Spoofer,
}

/// A test upstream on a thread of its own, stopped on drop. Counts the queries it got.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub queries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeUpstream {
    pub fn start(kind: Upstream) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        // UDP and TCP on one port: a blackhole also takes TCP connections and never answers.
        let (socket, tcp) = loop {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(socket.local_addr().unwrap()) {
                break (socket, tcp);
            }
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            // Held open, never read; bounded in number.
            let mut held = Vec::new();
            for stream in tcp.incoming().take(64) {
                held.push(stream);
            }
        });
        let queries = std::sync::Arc::new(AtomicUsize::new(0));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                seen.fetch_add(1, Ordering::Relaxed);
                if kind == Upstream::Blackhole || n < 17 {
                    continue;
                }
                let query = &buf[..n];
                // The question: from byte 12 to the end of the name, plus type and class.
                let mut end = 12;
                while end < n && query[end] != 0 {
                    end += 1 + query[end] as usize;
                }
                let question = &query[12..(end + 5).min(n)];
                let answer = |id: &[u8], question: &[u8]| {
                    let mut a = id.to_vec();
                    a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
                    a.extend_from_slice(question);
                    a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    a
                };
                let mut wrong_id = answer(&[query[0] ^ 0xff, query[1]], question);
                wrong_id.extend_from_slice(&[6, 6, 6, 6]);
                let _ = socket.send_to(&wrong_id, from);
                let lower = question.to_ascii_lowercase();
                let mut forged = answer(&query[..2], &lower);
                forged.extend_from_slice(&[6, 6, 6, 6]);
                let _ = socket.send_to(&forged, from);
                let mut genuine = answer(&query[..2], question);
                genuine.extend_from_slice(&[192, 0, 2, 10]);
                let _ = socket.send_to(&genuine, from);
            }
        });
        FakeUpstream {
            addr,
            queries,
            stop,
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A ServiceEntry file in `dir` giving `host` the addresses `addresses`.
pub fn service_entry(dir: &Path, file: &str, host: &str, addresses: &[String]) -> PathBuf {
    let mut text = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {}\n  namespace: test\nspec:\n  hosts:\n  - {host}\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - name: http\n    number: 8000\n    protocol: HTTP\n  addresses:\n",
        file.trim_end_matches(".yaml")
    );
    for a in addresses {
        text.push_str(&format!("  - {a}\n"));
    }
    text.push_str("  endpoints:\n  - address: 198.18.0.1\n    ports:\n      http: 15443\n");
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}
