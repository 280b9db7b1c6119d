//! `deploy/` as `kubectl kustomize` renders it: the webhook's Deployment runs as written
//! (its arguments, against the API-compatible test server), its probes reach the admin port,
//! its RBAC covers what the watch, the claims and the Lease need, and the committed webhook
//! configurations are what `admission-webhook manifests` writes, less the caBundle.
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
        ("MutatingWebhookConfiguration", "globalmesh-serviceentries"),
        ("CustomResourceDefinition", "addressclaims.globalmesh.io"),
        ("CustomResourceDefinition", "hostclaims.globalmesh.io"),
        ("ClusterRole", "globalmesh-webhook-claims"),
        ("ClusterRoleBinding", "globalmesh-webhook-claims"),
        ("Role", "globalmesh-webhook-lease"),
        ("RoleBinding", "globalmesh-webhook-lease"),
        ("PodDisruptionBudget", "globalmesh-webhook"),
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
    // What the claims and the repair write.
    let claims = find(&docs, "ClusterRole", "globalmesh-webhook-claims");
    assert_eq!(
        claims["rules"],
        json!([{"apiGroups": ["globalmesh.io"], "resources": ["addressclaims", "hostclaims"], "verbs": ["get", "list", "watch", "create", "update", "delete"]}])
    );
    let lease = find(&docs, "Role", "globalmesh-webhook-lease");
    assert_eq!(lease["metadata"]["namespace"], "globalmesh");
    assert_eq!(lease["rules"][0]["resources"], json!(["leases"]));
    for kind in ["addressclaims", "hostclaims"] {
        let crd = find(
            &docs,
            "CustomResourceDefinition",
            &format!("{kind}.globalmesh.io"),
        );
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["spec"]["names"]["plural"], kind);
        assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
    }
    let deployment = find(&docs, "Deployment", "globalmesh-webhook");
    assert_eq!(deployment["metadata"]["namespace"], "globalmesh");
    // Three replicas, spread over nodes, two of which stay through disruptions.
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let pdb = find(&docs, "PodDisruptionBudget", "globalmesh-webhook");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
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
fn committed_webhook_configurations_are_what_manifests_writes() {
    use serde::Deserialize;
    let dir = tempfile::tempdir().unwrap();
    let (text, ca) = common::manifests_with_new_ca(dir.path());
    let written: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    assert_eq!(written.len(), 2);
    let docs = rendered();
    for mut written in written {
        assert_eq!(
            written["webhooks"][0]["clientConfig"]["caBundle"],
            admission_webhook::manifests::base64(&ca)
        );
        written["webhooks"][0]["clientConfig"]["caBundle"] = json!("");
        let kind = written["kind"].as_str().unwrap().to_string();
        let committed = find(&docs, &kind, "globalmesh-serviceentries");
        assert_eq!(committed, &written, "{kind}");
        // The Service it calls is the one deploy/ installs.
        let service = &committed["webhooks"][0]["clientConfig"]["service"];
        let installed = find(&docs, "Service", "globalmesh-webhook");
        assert_eq!(service["namespace"], installed["metadata"]["namespace"]);
        assert_eq!(service["port"], installed["spec"]["ports"][0]["port"]);
    }
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
