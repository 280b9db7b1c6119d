//! `deploy/` as `kubectl kustomize` renders it, for the controller: two replicas, RBAC for
//! exactly what it reads and writes (ServiceEntries, the one WasmPlugin, its Lease), and the
//! Deployment's arguments running against the stand-in API server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, WASM_PLUGINS};
use serde_json::{json, Value};

fn rendered() -> Vec<Value> {
    fake_apiserver::kustomize(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy"
    )))
}

fn find<'a>(docs: &'a [Value], kind: &str, namespace: Option<&str>, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && d["metadata"]["namespace"].as_str() == namespace
        })
        .unwrap_or_else(|| panic!("no {kind} {namespace:?}/{name} in deploy/"))
}

#[test]
fn rbac_grants_what_the_controller_reads_and_writes() {
    let docs = rendered();
    let subject = json!([{"kind": "ServiceAccount", "name": "globalmesh-controller", "namespace": "globalmesh"}]);
    find(
        &docs,
        "ServiceAccount",
        Some("globalmesh"),
        "globalmesh-controller",
    );
    let reader = find(&docs, "ClusterRoleBinding", None, "globalmesh-controller");
    assert_eq!(reader["roleRef"]["name"], "globalmesh-serviceentry-reader");
    assert_eq!(reader["subjects"], subject);
    // The WasmPlugin: read, and patched by name, in its own namespace; never created.
    let role = find(
        &docs,
        "Role",
        Some("istio-system"),
        "globalmesh-controller-wasmplugin",
    );
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["extensions.istio.io"], "resources": ["wasmplugins"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["extensions.istio.io"], "resources": ["wasmplugins"], "resourceNames": ["global-guard"], "verbs": ["patch"]}
        ])
    );
    let binding = find(
        &docs,
        "RoleBinding",
        Some("istio-system"),
        "globalmesh-controller-wasmplugin",
    );
    assert_eq!(binding["subjects"], subject);
    let plugin = find(&docs, "WasmPlugin", Some("istio-system"), "global-guard");
    let deployment = find(
        &docs,
        "Deployment",
        Some("globalmesh"),
        "globalmesh-controller",
    );
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--wasmplugin=istio-system/global-guard")),
        "{args}"
    );
    assert_eq!(
        plugin["metadata"]["name"],
        role["rules"][1]["resourceNames"][0]
    );
    let lease = find(
        &docs,
        "Role",
        Some("globalmesh"),
        "globalmesh-controller-lease",
    );
    assert_eq!(
        lease["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}])
    );
    // Two replicas, one of which stays through disruptions.
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pdb = find(
        &docs,
        "PodDisruptionBudget",
        Some("globalmesh"),
        "globalmesh-controller",
    );
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "globalmesh-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
}

/// The container's arguments (its admin port swapped for a free one, `--kubeconfig` standing
/// in for the service account) against the stand-in API server: the table reaches the
/// WasmPlugin deploy/ installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_runs_as_written() {
    let docs = rendered();
    let container = find(
        &docs,
        "Deployment",
        Some("globalmesh"),
        "globalmesh-controller",
    )["spec"]["template"]["spec"]["containers"][0]
        .clone();
    let mut plugin = find(&docs, "WasmPlugin", Some("istio-system"), "global-guard").clone();
    let api = FakeApiServer::start().await;
    api.create(fake_apiserver::seed_service_entry());
    if let Some(config) = plugin["spec"]["pluginConfig"].as_object_mut() {
        config.remove("table");
    }
    api.put(WASM_PLUGINS, plugin);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .map(|a| {
            if a.starts_with("--admin=") {
                "--admin=127.0.0.1:0".to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_globalmesh-controller"))
        .args(&args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("POD_NAME", "globalmesh-controller-0")
        .env("POD_NAMESPACE", "globalmesh")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let table = loop {
        let table = api
            .objects(WASM_PLUGINS)
            .get(&("istio-system".to_string(), "global-guard".to_string()))
            .map(|p| p["spec"]["pluginConfig"]["table"].clone())
            .filter(|t| !t.is_null());
        if let Some(table) = table {
            break table;
        }
        assert!(Instant::now() < deadline, "no table written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(table["hosts"][0]["host"], "httpbin.bar.global");
    // The Lease is the one deploy/'s Role names, in the pod's namespace.
    let leases = api.objects(fake_apiserver::LEASES);
    assert!(leases.contains_key(&(
        "globalmesh".to_string(),
        "globalmesh-controller".to_string()
    )));
}
