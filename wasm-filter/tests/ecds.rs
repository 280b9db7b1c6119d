//! A new table while serving: Envoy takes global_guard's configuration through extension config
//! discovery from a watched file (how istiod delivers a WasmPlugin, without istiod), the file
//! written as globalmesh-controller writes it. Under load from keep-alive connections, the table
//! is flipped 20 times; a host in every version never gets a non-2xx answer, and a host added
//! in a new table is allowed within 2 s of the write. A table that does not read is refused and
//! the previous one goes on serving.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    discovered_filter, get_once, module_path, service_entry, table_of, Answer, Client, Envoy,
};
use controller::ecds::{discovery_response, write_atomically, WasmSettings};
use serde_json::json;

/// In every version of the table.
const STAY: &str = "stay.bar.global:8000";
/// In every other version.
const FLIP: &str = "flip.bar.global:8000";
/// Only in the last version.
const LATE: &str = "late.bar.global:8000";
const FLIPS: usize = 20;
const LOADERS: usize = 4;
/// Requests the load must have made over each flip, from the write on.
const PER_FLIP: u64 = 20;
/// The bound from the write to a new host being allowed.
const NEW_HOST_WITHIN: Duration = Duration::from_secs(2);
/// Bound on a flip taking effect or the load going on; far above what it takes, only so that a
/// broken Envoy fails the test instead of hanging it.
const STUCK: Duration = Duration::from_secs(20);

/// Writes version `serial` of the table, with `hosts` (authorities) and a host of its own so
/// that every version differs, as the ECDS discovery response the controller writes.
fn write_table(path: &Path, hosts: &[&str], serial: usize) {
    let own = format!("v{serial}.bar.global");
    let entries: Vec<_> = hosts
        .iter()
        .map(|h| h.trim_end_matches(":8000"))
        .chain([own.as_str()])
        .map(|host| service_entry(host, &[8000], &["cluster2"]))
        .collect();
    let table = table_of(&entries);
    let hash = table["hash"].as_str().unwrap().to_string();
    let configuration = json!({ "table": table }).to_string();
    let response = discovery_response(
        "global_guard",
        &hash,
        &WasmSettings::new(module_path()),
        &configuration,
    );
    write_atomically(path, &response).unwrap();
}

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok: AtomicU64,
    /// Every answer for STAY that was not 2xx, and every connection that failed.
    failures: Mutex<Vec<String>>,
}

fn run_load(port: u16, load: &Load) {
    let mut client = Client::connect(port).unwrap();
    while !load.stop.load(Ordering::Relaxed) {
        match client.get(STAY) {
            Ok(Answer { status, .. }) if (200..300).contains(&status) => {
                load.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(answer) => load.failures.lock().unwrap().push(format!("{answer:?}")),
            Err(e) => {
                load.failures
                    .lock()
                    .unwrap()
                    .push(format!("connection: {e}"));
                match Client::connect(port) {
                    Ok(fresh) => client = fresh,
                    Err(e) => {
                        load.failures
                            .lock()
                            .unwrap()
                            .push(format!("reconnect: {e}"));
                        return;
                    }
                }
            }
        }
    }
}

/// Polls `host` every 10 ms until `wanted` holds of its answer; the time it took, or None
/// after `within`.
fn wait_for(
    port: u16,
    host: &str,
    within: Duration,
    wanted: impl Fn(&Answer) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if get_once(port, host).is_ok_and(|a| wanted(&a)) {
            return Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

fn allowed(answer: &Answer) -> bool {
    answer.status == 200 && answer.reason.is_none()
}

fn unknown(answer: &Answer) -> bool {
    answer.status == 404 && answer.reason.as_deref() == Some("unknown-host")
}

/// An Envoy whose global_guard comes from an ECDS file holding the first table (STAY only),
/// with the file's directory (removed on drop) and path.
fn start_with_first_table() -> (tempfile::TempDir, std::path::PathBuf, Envoy) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("global_guard.json");
    write_table(&path, &[STAY], 0);
    let envoy = Envoy::must(Envoy::launch(
        common::free_port(),
        discovered_filter(&path),
        json!({}),
    ));
    assert!(
        allowed(&get_once(envoy.port, STAY).unwrap()),
        "{}",
        envoy.log()
    );
    (dir, path, envoy)
}

#[test]
fn flipping_the_table_under_load_fails_no_request() {
    let (_dir, path, envoy) = start_with_first_table();
    let port = envoy.port;
    assert!(unknown(&get_once(port, FLIP).unwrap()));

    let load = Arc::new(Load::default());
    let loaders: Vec<_> = (0..LOADERS)
        .map(|_| {
            let load = Arc::clone(&load);
            thread::spawn(move || run_load(port, &load))
        })
        .collect();

    // Requests answered between each write and the flip being seen.
    let mut during = Vec::new();
    for serial in 1..=FLIPS {
        let with_flip = serial % 2 == 1;
        let hosts: &[&str] = if with_flip { &[STAY, FLIP] } else { &[STAY] };
        let before = load.ok.load(Ordering::Relaxed);
        write_table(&path, hosts, serial);
        let seen = wait_for(port, FLIP, STUCK, |a| {
            if with_flip {
                allowed(a)
            } else {
                unknown(a)
            }
        });
        assert!(seen.is_some(), "flip {serial} not seen:\n{}", envoy.log());
        during.push(load.ok.load(Ordering::Relaxed) - before);
        let deadline = Instant::now() + STUCK;
        while load.ok.load(Ordering::Relaxed) - before < PER_FLIP {
            assert!(
                Instant::now() < deadline,
                "the load stalled at flip {serial}: {:?}",
                load.failures.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    assert!(unknown(&get_once(port, LATE).unwrap()));
    write_table(&path, &[STAY, LATE], FLIPS + 1);
    let late = wait_for(port, LATE, NEW_HOST_WITHIN, allowed);

    load.stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.join().unwrap();
    }
    let failures = load.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests for {STAY}: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        late.is_some(),
        "{LATE} not allowed within {NEW_HOST_WITHIN:?} of the write:\n{}",
        envoy.log()
    );
    assert!(
        during.iter().sum::<u64>() > 0,
        "no request was answered while a flip was under way: {during:?}"
    );
    let log = envoy.log();
    assert!(!log.contains("invalid configuration"), "{log}");
    assert!(
        log.matches("global_guard: table fnv1a64:").count() > FLIPS,
        "one configuration per version:\n{log}"
    );
}

/// Writes a discovery response whose table does not read (its hash does not match).
fn write_bad_table(path: &Path) {
    let table = table_of(&[service_entry("stay.bar.global", &[8000], &["cluster2"])]);
    let mut configuration = json!({ "table": table });
    configuration["table"]["hosts"][0]["ports"] = json!([9000]);
    let response = discovery_response(
        "global_guard",
        "bad",
        &WasmSettings::new(module_path()),
        &configuration.to_string(),
    );
    write_atomically(path, &response).unwrap();
}

#[test]
fn a_table_that_does_not_read_keeps_the_previous_one_serving() {
    let (_dir, path, envoy) = start_with_first_table();
    let port = envoy.port;
    write_bad_table(&path);
    let deadline = Instant::now() + STUCK;
    while !envoy
        .log()
        .contains("global_guard: invalid configuration: table: hash ")
    {
        assert!(Instant::now() < deadline, "{}", envoy.log());
        thread::sleep(Duration::from_millis(20));
    }
    // Envoy configures the base VM first; the filter refuses the table there, so Envoy rejects
    // the update and keeps the previous plugin on its workers.
    for _ in 0..20 {
        assert!(allowed(&get_once(port, STAY).unwrap()), "{}", envoy.log());
    }
    write_table(&path, &[STAY, FLIP], 1);
    assert!(
        wait_for(port, FLIP, STUCK, allowed).is_some(),
        "the next good table is taken:\n{}",
        envoy.log()
    );
    assert!(allowed(&get_once(port, STAY).unwrap()));
}
