//! `admission-webhook check`, the real binary, on every object of Istio 1.28's own tests
//! (policy/tests/data/istio-1.28: TestValidateServiceEntries, Test_validateExportTo, TestCRDs
//! and the integration validation dataset): its verdict is Istio's, case by case. The policy
//! core's unit tests hold each layer to Istio's; this holds the command to all of them.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn corpus(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policy/tests/data/istio-1.28")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn check_agrees_with_istio_on_every_case_of_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut disagree = Vec::new();
    for file in ["validation_test.json", "crds.json", "dataset.json"] {
        for (i, case) in corpus(file).iter().enumerate() {
            let Some(object) = case.get("object").filter(|o| !o.is_null()) else {
                continue;
            };
            checked += 1;
            let path = dir.path().join(format!("{file}-{i}.json"));
            std::fs::write(&path, object.to_string()).unwrap();
            let output = Command::new(env!("CARGO_BIN_EXE_admission-webhook"))
                .args(["check", "--format", "json"])
                .arg(&path)
                .output()
                .unwrap();
            let valid = match output.status.code() {
                Some(0) => true,
                Some(1) => false,
                other => panic!(
                    "{file} case {i}: exit {other:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                ),
            };
            if valid != case["valid"].as_bool().unwrap() {
                disagree.push(format!(
                    "{file} {:?} ({}): Istio valid={}, check valid={valid}: {}",
                    case["name"],
                    case["source"],
                    case["valid"],
                    String::from_utf8_lossy(&output.stdout)
                ));
            }
        }
    }
    // 57 + 13 + 17 + 10 objects; the four DestinationRule-only exportTo cases have none.
    assert_eq!(checked, 97);
    assert!(
        disagree.is_empty(),
        "{} of {checked} disagree:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}
