//! What a cluster already holds, for the checks of one more entry: the addresses and the
//! `.global` hosts of its ServiceEntries.

use crate::hosts::HostIndex;
use crate::index::AddressIndex;
use crate::model::{ObjectKey, ServiceEntry};
use crate::options::Options;

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub addresses: AddressIndex,
    pub hosts: HostIndex,
}

impl Cluster {
    pub fn new() -> Self {
        Self::default()
    }

    /// The addresses and hosts of `entries`; a later entry with the same `namespace/name`
    /// replaces an earlier one.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = &'a ServiceEntry> + Clone,
        options: &Options,
    ) -> Self {
        Cluster {
            addresses: AddressIndex::build(entries.clone()),
            hosts: HostIndex::build(entries, options),
        }
    }

    /// Replaces what the entry's `namespace/name` held with what it holds now.
    pub fn insert_entry(&mut self, se: &ServiceEntry, options: &Options) {
        self.addresses.insert_entry(se);
        self.hosts.insert_entry(se, options);
    }

    /// Forgets what `owner` held.
    pub fn remove(&mut self, owner: &ObjectKey) {
        self.addresses.remove(owner);
        self.hosts.remove(owner);
    }
}
