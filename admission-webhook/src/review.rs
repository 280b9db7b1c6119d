//! The AdmissionReview wire format of `admission.k8s.io/v1` and `v1beta1` (the same shape), and
//! the response built from a request so that its uid and version always match.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

pub const GROUP: &str = "admission.k8s.io";
pub const KIND: &str = "AdmissionReview";

/// The review as received. Only `request` matters; anything else is kept out.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    pub api_version: String,
    pub kind: String,
    pub request: Option<AdmissionRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    /// The object as sent, decoded only by the rule that reads it.
    #[serde(default)]
    pub object: Option<Box<RawValue>>,
    #[serde(default)]
    pub old_object: Option<Box<RawValue>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
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
}

/// Why a body is not a review this webhook can answer: HTTP 400 with this one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("request body is empty; expected an AdmissionReview")]
    Empty,
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("not an AdmissionReview: {0}")]
    Shape(String),
    #[error(
        "unsupported apiVersion {0:?}; expected admission.k8s.io/v1 or admission.k8s.io/v1beta1"
    )]
    Version(String),
    #[error("kind is {0:?}, not AdmissionReview")]
    Kind(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("request.uid is empty")]
    NoUid,
}

/// Parses a body into a review with a request, or says in one line why it is not one.
pub fn parse(body: &[u8]) -> Result<(String, AdmissionRequest), ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    // Typed in one pass; a review with a field given twice is refused here as a wrong shape
    // (kube-apiserver never sends one).
    let typed = serde_json::from_slice::<AdmissionReview>(body);
    let review = match typed {
        Ok(review) if is_review_version(&review.api_version) && review.kind == KIND => review,
        // Something is wrong: name the first of syntax, version, kind and shape, in that order.
        typed => {
            let value: Value =
                serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
            let field = |name| value.get(name).and_then(Value::as_str).unwrap_or("");
            let (api_version, kind) = (field("apiVersion"), field("kind"));
            if !is_review_version(api_version) {
                return Err(ReviewError::Version(api_version.to_string()));
            }
            if kind != KIND {
                return Err(ReviewError::Kind(kind.to_string()));
            }
            typed.map_err(|e| ReviewError::Shape(e.to_string()))?
        }
    };
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    Ok((review.api_version, request))
}

/// `admission.k8s.io/v1` or `/v1beta1`, the two versions with this shape.
fn is_review_version(api_version: &str) -> bool {
    let version = api_version
        .strip_prefix(GROUP)
        .and_then(|v| v.strip_prefix('/'));
    matches!(version, Some("v1" | "v1beta1"))
}

/// What the webhook decided about one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    pub allowed: bool,
    /// HTTP-style code for denials (422 for invalid objects, 400 for undecodable ones).
    pub code: u16,
    pub message: String,
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn allow() -> Self {
        Verdict {
            allowed: true,
            ..Default::default()
        }
    }

    pub fn deny(code: u16, message: impl Into<String>) -> Self {
        Verdict {
            allowed: false,
            code,
            message: message.into(),
            warnings: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// base64 of a JSON patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

#[derive(Debug, Serialize)]
struct Status<'a> {
    code: u16,
    message: &'a str,
    reason: &'static str,
    status: &'static str,
}

/// The response review: same apiVersion and kind as the request, the request's uid.
pub fn respond(api_version: &str, uid: &str, verdict: &Verdict) -> Vec<u8> {
    respond_with_patch(api_version, uid, verdict, None)
}

/// [`respond`] for the mutating webhook: with a JSON patch when it changes the object.
pub fn respond_with_patch(
    api_version: &str,
    uid: &str,
    verdict: &Verdict,
    patch: Option<&[u8]>,
) -> Vec<u8> {
    let status = (!verdict.allowed).then(|| Status {
        code: verdict.code.max(400),
        message: &verdict.message,
        reason: match verdict.code {
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "BadRequest",
        },
        status: "Failure",
    });
    let review = ResponseReview {
        api_version,
        kind: KIND,
        response: Response {
            uid,
            allowed: verdict.allowed,
            status,
            warnings: &verdict.warnings,
            patch_type: patch.map(|_| "JSONPatch"),
            patch: patch.map(crate::admit::encode_patch),
        },
    };
    serde_json::to_vec(&review).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_server_review_round_trips_through_the_parser() {
        let object = serde_json::json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "ServiceEntry", "metadata": {"name": "a", "namespace": "foo"}});
        let review = fake_apiserver::admission::review(
            "admission.k8s.io/v1",
            "u1",
            fake_apiserver::admission::Operation::Delete,
            None,
            Some(&object),
            false,
        );
        let (_, request) = parse(review.to_string().as_bytes()).unwrap();
        assert_eq!(request.operation, Operation::Delete);
        assert!(request.object.is_none());
        assert_eq!(request.name.as_deref(), Some("a"));
        assert_eq!(request.kind.version, "v1alpha3");
    }

    fn review(api_version: &str) -> String {
        format!(
            r#"{{"apiVersion":"{api_version}","kind":"AdmissionReview","request":{{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{{"group":"networking.istio.io","version":"v1","kind":"ServiceEntry"}},"resource":{{"group":"networking.istio.io","version":"v1","resource":"serviceentries"}},"operation":"DELETE","object":null,"oldObject":{{}}}}}}"#
        )
    }

    #[test]
    fn parses_both_versions() {
        for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
            let (api, request) = parse(review(version).as_bytes()).unwrap();
            assert_eq!(api, version);
            assert_eq!(request.operation, Operation::Delete);
            assert!(request.object.is_none());
        }
    }

    #[test]
    fn rejects_what_is_not_a_review_in_one_line() {
        assert_eq!(parse(b"").err(), Some(ReviewError::Empty));
        assert!(matches!(
            parse(b"{\"apiVersion\":"),
            Err(ReviewError::Json(_))
        ));
        assert_eq!(
            parse(br#"{"apiVersion":"v1","kind":"Pod"}"#).err(),
            Some(ReviewError::Version("v1".into()))
        );
        assert_eq!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"Review"}"#).err(),
            Some(ReviewError::Kind("Review".into()))
        );
        assert_eq!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).err(),
            Some(ReviewError::NoRequest)
        );
        let no_uid =
            review("admission.k8s.io/v1").replace("705ab4f5-6393-11e8-b7cc-42010a800002", "");
        assert_eq!(parse(no_uid.as_bytes()).err(), Some(ReviewError::NoUid));
        // A request of the wrong shape is named as such, unless the version or kind is wrong.
        let bad_uid = review("admission.k8s.io/v1")
            .replace(r#""705ab4f5-6393-11e8-b7cc-42010a800002""#, "42");
        let Some(ReviewError::Shape(message)) = parse(bad_uid.as_bytes()).err() else {
            panic!("a number as uid is a shape error");
        };
        assert!(message.contains("invalid type: integer `42`"), "{message}");
        let bad_both = bad_uid.replace("admission.k8s.io/v1", "admission.k8s.io/v2");
        assert_eq!(
            parse(bad_both.as_bytes()).err(),
            Some(ReviewError::Version("admission.k8s.io/v2".into()))
        );
        for err in [ReviewError::Empty, ReviewError::NoUid] {
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn response_echoes_uid_and_version() {
        let body = respond("admission.k8s.io/v1beta1", "abc", &Verdict::allow());
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(value["kind"], "AdmissionReview");
        assert_eq!(value["response"]["uid"], "abc");
        assert_eq!(value["response"]["allowed"], true);
        assert!(value["response"].get("status").is_none());
    }

    #[test]
    fn denial_carries_code_and_message_and_never_a_code_below_400() {
        let body = respond("admission.k8s.io/v1", "u", &Verdict::deny(422, "bad port"));
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["response"]["allowed"], false);
        assert_eq!(value["response"]["status"]["code"], 422);
        assert_eq!(value["response"]["status"]["message"], "bad port");
        assert_eq!(value["response"]["status"]["reason"], "Invalid");
        let body = respond("admission.k8s.io/v1", "u", &Verdict::deny(200, "x"));
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["response"]["status"]["code"], 400);
    }

    #[test]
    fn warnings_are_sent_when_allowed() {
        let verdict = Verdict {
            warnings: vec!["w".into()],
            ..Verdict::allow()
        };
        let value: Value =
            serde_json::from_slice(&respond("admission.k8s.io/v1", "u", &verdict)).unwrap();
        assert_eq!(value["response"]["warnings"][0], "w");
    }
}
