//! Address ownership within one cluster: which ServiceEntry holds which address, overlap
//! queries in O(log n), and suggestions of free addresses.
//!
//! CIDR blocks are either nested or disjoint, so a block conflicts with another exactly when
//! one contains the other. Blocks that contain a query are found by looking up the query's
//! supernets at the prefix lengths present in the index (one lookup when all entries are single
//! IPs); blocks inside the query are a range scan of the ordered map.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Bound;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::{ObjectKey, ServiceEntry};
use crate::rules::istio::parse_address;

/// An address family and a block, ordered by family, then start, then prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Block {
    v6: bool,
    start: u128,
    prefix: u8,
}

impl Block {
    fn from_net(net: IpNet) -> Self {
        match net.trunc() {
            IpNet::V4(n) => Block {
                v6: false,
                start: u128::from(u32::from(n.network())),
                prefix: n.prefix_len(),
            },
            IpNet::V6(n) => Block {
                v6: true,
                start: u128::from(n.network()),
                prefix: n.prefix_len(),
            },
        }
    }

    fn bits(self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    /// The last address of the block.
    fn end(self) -> u128 {
        let host_bits = u32::from(self.bits() - self.prefix);
        let span = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        self.start | span
    }

    /// The block of length `prefix` that contains this block's start.
    fn truncated(self, prefix: u8) -> Self {
        let host_bits = u32::from(self.bits() - prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            !((1u128 << host_bits) - 1)
        };
        let width_mask = if self.v6 {
            u128::MAX
        } else {
            u128::from(u32::MAX)
        };
        Block {
            v6: self.v6,
            start: self.start & mask & width_mask,
            prefix,
        }
    }

    fn to_net(self) -> IpNet {
        if self.v6 {
            let addr = Ipv6Addr::from(self.start);
            Ipv6Net::new(addr, self.prefix)
                .map(IpNet::V6)
                .unwrap_or(IpNet::V6(Ipv6Net::from(addr)))
        } else {
            let addr = Ipv4Addr::from(u32::try_from(self.start).unwrap_or(u32::MAX));
            Ipv4Net::new(addr, self.prefix)
                .map(IpNet::V4)
                .unwrap_or(IpNet::V4(Ipv4Net::from(addr)))
        }
    }
}

fn addr_of(v6: bool, value: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX)))
    }
}

/// One conflict: a block already held by another ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict<'a> {
    pub held: IpNet,
    pub owner: &'a ObjectKey,
}

/// Address → owning ServiceEntry, for one cluster.
#[derive(Debug, Clone)]
pub struct AddressIndex {
    blocks: BTreeMap<Block, Vec<ObjectKey>>,
    by_owner: HashMap<ObjectKey, Vec<Block>>,
    /// How many blocks of each prefix length are present, per family (v4, v6).
    prefix_counts: [[u32; 129]; 2],
}

impl Default for AddressIndex {
    fn default() -> Self {
        Self {
            blocks: BTreeMap::new(),
            by_owner: HashMap::new(),
            prefix_counts: [[0; 129]; 2],
        }
    }
}

impl AddressIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes the addresses of every entry; unparseable addresses are left out (the rules
    /// report them).
    pub fn build<'a>(entries: impl IntoIterator<Item = &'a ServiceEntry>) -> Self {
        let mut index = Self::new();
        for se in entries {
            index.insert_entry(se);
        }
        index
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Number of distinct owners.
    pub fn owners(&self) -> usize {
        self.by_owner.len()
    }

    /// Replaces whatever the entry's `namespace/name` held with its current addresses.
    pub fn insert_entry(&mut self, se: &ServiceEntry) {
        let key = se.key();
        let nets: Vec<IpNet> = se
            .spec
            .addresses
            .iter()
            .filter_map(|a| parse_address(a))
            .collect();
        self.replace(&key, &nets);
    }

    /// Sets the blocks held by `owner` to `nets`.
    pub fn replace(&mut self, owner: &ObjectKey, nets: &[IpNet]) {
        self.remove(owner);
        if nets.is_empty() {
            return;
        }
        let mut held = Vec::with_capacity(nets.len());
        for net in nets {
            let block = Block::from_net(*net);
            let owners = self.blocks.entry(block).or_default();
            if !owners.contains(owner) {
                owners.push(owner.clone());
                self.prefix_counts[usize::from(block.v6)][usize::from(block.prefix)] += 1;
                held.push(block);
            }
        }
        self.by_owner.insert(owner.clone(), held);
    }

    /// Forgets every block held by `owner`.
    pub fn remove(&mut self, owner: &ObjectKey) {
        let Some(held) = self.by_owner.remove(owner) else {
            return;
        };
        for block in held {
            if let Some(owners) = self.blocks.get_mut(&block) {
                owners.retain(|o| o != owner);
                let count =
                    &mut self.prefix_counts[usize::from(block.v6)][usize::from(block.prefix)];
                *count = count.saturating_sub(1);
                if owners.is_empty() {
                    self.blocks.remove(&block);
                }
            }
        }
    }

    /// The blocks held by `owner`.
    pub fn held_by(&self, owner: &ObjectKey) -> Vec<IpNet> {
        self.by_owner
            .get(owner)
            .map(|blocks| blocks.iter().map(|b| b.to_net()).collect())
            .unwrap_or_default()
    }

    /// Blocks that overlap `net` and are held by someone other than `except`.
    pub fn conflicts<'a>(&'a self, net: IpNet, except: Option<&'a ObjectKey>) -> Vec<Conflict<'a>> {
        let query = Block::from_net(net);
        let mut found = Vec::new();
        let mut push = |block: Block, owners: &'a [ObjectKey]| {
            for owner in owners {
                if Some(owner) != except {
                    found.push(Conflict {
                        held: block.to_net(),
                        owner,
                    });
                }
            }
        };
        // Blocks that contain the query (shorter or equal prefix).
        let counts = &self.prefix_counts[usize::from(query.v6)];
        for prefix in 0..query.prefix {
            if counts[usize::from(prefix)] > 0 {
                let candidate = query.truncated(prefix);
                if let Some(owners) = self.blocks.get(&candidate) {
                    push(candidate, owners);
                }
            }
        }
        // Blocks inside the query (equal or longer prefix), which start within it.
        let low = Block {
            prefix: query.prefix,
            ..query
        };
        let high = Block {
            v6: query.v6,
            start: query.end(),
            prefix: u8::MAX,
        };
        for (block, owners) in self
            .blocks
            .range((Bound::Included(low), Bound::Included(high)))
        {
            if block.prefix >= query.prefix {
                push(*block, owners);
            }
        }
        found
    }

    /// The first owner of an address, if any block holds it.
    pub fn owner_of(&self, ip: IpAddr) -> Option<&ObjectKey> {
        let query = Block::from_net(IpNet::from(ip));
        let counts = &self.prefix_counts[usize::from(query.v6)];
        (0..=query.prefix)
            .rev()
            .filter(|p| counts[usize::from(*p)] > 0)
            .find_map(|p| self.blocks.get(&query.truncated(p)))
            .and_then(|owners| owners.first())
    }

    /// The lowest address of `range` that no block holds and that is not in `exclude`. For IPv4
    /// ranges wider than /31 the network and broadcast addresses are skipped.
    pub fn next_free(&self, range: IpNet, exclude: &[IpNet]) -> Option<IpAddr> {
        let range = Block::from_net(range);
        let (mut candidate, last) = if !range.v6 && range.prefix < 31 {
            (range.start + 1, range.end() - 1)
        } else {
            (range.start, range.end())
        };
        let excluded: Vec<Block> = exclude
            .iter()
            .map(|n| Block::from_net(*n))
            .filter(|b| b.v6 == range.v6)
            .collect();
        let counts = &self.prefix_counts[usize::from(range.v6)];
        while candidate <= last {
            let point = Block {
                v6: range.v6,
                start: candidate,
                prefix: range.bits(),
            };
            let held = (0..=point.prefix)
                .filter(|p| counts[usize::from(*p)] > 0)
                .map(|p| point.truncated(p))
                .find(|b| self.blocks.contains_key(b));
            let covering = held.or_else(|| {
                excluded
                    .iter()
                    .copied()
                    .find(|b| b.prefix <= point.prefix && point.truncated(b.prefix) == *b)
            });
            match covering {
                None => return Some(addr_of(range.v6, candidate)),
                Some(block) => match block.end().checked_add(1) {
                    Some(next) => candidate = next,
                    None => return None,
                },
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("foo", name)
    }

    fn net(s: &str) -> IpNet {
        parse_address(s).unwrap()
    }

    #[test]
    fn same_ip_written_as_slash_32_conflicts() {
        let mut index = AddressIndex::new();
        index.replace(&key("a"), &[net("127.255.0.2")]);
        let found = index.conflicts(net("127.255.0.2/32"), None);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].owner, &key("a"));
    }

    #[test]
    fn overlapping_cidrs_conflict_both_ways() {
        let mut index = AddressIndex::new();
        index.replace(&key("wide"), &[net("10.0.0.0/8")]);
        index.replace(&key("narrow"), &[net("192.168.1.0/24")]);
        assert_eq!(
            index.conflicts(net("10.1.2.3"), None)[0].owner,
            &key("wide")
        );
        assert_eq!(
            index.conflicts(net("192.168.0.0/16"), None)[0].owner,
            &key("narrow")
        );
        assert!(index.conflicts(net("192.168.2.0/24"), None).is_empty());
    }

    #[test]
    fn owner_never_conflicts_with_itself() {
        let mut index = AddressIndex::new();
        index.replace(&key("a"), &[net("127.255.0.2")]);
        assert!(index
            .conflicts(net("127.255.0.2"), Some(&key("a")))
            .is_empty());
    }

    #[test]
    fn families_do_not_mix() {
        let mut index = AddressIndex::new();
        index.replace(&key("a"), &[net("::/0")]);
        assert!(index.conflicts(net("127.255.0.2"), None).is_empty());
        assert_eq!(index.conflicts(net("2001:db8::1"), None).len(), 1);
    }

    #[test]
    fn replace_and_remove_release_addresses() {
        let mut index = AddressIndex::new();
        index.replace(&key("a"), &[net("127.255.0.2")]);
        index.replace(&key("a"), &[net("127.255.0.3")]);
        assert!(index.conflicts(net("127.255.0.2"), None).is_empty());
        index.remove(&key("a"));
        assert!(index.is_empty());
        assert_eq!(index.owner_of("127.255.0.3".parse().unwrap()), None);
    }

    #[test]
    fn next_free_skips_held_and_excluded_addresses() {
        let mut index = AddressIndex::new();
        index.replace(&key("a"), &[net("127.255.0.1"), net("127.255.0.2")]);
        index.replace(&key("b"), &[net("127.255.0.4/31")]);
        let range = net("127.255.0.0/16");
        assert_eq!(
            index.next_free(range, &[net("127.255.0.3")]),
            Some("127.255.0.6".parse().unwrap())
        );
    }

    #[test]
    fn next_free_reports_a_full_range() {
        let mut index = AddressIndex::new();
        index.replace(&key("a"), &[net("10.0.0.0/30")]);
        assert_eq!(index.next_free(net("10.0.0.0/30"), &[]), None);
        assert_eq!(
            index.next_free(net("10.0.0.0/24"), &[]),
            Some("10.0.0.4".parse().unwrap())
        );
    }

    #[test]
    fn whole_ipv6_space_is_a_valid_block() {
        let mut index = AddressIndex::new();
        index.replace(&key("a"), &[net("2001:db8::1")]);
        assert_eq!(index.conflicts(net("::/0"), None).len(), 1);
        assert_eq!(
            index.next_free(net("::/0"), &[]),
            Some("::".parse().unwrap())
        );
    }
}
