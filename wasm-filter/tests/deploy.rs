//! The Istio manifests in deploy/wasm-filter carry a configuration the filter accepts.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;

use global_guard::config;
use policy::authority::Decision;
use serde_json::Value;

fn manifest(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/wasm-filter")
        .join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_seed_config(json: &str) {
    let config = config::parse(json.as_bytes()).expect("the manifest's configuration parses");
    assert_eq!(config.table.len(), 1);
    assert_eq!(
        config.table.decide("httpbin.bar.global:8000", None, None),
        Decision::Allow {
            cluster: Some("cluster2")
        }
    );
}

#[test]
fn wasmplugin_runs_on_outbound_with_a_valid_plugin_config() {
    let plugin = manifest("wasmplugin.yaml");
    assert_eq!(plugin["kind"], "WasmPlugin");
    assert_eq!(plugin["spec"]["match"][0]["mode"], "CLIENT");
    assert_seed_config(&plugin["spec"]["pluginConfig"].to_string());
}

#[test]
fn envoyfilter_inserts_before_the_router_with_a_valid_configuration() {
    let filter = manifest("envoyfilter.yaml");
    let patch = &filter["spec"]["configPatches"][0];
    assert_eq!(patch["match"]["context"], "SIDECAR_OUTBOUND");
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    let wasm = &patch["patch"]["value"]["typed_config"]["config"];
    assert_eq!(wasm["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    let configuration = wasm["configuration"]["value"]
        .as_str()
        .expect("configuration is a string");
    assert_seed_config(configuration);
}
