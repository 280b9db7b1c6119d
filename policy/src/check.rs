//! Whole checks: one ServiceEntry against a cluster's address index, and a set of entries
//! against each other and against the entries already in a cluster. Work per entry is
//! bounded: at most the CRD's 256 addresses are compared, each with one index lookup, and one
//! free address is looked up per VIP range.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::cluster::Cluster;
use crate::document::DecodeError;
use crate::finding::{Finding, Findings, Rule};
use crate::hosts::HostIndex;
use crate::index::AddressIndex;
use crate::model::{ObjectKey, ServiceEntry};
use crate::names::Plain;
use crate::options::Options;
use crate::rules;
use crate::rules::istio::parse_address;

/// At most this many owners are named for one conflicting address.
const MAX_OWNERS_NAMED: usize = 3;
/// Addresses of one entry that are compared: the CRD's limit, past which the API server
/// refuses the object anyway.
const MAX_ADDRESSES_CHECKED: usize = 256;
/// Hosts of one entry that are compared, likewise.
const MAX_HOSTS_CHECKED: usize = 256;

/// Address uniqueness of one entry: against itself, and against every other owner in `index`.
/// The entry's own `namespace/name` in the index never conflicts.
pub fn check_addresses(se: &ServiceEntry, index: &AddressIndex, options: &Options) -> Vec<Finding> {
    let mut out = Findings::new();
    check_addresses_into(se, index, options, &mut out);
    out.into_vec()
}

fn check_addresses_into(
    se: &ServiceEntry,
    index: &AddressIndex,
    options: &Options,
    out: &mut Findings,
) {
    let key = se.key();
    let parsed: Vec<(usize, &str, IpNet)> = se
        .spec
        .addresses
        .iter()
        .take(MAX_ADDRESSES_CHECKED)
        .enumerate()
        .filter_map(|(i, a)| parse_address(a).map(|net| (i, a.as_str(), net.trunc())))
        .collect();
    let own: Vec<IpNet> = parsed.iter().map(|(_, _, net)| *net).collect();
    let mut suggestions = Suggestions::default();
    for (pos, (i, written, net)) in parsed.iter().enumerate() {
        // Quadratic in at most MAX_ADDRESSES_CHECKED addresses.
        let earlier = parsed
            .get(..pos)
            .unwrap_or(&[])
            .iter()
            .find(|(_, _, other)| other.contains(net) || net.contains(other));
        if let Some((j, other_written, other)) = earlier {
            let message = if other == net {
                format!(
                    "address {} is listed twice in this ServiceEntry (also spec.addresses[{j}])",
                    Plain(written)
                )
            } else {
                format!(
                    "address {} overlaps {} at spec.addresses[{j}] of this ServiceEntry",
                    Plain(written),
                    Plain(other_written)
                )
            };
            out.error(
                Rule::DuplicateAddress,
                format_args!("spec.addresses[{i}]"),
                message,
            );
            continue;
        }
        let conflicts = index.conflicts(*net, Some(&key));
        if conflicts.is_empty() {
            continue;
        }
        let mut owners: Vec<String> = Vec::new();
        let mut more = 0usize;
        for conflict in &conflicts {
            let text = if conflict.held == *net {
                conflict.owner.to_string()
            } else {
                format!("{} ({})", conflict.owner, conflict.held)
            };
            if owners.contains(&text) {
                continue;
            }
            if owners.len() < MAX_OWNERS_NAMED {
                owners.push(text);
            } else {
                more += 1;
            }
        }
        let mut message = format!(
            "address {} is already used by ServiceEntry {}",
            Plain(written),
            owners.join(", ")
        );
        if more > 0 {
            message.push_str(&format!(" and {more} more"));
        }
        message.push_str("; VIPs must be unique within a cluster");
        let suggested = suggestions.get(net, index, &own, options);
        match suggested {
            Some((free, range)) => {
                message.push_str(&format!("; the next free address in {range} is {free}"))
            }
            None => message.push_str("; no free address is left in the VIP ranges"),
        }
        let mut finding = Finding::error(
            Rule::DuplicateAddress,
            format!("spec.addresses[{i}]"),
            message,
        );
        finding.suggested_address = suggested.map(|(free, _)| free);
        out.push(finding);
    }
}

/// The free address suggested for a conflict, looked up once per address family and range:
/// every conflict of one entry in the same range gets the same suggestion.
#[derive(Default)]
struct Suggestions {
    found: Vec<Suggestion>,
}

/// A free address and the range it was taken from.
type Free = Option<(IpAddr, IpNet)>;

struct Suggestion {
    /// The VIP range holding the conflicting address, if any.
    range: Option<IpNet>,
    v4: bool,
    free: Free,
}

impl Suggestions {
    fn get(&mut self, net: &IpNet, index: &AddressIndex, own: &[IpNet], options: &Options) -> Free {
        let v4 = net.addr().is_ipv4();
        let range = options.vip_ranges.iter().find(|r| r.contains(net)).copied();
        if let Some(known) = self.found.iter().find(|s| s.range == range && s.v4 == v4) {
            return known.free;
        }
        let free = suggest_free(net, index, own, options);
        self.found.push(Suggestion { range, v4, free });
        free
    }
}

/// A free address from the VIP range holding `net` (or else the first range with room).
fn suggest_free(
    net: &IpNet,
    index: &AddressIndex,
    own: &[IpNet],
    options: &Options,
) -> Option<(IpAddr, IpNet)> {
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

/// Host uniqueness of one entry: each of its `.global` hosts against the other entries that
/// declare it. The entry's own `namespace/name` never conflicts.
fn check_hosts_into(se: &ServiceEntry, hosts: &HostIndex, options: &Options, out: &mut Findings) {
    let key = se.key();
    for (i, host) in se.spec.hosts.iter().enumerate().take(MAX_HOSTS_CHECKED) {
        if !options.is_under_suffix(host) {
            continue;
        }
        let owners = hosts.conflicts(host, Some(&key));
        let Some(first) = owners.first() else {
            continue;
        };
        let more = match owners.len() - 1 {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        out.error(
            Rule::DuplicateHost,
            format_args!("spec.hosts[{i}]"),
            format_args!(
                "host {} is already declared by ServiceEntry {first}{more}; a .{} host belongs to one ServiceEntry (Istio would merge them, IST0177)",
                Plain(host),
                options.domain_suffix
            ),
        );
    }
}

/// Every rule for one entry checked against what a cluster holds: what the API server, Istio's
/// webhook and globalmesh's webhook would say, at most [`crate::finding::MAX_FINDINGS`] of it.
pub fn check_entry(se: &ServiceEntry, cluster: &Cluster, options: &Options) -> Vec<Finding> {
    let mut out = Findings::new();
    if rules::validate_into(se, options, &mut out) {
        check_hosts_into(se, &cluster.hosts, options, &mut out);
        check_addresses_into(se, &cluster.addresses, options, &mut out);
    }
    out.into_vec()
}

/// Checks `entries` in order against `existing` and against each other. An entry whose
/// `namespace/name` is also in `existing` replaces it (an update); when two entries claim one
/// address, the later one is reported. Returns one list of findings per entry, in order.
pub fn check_set(
    entries: &[&ServiceEntry],
    existing: &[&ServiceEntry],
    options: &Options,
) -> Vec<Vec<Finding>> {
    let mut cluster = Cluster::build(existing.iter().copied(), options);
    entries
        .iter()
        .map(|se| {
            let findings = check_entry(se, &cluster, options);
            cluster.insert_entry(se, options);
            findings
        })
        .collect()
}

/// The verdict on one object read from a text: its `namespace/name` and findings.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub key: ObjectKey,
    pub findings: Vec<Finding>,
}

/// The one pipeline of `admission-webhook check` and policy-js: every object read (decoded or
/// not), in order; an object that does not decode is one decode finding, the others are
/// checked as [`check_set`] checks them. Entries of `existing` that did not decode hold no
/// addresses.
pub fn check_objects<'a>(
    objects: impl IntoIterator<Item = &'a Result<ServiceEntry, DecodeError>>,
    existing: impl IntoIterator<Item = &'a Result<ServiceEntry, DecodeError>>,
    options: &Options,
) -> Vec<Checked> {
    let existing: Vec<&ServiceEntry> = existing
        .into_iter()
        .filter_map(|e| e.as_ref().ok())
        .collect();
    let mut cluster = Cluster::build(existing.iter().copied(), options);
    objects
        .into_iter()
        .map(|object| match object {
            Ok(se) => {
                let findings = check_entry(se, &cluster, options);
                cluster.insert_entry(se, options);
                Checked {
                    key: se.key(),
                    findings,
                }
            }
            Err(error) => Checked {
                key: error.key.clone(),
                findings: vec![error.to_finding()],
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;
    use crate::rules::seed_entry;

    fn entry(namespace: &str, name: &str, addresses: &[&str]) -> ServiceEntry {
        let mut se = seed_entry();
        se.metadata.namespace = Some(namespace.into());
        se.metadata.name = Some(name.into());
        se.spec.hosts = vec![format!("{name}.{namespace}.global")];
        se.spec.addresses = addresses.iter().map(|a| a.to_string()).collect();
        se
    }

    fn duplicates(found: &[Finding]) -> Vec<&Finding> {
        found
            .iter()
            .filter(|f| f.rule == Rule::DuplicateAddress)
            .collect()
    }

    #[test]
    fn denies_second_owner_of_an_address_and_suggests_a_free_one() {
        let first = entry("foo", "httpbin-bar", &["127.255.0.2"]);
        let second = entry("foo", "other", &["127.255.0.2/32"]);
        let index = AddressIndex::build([&first]);
        let found = check_addresses(&second, &index, &Options::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Error);
        assert_eq!(found[0].path, "spec.addresses[0]");
        assert!(
            found[0]
                .message
                .contains("127.255.0.2/32 is already used by ServiceEntry foo/httpbin-bar"),
            "{}",
            found[0].message
        );
        assert!(
            found[0]
                .message
                .contains("next free address in 127.255.0.0/16 is 127.255.0.1"),
            "{}",
            found[0].message
        );
        assert_eq!(
            found[0].suggested_address,
            Some("127.255.0.1".parse().unwrap())
        );
    }

    #[test]
    fn suggestion_skips_the_entrys_own_addresses() {
        let first = entry("foo", "a", &["127.255.0.1"]);
        let second = entry("foo", "b", &["127.255.0.2", "127.255.0.1"]);
        let index = AddressIndex::build([&first]);
        let found = check_addresses(&second, &index, &Options::default());
        assert!(
            found[0].message.ends_with("is 127.255.0.3"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn overlapping_cidr_names_the_held_block() {
        let wide = entry("ns1", "wide", &["240.0.0.0/24"]);
        let index = AddressIndex::build([&wide]);
        let found = check_addresses(
            &entry("foo", "b", &["240.0.0.7"]),
            &index,
            &Options::default(),
        );
        assert!(
            found[0].message.contains("ns1/wide (240.0.0.0/24)"),
            "{}",
            found[0].message
        );
        assert!(
            found[0].message.contains("is 240.0.1.0"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn update_never_conflicts_with_its_own_old_version() {
        let old = entry("foo", "httpbin-bar", &["127.255.0.2"]);
        let index = AddressIndex::build([&old]);
        let new = entry("foo", "httpbin-bar", &["127.255.0.2", "127.255.0.9"]);
        assert!(check_addresses(&new, &index, &Options::default()).is_empty());
    }

    #[test]
    fn same_name_in_another_namespace_is_another_owner() {
        let index = AddressIndex::build([&entry("foo", "a", &["127.255.0.2"])]);
        assert_eq!(
            duplicates(&check_addresses(
                &entry("bar", "a", &["127.255.0.2"]),
                &index,
                &Options::default()
            ))
            .len(),
            1
        );
    }

    #[test]
    fn same_address_twice_in_one_entry_is_an_error() {
        let se = entry("foo", "a", &["127.255.0.2", "127.255.0.2/32"]);
        let found = check_addresses(&se, &AddressIndex::new(), &Options::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.addresses[1]");
        assert!(found[0]
            .message
            .contains("listed twice in this ServiceEntry (also spec.addresses[0])"));
        let overlap = entry("foo", "a", &["10.0.0.0/8", "10.1.1.1"]);
        let found = check_addresses(&overlap, &AddressIndex::new(), &Options::default());
        assert!(
            found[0].message.contains("overlaps 10.0.0.0/8"),
            "{found:#?}"
        );
    }

    #[test]
    fn a_full_range_says_so() {
        let options = Options::new(None, &[], &["127.255.0.0/30".into()]).unwrap();
        let index = AddressIndex::build([&entry("foo", "a", &["127.255.0.1", "127.255.0.2"])]);
        let found = check_addresses(&entry("foo", "b", &["127.255.0.2"]), &index, &options);
        assert!(
            found[0].message.contains("no free address is left"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn check_set_reports_the_later_claimant_only() {
        let a = entry("foo", "a", &["127.255.0.2"]);
        let b = entry("foo", "b", &["127.255.0.2"]);
        let results = check_set(&[&a, &b], &[], &Options::default());
        assert!(duplicates(&results[0]).is_empty());
        assert_eq!(duplicates(&results[1]).len(), 1);
    }

    #[test]
    fn check_set_against_existing_treats_same_key_as_update() {
        let existing = entry("foo", "a", &["127.255.0.2"]);
        let updated = entry("foo", "a", &["127.255.0.3"]);
        let newcomer = entry("foo", "b", &["127.255.0.2"]);
        let results = check_set(&[&updated, &newcomer], &[&existing], &Options::default());
        assert!(results[0].is_empty(), "{:#?}", results[0]);
        // The update released 127.255.0.2, so the newcomer may take it.
        assert!(results[1].is_empty(), "{:#?}", results[1]);
    }

    #[test]
    fn a_global_host_declared_by_another_entry_is_denied_naming_it() {
        let first = entry("foo", "a", &["127.255.0.2"]);
        let mut second = entry("bar", "b", &["127.255.0.3"]);
        second.spec.hosts = vec!["A.foo.GLOBAL".into()];
        let options = Options::default();
        let results = check_set(&[&first, &second], &[], &options);
        let hosts: Vec<&Finding> = results[1]
            .iter()
            .filter(|f| f.rule == Rule::DuplicateHost)
            .collect();
        assert_eq!(hosts.len(), 1, "{:#?}", results[1]);
        assert_eq!(hosts[0].path, "spec.hosts[0]");
        assert!(
            hosts[0]
                .message
                .contains("A.foo.GLOBAL is already declared by ServiceEntry foo/a"),
            "{}",
            hosts[0].message
        );
        // The same entry again (an update) declares its own host.
        assert!(check_set(&[&first, &first], &[], &options)[1].is_empty());
    }

    #[test]
    fn audit_lists_every_owner_of_a_duplicate() {
        let a = entry("foo", "a", &["127.255.0.2"]);
        let b = entry("bar", "b", &["127.255.0.2/32"]);
        let c = entry("foo", "c", &["127.255.0.3"]);
        let found = find_duplicates([&a, &b, &c]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].owners,
            vec![ObjectKey::new("bar", "b"), ObjectKey::new("foo", "a")]
        );
    }
}
