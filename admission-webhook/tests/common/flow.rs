//! What kube-apiserver does with a ServiceEntry CREATE, for tests of several webhook
//! replicas: the mutating review (no uid yet) and its JSON patch applied, the uid set, the
//! validating review, and only if both admit, the object stored.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use fake_apiserver::admission::{review, Operation};
use fake_apiserver::FakeApiServer;
use serde_json::Value;

use super::h2::H2;

static UIDS: AtomicU64 = AtomicU64::new(1);

/// A fresh uid, as the API server gives a new object.
pub fn new_uid() -> String {
    format!(
        "0a0b0c0d-0000-4000-8000-{:012}",
        UIDS.fetch_add(1, Ordering::Relaxed)
    )
}

/// The outcome of one CREATE: the stored object, or the denial message.
pub type Created = Result<Value, String>;

/// Runs `object` through the mutating webhook `mutate` and the validating webhook
/// `validate`, and stores it in `api` when both admit.
pub async fn create(api: &FakeApiServer, mutate: &H2, validate: &H2, mut object: Value) -> Created {
    let uid = new_uid();
    let response = admit(mutate, "/mutate", &uid, &object).await?;
    if let Some(patch) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    // The API server sets the uid before validating admission.
    object["metadata"]["uid"] = Value::from(uid.clone());
    admit(validate, "/validate", &uid, &object).await?;
    api.create(object.clone());
    Ok(object)
}

/// One CREATE review of `object` at `path`: the response when allowed, its message when not.
async fn admit(webhook: &H2, path: &str, uid: &str, object: &Value) -> Result<Value, String> {
    let answer = webhook
        .review(
            path,
            &review(
                "admission.k8s.io/v1",
                uid,
                Operation::Create,
                Some(object),
                None,
                false,
            ),
        )
        .await;
    let response = answer["response"].clone();
    if response["allowed"] != true {
        return Err(response["status"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string());
    }
    Ok(response)
}
