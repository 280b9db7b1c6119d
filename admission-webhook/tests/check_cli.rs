//! `admission-webhook check` run as a process: exit codes and the lines it prints.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(path)
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_admission-webhook"))
        .arg("check")
        .args(args)
        .output()
        .expect("run admission-webhook")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `check` on one fixture and asserts exit status 1 and a line naming the object, the
/// field path and the bad value.
fn assert_violation(fixture: &str, object: &str, path: &str, needle: &str) {
    let file = data(fixture);
    let output = check(&[file.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{fixture}: {}",
        stderr(&output)
    );
    let prefix = format!("{}: {object}: {path}: ", file.display());
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(needle)),
        "{fixture}: no line starting {prefix:?} containing {needle:?} in:\n{text}"
    );
}

#[test]
fn seed_service_entries_pass() {
    let output = check(&[data("seed").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(stdout(&output), "");
    assert!(stderr(&output).contains("checked 3 ServiceEntries: 0 errors, 0 warnings"));
}

#[test]
fn wrong_gateway_port_is_a_violation() {
    assert_violation(
        "bad/duplicate-and-wrong-port.yaml",
        "foo/httpbin-copy",
        "spec.endpoints[0].ports.http1",
        "port 8000 is not the gateway port 15443",
    );
}

#[test]
fn duplicate_of_an_existing_address_names_the_owner_and_a_free_address() {
    let existing = data("seed/serviceentry-direct.yaml");
    let file = data("bad/duplicate-and-wrong-port.yaml");
    let output = check(&[
        "--existing",
        existing.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("spec.addresses[0]: address 127.255.0.2 is already used by ServiceEntry foo/httpbin-bar; VIPs must be unique within a cluster; the next free address in 127.255.0.0/16 is 127.255.0.1"),
        "{text}"
    );
}

#[test]
fn duplicate_within_the_checked_files_reports_the_later_entry() {
    assert_violation(
        "bad/duplicate-within-file.yaml",
        "foo/two",
        "spec.addresses[0]",
        "already used by ServiceEntry foo/one",
    );
    let text = stdout(&check(&[data("bad/duplicate-within-file.yaml")
        .to_str()
        .unwrap()]));
    assert!(!text.contains("foo/one:"), "{text}");
}

#[test]
fn every_violation_class_is_reported_with_field_and_value() {
    assert_violation(
        "bad/host-form.yaml",
        "foo/httpbin-bar",
        "spec.hosts[0]",
        "\"httpbin.global\"",
    );
    assert_violation(
        "bad/no-address.yaml",
        "foo/httpbin-bar",
        "spec.addresses",
        "no addresses",
    );
    assert_violation(
        "bad/cidr-address.yaml",
        "foo/httpbin-bar",
        "spec.addresses[0]",
        "\"127.255.0.0/24\" is a range",
    );
    assert_violation(
        "bad/no-ports-map.yaml",
        "foo/httpbin-bar",
        "spec.endpoints[0].ports",
        "198.18.2.1 has no ports map",
    );
    assert_violation(
        "bad/undeclared-port.yaml",
        "foo/httpbin-bar",
        "spec.endpoints[0].ports.grpc",
        "\"grpc\" is not a port declared",
    );
    assert_violation(
        "bad/unknown-field.yaml",
        "foo/httpbin-bar",
        "spec.hostz",
        "unknown field `hostz`",
    );
    assert_violation(
        "bad/address-twice.yaml",
        "foo/httpbin-bar",
        "spec.addresses[1]",
        "127.255.0.9 is listed twice",
    );
}

#[test]
fn warnings_alone_exit_zero_and_are_marked() {
    let file = data("warn/outside-vip-range.yaml");
    let output = check(&[file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.contains("foo/httpbin-bar: warning: spec.addresses[0]: address 10.1.2.3 is outside the VIP ranges"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn configured_gateway_port_and_vip_range_change_the_verdict() {
    let file = data("bad/duplicate-and-wrong-port.yaml");
    let output = check(&["--gateway-port", "8000", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let output = check(&[
        "--gateway-port",
        "8000",
        "--vip-range",
        "10.0.0.0/8",
        file.to_str().unwrap(),
    ]);
    assert!(stdout(&output).contains(
        "warning: spec.addresses[0]: address 127.255.0.2 is outside the VIP ranges (10.0.0.0/8)"
    ));
}

#[test]
fn json_format_is_machine_readable() {
    let file = data("bad/host-form.yaml");
    let output = check(&["--format", "json", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["errors"], 1);
    assert_eq!(report["findings"][0]["path"], "spec.hosts[0]");
    assert_eq!(report["findings"][0]["severity"], "error");
    assert_eq!(report["findings"][0]["rule"], "global-host");
    assert_eq!(report["findings"][0]["namespace"], "foo");
}

#[test]
fn unparseable_file_exits_two_naming_file_and_line() {
    let file = data("broken.yaml");
    let output = check(&[file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("admission-webhook: {}: line 5", file.display())),
        "{err}"
    );
}

#[test]
fn missing_file_and_bad_usage_exit_two() {
    let output = check(&["/nonexistent/se.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("/nonexistent/se.yaml"));
    assert_eq!(check(&[]).status.code(), Some(2));
    let seed = data("seed");
    let output = check(&["--vip-range", "1.2.3.4/99", seed.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("\"1.2.3.4/99\""));
    assert_eq!(
        check(&["--gateway-port", "70000", seed.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn garbage_input_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[u8]; 6] = [
        b"\x00\x01\x02",
        b"{\"kind\":\"List\",\"items\":[1,2,3]}",
        b"- - - - [",
        b"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: 7\n",
        b"a: &a [*a, *a]\n",
        b"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec:\n  ports:\n  - number: 99999999999999999999999\n",
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.yaml"));
        std::fs::write(&path, bytes).unwrap();
        let output = check(&[path.to_str().unwrap()]);
        let code = output.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "case {i}: {code:?} {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("panicked"),
            "case {i}: {}",
            stderr(&output)
        );
    }
}
