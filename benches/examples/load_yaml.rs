//! Reads 100,000 ServiceEntries from YAML as the servers read them at start-up
//! (`catalog::load_paths`): `files` writes them as 100 multi-document files of 1,000 into a
//! temporary directory and times five loads; `list` writes them as one `kind: List` document
//! (items first, as `kubectl get -o yaml` prints them) and reports the time and the peak
//! resident memory of one load, which must not hold the whole document.
//!
//! `cargo run --release -p benches --example load_yaml -- files|list [ENTRIES]`
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// One entry as the DNS benchmark writes it: block style, one host and one VIP.
fn entry(out: &mut String, i: usize, indent: &str, first: &str) {
    let ns = i % 100;
    let lines = [
        "apiVersion: networking.istio.io/v1".to_string(),
        "kind: ServiceEntry".to_string(),
        "metadata:".to_string(),
        format!("  name: svc{i}"),
        format!("  namespace: ns{ns}"),
        "spec:".to_string(),
        "  hosts:".to_string(),
        format!("  - svc{i}.ns{ns}.global"),
        "  location: MESH_INTERNAL".to_string(),
        "  ports:".to_string(),
        "  - name: http1".to_string(),
        "    number: 8000".to_string(),
        "    protocol: http".to_string(),
        "  resolution: DNS".to_string(),
        "  addresses:".to_string(),
        format!("  - 240.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "  endpoints:".to_string(),
        "  - address: 198.18.2.1".to_string(),
        "    ports:".to_string(),
        "      http1: 15443".to_string(),
    ];
    for (k, line) in lines.iter().enumerate() {
        let lead = if k == 0 { first } else { indent };
        let _ = writeln!(out, "{lead}{line}");
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn load(dir: &Path, expected: usize) -> Duration {
    let start = Instant::now();
    let loaded = catalog::load_paths(&[dir]).expect("the entries load");
    let elapsed = start.elapsed();
    assert_eq!(loaded.len(), expected);
    assert!(loaded.iter().all(|l| l.entry.is_ok()));
    elapsed
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "files".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 0;
    match mode.as_str() {
        "files" => {
            let files = 100;
            let per = n.div_ceil(files);
            for k in 0..files {
                let mut text = String::new();
                for i in (k * per)..((k + 1) * per).min(n) {
                    text.push_str("---\n");
                    entry(&mut text, i, "", "");
                }
                bytes += text.len();
                std::fs::write(dir.path().join(format!("entries-{k:04}.yaml")), text).unwrap();
            }
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let mut times: Vec<Duration> = (0..5).map(|_| load(dir.path(), n)).collect();
            times.sort();
            println!(
                "{n} entries in {files} files ({:.1} MB of YAML), {threads} threads: best {:.3} s, median {:.3} s",
                bytes as f64 / 1e6,
                times[0].as_secs_f64(),
                times[2].as_secs_f64()
            );
        }
        "list" => {
            let mut text = String::from("apiVersion: v1\nitems:\n");
            for i in 0..n {
                entry(&mut text, i, "  ", "- ");
            }
            text.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n");
            bytes = text.len();
            let path = dir.path().join("list.yaml");
            std::fs::write(&path, &text).unwrap();
            drop(text);
            let before = peak_rss_kb();
            let elapsed = load(&path, n);
            println!(
                "{n} entries in one kind: List ({:.1} MB of YAML): {:.3} s, peak RSS {:.0} MB (before the load {:.0} MB)",
                bytes as f64 / 1e6,
                elapsed.as_secs_f64(),
                peak_rss_kb() as f64 / 1024.0,
                before as f64 / 1024.0
            );
        }
        other => panic!("no mode {other}: files or list"),
    }
}
