//! `deploy/` as `kubectl kustomize` renders it: the webhook's Deployment runs as written
//! (its arguments, against the API-compatible test server), its probes reach the admin port,
//! its RBAC covers what the watch needs, and the committed ValidatingWebhookConfiguration is
//! what `admission-webhook manifests` writes, less the caBundle.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Start, Webhook};
use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};

fn rendered() -> Vec<Value> {
    fake_apiserver::kustomize(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy"
    )))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

#[test]
fn renders_every_part() {
    let docs = rendered();
    for (kind, name) in [
        ("Namespace", "globalmesh"),
        ("ClusterRole", "globalmesh-serviceentry-reader"),
        ("ServiceAccount", "globalmesh-webhook"),
        ("ClusterRoleBinding", "globalmesh-webhook"),
        ("Deployment", "globalmesh-webhook"),
        ("Service", "globalmesh-webhook"),
        (
            "ValidatingWebhookConfiguration",
            "globalmesh-serviceentries",
        ),
        ("WasmPlugin", "global-guard"),
        ("Deployment", "sleep"),
        ("ClusterRoleBinding", "globalmesh-dns-shim-sleep"),
    ] {
        find(&docs, kind, name);
    }
    let role = find(&docs, "ClusterRole", "globalmesh-serviceentry-reader");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["networking.istio.io"], "resources": ["serviceentries"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = find(&docs, "ClusterRoleBinding", "globalmesh-webhook");
    assert_eq!(binding["roleRef"]["name"], "globalmesh-serviceentry-reader");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "globalmesh-webhook", "namespace": "globalmesh"}])
    );
    let deployment = find(&docs, "Deployment", "globalmesh-webhook");
    assert_eq!(deployment["metadata"]["namespace"], "globalmesh");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "globalmesh-webhook");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
    let service = find(&docs, "Service", "globalmesh-webhook");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
    assert!(container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "https" && p["containerPort"] == 8443));
}

#[test]
fn committed_webhook_configuration_is_what_manifests_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (text, ca) = common::manifests_with_new_ca(dir.path());
    let mut written: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(
        written["webhooks"][0]["clientConfig"]["caBundle"],
        admission_webhook::manifests::base64(&ca)
    );
    written["webhooks"][0]["clientConfig"]["caBundle"] = json!("");
    let docs = rendered();
    let committed = find(
        &docs,
        "ValidatingWebhookConfiguration",
        "globalmesh-serviceentries",
    );
    assert_eq!(committed, &written);
    // The Service it calls is the one deploy/ installs.
    let service = &committed["webhooks"][0]["clientConfig"]["service"];
    let installed = find(&docs, "Service", "globalmesh-webhook");
    assert_eq!(service["namespace"], installed["metadata"]["namespace"]);
    assert_eq!(service["port"], installed["spec"]["ports"][0]["port"]);
}

/// The Deployment's container arguments, with the in-pod paths and ports swapped for the
/// test's own; `--kubeconfig` stands in for the pod's service account.
#[test]
fn the_webhook_deployment_runs_as_written() {
    let docs = rendered();
    let container = &find(&docs, "Deployment", "globalmesh-webhook")["spec"]["template"]["spec"]
        ["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert!(args.contains(&"--kubernetes".to_string()), "{args:?}");
    let admin_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap()["containerPort"]
        .as_u64()
        .unwrap();
    assert!(
        args.contains(&format!("--admin=0.0.0.0:{admin_port}")),
        "{args:?}"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApiServer::start());
    fake.create(fake_apiserver::seed_service_entry());
    let dir = tempfile::tempdir().unwrap();
    common::certs(&dir.path().join("tls"));
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let mut args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("--listen=") || a.starts_with("--admin=") {
                format!("{}=127.0.0.1:0", a.split('=').next().unwrap())
            } else {
                a.replace(mount, &dir.path().join("tls").display().to_string())
            }
        })
        .collect();
    args.extend(["--kubeconfig".to_string(), kubeconfig.display().to_string()]);
    // Waits for /readyz on the admin port the manifest's --admin names.
    let _webhook = Webhook::start(Start {
        args: Some(args),
        certs: Some(dir.path().join("tls")),
        ..Start::default()
    });
    assert!(fake.requests().iter().any(|r| r.is_watch()));
}
