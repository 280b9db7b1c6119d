//! Rules over one ServiceEntry: Istio's own validation and the `.global` rules.
//! Rules over several entries (address uniqueness) live in [`crate::index`] and [`crate::check`].

pub mod global;
pub mod istio;

use crate::finding::Finding;
use crate::model::ServiceEntry;
use crate::options::Options;

/// Every single-object rule, in field order within each family: Istio's first, then `.global`.
pub fn validate(se: &ServiceEntry, options: &Options) -> Vec<Finding> {
    let mut findings = Vec::new();
    istio::validate(se, &mut findings);
    global::validate(se, options, &mut findings);
    findings
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
