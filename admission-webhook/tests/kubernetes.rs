//! `serve --kubernetes` and `audit --kubernetes` against the API-compatible test server: the
//! catalog follows the API, reservations end when the admitted object is watched, and the
//! webhook is unready until its first list is in.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{review, service_entry, Start, Webhook, BIN};
use fake_apiserver::FakeApiServer;
use serde_json::Value;

const V1: &str = "admission.k8s.io/v1";

fn create(uid: &str, name: &str, address: &str, dry_run: bool) -> Value {
    review(
        V1,
        uid,
        "CREATE",
        Some(service_entry(name, address, 15443)),
        None,
        dry_run,
    )
}

/// The same object as stored in the API server after an admitted CREATE, with the uid the
/// webhook saw.
fn stored(name: &str, address: &str) -> Value {
    let mut object =
        fake_apiserver::service_entry("foo", name, &format!("{name}.bar.global"), address);
    object["metadata"]["uid"] = common::uid_of(name).into();
    object
}

fn start(kubeconfig: &Path) -> Webhook {
    Webhook::start(Start {
        service_entries: Vec::new(),
        extra: vec![
            "--kubernetes".into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
        ],
        wait_ready: false,
        ..Start::default()
    })
}

fn allowed(webhook: &Webhook, review: &Value) -> bool {
    webhook.review(review)["response"]["allowed"] == true
}

#[test]
fn serve_follows_the_api_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApiServer::start());
    fake.create(stored("httpbin-bar", "127.255.0.2"));
    fake.hold_lists(true);
    let dir = tempfile::tempdir().unwrap();
    let webhook = start(&fake.write_kubeconfig(dir.path()));

    // Not ready, and ServiceEntries are not admitted, until the first list is in.
    assert!(webhook.wait_until(|_| !fake.requests().is_empty()));
    assert_eq!(webhook.admin_get("/readyz").0, 503);
    assert!(!allowed(
        &webhook,
        &create("u-0", "early", "127.255.0.9", true)
    ));
    fake.hold_lists(false);
    assert!(webhook.wait_until(|w| w.admin_get("/readyz").0 == 200));

    // A listed object's address is taken.
    let answer = webhook.review(&create("u-1", "copy", "127.255.0.2", true));
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("127.255.0.2 is already used by ServiceEntry foo/httpbin-bar"),
        "{message}"
    );

    // MODIFIED frees the old address; DELETED frees the new one.
    fake.update(stored("httpbin-bar", "127.255.0.50"));
    assert!(webhook.wait_until(|w| allowed(w, &create("u-2", "copy", "127.255.0.2", true))));
    assert!(!allowed(
        &webhook,
        &create("u-3", "copy", "127.255.0.50", true)
    ));
    fake.delete("foo", "httpbin-bar");
    assert!(webhook.wait_until(|w| allowed(w, &create("u-4", "copy", "127.255.0.50", true))));

    // An admitted CREATE claims its address and host in the API server before the object
    // is stored; another entry wanting the address meanwhile is denied, naming the claim's
    // owner.
    assert!(allowed(
        &webhook,
        &create("u-5", "new", "127.255.0.60", false)
    ));
    let claims = fake.objects(fake_apiserver::ADDRESS_CLAIMS);
    let claim = &claims[&(String::new(), "127.255.0.60".to_string())];
    assert_eq!(claim["spec"]["owner"]["name"], "new");
    assert!(fake
        .objects(fake_apiserver::HOST_CLAIMS)
        .contains_key(&(String::new(), "new.bar.global".to_string())));
    let answer = webhook.review(&create("u-5b", "rival", "127.255.0.60", false));
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "127.255.0.60 is claimed by ServiceEntry foo/new (admitted and not stored yet)"
        ),
        "{message}"
    );
    fake.create(stored("new", "127.255.0.60"));
    assert!(webhook.wait_until(|w| w.metric("admission_catalog_entries") == 1.0));
    let answer = webhook.review(&create("u-6", "again", "127.255.0.60", true));
    assert!(answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("already used by ServiceEntry foo/new"));

    // Garbage in the watch is counted and skipped; the next change still arrives. A deleted
    // entry's claims are released at once.
    let errors = webhook.metric("admission_catalog_reload_errors_total");
    fake.send_garbage();
    fake.delete("foo", "new");
    let released =
        webhook.wait_until(|w| allowed(w, &create("u-7", "again", "127.255.0.60", true)));
    assert!(
        released,
        "{:?}",
        fake.objects(fake_apiserver::ADDRESS_CLAIMS)
    );
    assert!(webhook.metric("admission_catalog_reload_errors_total") > errors);

    // A 410 in the watch: the webhook re-lists and stays ready.
    let lists = webhook.metric("admission_catalog_lists_total");
    assert_eq!(lists, 1.0);
    assert!(webhook.wait_until(|_| fake.open_watches() == 1));
    fake.expire_watches();
    assert!(webhook.wait_until(|w| w.metric("admission_catalog_lists_total") == lists + 1.0));
    assert_eq!(webhook.admin_get("/readyz").0, 200);
    assert!(webhook.metric("admission_catalog_watch_events_total") >= 4.0);
}

fn audit(kubeconfig: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "--kubernetes", "--kubeconfig"])
        .arg(kubeconfig)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn audit_lists_the_api_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApiServer::start());
    fake.create(stored("httpbin-bar", "127.255.0.2"));
    let mut elsewhere = stored("httpbin-copy", "127.255.0.2");
    elsewhere["metadata"]["namespace"] = "other".into();
    fake.create(elsewhere);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());

    let output = audit(&kubeconfig, &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("127.255.0.2/32: foo/httpbin-bar, other/httpbin-copy")
    );
    // Stored before any webhook claimed for them.
    assert!(
        text.contains("claim address 127.255.0.2: held by foo/httpbin-bar without a claim"),
        "{text}"
    );
    // With the claims the webhook would have made, the namespace is clean.
    let claim = |kind: fake_apiserver::Kind, name: &str, field: &str| {
        fake.put(
            kind,
            serde_json::json!({
                "apiVersion": "globalmesh.io/v1alpha1", "kind": kind.kind,
                "metadata": {"name": name},
                "spec": {field: name, "owner": {"namespace": "foo", "name": "httpbin-bar"},
                         "claimedAt": "2026-12-01T00:00:00Z"}
            }),
        )
    };
    claim(fake_apiserver::ADDRESS_CLAIMS, "127.255.0.2", "address");
    claim(
        fake_apiserver::HOST_CLAIMS,
        "httpbin-bar.bar.global",
        "host",
    );
    let output = audit(&kubeconfig, &["--namespace", "foo"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    // A claim of an entry that is not stored disagrees.
    fake.put(
        fake_apiserver::ADDRESS_CLAIMS,
        serde_json::json!({
            "apiVersion": "globalmesh.io/v1alpha1", "kind": "AddressClaim",
            "metadata": {"name": "127.255.0.77"},
            "spec": {"address": "127.255.0.77", "owner": {"namespace": "foo", "name": "gone"},
                     "claimedAt": "2026-12-01T00:00:00Z"}
        }),
    );
    let output = audit(&kubeconfig, &["--namespace", "foo"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text,
        "claim address 127.255.0.77: claimed by foo/gone, which is not stored\n"
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == "/apis/networking.istio.io/v1/namespaces/foo/serviceentries"));
}

#[test]
fn audit_says_what_is_wrong_with_the_api_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let no_istio = runtime.block_on(FakeApiServer::serving(&[]));
    let output = audit(&no_istio.write_kubeconfig(dir.path()), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("networking.istio.io") && stderr.contains("install Istio's CRDs"),
        "{stderr}"
    );

    let fake = runtime.block_on(FakeApiServer::start());
    let output = audit(&fake.write_kubeconfig_with_token(dir.path(), "wrong"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Unauthorized"));

    let output = Command::new(BIN)
        .args(["audit", "--kubeconfig", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--kubernetes"));
}
