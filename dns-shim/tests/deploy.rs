//! `deploy/` as `kubectl kustomize` renders it: the dns-shim sidecar in the sleep example
//! points the pod's resolver at itself, waits for its first list before the app starts, has
//! the RBAC its watch needs, and runs as written (its arguments, against the API-compatible
//! test server).
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{eventually, Shim};
use fake_apiserver::{seed_service_entry, FakeApiServer};
use serde_json::{json, Value};

fn rendered() -> Vec<Value> {
    fake_apiserver::kustomize(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy"
    )))
}

fn sleep_pod(docs: &[Value]) -> Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "sleep")
        .expect("the sleep example")["spec"]["template"]["spec"]
        .clone()
}

#[test]
fn the_sidecar_is_the_pods_resolver() {
    let docs = rendered();
    let pod = sleep_pod(&docs);
    assert_eq!(pod["dnsPolicy"], "None");
    assert_eq!(
        pod["dnsConfig"]["nameservers"],
        json!(["127.0.0.1", "10.96.0.10"])
    );
    assert_eq!(
        pod["dnsConfig"]["searches"],
        json!([
            "sleep.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ])
    );
    assert_eq!(
        pod["dnsConfig"]["options"],
        json!([{"name": "ndots", "value": "5"}])
    );
    assert_eq!(
        pod["securityContext"]["sysctls"],
        json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}])
    );
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["name"], "dns-shim");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["securityContext"]["runAsNonRoot"], true);
    // Istio's proxy uid, whose traffic Istio's iptables rules do not redirect.
    assert_eq!(sidecar["securityContext"]["runAsUser"], 1337);
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    let args = sidecar["args"].to_string();
    assert!(args.contains("\"--listen=127.0.0.1:53\""), "{args}");
    assert!(args.contains("\"--admin=0.0.0.0:15054\""), "{args}");
    assert!(
        !args.contains("--upstream"),
        "upstreams come from the pod's resolv.conf: {args}"
    );
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(
            sidecar[probe]["httpGet"],
            json!({"path": "/readyz", "port": 15054})
        );
    }
    assert_eq!(
        sidecar["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 15054})
    );

    let binding = docs
        .iter()
        .find(|d| {
            d["kind"] == "ClusterRoleBinding"
                && d["metadata"]["name"] == "globalmesh-dns-shim-sleep"
        })
        .unwrap();
    assert_eq!(binding["roleRef"]["name"], "globalmesh-serviceentry-reader");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "sleep"}])
    );
}

#[test]
fn the_sidecar_runs_as_written() {
    let docs = rendered();
    let pod = sleep_pod(&docs);
    let pod_namespace = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "sleep")
        .and_then(|d| d["metadata"]["namespace"].as_str())
        .expect("the sleep Deployment's namespace")
        .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApiServer::start());
    fake.create(seed_service_entry());
    // Exported to its own namespace only: not the sleep pod's, so not answered there.
    let mut private =
        fake_apiserver::service_entry("foo", "private", "private.foo.global", "127.255.0.3");
    private["spec"]["exportTo"] = json!(["."]);
    fake.create(private);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());
    // The pod's ports swapped for free ones.
    let mut args: Vec<String> = Vec::new();
    for arg in pod["initContainers"][0]["args"].as_array().unwrap() {
        let arg = arg.as_str().unwrap();
        match arg.split_once('=') {
            Some(("--listen" | "--admin", _)) => {
                args.push(arg.split('=').next().unwrap().to_string());
                args.push("127.0.0.1:0".to_string());
            }
            // kubelet expands $(POD_NAMESPACE) from the downward API.
            Some(("--pod-namespace", "$(POD_NAMESPACE)")) => {
                let env = pod["initContainers"][0]["env"].as_array().unwrap();
                assert!(env.iter().any(|var| var["name"] == "POD_NAMESPACE"
                    && var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"));
                args.push(format!("--pod-namespace={}", pod_namespace));
            }
            _ => args.push(arg.to_string()),
        }
    }
    args.push("--kubeconfig".into());
    args.push(kubeconfig.display().to_string());
    // The resolv.conf kubelet writes for the pod from its dnsConfig; dns-shim reads its search
    // list from there.
    let dns = &pod["dnsConfig"];
    let words = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!(
            "search {}\nnameserver {}\noptions ndots:{}\n",
            words(&dns["searches"]).join(" "),
            words(&dns["nameservers"]).join("\nnameserver "),
            dns["options"][0]["value"].as_str().unwrap()
        ),
    )
    .unwrap();
    args.push("--resolv-conf".into());
    args.push(resolv.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let shim = Shim::start(&args);
    assert!(eventually(100, || shim.http("/readyz").0 == 200));
    assert_eq!(
        shim.dig(&["httpbin.bar.global", "A"]).data("A"),
        ["127.255.0.2"]
    );
    let private = shim.dig(&["private.foo.global", "A"]);
    assert_eq!(private.status, "NXDOMAIN", "{}", private.text);
    // With ndots:5 the pod's resolver tries the search list first; dns-shim answers those
    // expansions of a known name itself (a CNAME to the name), without asking an upstream
    // (the cluster DNS address of the manifest is not reachable here).
    for domain in [
        "sleep.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ] {
        let dig = shim.dig(&[&format!("httpbin.bar.global.{domain}"), "A"]);
        assert_eq!(dig.data("CNAME"), ["httpbin.bar.global."], "{}", dig.text);
        assert_eq!(dig.data("A"), ["127.255.0.2"], "{}", dig.text);
    }
}
