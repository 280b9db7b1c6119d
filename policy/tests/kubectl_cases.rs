//! Fidelity against the oracle: `tests/data/kubectl/cases.json` holds inputs and what the real
//! Go libraries made of them (sigs.k8s.io/yaml YAMLToJSON over go-yaml v2.4, and kubectl's
//! `-f` path: BOM override, `YAMLOrJSONDecoder`, empty/null documents skipped). For every case
//! the documents we read must be the documents kubectl would send, as JSON values (numbers
//! typed as the API server reads them: an integer when written without fraction or exponent),
//! and where kubectl fails we must fail. The last tests read ServiceEntries of such text through
//! `policy::parse_str`, as the servers and the checker read them.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;

/// Cases we deliberately do not match, with why. Keep this list tiny.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// The documents `kubectl -f` would send, as we read them, or the first error.
fn read_all(bytes: &[u8]) -> Result<Vec<Value>, policy::yaml::Error> {
    let text = policy::yaml::decode_text(bytes);
    let mut out = Vec::new();
    for doc in policy::yaml::documents(&text) {
        let doc = doc?;
        let mut items = Vec::new();
        let mut item_err = None;
        let node = doc.read(|item| match item.to_value() {
            Ok(v) => items.push(v),
            Err(e) => item_err = Some(e),
        })?;
        if let Some(e) = item_err {
            return Err(e);
        }
        if let Some(node) = node {
            let mut v = node.to_value()?;
            if !items.is_empty() {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("items".to_owned(), Value::Array(items));
                }
            }
            out.push(v);
        }
    }
    Ok(out)
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    } as u32;
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk.iter().take_while(|&&c| c != b'=').count();
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= if i < n { val(c) } else { 0 } << (18 - 6 * i);
        }
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&bytes[..n.saturating_sub(1)]);
    }
    out
}

#[test]
fn kubectl_cases() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("data/kubectl/cases.json")).expect("cases parse");
    let mut failures = Vec::new();
    let mut matched = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let bytes = match case.get("yaml_b64").and_then(Value::as_str) {
            Some(b) => base64(b),
            None => case["yaml"].as_str().unwrap_or("").as_bytes().to_vec(),
        };
        let got = read_all(&bytes);
        let ok = match (case["kubectl_error"].as_str(), &got) {
            (Some(_), Err(_)) => true,
            (Some(want), Ok(docs)) => {
                failures.push(format!(
                    "{name}: kubectl fails ({want}) but we read {docs:?}"
                ));
                false
            }
            (None, got) => {
                let want: Vec<Value> = case["kubectl_docs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|d| {
                                serde_json::from_str(d.as_str().unwrap_or("null")).expect("doc")
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                match got {
                    Ok(docs) if *docs == want => true,
                    Ok(docs) => {
                        failures.push(format!("{name}: want {want:?}, got {docs:?}"));
                        false
                    }
                    Err(e) => {
                        failures.push(format!("{name}: want {want:?}, got error {}", e.located()));
                        false
                    }
                }
            }
        };
        if ok {
            matched += 1;
            if KNOWN_DIFFERENCES.iter().any(|(n, _)| *n == name) {
                failures.push(format!("{name}: listed in KNOWN_DIFFERENCES but matches"));
            }
        } else if KNOWN_DIFFERENCES.iter().any(|(n, _)| *n == name) {
            failures.pop();
        }
    }
    println!("kubectl cases matched: {matched} / {}", cases.len());
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A ServiceEntry as people write it, with values that kubectl and the API server read and
/// that a YAML 1.2 reader (serde_norway) refuses: IPv6 addresses ending in `::` in a flow
/// sequence, an IPv6 address in a flow mapping, ports written as floats, octal and hex, and
/// text after the document's end marker.
const TRICKY: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ext
  namespace: ns1
  labels:
    tier: \"no\"
spec:
  hosts: [api.ns1.global]
  addresses: [2001:db8::, 10.0.0.1]
  ports:
  - {number: 8000.0, name: http, protocol: HTTP}
  - number: 1e3
    name: tcp
  - number: 0777
    name: octal
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 2001:db8::1, ports: {http: 0x3C53}}
...
what follows the end of a document is not read
";

#[test]
fn parse_str_reads_service_entries_as_kubectl_does() {
    assert!(
        serde_norway::from_str::<Value>(TRICKY).is_err(),
        "serde_norway reads this text now; the test no longer shows a difference"
    );
    let parsed = policy::parse_str(TRICKY).unwrap();
    assert_eq!(parsed.len(), 1);
    let entry = parsed[0].entry.as_ref().unwrap();
    assert_eq!(entry.metadata.labels["tier"], "no");
    assert_eq!(entry.spec.hosts, ["api.ns1.global"]);
    assert_eq!(entry.spec.addresses, ["2001:db8::", "10.0.0.1"]);
    let ports: Vec<_> = entry.spec.ports.iter().map(|p| p.number).collect();
    assert_eq!(ports, [Some(8000), Some(1000), Some(511)]);
    let endpoints = entry.spec.endpoint_list.as_ref().unwrap();
    assert_eq!(endpoints[0].address.as_deref(), Some("2001:db8::1"));
    assert_eq!(endpoints[0].ports.as_ref().unwrap()["http"], 15443);
}

#[test]
fn parse_str_reads_yaml_1_1_scalars_as_the_api_server_sees_them() {
    // `on` is a boolean to go-yaml: the API server refuses it as a label value, and so does
    // the decoding, naming the field.
    let text = TRICKY.replace("tier: \"no\"", "tier: on");
    let parsed = policy::parse_str(&text).unwrap();
    let err = parsed[0].entry.as_ref().unwrap_err();
    assert_eq!(err.path, "metadata.labels.tier");
    assert!(err.message.contains("boolean `true`"), "{}", err.message);
    // A port written as a quoted string stays a string, which the schema refuses.
    let text = TRICKY.replace("number: 1e3", "number: \"1000\"");
    let parsed = policy::parse_str(&text).unwrap();
    assert_eq!(
        parsed[0].entry.as_ref().unwrap_err().path,
        "spec.ports[1].number"
    );
}

#[test]
fn parse_str_reads_json_streams_as_kubectl_does() {
    let entry = |name: &str| {
        format!(
            r#"{{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{{"name":"{name}"}},"spec":{{"hosts":["{name}.ns.global"]}}}}"#
        )
    };
    let text = format!("{}\n{}\n", entry("a"), entry("b"));
    let parsed = policy::parse_str(&text).unwrap();
    let found: Vec<_> = parsed
        .iter()
        .map(|p| (p.document, p.entry.as_ref().unwrap().key().name))
        .collect();
    assert_eq!(found, [(1, "a".to_string()), (2, "b".to_string())]);
}

#[test]
fn parse_str_refuses_what_kubectl_refuses_with_line_and_column() {
    let cases = [
        // A `?` inside a plain scalar of a flow sequence ends it, for go-yaml.
        (
            TRICKY.replace("10.0.0.1]", "http://x.com/a?b=c]"),
            (10, 41),
            "did not find expected ',' or ']'",
        ),
        // Infinity has no JSON form: YAMLToJSON refuses the document.
        (
            TRICKY.replace("number: 1e3", "number: .inf"),
            (13, 13),
            "unsupported value: +Inf",
        ),
        // Even in an object that is not a ServiceEntry.
        (
            format!("{TRICKY}---\nkind: ConfigMap\ndata:\n  ~: x\n"),
            (26, 3),
            "unsupported map key",
        ),
        (
            TRICKY.replace("...\n", "--- {a: 1}\n"),
            (21, 1),
            "invalid Yaml document separator",
        ),
    ];
    for (text, (line, column), message) in &cases {
        let err = policy::parse_str(text).unwrap_err();
        assert_eq!(
            (err.line, err.column),
            (Some(*line), Some(*column)),
            "{err}"
        );
        assert!(err.message.contains(message), "{err}");
    }
}
