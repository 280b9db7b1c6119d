//! `admission-webhook manifests`: the ValidatingWebhookConfiguration, Service and Deployment
//! that install the webhook, with the CA bundle filled in.

use serde_json::{json, Value};

/// Settings of the rendered manifests.
#[derive(Debug, Clone)]
pub struct ManifestConfig {
    pub namespace: String,
    pub service: String,
    pub image: String,
    /// PEM text of the CA that signed the serving certificate.
    pub ca_bundle_pem: String,
    pub port: u16,
    pub admin_port: u16,
}

/// Standard base64 of bytes (the `caBundle` field).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub const WEBHOOK_NAME: &str = "serviceentries.globalmesh.io";

pub fn webhook_configuration(config: &ManifestConfig) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "globalmesh-serviceentries", "labels": {"app.kubernetes.io/name": "globalmesh-webhook"}},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "admissionReviewVersions": ["v1", "v1beta1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "matchPolicy": "Equivalent",
            "clientConfig": {
                "service": {"name": config.service, "namespace": config.namespace, "path": "/validate", "port": config.port},
                "caBundle": base64(config.ca_bundle_pem.as_bytes())
            },
            "rules": [{
                "apiGroups": ["networking.istio.io"],
                "apiVersions": ["v1", "v1beta1", "v1alpha3"],
                "operations": ["CREATE", "UPDATE"],
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
        }]
    })
}

pub fn service(config: &ManifestConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": config.service, "namespace": config.namespace, "labels": {"app.kubernetes.io/name": "globalmesh-webhook"}},
        "spec": {
            "selector": {"app.kubernetes.io/name": "globalmesh-webhook"},
            "ports": [{"name": "https", "port": config.port, "targetPort": "https"}]
        }
    })
}

pub fn deployment(config: &ManifestConfig) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": config.service, "namespace": config.namespace, "labels": {"app.kubernetes.io/name": "globalmesh-webhook"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "globalmesh-webhook"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "globalmesh-webhook"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "webhook",
                        "image": config.image,
                        "args": [
                            "serve",
                            "--listen", format!("0.0.0.0:{}", 8443),
                            "--admin", format!("0.0.0.0:{}", config.admin_port),
                            "--tls-cert", "/etc/webhook/tls/tls.crt",
                            "--tls-key", "/etc/webhook/tls/tls.key",
                            "--service-entries", "/etc/webhook/serviceentries"
                        ],
                        "ports": [
                            {"name": "https", "containerPort": 8443},
                            {"name": "admin", "containerPort": config.admin_port}
                        ],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [
                            {"name": "tls", "mountPath": "/etc/webhook/tls", "readOnly": true},
                            {"name": "serviceentries", "mountPath": "/etc/webhook/serviceentries", "readOnly": true}
                        ]
                    }],
                    "volumes": [
                        {"name": "tls", "secret": {"secretName": format!("{}-tls", config.service)}},
                        {"name": "serviceentries", "configMap": {"name": "globalmesh-serviceentries", "optional": true}}
                    ]
                }
            }
        }
    })
}

/// All three documents as multi-document YAML.
pub fn render(config: &ManifestConfig) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for doc in [
        webhook_configuration(config),
        service(config),
        deployment(config),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&doc)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ManifestConfig {
        ManifestConfig {
            namespace: "globalmesh".into(),
            service: "globalmesh-webhook".into(),
            image: "globalmesh/admission-webhook:dev".into(),
            ca_bundle_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            port: 443,
            admin_port: 15080,
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
        assert_eq!(hook["sideEffects"], "None");
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
    fn renders_three_yaml_documents() {
        use serde::Deserialize;
        let text = render(&config()).unwrap();
        let kinds: Vec<String> = serde_norway::Deserializer::from_str(&text)
            .map(|doc| {
                Value::deserialize(doc).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            ["ValidatingWebhookConfiguration", "Service", "Deployment"]
        );
    }
}
