//! `admission-webhook serve` as the API server meets it: reviews over TLS with curl.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{review, service_entry, Start, Webhook};
use serde_json::Value;

const V1: &str = "admission.k8s.io/v1";
const V1BETA1: &str = "admission.k8s.io/v1beta1";

fn create(api: &str, uid: &str, name: &str, address: &str, port: u16, dry_run: bool) -> Value {
    review(
        api,
        uid,
        "CREATE",
        Some(service_entry(name, address, port)),
        None,
        dry_run,
    )
}

#[test]
fn admits_a_valid_entry_in_both_versions_echoing_uid_and_version() {
    let webhook = Webhook::start(Start::default());
    for (api, uid, address) in [
        (V1, "uid-v1", "127.255.0.10"),
        (V1BETA1, "uid-v1beta1", "127.255.0.11"),
    ] {
        let answer = webhook.review(&create(
            api,
            uid,
            &format!("svc-{uid}"),
            address,
            15443,
            false,
        ));
        assert_eq!(answer["apiVersion"], api);
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], uid);
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
}

#[test]
fn denies_duplicate_vip_and_wrong_port_with_every_violation() {
    let webhook = Webhook::start(Start::default());
    for api in [V1, V1BETA1] {
        let answer = webhook.review(&create(
            api,
            "u-dup",
            "httpbin-copy",
            "127.255.0.2",
            8000,
            false,
        ));
        let response = &answer["response"];
        assert_eq!(answer["apiVersion"], api);
        assert_eq!(response["uid"], "u-dup");
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 422);
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("ServiceEntry foo/httpbin-copy has 2 violations:"),
            "{message}"
        );
        assert!(message.contains("- spec.addresses[0]: address 127.255.0.2 is already used by ServiceEntry foo/httpbin-bar"), "{message}");
        assert!(
            message.contains("the next free address in 127.255.0.0/16 is 127.255.0.1"),
            "{message}"
        );
        assert!(
            message.contains(
                "- spec.endpoints[0].ports.http1: port 8000 is not the gateway port 15443"
            ),
            "{message}"
        );
    }
    assert_eq!(
        webhook.metric("admission_denials_total{reason=\"duplicate-address\"}"),
        2.0
    );
    assert_eq!(
        webhook.metric("admission_reviews_total{operation=\"CREATE\",verdict=\"denied\"}"),
        2.0
    );
}

#[test]
fn readme_denial_message_is_exactly_what_is_sent() {
    let webhook = Webhook::start(Start::default());
    let text = std::fs::read_to_string(common::data("bad/duplicate-and-wrong-port.yaml")).unwrap();
    let object: Value = serde_norway::from_str(&text).unwrap();
    let answer = webhook.review(&review(V1, "u-readme", "CREATE", Some(object), None, false));
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(
        readme.contains(&format!("```text\n{message}\n```")),
        "README does not show:\n{message}"
    );
}

#[test]
fn warnings_are_returned_when_allowed() {
    let webhook = Webhook::start(Start::default());
    let answer = webhook.review(&create(V1, "u-warn", "outside", "10.3.3.3", 15443, false));
    assert_eq!(answer["response"]["allowed"], true);
    let warnings = answer["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("10.3.3.3 is outside the VIP ranges"),
        "{warnings:?}"
    );
    assert!(warnings
        .iter()
        .all(|w| w.as_str().unwrap().chars().count() <= 120));
}

#[test]
fn update_never_conflicts_with_its_own_old_version() {
    let webhook = Webhook::start(Start::default());
    let old = service_entry("httpbin-bar", "127.255.0.2", 15443);
    let mut new = old.clone();
    new["spec"]["ports"][0]["name"] = "http".into();
    new["spec"]["endpoints"][0]["ports"] = serde_json::json!({"http": 15443});
    let answer = webhook.review(&review(V1, "u-upd", "UPDATE", Some(new), Some(old), false));
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[test]
fn delete_with_null_object_and_connect_are_allowed() {
    let webhook = Webhook::start(Start::default());
    let old = service_entry("httpbin-bar", "127.255.0.2", 15443);
    let answer = webhook.review(&review(V1, "u-del", "DELETE", None, Some(old), false));
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["uid"], "u-del");
    let answer = webhook.review(&review(V1, "u-con", "CONNECT", None, None, false));
    assert_eq!(answer["response"]["allowed"], true);
}

#[test]
fn other_kinds_are_allowed_untouched() {
    let webhook = Webhook::start(Start::default());
    let mut pod = review(
        V1,
        "u-pod",
        "CREATE",
        Some(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "spec": {"anything": 1}})),
        None,
        false,
    );
    pod["request"]["kind"] = serde_json::json!({"group": "", "version": "v1", "kind": "Pod"});
    let answer = webhook.review(&pod);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("warnings").is_none());
}

#[test]
fn second_create_in_quick_succession_is_denied_by_the_first_claim() {
    let webhook = Webhook::start(Start::default());
    let first = webhook.review(&create(V1, "u-1", "first", "127.255.0.50", 15443, false));
    assert_eq!(first["response"]["allowed"], true);
    let second = webhook.review(&create(V1, "u-2", "second", "127.255.0.50", 15443, false));
    assert_eq!(second["response"]["allowed"], false);
    let message = second["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "address 127.255.0.50 is claimed by ServiceEntry foo/first (admitted and not stored yet)"
        ),
        "{message}"
    );
    // The first holds its address and its host (in this process: the webhook reads files).
    assert_eq!(webhook.metric("admission_claims"), 2.0);
}

#[test]
fn dry_run_gets_the_same_verdict_and_claims_nothing() {
    let webhook = Webhook::start(Start::default());
    let dry = webhook.review(&create(V1, "u-dry", "dry", "127.255.0.60", 15443, true));
    assert_eq!(dry["response"]["allowed"], true);
    let real = webhook.review(&create(V1, "u-real", "real", "127.255.0.60", 15443, false));
    assert_eq!(
        real["response"]["allowed"], true,
        "a dry run must not reserve: {real}"
    );
    let denied_dry = webhook.review(&create(V1, "u-dry2", "dup", "127.255.0.2", 15443, true));
    assert_eq!(denied_dry["response"]["allowed"], false);
}

#[test]
fn bad_requests_get_clear_statuses_and_the_server_keeps_serving() {
    let webhook = Webhook::start(Start::default());
    let (status, body) = webhook.curl(b"{}", "text/plain", &[]);
    assert_eq!(status, 415, "{body}");
    assert!(
        body.contains("\"text/plain\" is not application/json"),
        "{body}"
    );
    let (status, body) = webhook.curl(b"", "application/json", &[]);
    assert_eq!((status, body.lines().count()), (400, 1), "{body}");
    assert!(body.contains("empty"), "{body}");
    let full = create(V1, "u-trunc", "t", "127.255.0.70", 15443, false).to_string();
    let (status, body) = webhook.curl(&full.as_bytes()[..full.len() / 2], "application/json", &[]);
    assert_eq!(status, 400);
    assert!(body.starts_with("request body is not valid JSON"), "{body}");
    let (status, body) = webhook.curl(
        br#"{"apiVersion":"v1","kind":"ConfigMap"}"#,
        "application/json",
        &[],
    );
    assert_eq!(status, 400);
    assert!(body.contains("unsupported apiVersion \"v1\""), "{body}");
    let mut no_request = create(V1, "u", "x", "127.255.0.71", 15443, false);
    no_request.as_object_mut().unwrap().remove("request");
    let (status, body) = webhook.curl(no_request.to_string().as_bytes(), "application/json", &[]);
    assert_eq!(
        (status, body.trim()),
        (400, "AdmissionReview has no request")
    );
    // Over HTTP/2 the early 413 resets the stream that curl is still sending on, and curl
    // reports the reset instead of the status; HTTP/1.1 shows the status.
    let huge = vec![b' '; 7 * 1024 * 1024];
    let (status, body) = webhook.curl(&huge, "application/json", &["--http1.1"]);
    assert_eq!(status, 413, "{body}");
    let (status, _) = webhook.curl(b"", "application/json", &["-X", "GET", "-o", "/dev/null"]);
    assert_eq!(status, 405);
    assert_eq!(
        webhook.metric("admission_rejected_requests_total{status=\"400\"}"),
        4.0
    );
    // Still serving.
    let answer = webhook.review(&create(
        V1,
        "u-after",
        "after",
        "127.255.0.72",
        15443,
        false,
    ));
    assert_eq!(answer["response"]["allowed"], true);
}

#[test]
fn plain_http_and_silent_clients_are_dropped() {
    let mut webhook = Webhook::start(Start {
        extra: vec!["--client-timeout".into(), "1".into()],
        ..Start::default()
    });
    // Plain HTTP on the TLS port gets no HTTP response.
    let mut plain = TcpStream::connect(webhook.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        !reply.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&reply)
    );
    // A client that connects and says nothing is disconnected.
    let mut silent = TcpStream::connect(webhook.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = silent.read(&mut buf);
    assert!(
        matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "silent client not closed: {read:?}"
    );
    assert!(webhook.is_running());
    let answer = webhook.review(&create(V1, "u-ok", "ok", "127.255.0.80", 15443, false));
    assert_eq!(answer["response"]["allowed"], true);
}

#[test]
fn catalog_file_changes_are_picked_up_and_a_broken_file_keeps_the_last_good_catalog() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::data("seed/serviceentry-direct.yaml"),
        dir.path().join("direct.yaml"),
    )
    .unwrap();
    let webhook = Webhook::start(Start {
        service_entries: vec![dir.path().to_path_buf()],
        ..Start::default()
    });
    let text = std::fs::read_to_string(common::data("seed/serviceentry-direct.yaml")).unwrap();
    std::fs::write(
        dir.path().join("more.yaml"),
        text.replace("httpbin-bar", "other")
            .replace("127.255.0.2", "127.255.0.90"),
    )
    .unwrap();
    assert!(
        webhook.wait_until(|w| w.metric("admission_catalog_entries") == 2.0),
        "new file not loaded"
    );
    let answer = webhook.review(&create(V1, "u-c", "taken", "127.255.0.90", 15443, false));
    assert!(answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("foo/other"));
    std::fs::write(dir.path().join("broken.yaml"), "spec: [\n").unwrap();
    assert!(
        webhook.wait_until(|w| w.metric("admission_catalog_reload_errors_total") >= 1.0),
        "broken file not counted"
    );
    assert_eq!(webhook.metric("admission_catalog_entries"), 2.0);
    let answer = webhook.review(&create(V1, "u-c2", "taken2", "127.255.0.90", 15443, false));
    assert_eq!(answer["response"]["allowed"], false);
}

#[test]
fn not_ready_until_the_catalog_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("se.yaml");
    std::fs::write(&file, "spec: [\n").unwrap();
    let webhook = Webhook::start(Start {
        service_entries: vec![file.clone()],
        wait_ready: false,
        ..Start::default()
    });
    assert_eq!(webhook.admin_get("/readyz").0, 503);
    assert_eq!(webhook.admin_get("/healthz").0, 200);
    let answer = webhook.review(&create(V1, "u-nr", "early", "127.255.0.2", 15443, false));
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 503);
    std::fs::copy(common::data("seed/serviceentry-direct.yaml"), &file).unwrap();
    assert!(webhook.wait_until(|w| w.admin_get("/readyz").0 == 200));
    let answer = webhook.review(&create(V1, "u-r", "late", "127.255.0.2", 15443, false));
    assert!(answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("foo/httpbin-bar"));
}

#[test]
fn certificate_rotation_while_serving_and_a_bad_pair_keeps_the_old_one() {
    let volume = tempfile::tempdir().unwrap();
    common::secret_volume(volume.path(), "v1");
    let old_ca = volume.path().join("..v1/ca.crt");
    let webhook = Webhook::start(Start {
        certs: Some(volume.path().to_path_buf()),
        ..Start::default()
    });
    assert_eq!(
        webhook
            .curl_with_ca(&old_ca, b"", "application/json", &[])
            .0,
        400
    );
    common::secret_volume(volume.path(), "v2");
    let new_ca = volume.path().join("..v2/ca.crt");
    assert!(
        webhook.wait_until(|w| w.curl_with_ca(&new_ca, b"", "application/json", &[]).0 == 400),
        "new certificate never served"
    );
    assert_eq!(
        webhook
            .curl_with_ca(&old_ca, b"", "application/json", &[])
            .0,
        0,
        "old certificate still served"
    );
    // A new pair whose key does not belong to its certificate.
    let v3 = volume.path().join("..v3");
    std::fs::create_dir(&v3).unwrap();
    std::fs::copy(volume.path().join("..v2/tls.crt"), v3.join("tls.crt")).unwrap();
    std::fs::copy(volume.path().join("..v1/tls.key"), v3.join("tls.key")).unwrap();
    std::os::unix::fs::symlink("..v3", volume.path().join("..data_tmp")).unwrap();
    std::fs::rename(
        volume.path().join("..data_tmp"),
        volume.path().join("..data"),
    )
    .unwrap();
    assert!(webhook.wait_until(|w| w.metric("admission_certificate_reload_errors_total") >= 1.0));
    assert_eq!(
        webhook
            .curl_with_ca(&new_ca, b"", "application/json", &[])
            .0,
        400,
        "old pair not kept"
    );
}

#[test]
fn client_certificates_are_required_and_verified_with_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (client_ca, client_cert, client_key) = client_pki(dir.path(), "client");
    let (_, stranger_cert, stranger_key) = client_pki(dir.path(), "stranger");
    let webhook = Webhook::start(Start {
        extra: vec!["--client-ca".into(), client_ca.display().to_string()],
        ..Start::default()
    });
    let body = create(V1, "u-mtls", "mtls", "127.255.0.95", 15443, false).to_string();
    let (status, _) = webhook.curl(body.as_bytes(), "application/json", &[]);
    assert_eq!(status, 0, "accepted a client without a certificate");
    let (status, _) = webhook.curl(
        body.as_bytes(),
        "application/json",
        &["--cert", &stranger_cert, "--key", &stranger_key],
    );
    assert_eq!(status, 0, "accepted a certificate from another CA");
    let (status, text) = webhook.curl(
        body.as_bytes(),
        "application/json",
        &["--cert", &client_cert, "--key", &client_key],
    );
    assert_eq!(status, 200, "{text}");
}

/// A CA and a client certificate it signed, as kube-apiserver's webhook client would hold.
fn client_pki(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_path = dir.join(format!("{name}-ca.crt"));
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        ca_path,
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}
