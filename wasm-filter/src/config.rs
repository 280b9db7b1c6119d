//! The plugin configuration, checked and turned into the decision table once per VM. Two forms:
//! the compact table the controller writes (`{"table": {...}}`, `policy::table`), and
//! ServiceEntries written by hand (`{"service_entries": [...]}`). A configuration with neither
//! is an empty table: the WasmPlugin exists before the controller has written its table, and
//! until then every host under the suffix is refused (fail closed).

use std::fmt;

use policy::authority::{GuardTable, GuardTableBuilder};
use policy::model::{check_type, ServiceEntry};
use policy::names::is_dns1123_label;
use policy::options::{
    is_export_target, Options, OptionsError, DEFAULT_DOMAIN_SUFFIX, DEFAULT_GATEWAY_PORT,
};
use policy::table::{Table, TableError};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// The header that version-aware routing matches on.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-global-cluster";

/// The configuration as written; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    table: Option<Table>,
    #[serde(default)]
    service_entries: Option<Entries>,
    #[serde(default)]
    domain_suffix: Option<String>,
    #[serde(default)]
    default_export_to: Option<Vec<String>>,
    #[serde(default)]
    cluster_header: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// The checked configuration that request contexts share.
#[derive(Debug)]
pub struct Config {
    /// Viewed from [`Config::viewer`]'s namespace.
    pub table: GuardTable,
    /// Lowercase, as Envoy hands header names to filters.
    pub cluster_header: String,
    /// Where the table came from, for the configure log line.
    pub source: Source,
    /// The namespace hosts must be exported to, and where it came from.
    pub viewer: Viewer,
}

/// Where the table came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The compact table, with its content hash when it has one.
    Table { hash: Option<String> },
    /// This many ServiceEntries.
    ServiceEntries(usize),
    /// Neither: no host under the suffix is allowed.
    Empty,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Table { hash: Some(hash) } => write!(f, "table {hash}"),
            Source::Table { hash: None } => f.write_str("table without hash"),
            Source::ServiceEntries(count) => write!(f, "{count} ServiceEntries"),
            Source::Empty => f.write_str("no table yet"),
        }
    }
}

/// The proxy's namespace, which decides what `exportTo` lets it see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The configuration's `namespace` field.
    Configured(String),
    /// Envoy's node metadata `NAMESPACE`, as Istio sets it for a sidecar.
    Node(String),
    /// Neither: only hosts exported to every namespace are allowed.
    Unknown,
}

impl Viewer {
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Viewer::Configured(namespace) | Viewer::Node(namespace) => Some(namespace),
            Viewer::Unknown => None,
        }
    }
}

impl fmt::Display for Viewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Viewer::Configured(namespace) => write!(f, "namespace {namespace} (configured)"),
            Viewer::Node(namespace) => write!(f, "namespace {namespace} (node metadata)"),
            Viewer::Unknown => f.write_str("namespace unknown"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Json(serde_json::Error),
    #[error(
        "both `table` and `service_entries` are set; use one: `table` as globalmesh-controller writes it, or `service_entries`"
    )]
    BothForms,
    #[error("`{0}` applies to `service_entries` only; the table carries its own")]
    NotWithTable(&'static str),
    #[error("table: {0}")]
    Table(TableError),
    #[error("domain_suffix: {0}")]
    Suffix(OptionsError),
    #[error("default_export_to: {0}")]
    DefaultExportTo(OptionsError),
    #[error(
        "cluster_header {0:?} is not a lowercase HTTP header name such as \"x-global-cluster\""
    )]
    ClusterHeader(String),
    #[error("namespace {0:?} is not a Kubernetes namespace name")]
    Namespace(String),
}

/// Reads the configuration bytes Envoy hands to `on_configure`, for a proxy whose namespace is
/// not known.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    parse_for(bytes, || None)
}

/// Reads the configuration; `node_namespace` (the host's node metadata) is asked only when the
/// configuration names no namespace. Empty bytes are the empty table: Istio sends none for a
/// WasmPlugin without `pluginConfig`.
pub fn parse_for(
    bytes: &[u8],
    node_namespace: impl FnOnce() -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw = if bytes.iter().all(u8::is_ascii_whitespace) {
        RawConfig::default()
    } else {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        // serde_json names the field and the line and column; a path-tracking deserializer
        // would name the entry too, but costs 25 KB of module.
        RawConfig::deserialize(&mut deserializer)
            .and_then(|raw| deserializer.end().map(|()| raw))
            .map_err(ConfigError::Json)?
    };
    let cluster_header = match raw.cluster_header {
        None => DEFAULT_CLUSTER_HEADER.to_string(),
        Some(name) if is_header_name(&name) => name.to_ascii_lowercase(),
        Some(name) => return Err(ConfigError::ClusterHeader(name)),
    };
    let viewer = match raw.namespace {
        Some(namespace) if is_dns1123_label(&namespace) => Viewer::Configured(namespace),
        Some(namespace) => return Err(ConfigError::Namespace(namespace)),
        None => match node_namespace() {
            Some(namespace) if !namespace.is_empty() => Viewer::Node(namespace),
            _ => Viewer::Unknown,
        },
    };
    let (table, source) = match (raw.table, raw.service_entries) {
        (Some(_), Some(_)) => return Err(ConfigError::BothForms),
        (Some(table), None) => {
            if raw.domain_suffix.is_some() {
                return Err(ConfigError::NotWithTable("domain_suffix"));
            }
            if raw.default_export_to.is_some() {
                return Err(ConfigError::NotWithTable("default_export_to"));
            }
            let hash = table.hash.clone();
            let table = table.into_guard().map_err(ConfigError::Table)?;
            (table, Source::Table { hash })
        }
        (None, entries) => {
            let options = Options {
                domain_suffix: suffix(raw.domain_suffix.as_deref())?,
                gateway_ports: vec![DEFAULT_GATEWAY_PORT],
                // Only the suffix and exportTo matter to the filter; leaving the VIP ranges out
                // keeps an address parser out of the module.
                vip_ranges: Vec::new(),
                default_export_to: default_export_to(raw.default_export_to)?,
            };
            match entries {
                Some(entries) => (
                    entries.builder.build(&options),
                    Source::ServiceEntries(entries.count),
                ),
                None => (GuardTableBuilder::default().build(&options), Source::Empty),
            }
        }
    };
    Ok(Config {
        table: table.viewed_from(viewer.namespace()),
        cluster_header,
        source,
        viewer,
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

/// meshConfig `defaultServiceExportTo`: `*` unless given; an empty list is the default too, as
/// `Options::validated` reads it.
fn default_export_to(raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let list = raw.filter(|list| !list.is_empty());
    let Some(list) = list else {
        return Ok(policy::visibility::default_export_to());
    };
    if let Some(bad) = list.iter().find(|e| !is_export_target(e)) {
        return Err(ConfigError::DefaultExportTo(OptionsError::DefaultExportTo(
            bad.clone(),
        )));
    }
    Ok(list)
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
    use policy::authority::{Decision, Reason};

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
        assert_eq!(config.source, Source::ServiceEntries(1));
        assert_eq!(config.viewer, Viewer::Unknown);
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

    fn reason(decision: Decision<'_>) -> Option<Reason> {
        match decision {
            Decision::Reject(rejection) => Some(rejection.reason),
            _ => None,
        }
    }

    /// The compact table of `SE` and of an entry for `db.foo.global` exported to `foo` only.
    fn table_json() -> String {
        let mut db: ServiceEntry = serde_json::from_str(SE).unwrap();
        db.spec.hosts = vec!["db.foo.global".into()];
        db.spec.export_to = vec![".".into()];
        let se: ServiceEntry = serde_json::from_str(SE).unwrap();
        let table = Table::build([&se, &db], &Options::default());
        serde_json::to_string(&table).unwrap()
    }

    #[test]
    fn empty_configuration_is_an_empty_table_that_fails_closed() {
        for bytes in [&b""[..], b" \n", b"{}", br#"{"cluster_header":"x-c"}"#] {
            let config = parse(bytes).unwrap();
            assert_eq!(config.source, Source::Empty);
            assert!(config.table.is_empty());
            assert_eq!(
                reason(config.table.decide("httpbin.bar.global:8000", None, None)),
                Some(Reason::UnknownHost)
            );
            assert_eq!(
                config.table.decide("example.com", None, None),
                Decision::Pass
            );
        }
    }

    #[test]
    fn reads_the_table_form_with_its_hash() {
        let text = format!(r#"{{"table":{},"cluster_header":"x-c"}}"#, table_json());
        let config = parse(text.as_bytes()).unwrap();
        assert!(
            matches!(&config.source, Source::Table { hash: Some(h) } if h.starts_with("fnv1a64:"))
        );
        assert_eq!(config.cluster_header, "x-c");
        assert_eq!(config.table.len(), 2);
        assert_eq!(
            config.table.decide("httpbin.bar.global:8000", None, None),
            Decision::Allow {
                cluster: Some("cluster2")
            }
        );
        assert_eq!(
            reason(config.table.decide("httpbin.bar.global:9000", None, None)),
            Some(Reason::UnknownPort)
        );
    }

    #[test]
    fn rejects_both_forms_at_once() {
        let text = format!(r#"{{"table":{},"service_entries":[]}}"#, table_json());
        let err = parse(text.as_bytes()).unwrap_err();
        assert!(matches!(err, ConfigError::BothForms), "{err}");
        assert!(err
            .to_string()
            .contains("both `table` and `service_entries`"));
    }

    #[test]
    fn rejects_service_entry_settings_beside_a_table() {
        for (field, value) in [
            ("domain_suffix", r#""mesh""#),
            ("default_export_to", r#"["."]"#),
        ] {
            let text = format!(r#"{{"table":{},"{field}":{value}}}"#, table_json());
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(
                matches!(err, ConfigError::NotWithTable(f) if f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_a_table_whose_hash_does_not_match() {
        let text = table_json().replace("[8000]", "[8001]");
        let err = parse(format!(r#"{{"table":{text}}}"#).as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("table: hash "), "{err}");
    }

    #[test]
    fn namespace_comes_from_the_configuration_before_the_node() {
        let text = format!(r#"{{"table":{}}}"#, table_json());
        let from_node = parse_for(text.as_bytes(), || Some("foo".into())).unwrap();
        assert_eq!(from_node.viewer, Viewer::Node("foo".into()));
        assert_eq!(
            reason(from_node.table.decide("db.foo.global:8000", None, None)),
            None
        );
        let text = format!(r#"{{"table":{},"namespace":"bar"}}"#, table_json());
        let configured = parse_for(text.as_bytes(), || panic!("node not asked")).unwrap();
        assert_eq!(configured.viewer, Viewer::Configured("bar".into()));
        assert_eq!(
            reason(configured.table.decide("db.foo.global:8000", None, None)),
            Some(Reason::NotExported)
        );
        let text = format!(r#"{{"table":{}}}"#, table_json());
        let unknown = parse_for(text.as_bytes(), || Some(String::new())).unwrap();
        assert_eq!(unknown.viewer, Viewer::Unknown);
        assert_eq!(
            reason(unknown.table.decide("db.foo.global:8000", None, None)),
            Some(Reason::NotExported)
        );
        assert_eq!(
            reason(unknown.table.decide("httpbin.bar.global:8000", None, None)),
            None
        );
    }

    #[test]
    fn rejects_a_namespace_that_is_not_a_name() {
        let err = parse(br#"{"namespace":"Foo_Bar"}"#).unwrap_err();
        assert!(matches!(err, ConfigError::Namespace(_)), "{err}");
    }

    #[test]
    fn default_export_to_applies_to_entries_without_export_to() {
        let own = parse_for(with(r#","default_export_to":["."]"#).as_bytes(), || {
            Some("bar".into())
        })
        .unwrap();
        assert_eq!(
            reason(own.table.decide("httpbin.bar.global:8000", None, None)),
            Some(Reason::NotExported),
            "the entry lives in foo"
        );
        let everyone = parse_for(with(r#","default_export_to":[]"#).as_bytes(), || {
            Some("bar".into())
        })
        .unwrap();
        assert_eq!(
            reason(everyone.table.decide("httpbin.bar.global:8000", None, None)),
            None
        );
        let err = parse(with(r#","default_export_to":["No"]"#).as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("default_export_to: "), "{err}");
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
