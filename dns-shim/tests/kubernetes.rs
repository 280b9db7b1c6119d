//! dns-shim with `--kubernetes` against the API-compatible test server: answers follow the
//! ServiceEntries in the API, and the shim is unready until the first list is in.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{eventually, Shim};
use fake_apiserver::{seed_service_entry, service_entry, FakeApiServer};
use serde_json::json;

fn answers(shim: &Shim, name: &str) -> Vec<String> {
    shim.dig(&[name, "A"]).data("A")
}

fn start(kubeconfig: &std::path::Path, extra: &[&str]) -> Shim {
    let dead = format!("127.0.0.1:{}", common::free_port());
    let mut args = vec![
        "--kubernetes",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--upstream",
        &dead,
        "--upstream-timeout-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    Shim::start(&args)
}

#[test]
fn answers_follow_the_api_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApiServer::start());
    fake.create(seed_service_entry());
    fake.hold_lists(true);
    let dir = tempfile::tempdir().unwrap();
    let shim = start(&fake.write_kubeconfig(dir.path()), &[]);

    // Unready, and no local answers, until the first list is in.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(shim.http("/readyz").0, 503);
    assert_eq!(shim.dig(&["httpbin.bar.global", "A"]).status, "SERVFAIL");
    fake.hold_lists(false);
    assert!(eventually(100, || shim.http("/readyz").0 == 200));
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);

    // ADDED, MODIFIED, DELETED.
    fake.create(service_entry(
        "baz",
        "added",
        "added.baz.global",
        "127.255.0.30",
    ));
    assert!(eventually(100, || answers(&shim, "added.baz.global")
        == ["127.255.0.30"]));
    fake.update(service_entry(
        "foo",
        "httpbin-bar",
        "httpbin.bar.global",
        "127.255.0.99",
    ));
    assert!(eventually(100, || answers(&shim, "httpbin.bar.global")
        == ["127.255.0.99"]));
    fake.delete("baz", "added");
    assert!(eventually(100, || shim
        .dig(&["added.baz.global", "A"])
        .status
        == "NXDOMAIN"));

    // A dropped watch resumes; a 410 re-lists and catches a deletion it missed.
    fake.drop_watches();
    fake.create(service_entry(
        "baz",
        "later",
        "later.baz.global",
        "127.255.0.31",
    ));
    assert!(eventually(100, || answers(&shim, "later.baz.global")
        == ["127.255.0.31"]));
    fake.hold_lists(true);
    fake.expire_watches();
    fake.delete("baz", "later");
    fake.hold_lists(false);
    assert!(eventually(100, || shim
        .dig(&["later.baz.global", "A"])
        .status
        == "NXDOMAIN"));
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.99"]);

    // A line of garbage in the watch, then a re-list answered with a cut-off body: both are
    // counted, the table keeps answering, and the next change still arrives.
    let errors = shim.metric("dns_catalog_reload_errors_total");
    fake.send_garbage();
    fake.create(service_entry(
        "baz",
        "after",
        "after.baz.global",
        "127.255.0.32",
    ));
    assert!(eventually(100, || answers(&shim, "after.baz.global")
        == ["127.255.0.32"]));
    fake.break_lists(1);
    assert!(eventually(100, || fake.open_watches() == 1));
    fake.expire_watches();
    assert!(eventually(100, || shim
        .metric("dns_catalog_reload_errors_total")
        >= errors + 3.0));
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.99"]);
    fake.delete("baz", "after");
    assert!(eventually(100, || shim
        .dig(&["after.baz.global", "A"])
        .status
        == "NXDOMAIN"));

    // An object that cannot be read is left out and counted; the others keep answering.
    let mut bad = service_entry("baz", "bad", "bad.baz.global", "127.255.0.40");
    bad["spec"]["ports"] = json!("eighty");
    fake.create(bad);
    assert!(eventually(100, || shim.metric("dns_catalog_skipped") == 1.0));
    assert_eq!(shim.dig(&["bad.baz.global", "A"]).status, "NXDOMAIN");
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.99"]);
    assert!(shim.metric("dns_catalog_reload_errors_total") >= 1.0);
    // Deleted, it is no longer counted; nor after a re-list that no longer has it.
    fake.delete("baz", "bad");
    assert!(eventually(100, || shim.metric("dns_catalog_skipped") == 0.0));
    let mut bad = service_entry("baz", "bad2", "bad2.baz.global", "127.255.0.41");
    bad["spec"]["hosts"] = json!(7);
    fake.create(bad);
    assert!(eventually(100, || shim.metric("dns_catalog_skipped") == 1.0));
    fake.hold_lists(true);
    fake.expire_watches();
    fake.delete("baz", "bad2");
    fake.hold_lists(false);
    assert!(eventually(100, || shim.metric("dns_catalog_skipped") == 0.0));
}

#[test]
fn one_namespace_only() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApiServer::start());
    fake.create(seed_service_entry());
    fake.create(service_entry(
        "other",
        "elsewhere",
        "elsewhere.bar.global",
        "127.255.0.3",
    ));
    let dir = tempfile::tempdir().unwrap();
    let shim = start(&fake.write_kubeconfig(dir.path()), &["--namespace", "foo"]);
    assert!(eventually(100, || shim.http("/readyz").0 == 200));
    assert_eq!(answers(&shim, "httpbin.bar.global"), ["127.255.0.2"]);
    assert_eq!(shim.dig(&["elsewhere.bar.global", "A"]).status, "NXDOMAIN");
}

#[test]
fn keeps_serving_while_the_api_server_refuses_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApiServer::start());
    fake.create(seed_service_entry());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig_with_token(dir.path(), "revoked");
    let mut shim = start(&kubeconfig, &[]);
    assert!(eventually(100, || shim
        .metric("dns_catalog_reload_errors_total")
        >= 1.0));
    assert_eq!(shim.http("/readyz").0, 503);
    // No table: .global names fail rather than get a wrong NXDOMAIN.
    assert_eq!(shim.dig(&["httpbin.bar.global", "A"]).status, "SERVFAIL");
    assert!(shim.http("/healthz").0 == 200);
    assert!(shim.is_running());
}
