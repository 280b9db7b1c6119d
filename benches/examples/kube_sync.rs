//! dns-shim's start with N ServiceEntries (default 100,000) from the Kubernetes API (the
//! in-process test API server, paged lists of 500) against the same entries from one file:
//! time from start to ready and resident memory, each from a fresh process.
//!
//! Run from the repository root after `cargo build --release -p dns-shim`:
//! `cargo run --release -p benches --example kube_sync -- 100000 3`
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ready(admin: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(admin) else {
        return false;
    };
    let _ = write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

fn memory_mb(child: &Child, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// CPU seconds (user and system) the process has used.
fn cpu_seconds(child: &Child) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

/// Starts dns-shim with `source` and returns seconds to ready, CPU seconds it used by then,
/// RSS and peak RSS in MB.
fn measure(source: &[String], admin_port: u16) -> (f64, f64, u64, u64) {
    let admin = format!("127.0.0.1:{admin_port}");
    let started = Instant::now();
    // KUBE_SYNC_WRAP="perf record -g -o FILE --" runs dns-shim under a profiler (the memory
    // and CPU figures are then the profiler's).
    let wrap = std::env::var("KUBE_SYNC_WRAP").unwrap_or_default();
    let mut words: Vec<&str> = wrap.split_whitespace().collect();
    words.push("target/release/dns-shim");
    let mut child = Command::new(words[0])
        .args(&words[1..])
        .args(source)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            &admin,
            "--upstream",
            "127.0.0.1:9",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("target/release/dns-shim (cargo build --release -p dns-shim)");
    while !ready(&admin) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "dns-shim never became ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&child);
    // Let the allocator settle, as a scrape a moment later would see it.
    std::thread::sleep(Duration::from_millis(300));
    let rss = memory_mb(&child, "VmRSS:");
    let peak = memory_mb(&child, "VmHWM:");
    // SIGINT: dns-shim stops cleanly, and a profiler wrapped around it passes it on.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    (elapsed, cpu, rss, peak)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let entries: Vec<serde_json::Value> = benches::entries(n)
        .iter()
        .map(|e| serde_json::to_value(e).expect("entry as JSON"))
        .collect();
    let dir = std::env::temp_dir().join(format!("globalmesh-kube-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let file = dir.join("entries.json");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": entries});
    std::fs::write(&file, list.to_string()).expect("write entries");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(fake_apiserver::FakeApiServer::start());
    fake.preload(entries);
    let kubeconfig = fake.write_kubeconfig(&dir);

    let files = vec!["--service-entries".to_string(), file.display().to_string()];
    let kube = vec![
        "--kubernetes".to_string(),
        "--kubeconfig".to_string(),
        kubeconfig.display().to_string(),
    ];
    println!("# dns-shim start with {n} ServiceEntries: seconds to ready, dns-shim's CPU seconds");
    println!("# by then, RSS and peak RSS (MB), list requests");
    println!("round  source       ready_s  cpu_s  rss_mb  peak_mb  lists");
    for round in 1..=rounds {
        for (name, source) in [("file", &files), ("kubernetes", &kube)] {
            let lists_before = fake.requests().iter().filter(|r| r.is_list()).count();
            let (secs, cpu, rss, peak) = measure(source, free_port());
            let lists = fake.requests().iter().filter(|r| r.is_list()).count() - lists_before;
            println!(
                "{round:<6} {name:<12} {secs:>7.2}  {cpu:>5.2}  {rss:>6}  {peak:>7}  {lists:>5}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
