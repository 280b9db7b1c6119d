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
