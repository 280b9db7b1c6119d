//! `validate`: every ServiceEntry in a text checked as `admission-webhook check` checks one
//! file, duplicates among the entries included, as one plain report.

use policy::{check_objects, parse_str, Finding, ObjectKey, Options, ParseError, Parsed};
use serde::Serialize;

use crate::input::OptionsInput;

/// Rule name of a violation for text that is not YAML or JSON.
pub const RULE_PARSE: &str = "parse";
/// Rule name of a violation for options that are rejected.
pub const RULE_OPTIONS: &str = "options";
/// Rule name of a violation for input that is not text.
pub const RULE_INPUT: &str = "input";

/// The verdict on one text: `valid` when there are no errors (warnings allowed), as the
/// checker's exit status 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub valid: bool,
    /// ServiceEntries found in the text (objects of other kinds are skipped).
    pub checked: usize,
    pub violations: Vec<Violation>,
    pub warnings: Vec<Violation>,
}

/// One finding, with the object it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// Empty for violations about the whole text or the options.
    pub namespace: String,
    pub name: String,
    /// 1-based YAML document that held the object; `None` for the whole text.
    pub document: Option<usize>,
    /// 1-based line of a parse error, where the parser gives one.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Field path such as `spec.endpoints[0].ports.http1`; empty for the whole text.
    pub path: String,
    pub message: String,
    pub severity: String,
    /// A policy rule (`istio`, `global-host`, `duplicate-address`, ...) or `parse`, `options`
    /// or `input`.
    pub rule: String,
    /// For a duplicate address: the free address the message suggests.
    pub suggested_address: Option<String>,
    /// Who refuses the object for this finding in a cluster: `api-server`, `istio` or
    /// `globalmesh`; empty for violations about the whole text or the options.
    pub enforced_by: String,
}

impl Violation {
    fn whole(rule: &str, message: String) -> Self {
        Violation {
            namespace: String::new(),
            name: String::new(),
            document: None,
            line: None,
            column: None,
            path: String::new(),
            message,
            severity: "error".to_string(),
            rule: rule.to_string(),
            suggested_address: None,
            enforced_by: String::new(),
        }
    }

    fn parse(error: &ParseError) -> Self {
        let mut violation = Violation::whole(RULE_PARSE, error.to_string());
        violation.line = error.line;
        violation.column = error.column;
        violation
    }

    fn finding(key: &ObjectKey, document: usize, finding: Finding) -> Self {
        Violation {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            document: Some(document),
            line: None,
            column: None,
            suggested_address: finding.suggested_address.map(|a| a.to_string()),
            enforced_by: finding.enforced_by().as_str().to_string(),
            path: finding.path,
            message: finding.message,
            severity: finding.severity.as_str().to_string(),
            rule: finding.rule.as_str().to_string(),
        }
    }
}

impl Report {
    /// A report for input that could not be checked at all.
    pub fn rejected(rule: &str, message: String) -> Self {
        Report::of(0, vec![Violation::whole(rule, message)])
    }

    fn of(checked: usize, all: Vec<Violation>) -> Self {
        let (violations, warnings): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|v| v.severity == "error");
        Report {
            valid: violations.is_empty(),
            checked,
            violations,
            warnings,
        }
    }
}

/// Checks every ServiceEntry in `text` with the options given as JavaScript passes them.
pub fn validate(text: &str, options: &OptionsInput) -> Report {
    let rules = match options.to_options() {
        Ok(rules) => rules,
        Err(message) => return Report::rejected(RULE_OPTIONS, message),
    };
    let existing = match options.existing.as_deref().map(parse_str).transpose() {
        Ok(existing) => existing.unwrap_or_default(),
        Err(error) => {
            let mut violation = Violation::parse(&error);
            violation.path = EXISTING_PATH.to_string();
            violation.message = format!("existing ServiceEntries: {error}");
            return Report::of(0, vec![violation]);
        }
    };
    validate_with(text, &existing, &rules)
}

/// Path of a parse violation in the `existing` option.
pub const EXISTING_PATH: &str = "options.existing";

/// Checks every ServiceEntry in `text`, in order, against `existing` and against each other:
/// the findings of `admission-webhook check --existing` on a file holding `text`, in the same
/// order ([`policy::check_objects`], the checker's own pipeline).
pub fn validate_with(text: &str, existing: &[Parsed], options: &Options) -> Report {
    let parsed = match parse_str(text) {
        Ok(parsed) => parsed,
        Err(error) => return Report::of(0, vec![Violation::parse(&error)]),
    };
    let results = check_objects(
        parsed.iter().map(|p| &p.entry),
        existing.iter().map(|p| &p.entry),
        options,
    );
    let all = parsed
        .iter()
        .zip(results)
        .flat_map(|(p, checked)| {
            let document = p.document;
            checked
                .findings
                .into_iter()
                .map(move |f| Violation::finding(&checked.key, document, f))
        })
        .collect();
    Report::of(parsed.len(), all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/data/seed/serviceentry-direct.yaml");

    fn entry(name: &str, address: &str, port: u16) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: foo}}\n\
             spec:\n  hosts: [{name}.foo.global]\n  location: MESH_INTERNAL\n  resolution: DNS\n\
             \x20 ports: [{{name: http1, number: 8000, protocol: http}}]\n  addresses: [{address}]\n\
             \x20 endpoints: [{{address: 198.18.2.1, ports: {{http1: {port}}}}}]\n"
        )
    }

    #[test]
    fn seed_entry_is_valid() {
        let report = validate(SEED, &OptionsInput::default());
        assert!(report.valid, "{report:#?}");
        assert_eq!(report.checked, 1);
        assert!(report.violations.is_empty() && report.warnings.is_empty());
    }

    #[test]
    fn wrong_port_names_the_field_and_the_entry() {
        let report = validate(&entry("a", "127.255.0.9", 8000), &OptionsInput::default());
        assert!(!report.valid);
        let v = &report.violations[0];
        assert_eq!(
            (v.namespace.as_str(), v.name.as_str()),
            ("foo", "a"),
            "{v:#?}"
        );
        assert_eq!(v.path, "spec.endpoints[0].ports.http1");
        assert_eq!(v.rule, "gateway-port");
        assert_eq!(v.severity, "error");
        assert!(v.message.contains("port 8000"), "{}", v.message);
    }

    #[test]
    fn duplicate_among_given_entries_suggests_a_free_address() {
        let text = format!(
            "{}---\n{}",
            entry("a", "127.255.0.1", 15443),
            entry("b", "127.255.0.1", 15443)
        );
        let report = validate(&text, &OptionsInput::default());
        assert_eq!(report.violations.len(), 1, "{report:#?}");
        let v = &report.violations[0];
        assert_eq!((v.name.as_str(), v.document), ("b", Some(2)));
        assert_eq!(v.path, "spec.addresses[0]");
        assert_eq!(v.rule, "duplicate-address");
        assert_eq!(v.suggested_address.as_deref(), Some("127.255.0.2"));
    }

    #[test]
    fn malformed_text_is_a_parse_violation_naming_the_line() {
        let report = validate("a: b\nc: [\n", &OptionsInput::default());
        assert!(!report.valid);
        let v = &report.violations[0];
        assert_eq!(v.rule, RULE_PARSE);
        assert!(v.line.is_some(), "{v:#?}");
        assert!(v.message.starts_with("line "), "{}", v.message);
    }

    #[test]
    fn malformed_json_names_the_line() {
        let report = validate("{\n\"kind\": \n", &OptionsInput::default());
        assert_eq!(report.violations[0].rule, RULE_PARSE);
        assert_eq!(report.violations[0].line, Some(3));
    }

    #[test]
    fn existing_entries_hold_their_addresses() {
        let options = OptionsInput {
            existing: Some(SEED.to_string()),
            ..Default::default()
        };
        let report = validate(&entry("a", "127.255.0.2", 15443), &options);
        assert_eq!(report.violations.len(), 1, "{report:#?}");
        assert_eq!(report.violations[0].document, Some(1));
        assert!(report.violations[0].message.contains("foo/httpbin-bar"));
        assert_eq!(
            report.violations[0].suggested_address.as_deref(),
            Some("127.255.0.1")
        );
    }

    #[test]
    fn an_update_of_an_existing_entry_keeps_its_address() {
        let options = OptionsInput {
            existing: Some(SEED.to_string()),
            ..Default::default()
        };
        let report = validate(SEED, &options);
        assert!(report.valid, "{report:#?}");
    }

    #[test]
    fn malformed_existing_text_is_a_parse_violation_of_the_option() {
        let options = OptionsInput {
            existing: Some("a: [\n".to_string()),
            ..Default::default()
        };
        let report = validate(SEED, &options);
        assert!(!report.valid);
        let v = &report.violations[0];
        assert_eq!(
            (v.rule.as_str(), v.path.as_str()),
            (RULE_PARSE, EXISTING_PATH)
        );
        assert!(v.line.is_some());
        assert!(
            v.message.starts_with("existing ServiceEntries: line "),
            "{}",
            v.message
        );
    }

    #[test]
    fn bad_options_are_a_violation_not_a_failure() {
        let options = OptionsInput {
            domain_suffix: Some("a..b".into()),
            ..Default::default()
        };
        let report = validate(SEED, &options);
        assert!(!report.valid);
        assert_eq!(report.violations[0].rule, RULE_OPTIONS);
        assert!(
            report.violations[0].message.contains("\"a..b\""),
            "{report:#?}"
        );
    }

    #[test]
    fn warnings_alone_keep_the_text_valid() {
        let report = validate(&entry("a", "10.1.2.3", 15443), &OptionsInput::default());
        assert!(report.valid, "{report:#?}");
        assert_eq!(report.warnings[0].path, "spec.addresses[0]");
        assert_eq!(report.warnings[0].severity, "warning");
    }

    #[test]
    fn text_without_service_entries_is_valid_and_says_none_were_checked() {
        let report = validate(
            "apiVersion: v1\nkind: ConfigMap\n",
            &OptionsInput::default(),
        );
        assert!(report.valid);
        assert_eq!(report.checked, 0);
    }
}
