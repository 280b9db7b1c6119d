//! Whole checks: one ServiceEntry against a cluster's address index, and a set of entries
//! against each other and against the entries already in a cluster.

use ipnet::IpNet;

use crate::finding::{Finding, Rule};
use crate::index::AddressIndex;
use crate::model::{ObjectKey, ServiceEntry};
use crate::options::Options;
use crate::rules;
use crate::rules::istio::parse_address;

/// At most this many owners are named for one conflicting address.
const MAX_OWNERS_NAMED: usize = 3;

/// Address uniqueness of one entry: against itself, and against every other owner in `index`.
/// The entry's own `namespace/name` in the index never conflicts.
pub fn check_addresses(se: &ServiceEntry, index: &AddressIndex, options: &Options) -> Vec<Finding> {
    let key = se.key();
    let parsed: Vec<(usize, &str, IpNet)> = se
        .spec
        .addresses
        .iter()
        .enumerate()
        .filter_map(|(i, a)| parse_address(a).map(|net| (i, a.as_str(), net.trunc())))
        .collect();
    let own: Vec<IpNet> = parsed.iter().map(|(_, _, net)| *net).collect();
    let mut findings = Vec::new();
    for (pos, (i, written, net)) in parsed.iter().enumerate() {
        let path = format!("spec.addresses[{i}]");
        let earlier = parsed[..pos]
            .iter()
            .find(|(_, _, other)| other.contains(net) || net.contains(other));
        if let Some((j, other_written, _)) = earlier {
            let message = if parse_address(other_written).map(|n| n.trunc()) == Some(*net) {
                format!("address {written} is listed twice in this ServiceEntry (also spec.addresses[{j}])")
            } else {
                format!("address {written} overlaps {other_written} at spec.addresses[{j}] of this ServiceEntry")
            };
            findings.push(Finding::error(Rule::DuplicateAddress, path, message));
            continue;
        }
        let conflicts = index.conflicts(*net, Some(&key));
        if conflicts.is_empty() {
            continue;
        }
        let mut owners: Vec<String> = Vec::new();
        for conflict in &conflicts {
            let text = if conflict.held == *net {
                conflict.owner.to_string()
            } else {
                format!("{} ({})", conflict.owner, conflict.held)
            };
            if !owners.contains(&text) {
                owners.push(text);
            }
        }
        let more = owners.len().saturating_sub(MAX_OWNERS_NAMED);
        owners.truncate(MAX_OWNERS_NAMED);
        let mut message = format!(
            "address {written} is already used by ServiceEntry {}",
            owners.join(", ")
        );
        if more > 0 {
            message.push_str(&format!(" and {more} more"));
        }
        message.push_str("; VIPs must be unique within a cluster");
        match suggest_free(net, index, &own, options) {
            Some((free, range)) => {
                message.push_str(&format!("; the next free address in {range} is {free}"))
            }
            None => message.push_str("; no free address is left in the VIP ranges"),
        }
        findings.push(Finding::error(Rule::DuplicateAddress, path, message));
    }
    findings
}

/// A free address from the VIP range holding `net` (or else the first range with room).
fn suggest_free(
    net: &IpNet,
    index: &AddressIndex,
    own: &[IpNet],
    options: &Options,
) -> Option<(std::net::IpAddr, IpNet)> {
    let same_family = |r: &&IpNet| r.addr().is_ipv4() == net.addr().is_ipv4();
    let containing = options
        .vip_ranges
        .iter()
        .filter(same_family)
        .filter(|r| r.contains(net));
    let others = options
        .vip_ranges
        .iter()
        .filter(same_family)
        .filter(|r| !r.contains(net));
    containing
        .chain(others)
        .find_map(|range| index.next_free(*range, own).map(|free| (free, *range)))
}

/// Every rule for one entry checked against a cluster's index.
pub fn check_entry(se: &ServiceEntry, index: &AddressIndex, options: &Options) -> Vec<Finding> {
    let mut findings = rules::validate(se, options);
    findings.extend(check_addresses(se, index, options));
    findings
}

/// Checks `entries` in order against `existing` and against each other. An entry whose
/// `namespace/name` is also in `existing` replaces it (an update); when two entries claim one
/// address, the later one is reported. Returns one list of findings per entry, in order.
pub fn check_set(
    entries: &[&ServiceEntry],
    existing: &[&ServiceEntry],
    options: &Options,
) -> Vec<Vec<Finding>> {
    let mut index = AddressIndex::build(existing.iter().copied());
    entries
        .iter()
        .map(|se| {
            let findings = check_entry(se, &index, options);
            index.insert_entry(se);
            findings
        })
        .collect()
}

/// Addresses held by more than one ServiceEntry among `entries`: for an audit of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateAddress {
    pub address: IpNet,
    pub owners: Vec<ObjectKey>,
}

pub fn find_duplicates<'a>(
    entries: impl IntoIterator<Item = &'a ServiceEntry>,
) -> Vec<DuplicateAddress> {
    let entries: Vec<&ServiceEntry> = entries.into_iter().collect();
    let index = AddressIndex::build(entries.iter().copied());
    let mut found: std::collections::BTreeMap<IpNet, std::collections::BTreeSet<ObjectKey>> =
        Default::default();
    for se in &entries {
        let key = se.key();
        for net in index.held_by(&key) {
            let conflicts = index.conflicts(net, Some(&key));
            if conflicts.is_empty() {
                continue;
            }
            let owners = found.entry(net).or_default();
            owners.insert(key.clone());
            owners.extend(conflicts.iter().map(|c| c.owner.clone()));
        }
    }
    found
        .into_iter()
        .map(|(address, owners)| DuplicateAddress {
            address,
            owners: owners.into_iter().collect(),
        })
        .collect()
}
