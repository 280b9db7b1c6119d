//! Settings of the `.global` rules, with their defaults in one place.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::names::{is_dns1123_label, strip_domain_suffix};
use crate::visibility::default_export_to;

/// The domain suffix of remote services, as in `httpbin.bar.global`.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "global";
/// The port of the SNI-aware ingress gateway in every cluster.
pub const DEFAULT_GATEWAY_PORT: u16 = 15443;
/// The seed's loopback range, Admiral's range and Istio's auto-allocation range.
pub const DEFAULT_VIP_RANGES: [&str; 3] = ["127.255.0.0/16", "240.0.0.0/16", "240.240.0.0/16"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Options {
    /// Without dots at either end: `global`, or `global.example` for a multi-label suffix.
    pub domain_suffix: String,
    /// Ports an endpoint of a `.global` entry may point at (15443, or a NodePort).
    pub gateway_ports: Vec<u16>,
    /// Ranges that `.global` VIPs are expected in; free addresses are suggested from these.
    pub vip_ranges: Vec<IpNet>,
    /// The `exportTo` of entries that set none: meshConfig `defaultServiceExportTo`, `*`
    /// unless the mesh configures otherwise.
    pub default_export_to: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            domain_suffix: DEFAULT_DOMAIN_SUFFIX.to_string(),
            gateway_ports: vec![DEFAULT_GATEWAY_PORT],
            vip_ranges: DEFAULT_VIP_RANGES
                .iter()
                .filter_map(|range| range.parse().ok())
                .collect(),
            default_export_to: default_export_to(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("domain suffix {0:?} is not a sequence of DNS-1123 labels (such as \"global\")")]
    DomainSuffix(String),
    #[error("gateway port 0 is not a valid port")]
    GatewayPortZero,
    #[error("at least one gateway port is required")]
    NoGatewayPort,
    #[error("VIP range {0:?} is not a CIDR such as 127.255.0.0/16")]
    VipRange(String),
    #[error(
        "default exportTo {0:?} is not \".\" (the entry's namespace), \"*\" (all), \"~\" (none) or a namespace name"
    )]
    DefaultExportTo(String),
}

impl Options {
    /// Builds options from raw settings (flags or configuration), normalising the suffix
    /// (lowercase, dots at either end dropped). Empty lists take the defaults.
    pub fn new(
        domain_suffix: Option<&str>,
        gateway_ports: &[u16],
        vip_ranges: &[String],
    ) -> Result<Self, OptionsError> {
        let mut options = Options::default();
        if let Some(suffix) = domain_suffix {
            options.domain_suffix = suffix.to_string();
        }
        if !gateway_ports.is_empty() {
            options.gateway_ports = gateway_ports.to_vec();
        }
        if !vip_ranges.is_empty() {
            options.vip_ranges = vip_ranges
                .iter()
                .map(|range| {
                    range
                        .trim()
                        .parse::<IpNet>()
                        .map(|net| net.trunc())
                        .map_err(|_| OptionsError::VipRange(range.clone()))
                })
                .collect::<Result<_, _>>()?;
        }
        options.validated()
    }

    /// Checks and normalises options that arrived whole (as JSON configuration).
    pub fn validated(mut self) -> Result<Self, OptionsError> {
        let suffix = self
            .domain_suffix
            .trim()
            .trim_matches('.')
            .to_ascii_lowercase();
        if suffix.is_empty() || !suffix.split('.').all(is_dns1123_label) {
            return Err(OptionsError::DomainSuffix(self.domain_suffix));
        }
        self.domain_suffix = suffix;
        if self.gateway_ports.is_empty() {
            return Err(OptionsError::NoGatewayPort);
        }
        if self.gateway_ports.contains(&0) {
            return Err(OptionsError::GatewayPortZero);
        }
        self.gateway_ports.sort_unstable();
        self.gateway_ports.dedup();
        for range in &mut self.vip_ranges {
            *range = range.trunc();
        }
        if self.default_export_to.is_empty() {
            self.default_export_to = default_export_to();
        }
        if let Some(bad) = self.default_export_to.iter().find(|e| !is_export_target(e)) {
            return Err(OptionsError::DefaultExportTo(bad.clone()));
        }
        Ok(self)
    }

    /// Whether a host (any case, optional trailing dot) lies under the domain suffix.
    pub fn is_under_suffix(&self, host: &str) -> bool {
        self.strip_suffix(host).is_some()
    }

    /// A host under the domain suffix without it: `httpbin.bar` of `httpbin.bar.global.`.
    pub fn strip_suffix<'h>(&self, host: &'h str) -> Option<&'h str> {
        strip_domain_suffix(host, &self.domain_suffix)
    }

    /// `15443`, or `15443 or 31443` for several ports, for messages.
    pub fn gateway_ports_text(&self) -> String {
        let ports: Vec<String> = self.gateway_ports.iter().map(u16::to_string).collect();
        ports.join(" or ")
    }
}

/// One element of an `exportTo` list: `.`, `*`, `~` or a namespace name.
pub fn is_export_target(text: &str) -> bool {
    matches!(text, "." | "*" | "~") || is_dns1123_label(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_the_three_vip_ranges() {
        let options = Options::default();
        assert_eq!(options.vip_ranges.len(), 3);
        assert_eq!(options.gateway_ports, vec![15443]);
    }

    #[test]
    fn suffix_is_normalised() {
        let options = Options::new(Some(".Global."), &[], &[]).unwrap();
        assert_eq!(options.domain_suffix, "global");
    }

    #[test]
    fn rejects_bad_settings_naming_the_value() {
        assert_eq!(
            Options::new(Some("a..b"), &[], &[]),
            Err(OptionsError::DomainSuffix("a..b".into()))
        );
        assert_eq!(
            Options::new(None, &[0], &[]),
            Err(OptionsError::GatewayPortZero)
        );
        assert_eq!(
            Options::new(None, &[], &["10.0.0.0/33".into()]),
            Err(OptionsError::VipRange("10.0.0.0/33".into()))
        );
        let bad = Options {
            default_export_to: vec![".".into(), "Not_A_Namespace".into()],
            ..Options::default()
        };
        assert_eq!(
            bad.validated(),
            Err(OptionsError::DefaultExportTo("Not_A_Namespace".into()))
        );
    }

    #[test]
    fn default_export_to_is_everyone_unless_set() {
        assert_eq!(Options::default().default_export_to, ["*"]);
        let unset = Options {
            default_export_to: Vec::new(),
            ..Options::default()
        };
        assert_eq!(unset.validated().unwrap().default_export_to, ["*"]);
        let own: Options = serde_json::from_str(r#"{"defaultExportTo":["."]}"#).unwrap();
        assert_eq!(own.validated().unwrap().default_export_to, ["."]);
    }

    #[test]
    fn suffix_match_is_label_aligned_and_case_insensitive() {
        let options = Options::default();
        assert!(options.is_under_suffix("httpbin.bar.GLOBAL."));
        assert!(!options.is_under_suffix("httpbin.barglobal"));
        assert!(!options.is_under_suffix("global"));
        assert!(!options.is_under_suffix(".global"));
        // Multi-byte characters where the suffix would start must not split a character.
        assert!(!options.is_under_suffix("®ਫ਼A00 "));
        assert!(!options.is_under_suffix("aਫ਼bal"));
        assert!(options.is_under_suffix("ਫ਼.global"));
    }
}
