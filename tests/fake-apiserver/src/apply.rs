//! Field ownership as kube-apiserver tracks it in `metadata.managedFields`
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>), for objects whose
//! schema is deduced: maps are granular (each key its own field), lists and scalars atomic
//! (one field each), as for a custom resource with `x-kubernetes-preserve-unknown-fields` and
//! no list-type markers.
//!
//! - **Apply** (`PATCH` with `application/apply-patch+yaml` and a `fieldManager`): the
//!   manager's applied configuration is merged into the live object; a field the configuration
//!   sets that another manager owns with a different value is a conflict (`409`), unless
//!   `force=true` takes it over; a field the manager applied before and leaves out now is
//!   removed, unless another manager owns it too.
//! - **Update** (create, `PUT`, merge patch): the manager (`fieldManager`, else the user agent
//!   up to its first `/`) takes every field whose value it changed; fields it removed leave
//!   every manager's set.
//!
//! Not modelled: associative lists (`x-kubernetes-list-type: map`), the status subresource's
//! own managers, and managedFields a client sends (the stored ones are kept).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// A field: the keys from the object's root.
pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata the server owns or that names the object; never a managed field.
const UNMANAGED_METADATA: [&str; 11] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "generateName",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The fields an object (or an applied configuration) sets.
pub fn field_set(object: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(map) = object.as_object() else {
        return set;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                if let Some(meta) = value.as_object() {
                    for (field, value) in meta {
                        if !UNMANAGED_METADATA.contains(&field.as_str()) {
                            walk(&mut set, vec!["metadata".into(), field.clone()], value);
                        }
                    }
                }
            }
            _ => walk(&mut set, vec![key.clone()], value),
        }
    }
    set
}

fn walk(set: &mut FieldSet, path: Path, value: &Value) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, value) in map {
                let mut child = path.clone();
                child.push(key.clone());
                walk(set, child, value);
            }
        }
        _ => {
            set.insert(path);
        }
    }
}

/// The value at a field.
pub fn value_at<'v>(object: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(object, |value, key| value.get(key))
}

fn set_at(object: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for key in parents {
        if !node.get(key).is_some_and(Value::is_object) {
            node[key.as_str()] = json!({});
        }
        node = &mut node[key.as_str()];
    }
    node[last.as_str()] = value;
}

fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for key in parents {
        match node.get_mut(key) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// `.spec.pluginConfig.table`, as the API server names a field.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|key| format!(".{key}")).collect()
}

/// `metadata.managedFields[*].fieldsV1`: `{"f:spec": {"f:url": {}}}`.
pub fn encode(set: &FieldSet) -> Value {
    let mut root = json!({});
    for path in set {
        let mut node = &mut root;
        for key in path {
            node = &mut node[format!("f:{key}")];
            if !node.is_object() {
                *node = json!({});
            }
        }
    }
    root
}

/// The inverse of [`encode`] (a `"."` entry marks the map itself as a field).
pub fn decode(fields: &Value) -> FieldSet {
    fn go(set: &mut FieldSet, path: &mut Path, node: &Value) {
        let Some(map) = node.as_object().filter(|m| !m.is_empty()) else {
            if !path.is_empty() {
                set.insert(path.clone());
            }
            return;
        };
        for (key, child) in map {
            if key == "." {
                set.insert(path.clone());
            } else if let Some(name) = key.strip_prefix("f:") {
                path.push(name.to_string());
                go(set, path, child);
                path.pop();
            }
        }
    }
    let mut set = FieldSet::new();
    go(&mut set, &mut Vec::new(), fields);
    set
}

/// One entry of `managedFields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: &'static str,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

/// The managers recorded on a stored object.
pub fn managers(object: &Value) -> Vec<Manager> {
    let Some(entries) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| Manager {
            manager: entry["manager"].as_str().unwrap_or("").to_string(),
            operation: if entry["operation"] == "Apply" {
                "Apply"
            } else {
                "Update"
            },
            api_version: entry["apiVersion"].as_str().unwrap_or("").to_string(),
            time: entry["time"].as_str().unwrap_or("").to_string(),
            fields: decode(&entry["fieldsV1"]),
        })
        .collect()
}

/// Writes the managers into the object's metadata (entries that own nothing are dropped).
pub fn set_managers(object: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            json!({"manager": m.manager, "operation": m.operation, "apiVersion": m.api_version,
                   "time": m.time, "fieldsType": "FieldsV1", "fieldsV1": encode(&m.fields)})
        })
        .collect();
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    if entries.is_empty() {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(entries);
    }
}

/// A field another manager owns with a value the applied configuration changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: Path,
}

/// The result of an apply: the new object (managedFields set), or the conflicts.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let applied = field_set(config);
    let Some(live) = live else {
        let mut object = config.clone();
        set_managers(
            &mut object,
            &[Manager {
                manager: manager.to_string(),
                operation: "Apply",
                api_version: api_version.to_string(),
                time: now.to_string(),
                fields: applied,
            }],
        );
        return Ok(object);
    };
    let mut managers = managers(live);
    let is_me = |m: &Manager| m.manager == manager && m.operation == "Apply";
    let mut conflicts = Vec::new();
    for other in managers.iter().filter(|m| !is_me(m)) {
        for path in applied.intersection(&other.fields) {
            if value_at(live, path) != value_at(config, path) {
                conflicts.push(Conflict {
                    manager: other.manager.clone(),
                    api_version: other.api_version.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let taken: FieldSet = conflicts.into_iter().map(|c| c.path).collect();
    let previous = managers
        .iter()
        .find(|m| is_me(m))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let mut object = live.clone();
    // Fields this manager gave up, that no one else holds, leave the object.
    for path in previous.difference(&applied) {
        let held = managers
            .iter()
            .any(|m| !is_me(m) && m.fields.contains(path));
        if !held {
            remove_at(&mut object, path);
        }
    }
    for path in &applied {
        if let Some(value) = value_at(config, path) {
            set_at(&mut object, path, value.clone());
        }
    }
    for other in managers.iter_mut().filter(|m| !is_me(m)) {
        other.fields.retain(|p| !taken.contains(p));
    }
    match managers.iter_mut().find(|m| is_me(m)) {
        Some(me) => {
            if me.fields != applied {
                me.time = now.to_string();
            }
            me.fields = applied;
            me.api_version = api_version.to_string();
        }
        None => managers.push(Manager {
            manager: manager.to_string(),
            operation: "Apply",
            api_version: api_version.to_string(),
            time: now.to_string(),
            fields: applied,
        }),
    }
    prune_removed(&mut managers, &object);
    set_managers(&mut object, &managers);
    Ok(object)
}

/// An update by `manager`: it takes the fields whose value it changed; removed fields leave
/// every manager. `new` is the object as the update leaves it (its managedFields ignored).
pub fn update(
    live: Option<&Value>,
    mut new: Value,
    manager: &str,
    api_version: &str,
    now: &str,
) -> Value {
    let mut managers = live.map(managers).unwrap_or_default();
    let changed: FieldSet = field_set(&new)
        .into_iter()
        .filter(|path| live.and_then(|l| value_at(l, path)) != value_at(&new, path))
        .collect();
    for other in managers.iter_mut() {
        other.fields.retain(|p| !changed.contains(p));
    }
    if !changed.is_empty() {
        match managers
            .iter_mut()
            .find(|m| m.manager == manager && m.operation == "Update")
        {
            Some(me) => {
                me.fields.extend(changed);
                me.time = now.to_string();
            }
            None => managers.push(Manager {
                manager: manager.to_string(),
                operation: "Update",
                api_version: api_version.to_string(),
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    prune_removed(&mut managers, &new);
    set_managers(&mut new, &managers);
    new
}

/// Drops fields no longer in the object from every manager.
fn prune_removed(managers: &mut [Manager], object: &Value) {
    let present = field_set(object);
    for m in managers.iter_mut() {
        m.fields.retain(|p| present.contains(p));
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, value) in patch {
        if value.is_null() {
            if let Some(map) = target.as_object_mut() {
                map.remove(key);
            }
        } else {
            merge_patch(&mut target[key.as_str()], value);
        }
    }
}

/// The manager name of a client that gives none: its user agent up to the first `/`, as
/// kube-apiserver takes it.
pub fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    match field_manager.filter(|m| !m.is_empty()) {
        Some(manager) => manager.to_string(),
        None => user_agent
            .and_then(|ua| ua.split('/').next())
            .filter(|ua| !ua.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "extensions.istio.io/v1alpha1";

    fn plugin(table: Value) -> Value {
        json!({"apiVersion": V, "kind": "WasmPlugin",
               "metadata": {"name": "g", "namespace": "istio-system"},
               "spec": {"url": "file:///g.wasm", "pluginConfig": {"cluster_header": "x", "table": table}}})
    }

    fn table_only(table: Value) -> Value {
        json!({"apiVersion": V, "kind": "WasmPlugin",
               "metadata": {"name": "g", "namespace": "istio-system"},
               "spec": {"pluginConfig": {"table": table}}})
    }

    fn owners(object: &Value, path: &str) -> Vec<String> {
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        managers(object)
            .into_iter()
            .filter(|m| m.fields.contains(&path))
            .map(|m| format!("{}/{}", m.manager, m.operation))
            .collect()
    }

    #[test]
    fn maps_are_granular_lists_atomic() {
        let set = field_set(&plugin(json!({"hosts": [1, 2], "hash": "h"})));
        let paths: Vec<String> = set.iter().map(|p| dotted(p)).collect();
        assert_eq!(
            paths,
            [
                ".spec.pluginConfig.cluster_header",
                ".spec.pluginConfig.table.hash",
                ".spec.pluginConfig.table.hosts",
                ".spec.url"
            ]
        );
        assert_eq!(decode(&encode(&set)), set);
    }

    #[test]
    fn managers_share_an_object_and_keep_their_own_fields() {
        let installed = update(None, plugin(json!({})), "kubectl", V, "t0");
        let applied = apply(
            Some(&installed),
            &table_only(json!({"hash": "a", "hosts": [1]})),
            "controller",
            V,
            false,
            "t1",
        )
        .unwrap();
        assert_eq!(applied["spec"]["url"], "file:///g.wasm");
        assert_eq!(applied["spec"]["pluginConfig"]["cluster_header"], "x");
        assert_eq!(owners(&applied, "spec.url"), ["kubectl/Update"]);
        assert_eq!(
            owners(&applied, "spec.pluginConfig.table.hosts"),
            ["controller/Apply"]
        );
        // Applying again without `hash` removes it.
        let again = apply(
            Some(&applied),
            &table_only(json!({"hosts": [2]})),
            "controller",
            V,
            false,
            "t2",
        )
        .unwrap();
        assert!(again["spec"]["pluginConfig"]["table"].get("hash").is_none());
        assert_eq!(again["spec"]["pluginConfig"]["table"]["hosts"], json!([2]));
    }

    #[test]
    fn a_hand_edit_takes_the_field_and_apply_conflicts_until_forced() {
        let first = apply(
            None,
            &plugin(json!({"hosts": [1]})),
            "controller",
            V,
            false,
            "t0",
        )
        .unwrap();
        let mut edited = first.clone();
        edited["spec"]["pluginConfig"]["table"]["hosts"] = json!([9]);
        let edited = update(Some(&first), edited, "kubectl-edit", V, "t1");
        assert_eq!(
            owners(&edited, "spec.pluginConfig.table.hosts"),
            ["kubectl-edit/Update"]
        );
        let config = plugin(json!({"hosts": [1]}));
        let conflicts = apply(Some(&edited), &config, "controller", V, false, "t2").unwrap_err();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].manager, "kubectl-edit");
        assert_eq!(dotted(&conflicts[0].path), ".spec.pluginConfig.table.hosts");
        let forced = apply(Some(&edited), &config, "controller", V, true, "t2").unwrap();
        assert_eq!(forced["spec"]["pluginConfig"]["table"]["hosts"], json!([1]));
        assert_eq!(
            owners(&forced, "spec.pluginConfig.table.hosts"),
            ["controller/Apply"]
        );
    }

    #[test]
    fn the_same_value_is_shared_not_a_conflict() {
        let first = update(None, plugin(json!({"hosts": [1]})), "kubectl", V, "t0");
        let applied = apply(
            Some(&first),
            &plugin(json!({"hosts": [1]})),
            "controller",
            V,
            false,
            "t1",
        )
        .unwrap();
        let mut both = owners(&applied, "spec.pluginConfig.table.hosts");
        both.sort();
        assert_eq!(both, ["controller/Apply", "kubectl/Update"]);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut target, &json!({"c": [1]}));
        assert_eq!(target, json!({"a": "z", "c": [1]}));
    }

    #[test]
    fn the_manager_defaults_to_the_user_agent_program() {
        assert_eq!(
            manager_of(None, Some("kubectl-edit/v1.31.0 (linux/amd64)")),
            "kubectl-edit"
        );
        assert_eq!(manager_of(Some("gm"), Some("kubectl/1")), "gm");
        assert_eq!(manager_of(None, None), "unknown");
    }
}
