//! The rendered configurations are accepted by the real Envoy (`--mode validate`).
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use controller::ecds::{discovery_response, write_atomically, WasmSettings};
use controller::sync::EcdsTarget;
use demo::envoy::{self, Identity, SidecarConfig};
use policy::table::Table;
use policy::Options;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/envoy/envoy/_bin/envoy"))
}

fn validate(config: &serde_json::Value) {
    let bin = envoy_bin();
    assert!(
        bin.exists(),
        "Envoy not found at {} (make setup installs it)",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let output = Command::new(bin)
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "envoy rejected the configuration:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn pki(dir: &Path) -> (PathBuf, demo::pki::Workload) {
    let ca = demo::pki::MeshCa::create(dir).unwrap();
    let workload = ca.workload("foo", "sleep").unwrap();
    (ca.root.clone(), workload)
}

#[test]
fn client_sidecars_for_all_three_seed_entries_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (root_cert, sleep) = pki(dir.path());
    // The ECDS file names the module, so it must be the real one (the Makefile builds it first).
    let wasm = std::env::var_os("GLOBAL_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/wasm32-wasip1/release/global_guard.wasm"));
    assert!(
        wasm.exists(),
        "{} is missing: build it with make build-filter",
        wasm.display()
    );
    // Envoy wants the ECDS file to exist; it holds what globalmesh-controller writes.
    let ecds_file = dir.path().join("ecds/global_guard.json");
    std::fs::create_dir_all(dir.path().join("ecds")).unwrap();
    let target = EcdsTarget {
        path: ecds_file.clone(),
        resource_name: "global_guard".to_string(),
        wasm: WasmSettings::new(&wasm),
        cluster_header: Some("x-global-cluster".to_string()),
    };
    let addresses: BTreeMap<String, String> = [(
        "istio-egressgateway.istio-system.svc.cluster.local".to_string(),
        "198.18.1.1".to_string(),
    )]
    .into();
    for file in [
        "serviceentry-direct.yaml",
        "serviceentry-egress.yaml",
        "serviceentry-versioned.yaml",
    ] {
        let entries: Vec<_> = catalog::load_path(&root().join("tests/data/seed").join(file))
            .unwrap()
            .into_iter()
            .map(|l| l.entry.unwrap())
            .collect();
        let options = Options::default();
        let services = envoy::global_services(&entries, &options, &addresses).unwrap();
        let table = Table::build(&entries, &options);
        let response = discovery_response(
            &target.resource_name,
            table.hash.as_deref().unwrap(),
            &target.wasm,
            &target.configuration(&table).to_string(),
        );
        write_atomically(&ecds_file, &response).unwrap();
        let config = envoy::client_sidecar(
            &services,
            &SidecarConfig {
                identity: Identity {
                    cert: &sleep.cert,
                    key: &sleep.key,
                    root: &root_cert,
                },
                ecds_file: &ecds_file,
                admin_port: 15000,
                outbound_port: 15001,
                cluster_header: "x-global-cluster",
            },
        )
        .unwrap();
        validate(&config);
    }
}

#[test]
fn gateways_and_server_sidecar_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (root_cert, workload) = pki(dir.path());
    let routes: BTreeMap<String, Vec<(String, u16)>> = [(
        envoy::sni("httpbin", "bar", 8000),
        vec![("127.0.0.1".to_string(), 15006)],
    )]
    .into();
    validate(&envoy::sni_gateway(
        "ingress",
        ("198.18.2.1", 15443),
        15000,
        &routes,
    ));
    let identity = Identity {
        cert: &workload.cert,
        key: &workload.key,
        root: &root_cert,
    };
    validate(&envoy::server_sidecar(
        &identity,
        ("127.0.0.1", 15006),
        8000,
        15001,
    ));
}
