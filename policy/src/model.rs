//! The ServiceEntry resource of `networking.istio.io` (v1alpha3, v1beta1, v1), as serde types.
//!
//! Numbers are kept wide (`i64`) and enums as strings so that out-of-range ports or unknown
//! resolutions reach the rules, which name the bad value, instead of failing decoding.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The API group that serves ServiceEntries.
pub const GROUP: &str = "networking.istio.io";
/// The kind, as it appears in `kind:`.
pub const KIND: &str = "ServiceEntry";
/// Versions of the group that carry the same ServiceEntry schema.
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// Why an `apiVersion` and `kind` do not name a ServiceEntry of [`GROUP`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("unsupported apiVersion {0:?}; expected {GROUP}/v1, v1beta1 or v1alpha3")]
    ApiVersion(String),
    #[error("kind {0:?} is not {KIND}")]
    Kind(String),
}

/// The one check of an object's type: `apiVersion` is `networking.istio.io/<version>` with a
/// version that carries the ServiceEntry schema, and `kind` is `ServiceEntry`. Returns the
/// version.
pub fn check_type<'a>(api_version: &'a str, kind: &str) -> Result<&'a str, TypeError> {
    if kind != KIND {
        return Err(TypeError::Kind(kind.to_string()));
    }
    check_group_version(api_version)
}

/// The version of `networking.istio.io/<version>`, when it carries the ServiceEntry schema.
pub fn check_group_version(api_version: &str) -> Result<&str, TypeError> {
    match api_version.split_once('/') {
        Some((GROUP, version)) if VERSIONS.contains(&version) => Ok(version),
        _ => Err(TypeError::ApiVersion(api_version.to_string())),
    }
}

/// Whether an object's `apiVersion` (of any version) and `kind` name a ServiceEntry of the
/// group: the objects that are read as ServiceEntries, and refused if the version is unknown.
pub fn is_service_entry_type(api_version: &str, kind: &str) -> bool {
    api_version
        .split_once('/')
        .is_some_and(|(group, _)| is_service_entry_kind(group, kind))
}

/// [`is_service_entry_type`] for a group and kind given apart (an AdmissionReview's `kind`).
pub fn is_service_entry_kind(group: &str, kind: &str) -> bool {
    group == GROUP && kind == KIND
}

/// A whole ServiceEntry object. Top-level fields other than these are an error, as in Istio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(
        default = "ServiceEntrySpec::absent",
        skip_serializing_if = "ServiceEntrySpec::is_absent"
    )]
    pub spec: ServiceEntrySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// The part of Kubernetes object metadata that globalmesh reads. Other metadata fields
/// (`uid`, `resourceVersion`, `managedFields`, ...) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Set by the API server when it first stores the object (validating admission sees it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

/// `spec` of a ServiceEntry: every field of Istio's `ServiceEntry` message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntrySpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// `None` when the field is absent (or null), which the CRD's rules tell from an empty
    /// list; [`ServiceEntrySpec::endpoints`] reads it as a list.
    #[serde(default, rename = "endpoints", skip_serializing_if = "Option::is_none")]
    pub endpoint_list: Option<Vec<WorkloadEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub export_to: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subject_alt_names: Vec<String>,
    /// Set when the object has no `spec` at all, which the CRD requires.
    #[serde(skip)]
    missing: bool,
}

impl ServiceEntrySpec {
    /// The spec of an object that has none.
    fn absent() -> Self {
        Self {
            missing: true,
            ..Self::default()
        }
    }

    /// Whether the object had a `spec` field.
    pub fn was_given(&self) -> bool {
        !self.missing
    }

    fn is_absent(&self) -> bool {
        self.missing
    }

    /// `spec.endpoints`, empty when absent.
    pub fn endpoints(&self) -> &[WorkloadEntry] {
        self.endpoint_list.as_deref().unwrap_or(&[])
    }
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<i64>,
}

/// One entry of `spec.endpoints` (Istio's `WorkloadEntry`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port name to port number. `None` (no map) means "use the service port".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<BTreeMap<String, i64>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// `spec.workloadSelector`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// `namespace/name`: what identifies a ServiceEntry within one cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The namespace an object without `metadata.namespace` lands in, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

impl ObjectKey {
    /// The one reading of an object's `namespace/name` from its metadata fields: a missing or
    /// empty namespace is `default`; a missing name is `generateName` followed by `*`, or
    /// empty.
    pub fn from_metadata(
        namespace: Option<&str>,
        name: Option<&str>,
        generate_name: Option<&str>,
    ) -> Self {
        let namespace = namespace
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        let name = match (name, generate_name) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) => format!("{prefix}*"),
            _ => String::new(),
        };
        ObjectKey::new(namespace, name)
    }
}

impl ServiceEntry {
    /// The object's `namespace/name` ([`ObjectKey::from_metadata`]).
    pub fn key(&self) -> ObjectKey {
        ObjectKey::from_metadata(
            self.metadata.namespace.as_deref(),
            self.metadata.name.as_deref(),
            self.metadata.generate_name.as_deref(),
        )
    }
}

/// Resolution modes; an unset resolution is NONE, as in the CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
    /// Istio 1.28: wildcard hosts resolved per request by ztunnel and waypoints.
    DynamicDns,
}

impl Resolution {
    /// The CRD's enum, in its order.
    pub const NAMES: [&'static str; 5] =
        ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"];

    /// Parses the `spec.resolution` string (case-sensitive, as the CRD's enum); `None` for
    /// values Istio does not know.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("NONE") => Some(Self::None),
            Some("STATIC") => Some(Self::Static),
            Some("DNS") => Some(Self::Dns),
            Some("DNS_ROUND_ROBIN") => Some(Self::DnsRoundRobin),
            Some("DYNAMIC_DNS") => Some(Self::DynamicDns),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Static => "STATIC",
            Self::Dns => "DNS",
            Self::DnsRoundRobin => "DNS_ROUND_ROBIN",
            Self::DynamicDns => "DYNAMIC_DNS",
        }
    }
}

/// Locations; an unset location is MESH_EXTERNAL, as in the CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    MeshExternal,
    MeshInternal,
}

impl Location {
    /// Parses the `spec.location` string; `None` for values Istio does not know.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("MESH_EXTERNAL") => Some(Self::MeshExternal),
            Some("MESH_INTERNAL") => Some(Self::MeshInternal),
            Some(_) => None,
        }
    }
}

/// Kubernetes clients print absent lists as `null`; treat that as empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_defaults_namespace_like_kubectl() {
        let se: ServiceEntry = serde_json::from_str(
            r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a"}}"#,
        )
        .unwrap();
        assert_eq!(se.key(), ObjectKey::new("default", "a"));
    }

    #[test]
    fn type_check_names_group_version_and_kind() {
        assert_eq!(
            check_type("networking.istio.io/v1beta1", "ServiceEntry"),
            Ok("v1beta1")
        );
        assert_eq!(
            check_type("evil.io/v1", "ServiceEntry"),
            Err(TypeError::ApiVersion("evil.io/v1".into()))
        );
        assert_eq!(
            check_type("networking.istio.io/v2", "ServiceEntry"),
            Err(TypeError::ApiVersion("networking.istio.io/v2".into()))
        );
        assert_eq!(
            check_type("networking.istio.io/v1", "Gateway"),
            Err(TypeError::Kind("Gateway".into()))
        );
        assert!(is_service_entry_type(
            "networking.istio.io/v9",
            "ServiceEntry"
        ));
        assert!(!is_service_entry_type("evil.io/v1", "ServiceEntry"));
        assert!(!is_service_entry_type(
            "networking.istio.io",
            "ServiceEntry"
        ));
    }

    #[test]
    fn key_from_metadata_defaults_alike_everywhere() {
        assert_eq!(
            ObjectKey::from_metadata(Some(""), Some("a"), None),
            ObjectKey::new("default", "a")
        );
        assert_eq!(
            ObjectKey::from_metadata(None, None, Some("gen-")),
            ObjectKey::new("default", "gen-*")
        );
        assert_eq!(
            ObjectKey::from_metadata(Some("foo"), Some(""), None),
            ObjectKey::new("foo", "")
        );
    }

    #[test]
    fn endpoints_present_but_empty_is_told_from_absent() {
        let se: ServiceEntry = serde_json::from_str(
            r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","spec":{"endpoints":[]}}"#,
        )
        .unwrap();
        assert_eq!(se.spec.endpoint_list, Some(vec![]));
        assert!(se.spec.endpoints().is_empty());
    }

    #[test]
    fn rejects_unknown_spec_field() {
        let err = serde_json::from_str::<ServiceEntry>(
            r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","spec":{"hostz":["a"]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `hostz`"), "{err}");
    }

    #[test]
    fn null_lists_are_empty() {
        let se: ServiceEntry = serde_json::from_str(
            r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","spec":{"hosts":null,"endpoints":null}}"#,
        )
        .unwrap();
        assert!(se.spec.hosts.is_empty() && se.spec.endpoint_list.is_none());
    }

    #[test]
    fn ignores_server_side_metadata() {
        let se: ServiceEntry = serde_json::from_str(
            r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a","uid":"x","resourceVersion":"7"}}"#,
        )
        .unwrap();
        assert_eq!(se.metadata.name.as_deref(), Some("a"));
    }
}
