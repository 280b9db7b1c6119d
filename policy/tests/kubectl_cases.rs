//! Fidelity against the oracle: `tests/data/kubectl/cases.json` holds inputs and what the real
//! Go libraries made of them (sigs.k8s.io/yaml YAMLToJSON over go-yaml v2.4, and kubectl's
//! `-f` path: BOM override, `YAMLOrJSONDecoder`, empty/null documents skipped). For every case
//! the documents we read must be the documents kubectl would send, as JSON values (numbers
//! typed as the API server reads them: an integer when written without fraction or exponent),
//! and where kubectl fails we must fail.
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
