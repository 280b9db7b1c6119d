//! What a rule reports: a field path, a message naming the bad value, a severity, and who in a
//! cluster enforces it; and [`Findings`], the bounded list that the rules write into.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// At most this many findings are kept for one ServiceEntry; the rest are counted, so that no
/// entry, however large, makes a report larger than a few kilobytes.
pub const MAX_FINDINGS: usize = 50;
/// Longest field path kept (paths hold map keys, which the object chooses).
const MAX_PATH: usize = 200;
/// Longest message kept.
const MAX_MESSAGE: usize = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which family of rules produced a finding; stable strings, used as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The object could not be decoded into a ServiceEntry (unknown field, wrong type).
    Decode,
    /// What the API server checks before any webhook: the CRD's schema and CEL rules, and
    /// object metadata.
    ApiServer,
    /// Istio's own ServiceEntry validation (its webhook).
    Istio,
    /// `.global` host form.
    GlobalHost,
    /// `.global` addresses: present, single IPs, inside the VIP ranges.
    GlobalAddress,
    /// `.global` endpoints: a ports map naming declared ports, pointing at the gateway port.
    GatewayPort,
    /// `.global` resolution and location.
    GlobalMode,
    /// An address owned by another ServiceEntry, or listed twice.
    DuplicateAddress,
    /// A `.global` host that another ServiceEntry declares.
    DuplicateHost,
    /// Findings left out of a report once [`MAX_FINDINGS`] were kept.
    Omitted,
}

/// Who refuses an object for a finding, in a cluster with Istio and globalmesh installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcer {
    /// kube-apiserver, from the ServiceEntry CRD, before any admission webhook is called.
    ApiServer,
    /// Istio's validating webhook (istiod).
    Istio,
    /// globalmesh's admission webhook: its own, stricter rules for `.global` entries.
    Globalmesh,
}

impl Enforcer {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcer::ApiServer => "api-server",
            Enforcer::Istio => "istio",
            Enforcer::Globalmesh => "globalmesh",
        }
    }
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Decode => "decode",
            Rule::ApiServer => "api-server",
            Rule::Istio => "istio",
            Rule::GlobalHost => "global-host",
            Rule::GlobalAddress => "global-address",
            Rule::GatewayPort => "gateway-port",
            Rule::GlobalMode => "global-mode",
            Rule::DuplicateAddress => "duplicate-address",
            Rule::DuplicateHost => "duplicate-host",
            Rule::Omitted => "omitted",
        }
    }

    /// Who refuses an object for a finding of this rule.
    pub fn enforced_by(self) -> Enforcer {
        match self {
            // Unknown fields and wrong types: the API server's schema (with kubectl's default
            // strict field validation).
            Rule::Decode | Rule::ApiServer => Enforcer::ApiServer,
            Rule::Istio => Enforcer::Istio,
            Rule::GlobalHost
            | Rule::GlobalAddress
            | Rule::GatewayPort
            | Rule::GlobalMode
            | Rule::DuplicateAddress
            | Rule::DuplicateHost
            | Rule::Omitted => Enforcer::Globalmesh,
        }
    }

    pub const ALL: [Rule; 10] = [
        Rule::Decode,
        Rule::ApiServer,
        Rule::Istio,
        Rule::GlobalHost,
        Rule::GlobalAddress,
        Rule::GatewayPort,
        Rule::GlobalMode,
        Rule::DuplicateAddress,
        Rule::DuplicateHost,
        Rule::Omitted,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    pub rule: Rule,
    /// Field path in the object, such as `spec.endpoints[0].ports.http1`.
    pub path: String,
    pub message: String,
    /// For an address that another ServiceEntry holds: the free address the message suggests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_address: Option<IpAddr>,
}

impl Finding {
    pub fn error(rule: Rule, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, rule, path.into(), message.into())
    }

    pub fn warning(rule: Rule, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, rule, path.into(), message.into())
    }

    fn new(severity: Severity, rule: Rule, path: String, message: String) -> Self {
        Self {
            severity,
            rule,
            path,
            message,
            suggested_address: None,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn enforced_by(&self) -> Enforcer {
        self.rule.enforced_by()
    }
}

impl fmt::Display for Finding {
    /// `spec.addresses[0]: message`, with `warning: ` before warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The findings of one entry, as the rules report them: at most [`MAX_FINDINGS`] kept, the
/// rest counted. A finding past the limit is never formatted, so a rule may report one per
/// item of a list of any length at the cost of a counter.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    kept: Vec<Finding>,
    omitted_errors: usize,
    omitted_warnings: usize,
}

impl Findings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, rule: Rule, path: impl fmt::Display, message: impl fmt::Display) {
        self.report(Severity::Error, rule, path, message);
    }

    pub fn warning(&mut self, rule: Rule, path: impl fmt::Display, message: impl fmt::Display) {
        self.report(Severity::Warning, rule, path, message);
    }

    fn report(
        &mut self,
        severity: Severity,
        rule: Rule,
        path: impl fmt::Display,
        message: impl fmt::Display,
    ) {
        if self.is_full() {
            self.count_omitted(severity);
            return;
        }
        let path = bounded(path, MAX_PATH);
        let message = bounded(message, MAX_MESSAGE);
        self.kept.push(Finding::new(severity, rule, path, message));
    }

    /// Adds a finding built elsewhere, under the same limit.
    pub fn push(&mut self, finding: Finding) {
        if self.is_full() {
            self.count_omitted(finding.severity);
        } else {
            self.kept.push(finding);
        }
    }

    fn count_omitted(&mut self, severity: Severity) {
        match severity {
            Severity::Error => self.omitted_errors += 1,
            Severity::Warning => self.omitted_warnings += 1,
        }
    }

    /// Whether further findings are only counted.
    pub fn is_full(&self) -> bool {
        self.kept.len() >= MAX_FINDINGS
    }

    /// Whether any error was reported, kept or not.
    pub fn has_errors(&self) -> bool {
        self.omitted_errors > 0 || self.kept.iter().any(Finding::is_error)
    }

    /// The kept findings, followed by one that counts those left out.
    pub fn into_vec(mut self) -> Vec<Finding> {
        let omitted = self.omitted_errors + self.omitted_warnings;
        if omitted > 0 {
            let severity = if self.omitted_errors > 0 {
                Severity::Error
            } else {
                Severity::Warning
            };
            let message = format!(
                "{omitted} more findings not shown ({} errors, {} warnings); only the first {MAX_FINDINGS} are listed",
                self.omitted_errors, self.omitted_warnings
            );
            self.kept.push(Finding::new(
                severity,
                Rule::Omitted,
                "spec".into(),
                message,
            ));
        }
        self.kept
    }
}

/// `value` written out, cut at `max` bytes (on a character boundary) with `...` after it.
fn bounded(value: impl fmt::Display, max: usize) -> String {
    struct Capped {
        text: String,
        max: usize,
        cut: bool,
    }
    impl fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if self.cut {
                return Err(fmt::Error);
            }
            let room = self.max.saturating_sub(self.text.len());
            if s.len() <= room {
                self.text.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(s.get(..end).unwrap_or(""));
            self.text.push_str("...");
            self.cut = true;
            // Stops the formatting of the rest.
            Err(fmt::Error)
        }
    }
    let mut out = Capped {
        text: String::new(),
        max,
        cut: false,
    };
    let _ = write!(out, "{value}");
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_past_the_limit_are_counted_not_kept() {
        let mut findings = Findings::new();
        for i in 0..MAX_FINDINGS + 7 {
            findings.error(Rule::Istio, format_args!("spec.ports[{i}]"), "bad");
        }
        findings.warning(Rule::Istio, "spec", "late");
        assert!(findings.has_errors());
        let list = findings.into_vec();
        assert_eq!(list.len(), MAX_FINDINGS + 1);
        let last = list.last().unwrap();
        assert_eq!(last.rule, Rule::Omitted);
        assert_eq!(last.severity, Severity::Error);
        assert!(
            last.message
                .starts_with("8 more findings not shown (7 errors, 1 warnings)"),
            "{}",
            last.message
        );
    }

    #[test]
    fn a_finding_past_the_limit_is_never_formatted() {
        struct Loud;
        impl fmt::Display for Loud {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                panic!("formatted")
            }
        }
        let mut findings = Findings::new();
        for _ in 0..MAX_FINDINGS {
            findings.warning(Rule::Istio, "spec", "w");
        }
        findings.error(Rule::Istio, Loud, Loud);
        assert!(findings.has_errors());
    }

    #[test]
    fn long_paths_and_messages_are_cut_on_a_character_boundary() {
        let mut findings = Findings::new();
        let key = "é".repeat(10_000);
        findings.error(Rule::Istio, format_args!("spec.labels.{key}"), &key);
        let found = findings.into_vec();
        assert!(
            found[0].path.len() <= MAX_PATH + 3,
            "{}",
            found[0].path.len()
        );
        assert!(found[0].path.ends_with("..."));
        assert!(found[0].message.len() <= MAX_MESSAGE + 3);
    }

    #[test]
    fn every_rule_names_who_enforces_it() {
        assert_eq!(Rule::ApiServer.enforced_by(), Enforcer::ApiServer);
        assert_eq!(Rule::Decode.enforced_by(), Enforcer::ApiServer);
        assert_eq!(Rule::Istio.enforced_by(), Enforcer::Istio);
        assert_eq!(Rule::GatewayPort.enforced_by(), Enforcer::Globalmesh);
        let strings: std::collections::BTreeSet<&str> =
            Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(strings.len(), Rule::ALL.len());
    }
}
