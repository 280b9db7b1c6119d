//! `admission-webhook manifests`: the Validating- and MutatingWebhookConfiguration with the CA
//! bundle filled in. `deploy/webhook/webhookconfigurations.yaml` is these documents with an
//! empty `caBundle`; the rest of the install (CRDs, Deployment, Service, RBAC) is in
//! `deploy/`.

use serde_json::{json, Value};

/// Settings of the rendered manifests.
#[derive(Debug, Clone)]
pub struct ManifestConfig {
    pub namespace: String,
    pub service: String,
    /// PEM text of the CA that signed the serving certificate.
    pub ca_bundle_pem: String,
    pub port: u16,
}

/// Standard base64 of bytes (the `caBundle` field).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub const WEBHOOK_NAME: &str = "serviceentries.globalmesh.io";
/// The mutating webhook that gives VIPs to entries created without addresses.
pub const ALLOCATOR_NAME: &str = "allocate.serviceentries.globalmesh.io";

fn labels() -> Value {
    json!({"app.kubernetes.io/name": "globalmesh-webhook", "app.kubernetes.io/part-of": "globalmesh"})
}

/// One webhook of either configuration: what both share (the Service, the rules' resource,
/// the namespaces left out) with its own path and operations.
fn webhook(config: &ManifestConfig, name: &str, path: &str, operations: &[&str]) -> Value {
    json!({
        "name": name,
        "admissionReviewVersions": ["v1", "v1beta1"],
        // Claims are written, except for dry runs.
        "sideEffects": "NoneOnDryRun",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "matchPolicy": "Equivalent",
        "clientConfig": {
            "service": {"name": config.service, "namespace": config.namespace, "path": path, "port": config.port},
            "caBundle": base64(config.ca_bundle_pem.as_bytes())
        },
        "rules": [{
            "apiGroups": ["networking.istio.io"],
            "apiVersions": ["v1", "v1beta1", "v1alpha3"],
            "operations": operations,
            "resources": ["serviceentries"],
            "scope": "Namespaced"
        }],
        // The webhook's own namespace and kube-system stay out, or the webhook could block
        // its own restart.
        "namespaceSelector": {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": [config.namespace, "kube-system"]
        }]}
    })
}

pub fn webhook_configuration(config: &ManifestConfig) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "globalmesh-serviceentries", "labels": labels()},
        "webhooks": [webhook(config, WEBHOOK_NAME, "/validate", &["CREATE", "UPDATE"])]
    })
}

/// The MutatingWebhookConfiguration of VIP allocation: CREATEs only; it runs before the
/// validating webhook, which then sees the address it added.
pub fn mutating_configuration(config: &ManifestConfig) -> Value {
    let mut hook = webhook(config, ALLOCATOR_NAME, "/mutate", &["CREATE"]);
    if let Some(fields) = hook.as_object_mut() {
        fields.insert("reinvocationPolicy".into(), json!("Never"));
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "globalmesh-serviceentries", "labels": labels()},
        "webhooks": [hook]
    })
}

/// Both configurations as YAML documents, ready for `kubectl apply -f -` or to replace
/// `deploy/webhook/webhookconfigurations.yaml`.
pub fn render(config: &ManifestConfig) -> Result<String, serde_norway::Error> {
    let mut out = String::from(
        "# Written by `admission-webhook manifests`; caBundle is the CA that signed the webhook's\n# serving certificate.\n",
    );
    out.push_str(&serde_norway::to_string(&webhook_configuration(config))?);
    out.push_str("---\n");
    out.push_str(&serde_norway::to_string(&mutating_configuration(config))?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ManifestConfig {
        ManifestConfig {
            namespace: "globalmesh".into(),
            service: "globalmesh-webhook".into(),
            ca_bundle_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            port: 443,
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn webhook_configuration_has_the_required_settings() {
        let hook = &webhook_configuration(&config())["webhooks"][0];
        assert_eq!(hook["sideEffects"], "NoneOnDryRun");
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["admissionReviewVersions"], json!(["v1", "v1beta1"]));
        assert_eq!(
            hook["rules"][0]["apiVersions"],
            json!(["v1", "v1beta1", "v1alpha3"])
        );
        assert_eq!(hook["rules"][0]["operations"], json!(["CREATE", "UPDATE"]));
        assert_eq!(
            hook["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["globalmesh", "kube-system"])
        );
        assert_eq!(
            hook["clientConfig"]["caBundle"],
            base64(config().ca_bundle_pem.as_bytes())
        );
    }

    #[test]
    fn the_allocator_mutates_creates_only() {
        let hook = &mutating_configuration(&config())["webhooks"][0];
        assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
        assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
        assert_eq!(hook["sideEffects"], "NoneOnDryRun");
        assert_eq!(hook["reinvocationPolicy"], "Never");
    }

    #[test]
    fn renders_both_configurations() {
        use serde::Deserialize;
        let text = render(&config()).unwrap();
        let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(
            docs,
            vec![
                webhook_configuration(&config()),
                mutating_configuration(&config())
            ]
        );
    }
}
