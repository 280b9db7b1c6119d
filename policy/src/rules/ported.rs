//! Istio 1.28's own test tables, case by case (`policy/tests/data/istio-1.28/`, each case
//! naming the file and line it comes from):
//!
//! - `validation_test.json`: `TestValidateServiceEntries` and `Test_validateExportTo`
//!   (pkg/config/validation/validation_test.go), what Istio's webhook says of each object:
//!   valid or not, with a warning or not;
//! - `crds.json`: `TestCRDs` over pkg/config/validation/testdata/crds/serviceentry-{valid,
//!   invalid}.yaml, what the API server says from the CRD (and, as Istio's test holds, what
//!   the webhook says too);
//! - `dataset.json`: the ServiceEntry documents of the integration validation dataset
//!   (pkg/test/datasets/validation/dataset), applied as they are and with the annotation that
//!   makes the webhook refuse them.
//!
//! The objects were translated from Istio's Go literals and YAML as Kubernetes reads them.

use serde::Deserialize;
use serde_json::Value;

use super::{api_server, istio};
use crate::check::check_objects;
use crate::document::decode;
use crate::finding::{Finding, Findings, Rule, Severity};
use crate::model::ServiceEntry;
use crate::options::Options;

#[derive(Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    test: Option<String>,
    source: String,
    object: Option<Value>,
    valid: bool,
    #[serde(default)]
    warning: bool,
    #[serde(default)]
    expected_error: Option<String>,
}

impl Case {
    fn label(&self) -> String {
        format!(
            "{} {:?} ({})",
            self.test.as_deref().unwrap_or("case"),
            self.name,
            self.source
        )
    }

    fn entry(&self) -> Option<ServiceEntry> {
        let object = self.object.clone()?;
        match decode(object) {
            Ok(se) => Some(se),
            Err(e) => panic!("{}: does not decode: {e}", self.label()),
        }
    }
}

fn cases(json: &str) -> Vec<Case> {
    serde_json::from_str(json).expect("the ported cases are JSON")
}

fn layer(se: &ServiceEntry, rules: fn(&ServiceEntry, &mut Findings)) -> Vec<Finding> {
    let mut out = Findings::new();
    rules(se, &mut out);
    out.into_vec()
}

fn has(findings: &[Finding], severity: Severity) -> bool {
    findings.iter().any(|f| f.severity == severity)
}

/// Every case whose verdict differs, named, so one run lists all of them.
fn assert_all(mismatches: Vec<String>, checked: usize) {
    assert!(checked > 0, "no cases were checked");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} cases disagree with Istio:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

fn verdict(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings".to_string();
    }
    findings
        .iter()
        .map(|f| format!("  {} [{}] {f}", f.severity, f.rule.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn istio_webhook_tests_agree_case_by_case() {
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for case in cases(include_str!(
        "../../tests/data/istio-1.28/validation_test.json"
    )) {
        // Four exportTo cases are about DestinationRules only.
        let Some(se) = case.entry() else { continue };
        checked += 1;
        let found = layer(&se, istio::validate);
        let valid = !has(&found, Severity::Error);
        let warned = has(&found, Severity::Warning);
        if valid != case.valid || warned != case.warning {
            mismatches.push(format!(
                "{}: Istio says valid={} warning={}, we say valid={valid} warning={warned}:\n{}",
                case.label(),
                case.valid,
                case.warning,
                verdict(&found)
            ));
        }
    }
    assert_all(mismatches, checked);
}

#[test]
fn istio_webhook_tests_agree_through_the_whole_check() {
    // What `admission-webhook check` says: the API server's rules first. An object Istio's
    // webhook refuses is refused by one of the two; an object it admits passes both, with
    // Istio's warnings (none of these hosts is under .global).
    let options = Options::default();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for case in cases(include_str!(
        "../../tests/data/istio-1.28/validation_test.json"
    )) {
        let Some(se) = case.entry() else { continue };
        checked += 1;
        let checked_objects = check_objects([&Ok(se)], [], &options);
        let found = &checked_objects[0].findings;
        let valid = !has(found, Severity::Error);
        let stored = found.iter().all(|f| f.rule != Rule::ApiServer);
        let warned = has(found, Severity::Warning);
        if valid != case.valid || (stored && warned != case.warning) {
            mismatches.push(format!(
                "{}: Istio says valid={} warning={}, check says valid={valid} warning={warned}:\n{}",
                case.label(),
                case.valid,
                case.warning,
                verdict(found)
            ));
        }
    }
    assert_all(mismatches, checked);
}

/// The expected error of a CRD case: `path: text` of the API server, or a CEL message.
fn matches_expected(found: &[Finding], expected: &str) -> bool {
    let (path, text) = match expected.split_once(": ") {
        Some((path, text)) if path.starts_with("spec") || path.starts_with("metadata") => {
            (Some(path), text)
        }
        _ => (None, expected),
    };
    found.iter().any(|f| {
        f.rule == Rule::ApiServer && path.is_none_or(|p| f.path == p) && f.message.contains(text)
    })
}

#[test]
fn crd_tests_agree_case_by_case() {
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for case in cases(include_str!("../../tests/data/istio-1.28/crds.json")) {
        let Some(se) = case.entry() else { continue };
        checked += 1;
        let found = layer(&se, api_server::validate);
        let valid = !has(&found, Severity::Error);
        let message_ok = case
            .expected_error
            .as_deref()
            .is_none_or(|expected| matches_expected(&found, expected));
        if valid != case.valid || !message_ok {
            mismatches.push(format!(
                "{}: the API server says valid={} ({:?}), we say valid={valid}:\n{}",
                case.label(),
                case.valid,
                case.expected_error,
                verdict(&found)
            ));
        }
        // Istio's TestCRDs holds its webhook to the same verdict on each of these.
        let webhook_valid = !has(&layer(&se, istio::validate), Severity::Error);
        if webhook_valid != case.valid {
            mismatches.push(format!(
                "{}: Istio's webhook agrees with the CRD (valid={}), ours says valid={webhook_valid}",
                case.label(),
                case.valid
            ));
        }
    }
    assert_all(mismatches, checked);
}

#[test]
fn integration_dataset_agrees() {
    let options = Options::default();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for case in cases(include_str!("../../tests/data/istio-1.28/dataset.json")) {
        let Some(se) = case.entry() else { continue };
        checked += 1;
        let results = check_objects([&Ok(se)], [], &options);
        let found = &results[0].findings;
        let valid = !has(found, Severity::Error);
        let message_ok = case.expected_error.as_deref().is_none_or(|expected| {
            // Istio's words are quoted; ours name the same annotation.
            let annotation = expected.split('"').nth(1).unwrap_or(expected);
            found.iter().any(|f| f.message.contains(annotation))
        });
        if valid != case.valid || !message_ok {
            mismatches.push(format!(
                "{}: Istio says valid={} ({:?}), check says valid={valid}:\n{}",
                case.label(),
                case.valid,
                case.expected_error,
                verdict(found)
            ));
        }
    }
    assert_all(mismatches, checked);
}
