//! Times the configuration step natively: `cargo run --release -p wasm-filter --example
//! configure_time -- <plugin-configuration.json>`; prints entries, hosts and the best of 5 runs.

use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("configure_time: usage: configure_time <plugin-configuration.json>");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("configure_time: {path}: {e}");
            std::process::exit(1);
        }
    };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        match global_guard::config::parse(&bytes) {
            Ok(config) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                best = best.min(ms);
                println!(
                    "{}, {} hosts, {} bytes: {ms:.1} ms",
                    config.source,
                    config.table.len(),
                    bytes.len()
                );
            }
            Err(e) => {
                eprintln!("configure_time: {path}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("best of 5: {best:.1} ms");
}
