//! Property tests: the parser and the rules return findings or errors for any input, never panic.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use policy::{check_set, find_duplicates, parse_str, AddressIndex, Options};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Arbitrary JSON values, biased towards the shapes of a ServiceEntry.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "[a-z0-9.*/:_-]{0,20}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// ServiceEntries whose every field is drawn from plausible and implausible values.
fn any_service_entry() -> impl Strategy<Value = Value> {
    let host = prop_oneof![
        "[a-z*]{0,8}(\\.[a-z0-9*]{0,8}){0,3}\\.global\\.?",
        "[a-zA-Z0-9.*_-]{0,30}",
    ];
    let address = prop_oneof![
        "127\\.255\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,3})?",
        "[0-9a-f:]{0,20}(/[0-9]{1,3})?",
        "[0-9./]{0,18}",
    ];
    let port = (
        prop::option::of(any::<i64>()),
        prop::option::of("[A-Za-z_-]{0,8}"),
        prop::option::of("[a-z0-9-]{0,8}"),
        prop::option::of(-5i64..70000),
    )
        .prop_map(|(number, protocol, name, target)| {
            json!({"number": number, "protocol": protocol, "name": name, "targetPort": target})
        });
    let endpoint = (
        prop::option::of("[a-z0-9.:/_-]{0,20}"),
        prop::option::of(prop::collection::btree_map("[a-z0-9]{0,6}", -5i64..70000, 0..3)),
        prop::collection::btree_map("[a-z/.*-]{0,8}", "[a-z0-9*-]{0,6}", 0..3),
        prop::option::of("[a-z]{0,5}"),
    )
        .prop_map(|(address, ports, labels, network)| {
            json!({"address": address, "ports": ports, "labels": labels, "network": network})
        });
    let resolution = prop::option::of(prop_oneof![
        Just("NONE".to_string()),
        Just("STATIC".to_string()),
        Just("DNS".to_string()),
        Just("DNS_ROUND_ROBIN".to_string()),
        "[A-Z]{0,6}",
    ]);
    (
        prop::collection::vec(host, 0..4),
        prop::collection::vec(address, 0..4),
        prop::collection::vec(port, 0..3),
        prop::collection::vec(endpoint, 0..3),
        resolution,
        prop::collection::vec("[a-z.*~]{0,4}", 0..3),
        "[a-z]{0,4}",
    )
        .prop_map(
            |(hosts, addresses, ports, endpoints, resolution, export_to, ns)| {
                json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "ServiceEntry",
                    "metadata": {"name": "se", "namespace": ns},
                    "spec": {
                        "hosts": hosts, "addresses": addresses, "ports": ports,
                        "endpoints": endpoints, "resolution": resolution, "exportTo": export_to,
                        "location": "MESH_INTERNAL"
                    }
                })
            },
        )
}

/// `value` as block YAML with every string quoted, so that kubectl reads the same value (a
/// YAML 1.2 writer leaves `y` or `on` plain, which go-yaml reads as booleans).
fn block_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let child = |value: &Value, indent: usize, out: &mut String| match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block_yaml(value, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block_yaml(value, indent + 2, out);
        }
        _ => out.push_str(&format!(" {value}\n")),
    };
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (key, value) in m {
                out.push_str(&format!("{pad}{}:", Value::from(key.as_str())));
                child(value, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for element in a {
                out.push_str(&format!("{pad}-"));
                child(element, indent, out);
            }
        }
        _ => out.push_str(&format!("{pad}{value}\n")),
    }
}

fn check_text(text: &str) {
    if let Ok(parsed) = parse_str(text) {
        let entries: Vec<_> = parsed
            .iter()
            .filter_map(|p| p.entry.as_ref().ok())
            .collect();
        let results = check_set(&entries, &[], &Options::default());
        assert_eq!(results.len(), entries.len());
        let _ = find_duplicates(entries.iter().copied());
        let index = AddressIndex::build(entries.iter().copied());
        for range in &Options::default().vip_ranges {
            let _ = index.next_free(*range, &[]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = parse_str(&text);
    }

    #[test]
    fn parser_never_panics_on_yaml_like_text(text in "([a-zA-Z:{}\\[\\]\\-,'\"&*!|>#%@ \n]|---\n){0,200}") {
        let _ = parse_str(&text);
    }

    #[test]
    fn rules_never_panic_on_arbitrary_objects(spec in any_json()) {
        let object = json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "spec": spec});
        check_text(&object.to_string());
    }

    #[test]
    fn rules_never_panic_on_service_entry_shapes(entries in prop::collection::vec(any_service_entry(), 1..5)) {
        let text = Value::Array(entries).to_string();
        check_text(&text);
    }

    #[test]
    fn yaml_and_json_forms_agree(entry in any_service_entry()) {
        let json_text = entry.to_string();
        let mut yaml_text = String::new();
        block_yaml(&entry, 0, &mut yaml_text);
        let from_json = parse_str(&json_text).unwrap();
        let from_yaml = parse_str(&yaml_text).unwrap();
        prop_assert_eq!(from_json, from_yaml);
    }
}
