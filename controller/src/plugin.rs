//! The WasmPlugin whose `spec.pluginConfig.table` the controller owns: read by a watch of that
//! one object, written by server-side apply with the controller's own field manager. The
//! install (kubectl, Helm) owns the rest of the object — `url`, `match`, `failStrategy`, other
//! plugin settings such as `cluster_header` — and the API server merges the two; the
//! controller never creates the WasmPlugin (its CRD requires a `url` that is not the
//! controller's to choose).

use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use policy::table::Table;
use serde_json::{json, Value};
use tokio::sync::watch;

/// The field manager of every write (`metadata.managedFields[*].manager`).
pub const FIELD_MANAGER: &str = "globalmesh-controller";

/// Which WasmPlugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for PluginRef {
    type Err = String;

    /// `namespace/name`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name))
                if policy::names::is_dns1123_label(namespace)
                    && policy::names::is_dns1123_subdomain(name) =>
            {
                Ok(PluginRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "{text:?} is not <namespace>/<name> of a WasmPlugin, such as istio-system/global-guard"
            )),
        }
    }
}

/// What the WasmPlugin holds now, as far as the table goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Not looked at yet (the first list has not come).
    Unknown,
    /// There is no such WasmPlugin.
    Missing,
    /// It exists.
    Present {
        resource_version: String,
        /// The content hash of its table; `None` when it has none, or one that does not read
        /// as a table or whose `hash` does not match its content.
        hash: Option<String>,
    },
}

pub fn resource() -> ApiResource {
    ApiResource {
        group: "extensions.istio.io".to_string(),
        version: "v1alpha1".to_string(),
        api_version: "extensions.istio.io/v1alpha1".to_string(),
        kind: "WasmPlugin".to_string(),
        plural: "wasmplugins".to_string(),
    }
}

/// The content hash of the table an object holds, recomputed from the content (a hand edit
/// that kept the old `hash` field is seen as a change).
pub fn table_hash(object: &Value) -> Option<String> {
    let table = object.pointer("/spec/pluginConfig/table")?;
    let table: Table = serde_json::from_value(table.clone()).ok()?;
    let hash = table.content_hash();
    (table.hash.as_deref() == Some(hash.as_str())).then_some(hash)
}

pub struct Plugin {
    api: Api<DynamicObject>,
    target: PluginRef,
    timeout: Duration,
}

impl Plugin {
    pub fn new(client: Client, target: PluginRef, timeout: Duration) -> Self {
        Plugin {
            api: Api::namespaced_with(client, &target.namespace, &resource()),
            target,
            timeout,
        }
    }

    pub fn target(&self) -> &PluginRef {
        &self.target
    }

    /// The configuration the controller applies: the table and nothing else.
    pub fn applied(&self, table: &Table) -> Value {
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": self.target.name, "namespace": self.target.namespace},
            "spec": {"pluginConfig": {"table": table}}
        })
    }

    /// Server-side apply of the table, forced: the table is the controller's, and a hand edit
    /// that took the field over is put back (controllers force, as the API documents).
    pub async fn apply(&self, table: &Table) -> Result<(), WriteError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(self.applied(table));
        match tokio::time::timeout(
            self.timeout,
            self.api.patch(&self.target.name, &params, &patch),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(WriteError::Api {
                target: self.target.clone(),
                source,
            }),
            Err(_) => Err(WriteError::Timeout {
                target: self.target.clone(),
                after: self.timeout,
            }),
        }
    }

    /// Follows the WasmPlugin into `observed`, for ever (the watcher retries with backoff).
    pub async fn watch(&self, observed: watch::Sender<Observed>) {
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", self.target.name));
        let mut events = watcher::watcher(self.api.clone(), config)
            .default_backoff()
            .boxed();
        let mut listed: Option<Observed> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listed = Some(Observed::Missing),
                Ok(Event::InitApply(object)) => listed = Some(observe(&object)),
                Ok(Event::InitDone) => {
                    observed.send_replace(listed.take().unwrap_or(Observed::Missing));
                }
                Ok(Event::Apply(object)) => {
                    observed.send_replace(observe(&object));
                }
                Ok(Event::Delete(_)) => {
                    observed.send_replace(Observed::Missing);
                }
                Err(e) => {
                    tracing::warn!(wasmplugin = %self.target, error = %e, "WasmPlugin not watched; retrying");
                }
            }
        }
    }
}

fn observe(object: &DynamicObject) -> Observed {
    Observed::Present {
        resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
        hash: table_hash(&object.data),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("applying the table to WasmPlugin {target}")]
    Api {
        target: PluginRef,
        #[source]
        source: kube::Error,
    },
    #[error("applying the table to WasmPlugin {target}: no answer within {after:?}")]
    Timeout { target: PluginRef, after: Duration },
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::Options;

    #[test]
    fn plugin_refs_read_as_namespace_slash_name() {
        let r: PluginRef = "istio-system/global-guard".parse().unwrap();
        assert_eq!(r.to_string(), "istio-system/global-guard");
        for bad in ["global-guard", "a/b/c", "Istio/x", "/x", "x/"] {
            let err = bad.parse::<PluginRef>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn the_hash_is_taken_from_the_content() {
        let table = Table::build(&[], &Options::default());
        let mut object = json!({"spec": {"pluginConfig": {"table": table}}});
        assert_eq!(table_hash(&object), table.hash);
        object["spec"]["pluginConfig"]["table"]["domain_suffix"] = json!("mesh");
        assert_eq!(table_hash(&object), None, "edited, with the old hash");
        assert_eq!(table_hash(&json!({"spec": {"url": "x"}})), None);
    }
}
