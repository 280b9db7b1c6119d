//! AdmissionReviews as kube-apiserver builds them for a validating or mutating webhook, for
//! the tests, the demo and the load tests that stand in for the API server
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request>).

use serde_json::{json, Value};

/// The operation a review is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    /// The options object the API server sends with the operation.
    fn options(self) -> Value {
        match self {
            Operation::Create => {
                json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"})
            }
            Operation::Update => {
                json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"})
            }
            Operation::Delete => {
                json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"})
            }
            Operation::Connect => Value::Null,
        }
    }
}

/// An AdmissionReview for a namespaced ServiceEntry, built field by field as kube-apiserver
/// builds it: `object` null on DELETE, `oldObject` null on CREATE, the operation's options,
/// the resource and kind in the object's own version.
pub fn review(
    api_version: &str,
    uid: &str,
    operation: Operation,
    object: Option<&Value>,
    old_object: Option<&Value>,
    dry_run: bool,
) -> Value {
    let subject = object.or(old_object);
    let field = |pointer: &str| {
        subject
            .and_then(|o| o.pointer(pointer))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let version = field("/apiVersion")
        .split_once('/')
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| "v1".to_string());
    let gvk = json!({"group": "networking.istio.io", "version": version, "kind": "ServiceEntry"});
    let gvr =
        json!({"group": "networking.istio.io", "version": version, "resource": "serviceentries"});
    json!({
        "kind": "AdmissionReview",
        "apiVersion": api_version,
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": field("/metadata/name"),
            "namespace": field("/metadata/namespace"),
            "operation": operation.as_str(),
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": dry_run,
            "options": operation.options()
        }
    })
}
