//! Rules over one ServiceEntry, by who enforces them in a cluster: the API server's (the CRD
//! and object metadata), Istio's webhook, and the `.global` rules of globalmesh's webhook.
//! Rules over several entries (address uniqueness) live in [`crate::index`] and
//! [`crate::check`].

pub mod api_server;
pub mod global;
pub mod istio;
#[cfg(test)]
mod ported;

use crate::finding::{Finding, Findings};
use crate::model::ServiceEntry;
use crate::options::Options;

/// Every single-object rule, in the order a cluster applies them: the API server's first, and
/// only when it would store the object, the webhooks' (Istio's, then `.global`): a webhook
/// never sees an object the API server refused.
pub fn validate(se: &ServiceEntry, options: &Options) -> Vec<Finding> {
    let mut findings = Findings::new();
    validate_into(se, options, &mut findings);
    findings.into_vec()
}

/// [`validate`] into a list that further checks add to; returns whether the webhooks' rules
/// ran (the API server would store the object).
pub fn validate_into(se: &ServiceEntry, options: &Options, out: &mut Findings) -> bool {
    api_server::validate(se, out);
    if out.has_errors() {
        return false;
    }
    istio::validate(se, out);
    global::validate(se, options, out);
    true
}

/// A valid `.global` ServiceEntry (the seed's), for tests of every rule to start from.
#[cfg(test)]
pub(crate) fn seed_entry() -> ServiceEntry {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "ServiceEntry",
        "metadata": {"name": "httpbin-bar", "namespace": "foo"},
        "spec": {
            "hosts": ["httpbin.bar.global"],
            "location": "MESH_INTERNAL",
            "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
            "resolution": "DNS",
            "addresses": ["127.255.0.2"],
            "endpoints": [{"address": "198.18.2.1", "ports": {"http1": 15443}}]
        }
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_entry_has_no_findings() {
        assert_eq!(validate(&seed_entry(), &Options::default()), vec![]);
    }
}
