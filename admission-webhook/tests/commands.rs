//! `audit`, `certs` and `manifests` run as processes.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::{data, BIN};

#[test]
fn audit_lists_duplicate_addresses_with_every_owner() {
    let output = Command::new(BIN)
        .args(["audit", "--service-entries"])
        .arg(data("seed/serviceentry-direct.yaml"))
        .arg("--service-entries")
        .arg(data("bad/duplicate-and-wrong-port.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text, "127.255.0.2/32: foo/httpbin-bar, foo/httpbin-copy\n");
}

#[test]
fn audit_of_a_clean_cluster_exits_zero() {
    let output = Command::new(BIN)
        .args(["audit", "--service-entries"])
        .arg(data("seed/serviceentry-direct.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("0 duplicate addresses"));
}

#[test]
fn certs_then_manifests_render_a_configuration_with_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (text, ca) = common::manifests_with_new_ca(dir.path());
    assert!(text.contains(&admission_webhook::manifests::base64(&ca)));
    assert!(text.contains("kind: ValidatingWebhookConfiguration"));
    assert!(text.contains("- kube-system"));
}

#[test]
fn manifests_refuse_a_file_that_is_not_a_certificate() {
    let output = Command::new(BIN)
        .args(["manifests", "--namespace", "x", "--ca-bundle"])
        .arg(data("seed/serviceentry-direct.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no PEM certificate found"));
}

#[test]
fn serve_refuses_to_start_with_a_key_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    common::certs(&dir.path().join("a"));
    common::certs(&dir.path().join("b"));
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--service-entries"])
        .arg(data("seed"))
        .arg("--tls-cert")
        .arg(dir.path().join("a/tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("b/tls.key"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("the private key does not match the certificate"),
        "{err}"
    );
}
