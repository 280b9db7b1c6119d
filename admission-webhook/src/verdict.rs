//! The decision for one admission request, given what the cluster holds: pure, so that
//! every case is a unit test. It says what the rules make of the object and, for an admitted
//! `.global` ServiceEntry, which VIPs and hosts it is to claim; the claims themselves are
//! made by [`crate::admit`].

use policy::document::{decode, decode_json, DecodeError};
use policy::model::DEFAULT_NAMESPACE;
use policy::{check_entry, Cluster, Finding, ObjectKey, Options, ServiceEntry, Severity};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::catalog::keys_of;
use crate::claims::{ClaimKey, Owner};
use crate::review::{AdmissionRequest, Operation, Verdict};

/// Kubernetes shows warnings longer than this badly; longer ones are cut.
const MAX_WARNING_CHARS: usize = 120;
/// A denial message lists at most this many violations (a report counts the rest).
const MAX_LISTED: usize = 20;

/// What an admitted `.global` ServiceEntry claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub owner: Owner,
    /// Its single-IP addresses and `.global` hosts, each with the field path that names it.
    pub keys: Vec<(ClaimKey, String)>,
    /// Its addresses, for the free address a denial suggests.
    pub addresses: Vec<ipnet::IpNet>,
}

/// What a review decided, and what an admitted object claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Set when a `.global` ServiceEntry was admitted by the rules.
    pub wanted: Option<Wanted>,
    /// The denial reasons (rule names) for metrics; empty when allowed.
    pub reasons: Vec<&'static str>,
}

impl Decision {
    pub fn allow() -> Self {
        Decision {
            verdict: Verdict::allow(),
            wanted: None,
            reasons: Vec::new(),
        }
    }

    /// The answer while no catalog has loaded: checking against nothing would admit duplicates.
    pub fn not_ready() -> Self {
        Self::deny(
            503,
            "not-ready",
            "the webhook has not loaded the cluster's ServiceEntries yet; retry shortly".into(),
        )
    }

    pub fn deny(code: u16, reason: &'static str, message: String) -> Self {
        Decision {
            verdict: Verdict::deny(code, message),
            wanted: None,
            reasons: vec![reason],
        }
    }
}

/// Whether the request is about a ServiceEntry of networking.istio.io.
pub fn is_service_entry(request: &AdmissionRequest) -> bool {
    policy::model::is_service_entry_kind(&request.kind.group, &request.kind.kind)
}

/// The request's object decoded, with the namespace filled in from the request where the
/// object has none; `Err` is the denial for an object that does not decode.
pub fn decode_object(request: &AdmissionRequest) -> Result<ServiceEntry, Box<Decision>> {
    let Some(object) = request.object.as_deref() else {
        return Err(Box::new(Decision::deny(
            400,
            "decode",
            format!("{} request has no object", request.operation.as_str()),
        )));
    };
    // The API server fills metadata.namespace, but be safe with hand-made reviews.
    let namespace = request.namespace.as_deref().filter(|n| !n.is_empty());
    match decode_json(object.get()) {
        Some(mut se) => {
            if se.metadata.namespace.is_none() {
                se.metadata.namespace = namespace.map(str::to_string);
            }
            Ok(se)
        }
        None => decode_value(object, namespace).map_err(|e| {
            Box::new(Decision::deny(
                400,
                "decode",
                format!(
                    "ServiceEntry {} cannot be decoded: {}: {}",
                    e.key, e.path, e.message
                ),
            ))
        }),
    }
}

/// Who owns an object under review: its `namespace/name` and, where the API server has set it,
/// its uid.
pub fn owner_of(se: &ServiceEntry) -> Owner {
    let key = se.key();
    Owner {
        namespace: key.namespace,
        name: key.name,
        uid: se.metadata.uid.clone().filter(|u| !u.is_empty()),
    }
}

pub fn decide(request: &AdmissionRequest, cluster: &Cluster, options: &Options) -> Decision {
    if !matches!(request.operation, Operation::Create | Operation::Update)
        || !is_service_entry(request)
    {
        return Decision::allow();
    }
    let se = match decode_object(request) {
        Ok(se) => se,
        Err(denied) => return *denied,
    };
    let key = se.key();
    let findings = check_entry(&se, cluster, options);
    let (errors, warnings): (Vec<&Finding>, Vec<&Finding>) =
        findings.iter().partition(|f| f.severity == Severity::Error);
    if !errors.is_empty() {
        let mut reasons: Vec<&'static str> = errors.iter().map(|f| f.rule.as_str()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        return Decision {
            verdict: Verdict::deny(422, violations(&key, &errors)),
            wanted: None,
            reasons,
        };
    }
    let wanted = policy::rules::global::is_global(&se, options).then(|| wanted(&se, options));
    Decision {
        verdict: Verdict {
            warnings: warnings.iter().map(|f| short_warning(f)).collect(),
            ..Verdict::allow()
        },
        wanted,
        reasons: Vec::new(),
    }
}

/// What an entry claims, each key once, with the path of the field that first names it.
pub fn wanted(se: &ServiceEntry, options: &Options) -> Wanted {
    let keys_held = keys_of(se, options);
    let mut keys: Vec<(ClaimKey, String)> = Vec::new();
    let mut addresses = Vec::new();
    for (i, address) in se.spec.addresses.iter().enumerate() {
        let Some(net) = policy::parse_address(address) else {
            continue;
        };
        addresses.push(net.trunc());
        let key = ClaimKey::Address(net.addr());
        if keys_held.contains(&key) && !keys.iter().any(|(k, _)| *k == key) {
            keys.push((key, format!("spec.addresses[{i}]")));
        }
    }
    for (i, host) in se.spec.hosts.iter().enumerate() {
        let key = ClaimKey::Host(policy::hosts::normalize_host(host));
        if keys_held.contains(&key) && !keys.iter().any(|(k, _)| *k == key) {
            keys.push((key, format!("spec.hosts[{i}]")));
        }
    }
    Wanted {
        owner: owner_of(se),
        keys,
        addresses,
    }
}

/// The denial message: the entry, then one line per violation, at most [`MAX_LISTED`].
fn violations(key: &ObjectKey, errors: &[&Finding]) -> String {
    let plural = if errors.len() == 1 { "" } else { "s" };
    let mut message = format!("ServiceEntry {key} has {} violation{plural}:", errors.len());
    for f in errors.iter().take(MAX_LISTED) {
        message.push_str(&format!("\n- {}: {}", f.path, f.message));
    }
    if errors.len() > MAX_LISTED {
        message.push_str(&format!(
            "\n- and {} more; `admission-webhook check` lists them",
            errors.len() - MAX_LISTED
        ));
    }
    message
}

/// The slow path of decoding, for an object that does not decode as it is: through a value,
/// so that the error names the field path and the object's `namespace/name`. The namespace is
/// filled in as on the fast path: where the object has none (or null), the request's.
fn decode_value(object: &RawValue, namespace: Option<&str>) -> Result<ServiceEntry, DecodeError> {
    let mut value: Value = serde_json::from_str(object.get()).map_err(|e| DecodeError {
        key: ObjectKey::new(namespace.unwrap_or(DEFAULT_NAMESPACE), ""),
        path: ".".to_string(),
        message: format!("object is not readable JSON: {e}"),
    })?;
    if let (Some(namespace), Some(fields)) = (namespace, value.as_object_mut()) {
        let metadata = fields
            .entry("metadata")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(slot) = metadata
            .as_object_mut()
            .map(|meta| meta.entry("namespace").or_insert(Value::Null))
        {
            if slot.is_null() {
                *slot = Value::String(namespace.to_string());
            }
        }
    }
    decode(value)
}

fn short_warning(finding: &Finding) -> String {
    let text = format!("{}: {}", finding.path, finding.message);
    if text.chars().count() <= MAX_WARNING_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_WARNING_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// Objects and requests for the unit tests of this crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::review::{AdmissionRequest, GroupVersionKind, GroupVersionResource, Operation};
    use serde_json::{json, Value};

    /// A `.global` ServiceEntry `foo/<name>` as the API server passes it.
    pub(crate) fn object(name: &str, address: &str, gateway_port: u16) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "foo"},
            "spec": {
                "hosts": [format!("{name}.bar.global")],
                "location": "MESH_INTERNAL",
                "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
                "resolution": "DNS",
                "addresses": [address],
                "endpoints": [{"address": "198.18.2.1", "ports": {"http1": gateway_port}}]
            }
        })
    }

    pub(crate) fn request(operation: Operation, object: Option<Value>) -> AdmissionRequest {
        AdmissionRequest {
            uid: "u".into(),
            kind: GroupVersionKind {
                group: "networking.istio.io".into(),
                version: "v1".into(),
                kind: "ServiceEntry".into(),
            },
            resource: GroupVersionResource::default(),
            sub_resource: None,
            name: None,
            namespace: Some("foo".into()),
            operation,
            object: object.map(|o| serde_json::value::to_raw_value(&o).expect("JSON")),
            old_object: None,
            dry_run: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{object, request};
    use super::*;
    use crate::review::GroupVersionKind;
    use serde_json::json;

    fn index_with(name: &str, address: &str) -> Cluster {
        let se = decode(object(name, address, 15443)).unwrap();
        Cluster::build([&se], &Options::default())
    }

    #[test]
    fn admits_a_valid_entry_and_claims_its_address() {
        let d = decide(
            &request(
                Operation::Create,
                Some(object("httpbin", "127.255.0.2", 15443)),
            ),
            &Cluster::new(),
            &Options::default(),
        );
        assert!(d.verdict.allowed);
        let wanted = d.wanted.unwrap();
        assert_eq!(wanted.owner.key(), ObjectKey::new("foo", "httpbin"));
        assert_eq!(
            wanted.keys,
            vec![
                (
                    ClaimKey::Address("127.255.0.2".parse().unwrap()),
                    "spec.addresses[0]".to_string()
                ),
                (
                    ClaimKey::Host("httpbin.bar.global".into()),
                    "spec.hosts[0]".to_string()
                )
            ]
        );
    }

    #[test]
    fn denies_a_duplicate_naming_owner_and_free_address() {
        let index = index_with("httpbin", "127.255.0.2");
        let d = decide(
            &request(
                Operation::Create,
                Some(object("other", "127.255.0.2", 15443)),
            ),
            &index,
            &Options::default(),
        );
        assert!(!d.verdict.allowed);
        assert_eq!(d.verdict.code, 422);
        assert!(d.verdict.message.starts_with("ServiceEntry foo/other has 1 violation:\n- spec.addresses[0]: address 127.255.0.2 is already used by ServiceEntry foo/httpbin"), "{}", d.verdict.message);
        assert!(d.verdict.message.contains("127.255.0.1"));
        assert_eq!(d.reasons, vec!["duplicate-address"]);
        assert_eq!(d.wanted, None);
    }

    #[test]
    fn lists_every_violation() {
        let index = index_with("httpbin", "127.255.0.2");
        let d = decide(
            &request(
                Operation::Create,
                Some(object("other", "127.255.0.2", 8000)),
            ),
            &index,
            &Options::default(),
        );
        assert!(d.verdict.message.contains("has 2 violations"));
        assert!(d
            .verdict
            .message
            .contains("- spec.endpoints[0].ports.http1: port 8000 is not the gateway port 15443"));
        assert_eq!(d.reasons, vec!["duplicate-address", "gateway-port"]);
    }

    #[test]
    fn update_does_not_conflict_with_its_old_version() {
        let index = index_with("httpbin", "127.255.0.2");
        let d = decide(
            &request(
                Operation::Update,
                Some(object("httpbin", "127.255.0.2", 15443)),
            ),
            &index,
            &Options::default(),
        );
        assert!(d.verdict.allowed, "{}", d.verdict.message);
    }

    #[test]
    fn delete_connect_and_other_kinds_are_allowed_untouched() {
        let index = Cluster::new();
        for op in [Operation::Delete, Operation::Connect] {
            let d = decide(&request(op, None), &index, &Options::default());
            assert_eq!(d, Decision::allow());
        }
        let mut pod = request(Operation::Create, Some(json!({"garbage": true})));
        pod.kind = GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
        };
        assert_eq!(decide(&pod, &index, &Options::default()), Decision::allow());
    }

    #[test]
    fn undecodable_object_is_a_400_naming_the_field() {
        let mut bad = object("x", "127.255.0.2", 15443);
        bad["spec"]["hostz"] = json!(["y"]);
        let d = decide(
            &request(Operation::Create, Some(bad)),
            &Cluster::new(),
            &Options::default(),
        );
        assert_eq!(d.verdict.code, 400);
        assert!(
            d.verdict.message.contains("spec.hostz"),
            "{}",
            d.verdict.message
        );
        let d = decide(
            &request(Operation::Create, None),
            &Cluster::new(),
            &Options::default(),
        );
        assert_eq!(d.verdict.code, 400);
    }

    #[test]
    fn warnings_are_short_and_returned_when_allowed() {
        let d = decide(
            &request(Operation::Create, Some(object("x", "10.9.9.9", 15443))),
            &Cluster::new(),
            &Options::default(),
        );
        assert!(d.verdict.allowed);
        assert_eq!(d.verdict.warnings.len(), 1);
        assert!(d.verdict.warnings[0].chars().count() <= MAX_WARNING_CHARS);
        assert!(d.verdict.warnings[0].starts_with("spec.addresses[0]: address 10.9.9.9 is outside"));
    }

    #[test]
    fn namespace_comes_from_the_request_when_the_object_lacks_it() {
        let index = index_with("httpbin", "127.255.0.2");
        let mut obj = object("httpbin", "127.255.0.2", 15443);
        obj["metadata"].as_object_mut().unwrap().remove("namespace");
        let d = decide(
            &request(Operation::Update, Some(obj)),
            &index,
            &Options::default(),
        );
        assert!(d.verdict.allowed, "{}", d.verdict.message);
    }

    /// The key a denial names for an object whose metadata is `meta`, in a request for `foo`.
    fn denied_key(meta: Option<Value>, valid: bool) -> String {
        let mut obj = object("x", "127.255.0.2", 15443);
        match meta {
            Some(meta) => obj["metadata"] = meta,
            None => {
                obj.as_object_mut().unwrap().remove("metadata");
            }
        }
        if !valid {
            // Fails decoding: the slow path names the key.
            obj["spec"]["hostz"] = json!(["y"]);
        }
        // The address is taken by default/y and by foo/y: the denial names the entry's key.
        let taken = [decode(object("y", "127.255.0.2", 15443)).unwrap(), {
            let mut other = object("y", "127.255.0.2", 15443);
            other["metadata"]["namespace"] = json!("default");
            decode(other).unwrap()
        }];
        let index = Cluster::build(&taken, &Options::default());
        let d = decide(
            &request(Operation::Create, Some(obj)),
            &index,
            &Options::default(),
        );
        assert!(!d.verdict.allowed);
        let message = &d.verdict.message;
        let key = message
            .strip_prefix("ServiceEntry ")
            .and_then(|m| m.split(' ').next())
            .unwrap_or_default();
        key.to_string()
    }

    #[test]
    fn both_decoding_paths_take_the_namespace_alike() {
        for valid in [true, false] {
            for (meta, expected) in [
                (Some(json!({"name": "x"})), "foo/x"),
                (Some(json!({"name": "x", "namespace": null})), "foo/x"),
                (Some(json!({"name": "x", "namespace": "bar"})), "bar/x"),
                (None, "foo/"),
            ] {
                assert_eq!(
                    denied_key(meta.clone(), valid),
                    expected,
                    "metadata {meta:?}, decodes: {valid}"
                );
            }
        }
    }

    #[test]
    fn an_object_too_deep_to_read_is_named_as_such() {
        let mut obj = object("x", "127.255.0.2", 15443).to_string();
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        obj.insert_str(1, &format!(r#""deep":{deep},"#));
        let mut req = request(Operation::Create, None);
        req.object = Some(RawValue::from_string(obj).unwrap());
        let d = decide(&req, &Cluster::new(), &Options::default());
        assert_eq!(d.verdict.code, 400);
        assert!(
            d.verdict.message.contains("not readable JSON"),
            "{}",
            d.verdict.message
        );
    }
}
