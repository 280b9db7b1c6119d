//! `deploy/` as `kubectl kustomize` renders it: the webhook's Deployment runs as written
//! (its arguments, against the API-compatible test server), its probes reach the admin port,
//! its RBAC covers what the watch needs, and the committed ValidatingWebhookConfiguration is
//! what `admission-webhook manifests` writes, less the caBundle.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use fake_apiserver::FakeApiServer;
use serde::Deserialize;
use serde_json::{json, Value};

fn rendered() -> Vec<Value> {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let output = Command::new(kubectl)
        .args(["kustomize", deploy])
        .output()
        .expect("kubectl (kubectl kustomize renders deploy/)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
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
    common::certs(dir.path());
    let output = Command::new(BIN)
        .args(["manifests", "--namespace", "globalmesh", "--ca-bundle"])
        .arg(dir.path().join("ca.crt"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut written: Value = serde_norway::from_slice(&output.stdout).unwrap();
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
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
    fake.create(fake_apiserver::service_entry(
        "foo",
        "httpbin-bar",
        "httpbin.bar.global",
        "127.255.0.2",
    ));
    let dir = tempfile::tempdir().unwrap();
    common::certs(&dir.path().join("tls"));
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("--listen=") || a.starts_with("--admin=") {
                format!("{}=127.0.0.1:0", a.split('=').next().unwrap())
            } else {
                a.replace(mount, &dir.path().join("tls").display().to_string())
            }
        })
        .collect();
    let mut child = Command::new(BIN)
        .args(&args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log on a thread for as long as the webhook runs, so it never writes to a
    // closed pipe; the admin address comes from it.
    let stderr = child.stderr.take().unwrap();
    let (tx, logs) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut admin = None;
    while admin.is_none() {
        let line = logs
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the webhook reports its admin address");
        if line.contains("admin listening") {
            admin = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(str::to_string);
        }
    }
    let admin = admin.expect("admin address");
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{admin}/readyz"))
            .output()
            .unwrap();
        ready = out.stdout == b"200";
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let logs: Vec<String> = logs.try_iter().collect();
    assert!(
        ready,
        "the webhook as deployed never became ready: {logs:#?}"
    );
    assert!(fake.requests().iter().any(|r| r.is_watch()));
}
