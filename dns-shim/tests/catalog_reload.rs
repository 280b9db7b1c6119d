//! The catalog as it changes under a running shim: new files, broken files, the Kubernetes
//! `..data` symlink swap, and the start before the first good load.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{data, eventually, seed, Shim};

fn start(dir: &Path) -> Shim {
    let dead = format!("127.0.0.1:{}", common::free_port());
    Shim::start(&[
        "--service-entries",
        dir.to_str().unwrap(),
        "--upstream",
        &dead,
        "--upstream-timeout-ms",
        "300",
    ])
}

fn answers(shim: &Shim, name: &str) -> Vec<String> {
    shim.dig(&[name, "A"]).data("A")
}

#[test]
fn a_new_file_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        seed("serviceentry-direct.yaml"),
        dir.path().join("direct.yaml"),
    )
    .unwrap();
    let shim = start(dir.path());
    assert_eq!(shim.dig(&["added.baz.global", "A"]).status, "NXDOMAIN");
    fs::copy(data("added.yaml"), dir.path().join("added.yaml")).unwrap();
    assert!(
        eventually(100, || answers(&shim, "added.baz.global")
            == ["127.255.0.30"]),
        "added.baz.global never resolved"
    );
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);
}

#[test]
fn a_changed_file_replaces_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("direct.yaml");
    fs::copy(seed("serviceentry-direct.yaml"), &file).unwrap();
    let shim = start(dir.path());
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("127.255.0.2", "127.255.0.99");
    fs::write(&file, text).unwrap();
    assert!(eventually(100, || answers(&shim, "httpbin.bar.global")
        == ["127.255.0.99"]));
}

#[test]
fn a_broken_file_keeps_the_last_good_table() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        seed("serviceentry-direct.yaml"),
        dir.path().join("direct.yaml"),
    )
    .unwrap();
    let mut shim = start(dir.path());
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);
    fs::copy(data("broken.yaml"), dir.path().join("zz-broken.yaml")).unwrap();
    assert!(
        eventually(100, || shim.metric("dns_catalog_reload_errors_total")
            >= 1.0),
        "the broken file was never read"
    );
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);
    assert_eq!(shim.http("/readyz").0, 200);
    assert!(shim.is_running());
    // Fixing the file loads again.
    fs::copy(data("added.yaml"), dir.path().join("zz-broken.yaml")).unwrap();
    assert!(eventually(100, || answers(&shim, "added.baz.global")
        == ["127.255.0.30"]));
}

#[test]
fn unready_until_the_first_good_load() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(data("broken.yaml"), dir.path().join("se.yaml")).unwrap();
    let shim = start(dir.path());
    assert_eq!(shim.http("/readyz").0, 503);
    let dig = shim.dig(&["httpbin.bar.global", "A"]);
    assert_eq!(dig.status, "SERVFAIL", "{}", dig.text);
    let dig = shim.dig(&["nope.baz.global", "A"]);
    assert_eq!(dig.status, "SERVFAIL", "{}", dig.text);
    fs::copy(seed("serviceentry-direct.yaml"), dir.path().join("se.yaml")).unwrap();
    assert!(eventually(100, || shim.http("/readyz").0 == 200));
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);
}

/// A ConfigMap volume: files are symlinks through `..data`, which kubelet swaps atomically.
#[test]
fn configmap_data_swap_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = root.join("..2026_11_25_a");
    fs::create_dir(&first).unwrap();
    fs::copy(seed("serviceentry-direct.yaml"), first.join("se.yaml")).unwrap();
    symlink("..2026_11_25_a", root.join("..data")).unwrap();
    symlink("..data/se.yaml", root.join("se.yaml")).unwrap();
    let shim = start(root);
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);

    let second = root.join("..2026_11_25_b");
    fs::create_dir(&second).unwrap();
    fs::copy(data("added.yaml"), second.join("se.yaml")).unwrap();
    symlink("..2026_11_25_b", root.join("..data_tmp")).unwrap();
    fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    fs::remove_dir_all(&first).unwrap();
    assert!(eventually(100, || answers(&shim, "added.baz.global")
        == ["127.255.0.30"]));
    assert_eq!(shim.dig(&["httpbin.bar.global", "A"]).status, "NXDOMAIN");
}
