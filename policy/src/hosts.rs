//! Which ServiceEntries declare each `.global` host: a host belongs to one ServiceEntry, where
//! Istio merges entries for one host and only warns (IST0177), and users meet the merge as
//! traffic sent to the wrong cluster. Hosts are compared as DNS names are: ASCII case ignored,
//! a trailing dot ignored.

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::model::{ObjectKey, ServiceEntry};
use crate::options::Options;

type Owners = SmallVec<[Arc<ObjectKey>; 1]>;
type Held = SmallVec<[Box<str>; 1]>;

/// `.global` host → the ServiceEntries that declare it, for one cluster.
#[derive(Debug, Clone, Default)]
pub struct HostIndex {
    by_host: HashMap<Box<str>, Owners, foldhash::fast::RandomState>,
    by_owner: HashMap<Arc<ObjectKey>, Held, foldhash::fast::RandomState>,
}

/// A host as it is compared: lowercase ASCII, no trailing dot.
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// The `.global` hosts of an entry, normalised, each once.
pub fn global_hosts(se: &ServiceEntry, options: &Options) -> Vec<String> {
    let mut hosts: Vec<String> = se
        .spec
        .hosts
        .iter()
        .filter(|h| options.is_under_suffix(h))
        .map(|h| normalize_host(h))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

impl HostIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes the `.global` hosts of every entry; a later entry with the same
    /// `namespace/name` replaces an earlier one.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = &'a ServiceEntry>,
        options: &Options,
    ) -> Self {
        let mut index = HostIndex::new();
        for se in entries {
            index.insert_entry(se, options);
        }
        index
    }

    /// Replaces whatever the entry's `namespace/name` declared with its current hosts.
    pub fn insert_entry(&mut self, se: &ServiceEntry, options: &Options) {
        let key = se.key();
        self.remove(&key);
        let hosts = global_hosts(se, options);
        if hosts.is_empty() {
            return;
        }
        let owner = Arc::new(key);
        let mut held = Held::with_capacity(hosts.len());
        for host in hosts {
            let host: Box<str> = host.into();
            self.by_host
                .entry(host.clone())
                .or_default()
                .push(Arc::clone(&owner));
            held.push(host);
        }
        self.by_owner.insert(owner, held);
    }

    /// Forgets the hosts of `owner`.
    pub fn remove(&mut self, owner: &ObjectKey) {
        let Some(held) = self.by_owner.remove(owner) else {
            return;
        };
        for host in held {
            if let Some(owners) = self.by_host.get_mut(&host) {
                owners.retain(|o| o.as_ref() != owner);
                if owners.is_empty() {
                    self.by_host.remove(&host);
                }
            }
        }
    }

    /// The entries other than `except` that declare `host` (any case, trailing dot or not).
    pub fn conflicts<'a>(&'a self, host: &str, except: Option<&ObjectKey>) -> Vec<&'a ObjectKey> {
        self.by_host
            .get(normalize_host(host).as_str())
            .map(|owners| {
                owners
                    .iter()
                    .map(|o| o.as_ref())
                    .filter(|o| Some(*o) != except)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The hosts `owner` declares.
    pub fn held_by(&self, owner: &ObjectKey) -> Vec<&str> {
        self.by_owner
            .get(owner)
            .map(|held| held.iter().map(|h| h.as_ref()).collect())
            .unwrap_or_default()
    }

    /// Number of distinct hosts.
    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::seed_entry;

    fn entry(namespace: &str, name: &str, hosts: &[&str]) -> ServiceEntry {
        let mut se = seed_entry();
        se.metadata.namespace = Some(namespace.into());
        se.metadata.name = Some(name.into());
        se.spec.hosts = hosts.iter().map(|h| h.to_string()).collect();
        se
    }

    #[test]
    fn a_host_in_any_case_belongs_to_its_first_declarer() {
        let options = Options::default();
        let index = HostIndex::build([&entry("foo", "a", &["httpbin.bar.global"])], &options);
        let conflicts = index.conflicts("HTTPBIN.bar.global.", None);
        assert_eq!(conflicts, vec![&ObjectKey::new("foo", "a")]);
        assert!(index
            .conflicts("httpbin.bar.global", Some(&ObjectKey::new("foo", "a")))
            .is_empty());
    }

    #[test]
    fn only_hosts_under_the_suffix_are_indexed() {
        let options = Options::default();
        let index = HostIndex::build(
            [&entry("foo", "a", &["api.example.com", "a.foo.global"])],
            &options,
        );
        assert_eq!(index.len(), 1);
        assert!(index.conflicts("api.example.com", None).is_empty());
    }

    #[test]
    fn replacing_and_removing_release_hosts() {
        let options = Options::default();
        let mut index = HostIndex::new();
        index.insert_entry(&entry("foo", "a", &["a.foo.global"]), &options);
        index.insert_entry(&entry("foo", "a", &["b.foo.global"]), &options);
        assert!(index.conflicts("a.foo.global", None).is_empty());
        assert_eq!(
            index.held_by(&ObjectKey::new("foo", "a")),
            vec!["b.foo.global"]
        );
        index.remove(&ObjectKey::new("foo", "a"));
        assert!(index.is_empty());
    }
}
