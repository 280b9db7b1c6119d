//! The Istio manifests in deploy/wasm-filter carry a configuration the filter accepts.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;

use global_guard::config::{self, Source};
use policy::authority::{Decision, Reason};
use policy::options::Options;
use policy::table::Table;
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

/// The seed's ServiceEntries as the controller turns them into a table.
fn seed_table() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/seed/serviceentry-versioned.yaml");
    let text = fs::read_to_string(&path).unwrap();
    let entries: Vec<_> = policy::parse_str(&text)
        .unwrap()
        .into_iter()
        .map(|parsed| parsed.entry.unwrap())
        .collect();
    serde_json::to_value(Table::build(&entries, &Options::default())).unwrap()
}

#[test]
fn wasmplugin_fails_closed_until_the_controller_writes_the_table() {
    let plugin = manifest("wasmplugin.yaml");
    assert_eq!(plugin["kind"], "WasmPlugin");
    assert_eq!(plugin["spec"]["match"][0]["mode"], "CLIENT");
    let mut plugin_config = plugin["spec"]["pluginConfig"].clone();
    assert!(
        plugin_config.get("table").is_none() && plugin_config.get("service_entries").is_none(),
        "the controller owns the table: {plugin_config}"
    );
    let config = config::parse(plugin_config.to_string().as_bytes()).unwrap();
    assert_eq!(config.source, Source::Empty);
    assert_eq!(config.cluster_header, "x-global-cluster");
    let Decision::Reject(rejection) = config.table.decide("httpbin.bar.global:8000", None, None)
    else {
        panic!("an empty table refuses .global hosts");
    };
    assert_eq!(rejection.reason, Reason::UnknownHost);
    // What the WasmPlugin holds once the controller's server-side apply has added its field.
    plugin_config["table"] = seed_table();
    assert_seed_config(&plugin_config.to_string());
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
