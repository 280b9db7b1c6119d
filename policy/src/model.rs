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

/// A whole ServiceEntry object. Top-level fields other than these are an error, as in Istio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
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
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoints: Vec<WorkloadEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub export_to: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subject_alt_names: Vec<String>,
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

impl ServiceEntry {
    /// The object's `namespace/name`; a missing namespace is `default`, a missing name is
    /// `generateName` followed by `*`, or empty.
    pub fn key(&self) -> ObjectKey {
        let namespace = self
            .metadata
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let name = match (&self.metadata.name, &self.metadata.generate_name) {
            (Some(name), _) if !name.is_empty() => name.clone(),
            (_, Some(prefix)) => format!("{prefix}*"),
            _ => String::new(),
        };
        ObjectKey { namespace, name }
    }
}

/// Resolution modes; an unset resolution is NONE, as in the CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
}

impl Resolution {
    /// Parses the `spec.resolution` string; `None` for values Istio does not know.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("NONE") => Some(Self::None),
            Some("STATIC") => Some(Self::Static),
            Some("DNS") => Some(Self::Dns),
            Some("DNS_ROUND_ROBIN") => Some(Self::DnsRoundRobin),
            Some(_) => None,
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
        assert!(se.spec.hosts.is_empty() && se.spec.endpoints.is_empty());
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
