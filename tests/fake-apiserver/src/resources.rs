//! Kinds other than ServiceEntries, served as kube-apiserver serves a custom or built-in
//! resource (<https://kubernetes.io/docs/reference/using-api/api-concepts/>): globalmesh's
//! cluster-scoped `AddressClaim` and `HostClaim` (group `globalmesh.io`),
//! `coordination.k8s.io/v1` Leases and Istio's `extensions.istio.io/v1alpha1` WasmPlugins.
//!
//! - `POST` a collection creates: `201 Created`; `409 AlreadyExists` when the name is taken;
//!   `generateName` picks a free name; `?dryRun=All` stores nothing.
//! - `GET` an item: `200` or `404 NotFound`; a collection: the list (its current state, paged
//!   by `limit` and `continue`; unlike ServiceEntries, older snapshots are not kept); with
//!   `watch=true`: ADDED, MODIFIED and DELETED events after the given resourceVersion (every
//!   current object as ADDED when it is unset or "0"), BOOKMARK when allowed, `410` for a
//!   compacted resourceVersion. A `fieldSelector` on `metadata.name` or `metadata.namespace`
//!   (`=`, `==`, `!=`, terms joined by `,`) selects the objects of both; other fields are
//!   `400`, as for custom resources.
//! - `PUT` an item replaces it: `metadata.resourceVersion` is required (`422` without it, as
//!   for custom resources) and must be the stored one, or `409 Conflict`; `404` when missing.
//! - `DELETE` an item: `200` with the object; `404` when missing; DeleteOptions
//!   `preconditions` (`uid`, `resourceVersion`) that do not hold are `409 Conflict`.
//! - `PATCH` an item: server-side apply (`application/apply-patch+yaml`, `fieldManager`
//!   required, `force`; creates a missing object, `201`), or a JSON merge patch
//!   (`application/merge-patch+json`; `404` when missing; a `metadata.resourceVersion` in it is
//!   a precondition). Field ownership is kept in `metadata.managedFields` ([`crate::apply`]).
//!   Strategic merge patches and JSON patches are answered `415`.
//! - Every write records its manager in `managedFields`, checks the fields the kind's schema
//!   requires (`422`), and refuses an object over etcd's 1.5 MiB request limit, as
//!   kube-apiserver relays etcd's refusal (`500`, "etcdserver: request is too large").
//! - A write that changes nothing (an apply of the same configuration) stores nothing: the
//!   resourceVersion stays and no watch event is sent.
//!
//! Every write takes the next resourceVersion of the one store, as etcd's revision is shared
//! by all kinds; uid, creationTimestamp and generation are set as the server sets them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::apply;
use crate::{error, full, status, too_old, Body, Request, Shared, Store};

/// etcd's default `--max-request-bytes`: the largest object it stores.
pub const MAX_OBJECT_BYTES: usize = 1_572_864;

/// A kind served by [`handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Fields the kind's schema requires (dotted paths), checked on every write.
    pub required: &'static [&'static str],
}

impl Kind {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// An address claimed by a ServiceEntry (cluster-scoped; the name is the address).
pub const ADDRESS_CLAIMS: Kind = Kind {
    group: "globalmesh.io",
    version: "v1alpha1",
    kind: "AddressClaim",
    plural: "addressclaims",
    namespaced: false,
    required: &[],
};

/// A `.global` host claimed by a ServiceEntry (cluster-scoped; the name is the host).
pub const HOST_CLAIMS: Kind = Kind {
    group: "globalmesh.io",
    version: "v1alpha1",
    kind: "HostClaim",
    plural: "hostclaims",
    namespaced: false,
    required: &[],
};

/// Leader-election Leases.
pub const LEASES: Kind = Kind {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    namespaced: true,
    required: &[],
};

/// Istio's WasmPlugin, as its CRD (Istio 1.28) declares it: `spec` and `spec.url` required;
/// `spec.pluginConfig` free-form (`x-kubernetes-preserve-unknown-fields`).
pub const WASM_PLUGINS: Kind = Kind {
    group: "extensions.istio.io",
    version: "v1alpha1",
    kind: "WasmPlugin",
    plural: "wasmplugins",
    namespaced: true,
    required: &["spec", "spec.url"],
};

pub const KINDS: [Kind; 4] = [ADDRESS_CLAIMS, HOST_CLAIMS, LEASES, WASM_PLUGINS];

/// `(plural, namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub type Key = (&'static str, String, String);

pub(crate) struct Event {
    pub rv: u64,
    pub kind: &'static str,
    pub key: Key,
    pub object: Value,
}

/// What a request addressed: a kind, a namespace (for namespaced kinds) and maybe a name.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
}

fn target(parts: &[&str]) -> Option<Target> {
    let ["apis", group, version, rest @ ..] = parts else {
        return None;
    };
    let find = |plural: &str| {
        KINDS
            .iter()
            .copied()
            .find(|k| k.group == *group && k.version == *version && k.plural == plural)
    };
    match rest {
        [plural] => find(plural).map(|kind| Target {
            kind,
            namespace: None,
            name: None,
        }),
        [plural, name] => find(plural).filter(|k| !k.namespaced).map(|kind| Target {
            kind,
            namespace: None,
            name: Some(name.to_string()),
        }),
        ["namespaces", namespace, plural] => {
            find(plural).filter(|k| k.namespaced).map(|kind| Target {
                kind,
                namespace: Some(namespace.to_string()),
                name: None,
            })
        }
        ["namespaces", namespace, plural, name] => {
            find(plural).filter(|k| k.namespaced).map(|kind| Target {
                kind,
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
            })
        }
        _ => None,
    }
}

/// Whether the path is one of these kinds'.
pub(crate) fn serves(parts: &[&str]) -> bool {
    target(parts).is_some()
}

/// The groups these kinds add to discovery, as APIGroup objects.
pub(crate) fn groups() -> Vec<Value> {
    let mut groups: Vec<(&str, &str)> = KINDS.iter().map(|k| (k.group, k.version)).collect();
    groups.dedup();
    groups
        .into_iter()
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv], "preferredVersion": gv})
        })
        .collect()
}

/// The APIResourceList of a group version, when these kinds are in it.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            json!({"name": k.plural, "singularName": k.kind.to_ascii_lowercase(),
                   "namespaced": k.namespaced, "kind": k.kind,
                   "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
        })
        .collect();
    (!resources.is_empty()).then(|| {
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": format!("{group}/{version}"), "resources": resources})
    })
}

/// The time now as the API server writes timestamps: RFC 3339, UTC, in seconds.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil conversion.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn not_found(kind: Kind, name: &str) -> Response<Body> {
    let mut body = status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{}.{} \"{name}\" not found", kind.plural, kind.group),
    );
    body["details"] = json!({"name": name, "group": kind.group, "kind": kind.plural});
    full(StatusCode::NOT_FOUND, &body)
}

fn conflict(kind: Kind, name: &str, why: &str) -> Response<Body> {
    let mut body = status(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {}.{} \"{name}\": {why}",
            kind.plural, kind.group
        ),
    );
    body["details"] = json!({"name": name, "group": kind.group, "kind": kind.plural});
    full(StatusCode::CONFLICT, &body)
}

fn invalid(kind: Kind, name: &str, cause: &str) -> Response<Body> {
    let mut body = status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!(
            "{}.{} \"{name}\" is invalid: {cause}",
            kind.kind, kind.group
        ),
    );
    body["details"] = json!({"name": name, "group": kind.group, "kind": kind.kind});
    full(StatusCode::UNPROCESSABLE_ENTITY, &body)
}

fn bad(message: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// A lowercase RFC 1123 subdomain, as object names must be.
fn is_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.first()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.last()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn key_of(kind: Kind, namespace: Option<&str>, name: &str) -> Key {
    (
        kind.plural,
        if kind.namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn served(kind: Kind, object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.api_version()));
        map.insert("kind".into(), json!(kind.kind));
    }
    out
}

fn dry_run(request: &Request) -> bool {
    request.param("dryRun") == Some("All")
}

pub(crate) async fn handle(
    shared: &Arc<Shared>,
    request: &Request,
    method: &Method,
    body: &[u8],
    parts: &[&str],
) -> Response<Body> {
    let Some(target) = target(parts) else {
        return error(StatusCode::NOT_FOUND, "NotFound", "no such resource");
    };
    let kind = target.kind;
    match (method, target.name.as_deref()) {
        (&Method::GET, Some(name)) => {
            let key = key_of(kind, target.namespace.as_deref(), name);
            match shared.lock().others.get(&key) {
                Some(object) => full(StatusCode::OK, &served(kind, object)),
                None => not_found(kind, name),
            }
        }
        (&Method::GET, None) if request.is_watch() => {
            watch(shared, request, kind, target.namespace.as_deref())
        }
        (&Method::GET, None) => list(shared, request, kind, target.namespace.as_deref()),
        (&Method::POST, None) => create(shared, request, kind, target.namespace, body),
        (&Method::PUT, Some(name)) => replace(
            shared,
            request,
            kind,
            target.namespace.as_deref(),
            name,
            body,
        ),
        (&Method::PATCH, Some(name)) => patch(
            shared,
            request,
            kind,
            target.namespace.as_deref(),
            name,
            body,
        ),
        (&Method::DELETE, Some(name)) => delete(
            shared,
            request,
            kind,
            target.namespace.as_deref(),
            name,
            body,
        ),
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

fn parse_object(kind: Kind, body: &[u8]) -> Result<Value, Box<Response<Body>>> {
    let object: Value = serde_json::from_slice(body)
        .map_err(|e| Box::new(bad(&format!("the object is not JSON: {e}"))))?;
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    if api_version != kind.api_version() || object["kind"].as_str() != Some(kind.kind) {
        return Err(Box::new(bad(&format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            kind.api_version()
        ))));
    }
    Ok(object)
}

fn create(
    shared: &Arc<Shared>,
    request: &Request,
    kind: Kind,
    namespace: Option<String>,
    body: &[u8],
) -> Response<Body> {
    let object = match parse_object(kind, body) {
        Ok(object) => object,
        Err(response) => return *response,
    };
    if kind.namespaced {
        let given = object["metadata"]["namespace"].as_str();
        if given.is_some_and(|ns| Some(ns) != namespace.as_deref()) {
            return bad("the namespace of the provided object does not match the namespace sent on the request");
        }
    }
    let response = {
        let mut store = shared.lock();
        let mut name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            if let Some(prefix) = object["metadata"]["generateName"].as_str() {
                store.names += 1;
                name = format!("{prefix}{:05x}", store.names);
            }
        }
        if !is_subdomain(&name) {
            return invalid(
                kind,
                &name,
                &format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
            );
        }
        let key = key_of(kind, namespace.as_deref(), &name);
        if store.others.contains_key(&key) {
            let mut body = status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{}.{} \"{name}\" already exists", kind.plural, kind.group),
            );
            body["details"] = json!({"name": name, "group": kind.group, "kind": kind.plural});
            return full(StatusCode::CONFLICT, &body);
        }
        let mut object = apply::update(
            None,
            object,
            &request.manager(),
            &kind.api_version(),
            &now_rfc3339(),
        );
        if let Err(response) = admit(kind, &name, &object) {
            return *response;
        }
        let rv = store.rv + 1;
        stamp(&mut store, &mut object, &key, rv, None);
        if !dry_run(request) {
            store.others.insert(key.clone(), object.clone());
            store.commit_other(rv, "ADDED", key, object.clone());
        }
        full(StatusCode::CREATED, &served(kind, &object))
    };
    shared.notify();
    response
}

/// What the API server checks of every object it stores: the fields the schema requires, and
/// etcd's size limit.
fn admit(kind: Kind, name: &str, object: &Value) -> Result<(), Box<Response<Body>>> {
    for field in kind.required {
        let path: Vec<String> = field.split('.').map(str::to_string).collect();
        let value = apply::value_at(object, &path);
        if value.is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
            return Err(Box::new(invalid(
                kind,
                name,
                &format!("{field}: Required value"),
            )));
        }
    }
    let size = serde_json::to_vec(object).map_or(0, |bytes| bytes.len());
    if size > MAX_OBJECT_BYTES {
        return Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcdserver: request is too large",
        )));
    }
    Ok(())
}

fn replace(
    shared: &Arc<Shared>,
    request: &Request,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    body: &[u8],
) -> Response<Body> {
    let object = match parse_object(kind, body) {
        Ok(object) => object,
        Err(response) => return *response,
    };
    if object["metadata"]["name"].as_str() != Some(name) {
        return bad("the name of the object does not match the name on the URL");
    }
    let response = {
        let mut store = shared.lock();
        let key = key_of(kind, namespace, name);
        let Some(existing) = store.others.get(&key).cloned() else {
            return not_found(kind, name);
        };
        let given = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if given.is_empty() {
            return invalid(
                kind,
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            );
        }
        if Some(given) != existing["metadata"]["resourceVersion"].as_str() {
            return conflict(
                kind,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            );
        }
        let object = apply::update(
            Some(&existing),
            object,
            &request.manager(),
            &kind.api_version(),
            &now_rfc3339(),
        );
        store_update(&mut store, request, kind, key, &existing, object)
    };
    shared.notify();
    response
}

/// Stores an update of `existing` (unless it changes nothing, or is a dry run) and answers
/// with what is stored.
fn store_update(
    store: &mut Store,
    request: &Request,
    kind: Kind,
    key: Key,
    existing: &Value,
    mut object: Value,
) -> Response<Body> {
    if let Err(response) = admit(kind, &key.2, &object) {
        return *response;
    }
    if unchanged(existing, &object) {
        return full(StatusCode::OK, &served(kind, existing));
    }
    let rv = store.rv + 1;
    stamp(store, &mut object, &key, rv, Some(existing));
    if !dry_run(request) {
        store.others.insert(key.clone(), object.clone());
        store.commit_other(rv, "MODIFIED", key, object.clone());
    }
    full(StatusCode::OK, &served(kind, &object))
}

/// Whether a write leaves the object as it is: the same content and the same field owners
/// (the times of managedFields and the server-set metadata aside).
fn unchanged(existing: &Value, new: &Value) -> bool {
    let strip = |object: &Value| {
        let mut object = object.clone();
        if let Some(meta) = object["metadata"].as_object_mut() {
            for field in [
                "managedFields",
                "resourceVersion",
                "generation",
                "uid",
                "creationTimestamp",
            ] {
                meta.remove(field);
            }
        }
        if let Some(map) = object.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        object
    };
    let owners = |object: &Value| -> Vec<(String, &'static str, apply::FieldSet)> {
        apply::managers(object)
            .into_iter()
            .map(|m| (m.manager, m.operation, m.fields))
            .collect()
    };
    strip(existing) == strip(new) && owners(existing) == owners(new)
}

const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";

fn patch(
    shared: &Arc<Shared>,
    request: &Request,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    body: &[u8],
) -> Response<Body> {
    let content_type = request
        .content_type
        .as_deref()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type != APPLY && content_type != MERGE {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!("the body of the request was in an unknown format - accepted media types include: {APPLY}, {MERGE} (this stand-in serves no strategic merge or JSON patches)"),
        );
    }
    let force = match request.param("force") {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(other) => return bad(&format!("force: invalid value {other:?}")),
    };
    let patch: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(json_error) => match std::str::from_utf8(body)
            .ok()
            .filter(|_| content_type == APPLY)
            .and_then(|text| serde_norway::from_str::<Value>(text).ok())
        {
            Some(value) => value,
            None => return bad(&format!("the patch is not valid: {json_error}")),
        },
    };
    if !patch.is_object() {
        return bad("the patch is not a JSON object");
    }
    let response = {
        let mut store = shared.lock();
        let key = key_of(kind, namespace, name);
        let existing = store.others.get(&key).cloned();
        if content_type == APPLY {
            let Some(manager) = request.param("fieldManager").filter(|m| !m.is_empty()) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                );
            };
            let api_version = patch["apiVersion"].as_str().unwrap_or("");
            if api_version != kind.api_version() || patch["kind"].as_str() != Some(kind.kind) {
                return bad(&format!(
                    "the API version in the data ({api_version}) does not match the expected API version ({})",
                    kind.api_version()
                ));
            }
            if patch["metadata"]["name"]
                .as_str()
                .is_some_and(|given| given != name)
            {
                return bad("the name of the object does not match the name on the URL");
            }
            let object = match apply::apply(
                existing.as_ref(),
                &patch,
                manager,
                &kind.api_version(),
                force,
                &now_rfc3339(),
            ) {
                Ok(object) => object,
                Err(conflicts) => return apply_conflict(kind, name, &conflicts),
            };
            match existing {
                Some(existing) => store_update(&mut store, request, kind, key, &existing, object),
                None => {
                    let mut object = object;
                    if let Err(response) = admit(kind, name, &object) {
                        return *response;
                    }
                    let rv = store.rv + 1;
                    stamp(&mut store, &mut object, &key, rv, None);
                    if !dry_run(request) {
                        store.others.insert(key.clone(), object.clone());
                        store.commit_other(rv, "ADDED", key, object.clone());
                    }
                    full(StatusCode::CREATED, &served(kind, &object))
                }
            }
        } else {
            if force {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
                );
            }
            let Some(existing) = existing else {
                return not_found(kind, name);
            };
            if let Some(wanted) = patch["metadata"]["resourceVersion"].as_str() {
                if Some(wanted) != existing["metadata"]["resourceVersion"].as_str() {
                    return conflict(
                        kind,
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    );
                }
            }
            let mut object = existing.clone();
            apply::merge_patch(&mut object, &patch);
            let object = apply::update(
                Some(&existing),
                object,
                &request.manager(),
                &kind.api_version(),
                &now_rfc3339(),
            );
            store_update(&mut store, request, kind, key, &existing, object)
        }
    };
    shared.notify();
    response
}

/// `409` naming every field another manager holds, as kube-apiserver words it.
fn apply_conflict(kind: Kind, name: &str, conflicts: &[apply::Conflict]) -> Response<Body> {
    let message = match conflicts {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            one.manager,
            one.api_version,
            apply::dotted(&one.path)
        ),
        many => {
            let lines: Vec<String> = many
                .iter()
                .map(|c| {
                    format!(
                        "conflict with \"{}\" using {}: {}",
                        c.manager,
                        c.api_version,
                        apply::dotted(&c.path)
                    )
                })
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict",
                   "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                   "field": apply::dotted(&c.path)})
        })
        .collect();
    let mut body = status(StatusCode::CONFLICT, "Conflict", &message);
    body["details"] =
        json!({"name": name, "group": kind.group, "kind": kind.plural, "causes": causes});
    full(StatusCode::CONFLICT, &body)
}

fn delete(
    shared: &Arc<Shared>,
    request: &Request,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    body: &[u8],
) -> Response<Body> {
    let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(options) => options,
            Err(e) => return bad(&format!("DeleteOptions are not JSON: {e}")),
        }
    };
    let response = {
        let mut store = shared.lock();
        let key = key_of(kind, namespace, name);
        let Some(mut object) = store.others.get(&key).cloned() else {
            return not_found(kind, name);
        };
        let preconditions = &options["preconditions"];
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(wanted) = preconditions[field].as_str() {
                let actual = object["metadata"][field].as_str().unwrap_or("");
                if wanted != actual {
                    return conflict(
                        kind,
                        name,
                        &format!(
                            "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                        ),
                    );
                }
            }
        }
        if !dry_run(request) {
            store.others.remove(&key);
            let rv = store.rv + 1;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            store.commit_other(rv, "DELETED", key, object.clone());
        }
        full(StatusCode::OK, &served(kind, &object))
    };
    shared.notify();
    response
}

/// What the API server sets on a write: namespace, resourceVersion, and uid, creationTimestamp
/// and generation (new, or carried over from `existing`, the generation raised when the spec
/// changed).
fn stamp(store: &mut Store, object: &mut Value, key: &Key, rv: u64, existing: Option<&Value>) {
    let spec_changed = existing.is_some_and(|old| old["spec"] != object["spec"]);
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let meta = &mut object["metadata"];
    meta["name"] = json!(key.2);
    if key.1.is_empty() {
        if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
    } else {
        meta["namespace"] = json!(key.1);
    }
    meta["resourceVersion"] = json!(rv.to_string());
    match existing {
        Some(old) => {
            meta["uid"] = old["metadata"]["uid"].clone();
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            let generation = old["metadata"]["generation"].as_u64().unwrap_or(1);
            meta["generation"] = json!(generation + u64::from(spec_changed));
        }
        None => {
            store.uid += 1;
            meta["uid"] = json!(format!("00000000-0000-4000-9000-{:012}", store.uid));
            meta["creationTimestamp"] = json!(now_rfc3339());
            meta["generation"] = json!(1);
        }
    }
}

fn in_scope(key: &Key, kind: Kind, namespace: Option<&str>) -> bool {
    key.0 == kind.plural && namespace.is_none_or(|ns| key.1 == ns)
}

/// One term of a field selector: the field (`name` or `namespace` of the metadata), whether
/// it must equal the value, and the value.
#[derive(Debug, Clone)]
struct FieldTerm {
    namespace: bool,
    equal: bool,
    value: String,
}

fn field_selector(request: &Request) -> Result<Vec<FieldTerm>, Box<Response<Body>>> {
    let Some(selector) = request.param("fieldSelector").filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    selector
        .split(',')
        .map(|term| {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(Box::new(bad(&format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ))));
            };
            let namespace = match field.trim() {
                "metadata.name" => false,
                "metadata.namespace" => true,
                other => {
                    return Err(Box::new(bad(&format!(
                        "field label not supported: {other}"
                    ))))
                }
            };
            Ok(FieldTerm {
                namespace,
                equal,
                value: value.trim().to_string(),
            })
        })
        .collect()
}

fn selected(key: &Key, terms: &[FieldTerm]) -> bool {
    terms.iter().all(|term| {
        let actual = if term.namespace { &key.1 } else { &key.2 };
        (*actual == term.value) == term.equal
    })
}

fn list(
    shared: &Arc<Shared>,
    request: &Request,
    kind: Kind,
    namespace: Option<&str>,
) -> Response<Body> {
    let limit = match request.param("limit").map(str::parse::<usize>) {
        None | Some(Ok(0)) => usize::MAX,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad("limit: invalid value"),
    };
    let after: Option<(String, String)> = match request.param("continue") {
        None | Some("") => None,
        Some(token) => match crate::decode_continue(token) {
            Some((_, key)) => Some(key),
            None => return bad("continue key is not valid: illegal base64 data"),
        },
    };
    let terms = match field_selector(request) {
        Ok(terms) => terms,
        Err(response) => return *response,
    };
    let store = shared.lock();
    let mut items = Vec::new();
    let mut next = None;
    for (key, object) in &store.others {
        if !in_scope(key, kind, namespace) || !selected(key, &terms) {
            continue;
        }
        if after.as_ref().is_some_and(|(ns, name)| {
            (key.1.as_str(), key.2.as_str()) <= (ns.as_str(), name.as_str())
        }) {
            continue;
        }
        if items.len() == limit {
            if let Some(last) = items
                .last()
                .and_then(|v: &Value| v["metadata"]["name"].as_str())
            {
                let ns = items
                    .last()
                    .and_then(|v| v["metadata"]["namespace"].as_str())
                    .unwrap_or("");
                next = Some(crate::encode_continue(
                    store.rv,
                    &(ns.to_string(), last.to_string()),
                ));
            }
            break;
        }
        items.push(served(kind, object));
    }
    let mut metadata = json!({"resourceVersion": store.rv.to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    full(
        StatusCode::OK,
        &json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.kind),
            "metadata": metadata,
            "items": items,
        }),
    )
}

fn frame(kind: &str, object: Value) -> Result<Frame<Bytes>, std::io::Error> {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Ok(Frame::data(Bytes::from(text)))
}

fn watch(
    shared: &Arc<Shared>,
    request: &Request,
    kind: Kind,
    namespace: Option<&str>,
) -> Response<Body> {
    let bookmarks = request.param("allowWatchBookmarks") == Some("true");
    let timeout = request
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800u64);
    let from = request.param("resourceVersion").unwrap_or("").to_string();
    let namespace = namespace.map(str::to_string);
    let terms = match field_selector(request) {
        Ok(terms) => terms,
        Err(response) => return *response,
    };
    let mut changed = shared.changed.subscribe();
    let mut first = Vec::new();
    let mut sent;
    let (mut bookmarks_seen, drops_seen, expiries_seen) = {
        let store = shared.lock();
        match from.as_str() {
            "" | "0" => {
                for (key, object) in &store.others {
                    if in_scope(key, kind, namespace.as_deref()) && selected(key, &terms) {
                        first.push(frame("ADDED", served(kind, object)));
                    }
                }
                sent = store.rv;
            }
            rv => match rv.parse::<u64>() {
                Ok(rv) if rv >= store.oldest => sent = rv,
                Ok(rv) => {
                    first.push(frame("ERROR", too_old(rv, store.oldest)));
                    sent = u64::MAX;
                }
                Err(_) => {
                    return bad(&format!("resourceVersion: Invalid value: {rv:?}"));
                }
            },
        }
        (store.bookmarks, store.drops, store.expiries)
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(256);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        for f in first {
            if tx.send(f).await.is_err() {
                return;
            }
        }
        while sent != u64::MAX {
            let mut out = Vec::new();
            {
                let store = shared.lock();
                if store.drops != drops_seen {
                    out.push(Err(std::io::Error::other("connection cut by the test")));
                    sent = u64::MAX;
                } else if store.expiries != expiries_seen {
                    out.push(frame("ERROR", too_old(sent, store.oldest)));
                    sent = u64::MAX;
                } else {
                    for event in store.other_events.iter().filter(|e| e.rv > sent) {
                        if in_scope(&event.key, kind, namespace.as_deref())
                            && selected(&event.key, &terms)
                        {
                            out.push(frame(event.kind, served(kind, &event.object)));
                        }
                    }
                    sent = sent.max(store.rv);
                    if store.bookmarks != bookmarks_seen {
                        bookmarks_seen = store.bookmarks;
                        if bookmarks {
                            out.push(frame(
                                "BOOKMARK",
                                json!({"apiVersion": kind.api_version(), "kind": kind.kind,
                                       "metadata": {"resourceVersion": store.rv.to_string()}}),
                            ));
                        }
                    }
                }
            }
            for f in out {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            if sent == u64::MAX {
                return;
            }
            tokio::select! {
                changed = changed.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_default()
}

/// Stores an object of a kind as a create would (for tests that set the scene).
pub(crate) fn put(shared: &Shared, kind: Kind, mut object: Value) {
    {
        let mut store = shared.lock();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        let key = key_of(kind, namespace.as_deref(), &name);
        let rv = store.rv + 1;
        stamp(&mut store, &mut object, &key, rv, None);
        store.others.insert(key.clone(), object.clone());
        store.commit_other(rv, "ADDED", key, object);
    }
    shared.notify();
}

/// The stored objects of a kind, for tests.
pub(crate) fn objects(store: &Store, kind: Kind) -> BTreeMap<(String, String), Value> {
    store
        .others
        .iter()
        .filter(|(key, _)| key.0 == kind.plural)
        .map(|(key, object)| ((key.1.clone(), key.2.clone()), served(kind, object)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_083_200)),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399)),
            "2000-02-29T23:59:59Z"
        );
    }
}
