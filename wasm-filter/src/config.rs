//! The plugin configuration: JSON with the ServiceEntries, the domain suffix and the name of the
//! cluster routing header, checked and turned into the decision table once per VM.

use std::fmt;

use policy::authority::{GuardTable, GuardTableBuilder};
use policy::model::{check_type, ServiceEntry};
use policy::names::is_dns1123_label;
use policy::options::{Options, OptionsError, DEFAULT_DOMAIN_SUFFIX, DEFAULT_GATEWAY_PORT};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// The header that version-aware routing matches on.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-global-cluster";

/// The configuration as written; only `service_entries` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    service_entries: Entries,
    #[serde(default)]
    domain_suffix: Option<String>,
    #[serde(default)]
    cluster_header: Option<String>,
}

/// The checked configuration that request contexts share.
#[derive(Debug)]
pub struct Config {
    pub table: GuardTable,
    /// Lowercase, as Envoy hands header names to filters.
    pub cluster_header: String,
    /// ServiceEntries read, for the start-up log line.
    pub entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration is empty; expected JSON such as {{\"service_entries\": [...]}}")]
    Empty,
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("domain_suffix: {0}")]
    Suffix(OptionsError),
    #[error(
        "cluster_header {0:?} is not a lowercase HTTP header name such as \"x-global-cluster\""
    )]
    ClusterHeader(String),
}

/// Reads the configuration bytes Envoy hands to `on_configure`.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::Empty);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // serde_json names the field and the line and column; a path-tracking deserializer would
    // name the entry too, but costs 25 KB of module.
    let raw = RawConfig::deserialize(&mut deserializer)
        .and_then(|raw| deserializer.end().map(|()| raw))
        .map_err(ConfigError::Json)?;
    let options = Options {
        domain_suffix: suffix(raw.domain_suffix.as_deref())?,
        gateway_ports: vec![DEFAULT_GATEWAY_PORT],
        // Only the suffix matters to the filter; leaving the VIP ranges out keeps an address
        // parser out of the module.
        vip_ranges: Vec::new(),
        default_export_to: policy::visibility::default_export_to(),
    };
    let cluster_header = match raw.cluster_header {
        None => DEFAULT_CLUSTER_HEADER.to_string(),
        Some(name) if is_header_name(&name) => name.to_ascii_lowercase(),
        Some(name) => return Err(ConfigError::ClusterHeader(name)),
    };
    Ok(Config {
        table: raw.service_entries.builder.build(&options),
        cluster_header,
        entries: raw.service_entries.count,
    })
}

/// `service_entries`, added to the table one at a time as they are decoded: the full list is
/// never held, which keeps the configuration step fast and the VM's memory (which never shrinks)
/// small.
#[derive(Debug)]
struct Entries {
    builder: GuardTableBuilder,
    count: usize,
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of ServiceEntry objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
        let mut entries = Entries {
            builder: GuardTableBuilder::default(),
            count: 0,
        };
        while let Some(entry) = seq.next_element::<ServiceEntry>()? {
            check_kind(&entry).map_err(|message| {
                de::Error::custom(format!("service_entries[{}]: {message}", entries.count))
            })?;
            entries.builder.add(&entry);
            entries.count += 1;
        }
        Ok(entries)
    }
}

/// The suffix normalised as `Options::validated` does it; that function also checks and sorts
/// the gateway ports and VIP ranges, which the filter does not use and whose code would push the
/// module over its size budget.
fn suffix(raw: Option<&str>) -> Result<String, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_DOMAIN_SUFFIX.to_string());
    };
    let suffix = raw.trim().trim_matches('.').to_ascii_lowercase();
    if suffix.is_empty() || !suffix.split('.').all(is_dns1123_label) {
        return Err(ConfigError::Suffix(OptionsError::DomainSuffix(
            raw.to_string(),
        )));
    }
    Ok(suffix)
}

fn check_kind(entry: &ServiceEntry) -> Result<(), String> {
    check_type(&entry.api_version, &entry.kind)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// An RFC 9110 token, not a pseudo-header.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::authority::Decision;

    const SE: &str = r#"{"apiVersion":"networking.istio.io/v1alpha3","kind":"ServiceEntry",
        "metadata":{"name":"httpbin-bar","namespace":"foo"},
        "spec":{"hosts":["httpbin.bar.global"],"ports":[{"name":"http1","number":8000,"protocol":"http"}],
        "resolution":"DNS","addresses":["127.255.0.2"],
        "endpoints":[{"address":"198.18.2.1","labels":{"cluster":"cluster2"},"ports":{"http1":15443}}]}}"#;

    fn with(rest: &str) -> String {
        format!(r#"{{"service_entries":[{SE}]{rest}}}"#)
    }

    #[test]
    fn reads_the_seed_entry_with_defaults() {
        let config = parse(with("").as_bytes()).unwrap();
        assert_eq!(config.cluster_header, "x-global-cluster");
        assert_eq!(config.entries, 1);
        assert_eq!(
            config.table.decide("httpbin.bar.global:8000", None, None),
            Decision::Allow {
                cluster: Some("cluster2")
            }
        );
    }

    #[test]
    fn honours_suffix_and_header_settings() {
        let text =
            r#"{"service_entries":[],"domain_suffix":".Mesh.","cluster_header":"X-Cluster"}"#;
        let config = parse(text.as_bytes()).unwrap();
        assert_eq!(config.cluster_header, "x-cluster");
        assert_eq!(
            config.table.decide("httpbin.bar.global:8000", None, None),
            Decision::Pass
        );
    }

    #[test]
    fn rejects_empty_configuration() {
        assert!(matches!(parse(b"  "), Err(ConfigError::Empty)));
    }

    #[test]
    fn rejects_unknown_field_naming_it() {
        let err = parse(with(r#","clusterHeader":"x""#).as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `clusterHeader`"),
            "{err}"
        );
    }

    #[test]
    fn rejects_missing_service_entries() {
        let err = parse(br#"{"domain_suffix":"global"}"#).unwrap_err();
        assert!(
            err.to_string().contains("missing field `service_entries`"),
            "{err}"
        );
    }

    #[test]
    fn bad_entry_error_names_the_field_and_line() {
        let text = SE.replace(r#""resolution""#, r#""resolutions""#);
        let err = parse(format!(r#"{{"service_entries":[{text}]}}"#).as_bytes()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("unknown field `resolutions`"), "{message}");
        assert!(message.contains(" at line "), "{message}");
    }

    #[test]
    fn rejects_other_kinds_and_groups() {
        let text = SE.replace("networking.istio.io", "example.com");
        let err = parse(format!(r#"{{"service_entries":[{text}]}}"#).as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("service_entries[0]: unsupported apiVersion"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_suffix_and_header() {
        let err = parse(br#"{"service_entries":[],"domain_suffix":"a..b"}"#).unwrap_err();
        assert!(err.to_string().starts_with("domain_suffix:"), "{err}");
        let err = parse(br#"{"service_entries":[],"cluster_header":":authority"}"#).unwrap_err();
        assert!(matches!(err, ConfigError::ClusterHeader(_)), "{err}");
    }

    #[test]
    fn rejects_trailing_garbage_and_non_json() {
        assert!(parse(format!("{} x", with("")).as_bytes()).is_err());
        assert!(parse(b"service_entries: []").is_err());
    }
}
