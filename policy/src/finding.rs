//! What a rule reports: a field path, a message naming the bad value, and a severity.

use std::fmt;

use serde::{Deserialize, Serialize};

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
    /// Istio's own ServiceEntry validation.
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
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Decode => "decode",
            Rule::Istio => "istio",
            Rule::GlobalHost => "global-host",
            Rule::GlobalAddress => "global-address",
            Rule::GatewayPort => "gateway-port",
            Rule::GlobalMode => "global-mode",
            Rule::DuplicateAddress => "duplicate-address",
        }
    }

    pub const ALL: [Rule; 7] = [
        Rule::Decode,
        Rule::Istio,
        Rule::GlobalHost,
        Rule::GlobalAddress,
        Rule::GatewayPort,
        Rule::GlobalMode,
        Rule::DuplicateAddress,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub rule: Rule,
    /// Field path in the object, such as `spec.endpoints[0].ports.http1`.
    pub path: String,
    pub message: String,
}

impl Finding {
    pub fn error(rule: Rule, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            rule,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn warning(rule: Rule, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            rule,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
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
