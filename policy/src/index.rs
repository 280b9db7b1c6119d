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
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use smallvec::SmallVec;

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

/// Owners of one block: one, unless the cluster already holds a duplicate.
type Owners = SmallVec<[Arc<ObjectKey>; 1]>;
/// Blocks of one owner: usually one address.
type Held = SmallVec<[Block; 1]>;

/// Owners' blocks, hashed with foldhash (seeded per process): several times faster than
/// SipHash on these short keys, which is most of building an index of 100,000 entries.
type ByOwner = HashMap<Arc<ObjectKey>, Held, foldhash::fast::RandomState>;

/// Address → owning ServiceEntry, for one cluster.
#[derive(Debug, Clone)]
pub struct AddressIndex {
    blocks: BTreeMap<Block, Owners>,
    by_owner: ByOwner,
    /// How many distinct blocks of each prefix length are present, per family (v4, v6).
    prefix_counts: [[u32; 129]; 2],
    /// The held addresses as maximal runs: (family, first address) → last address. Two runs
    /// never touch (they would have been merged), so the address after a run is free, which
    /// makes the next free address one lookup per run or excluded block crossed.
    runs: BTreeMap<(bool, u128), u128>,
}

impl Default for AddressIndex {
    fn default() -> Self {
        Self {
            blocks: BTreeMap::new(),
            by_owner: ByOwner::default(),
            prefix_counts: [[0; 129]; 2],
            runs: BTreeMap::new(),
        }
    }
}

/// The blocks an entry holds: its addresses that parse, in order, without repeats.
fn blocks_of(se: &ServiceEntry) -> Held {
    let mut held: Held = se
        .spec
        .addresses
        .iter()
        .filter_map(|a| parse_address(a))
        .map(Block::from_net)
        .collect();
    held.sort_unstable();
    held.dedup();
    held
}

impl AddressIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes the addresses of every entry; unparseable addresses are left out (the rules
    /// report them). A later entry with the same `namespace/name` replaces an earlier one.
    pub fn build<'a>(entries: impl IntoIterator<Item = &'a ServiceEntry>) -> Self {
        let entries = entries.into_iter();
        let mut by_owner =
            ByOwner::with_capacity_and_hasher(entries.size_hint().0, Default::default());
        let mut pairs: Vec<(Block, Arc<ObjectKey>)> = Vec::with_capacity(entries.size_hint().0);
        let mut repeated = false;
        for se in entries {
            let held = blocks_of(se);
            if held.is_empty() {
                repeated |= by_owner.remove(&se.key()).is_some();
                continue;
            }
            let key = Arc::new(se.key());
            pairs.extend(held.iter().map(|b| (*b, Arc::clone(&key))));
            repeated |= by_owner.insert(key, held).is_some();
        }
        if repeated {
            // A later entry replaced an earlier one with the same key: take the survivors.
            pairs = by_owner
                .iter()
                .flat_map(|(owner, held)| held.iter().map(|b| (*b, Arc::clone(owner))))
                .collect();
        }
        // Clusters usually allocate VIPs in order, so this sort often finds its input sorted.
        pairs.sort_unstable();
        let mut index = AddressIndex::new();
        let mut blocks: Vec<(Block, Owners)> = Vec::with_capacity(pairs.len());
        let mut run: Option<(bool, u128, u128)> = None;
        for (block, owner) in pairs {
            if let Some((last, owners)) = blocks.last_mut() {
                if *last == block {
                    owners.push(owner);
                    continue;
                }
            }
            index.count(block, true);
            // Blocks come in order of start, so each one extends the current run or starts
            // the next one.
            run = match run {
                Some((v6, first, end))
                    if v6 == block.v6 && block.start <= end.saturating_add(1) =>
                {
                    Some((v6, first, end.max(block.end())))
                }
                other => {
                    if let Some((v6, first, end)) = other {
                        index.runs.insert((v6, first), end);
                    }
                    Some((block.v6, block.start, block.end()))
                }
            };
            blocks.push((block, smallvec::smallvec![owner]));
        }
        if let Some((v6, first, end)) = run {
            index.runs.insert((v6, first), end);
        }
        index.blocks = blocks.into_iter().collect();
        index.by_owner = by_owner;
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
        self.remove(&key);
        let held = blocks_of(se);
        self.hold(key, held);
    }

    /// Sets the blocks held by `owner` to `nets`.
    pub fn replace(&mut self, owner: &ObjectKey, nets: &[IpNet]) {
        self.remove(owner);
        let mut held: Held = nets.iter().map(|n| Block::from_net(*n)).collect();
        held.sort_unstable();
        held.dedup();
        self.hold(owner.clone(), held);
    }

    /// Records `held` (sorted, without repeats) as the blocks of `owner`, who holds nothing.
    fn hold(&mut self, owner: ObjectKey, held: Held) {
        if held.is_empty() {
            return;
        }
        let owner = Arc::new(owner);
        for block in &held {
            match self.blocks.get_mut(block) {
                Some(owners) => owners.push(Arc::clone(&owner)),
                None => {
                    self.blocks
                        .insert(*block, smallvec::smallvec![Arc::clone(&owner)]);
                    self.count(*block, true);
                    self.cover(*block);
                }
            }
        }
        self.by_owner.insert(owner, held);
    }

    /// Forgets every block held by `owner`.
    pub fn remove(&mut self, owner: &ObjectKey) {
        let Some(held) = self.by_owner.remove(owner) else {
            return;
        };
        for block in held {
            let Some(owners) = self.blocks.get_mut(&block) else {
                continue;
            };
            owners.retain(|o| o.as_ref() != owner);
            if owners.is_empty() {
                self.blocks.remove(&block);
                self.count(block, false);
                self.uncover(block);
            }
        }
    }

    /// Counts a distinct block in or out of its prefix length.
    fn count(&mut self, block: Block, added: bool) {
        let count = self
            .prefix_counts
            .get_mut(usize::from(block.v6))
            .and_then(|counts| counts.get_mut(usize::from(block.prefix)));
        if let Some(count) = count {
            *count = if added {
                count.saturating_add(1)
            } else {
                count.saturating_sub(1)
            };
        }
    }

    /// Prefix lengths shorter than `below` that some block of the family has.
    fn wider_prefixes(&self, v6: bool, below: u8) -> impl Iterator<Item = u8> + '_ {
        let counts = self.prefix_counts.get(usize::from(v6));
        (0..below).filter(move |p| {
            counts
                .and_then(|c| c.get(usize::from(*p)))
                .is_some_and(|n| *n > 0)
        })
    }

    /// The run holding `address`, as (first, last).
    fn run_at(&self, v6: bool, address: u128) -> Option<(u128, u128)> {
        self.runs
            .range(..=(v6, address))
            .next_back()
            .filter(|((family, _), last)| *family == v6 && **last >= address)
            .map(|((_, first), last)| (*first, *last))
    }

    /// Adds a new block's addresses to the runs, merging the runs it overlaps or touches.
    fn cover(&mut self, block: Block) {
        let v6 = block.v6;
        let (mut first, mut last) = (block.start, block.end());
        if let Some((&(family, start), &end)) = self.runs.range(..=(v6, first)).next_back() {
            if family == v6 && end.saturating_add(1) >= first {
                first = start;
                last = last.max(end);
            }
        }
        let merged: Vec<((bool, u128), u128)> = self
            .runs
            .range((v6, first)..=(v6, last.saturating_add(1)))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (key, end) in merged {
            self.runs.remove(&key);
            last = last.max(end);
        }
        self.runs.insert((v6, first), last);
    }

    /// Takes a removed block's addresses out of the runs, keeping those that other blocks still
    /// hold: a block containing it (then nothing changes) or blocks inside it.
    fn uncover(&mut self, block: Block) {
        let v6 = block.v6;
        let inside_wider = self
            .wider_prefixes(v6, block.prefix)
            .any(|p| self.blocks.contains_key(&block.truncated(p)));
        if inside_wider {
            return;
        }
        let (start, end) = (block.start, block.end());
        let Some((first, last)) = self.run_at(v6, start) else {
            return;
        };
        self.runs.remove(&(v6, first));
        // What stays held: the run's parts on either side, and the blocks inside this one
        // (nested or disjoint, so in order of start each either extends a piece or starts one).
        let mut pieces: Vec<(u128, u128)> = Vec::new();
        if first < start {
            pieces.push((first, start - 1));
        }
        let low = Block {
            v6,
            start,
            prefix: 0,
        };
        let high = Block {
            v6,
            start: end,
            prefix: u8::MAX,
        };
        for inner in self.blocks.range(low..=high).map(|(b, _)| *b) {
            let (s, e) = (inner.start, inner.end());
            match pieces.last_mut() {
                Some((_, piece_end)) if s <= piece_end.saturating_add(1) => {
                    *piece_end = (*piece_end).max(e);
                }
                _ => pieces.push((s, e)),
            }
        }
        if end < last {
            let s = end + 1;
            match pieces.last_mut() {
                Some((_, piece_end)) if s <= piece_end.saturating_add(1) => {
                    *piece_end = (*piece_end).max(last);
                }
                _ => pieces.push((s, last)),
            }
        }
        for (s, e) in pieces {
            self.runs.insert((v6, s), e);
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
        let mut push = |block: Block, owners: &'a [Arc<ObjectKey>]| {
            for owner in owners {
                let owner: &ObjectKey = owner;
                if Some(owner) != except {
                    found.push(Conflict {
                        held: block.to_net(),
                        owner,
                    });
                }
            }
        };
        // Blocks that contain the query (shorter prefix).
        for prefix in self.wider_prefixes(query.v6, query.prefix) {
            let candidate = query.truncated(prefix);
            if let Some(owners) = self.blocks.get(&candidate) {
                push(candidate, owners);
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
        let mut prefixes: SmallVec<[u8; 4]> =
            self.wider_prefixes(query.v6, query.prefix + 1).collect();
        prefixes.reverse();
        prefixes
            .into_iter()
            .find_map(|p| self.blocks.get(&query.truncated(p)))
            .and_then(|owners| owners.first())
            .map(|owner| owner.as_ref())
    }

    /// The lowest address of `range` that no block holds and that is not in `exclude`. For IPv4
    /// ranges wider than /31 the network and broadcast addresses are skipped. Each step jumps
    /// over one run of held addresses or one excluded block, so this costs O(k log n) for `k`
    /// excluded blocks, however many addresses in a row are taken.
    pub fn next_free(&self, range: IpNet, exclude: &[IpNet]) -> Option<IpAddr> {
        let range = Block::from_net(range);
        let v6 = range.v6;
        let (mut candidate, last) = if !v6 && range.prefix < 31 {
            (range.start + 1, range.end() - 1)
        } else {
            (range.start, range.end())
        };
        let excluded = merged_runs(
            exclude
                .iter()
                .map(|n| Block::from_net(*n))
                .filter(|b| b.v6 == v6),
        );
        while candidate <= last {
            let covered = self.run_at(v6, candidate).map(|(_, end)| end).or_else(|| {
                let i = excluded.partition_point(|(start, _)| *start <= candidate);
                i.checked_sub(1)
                    .and_then(|i| excluded.get(i))
                    .filter(|(_, end)| *end >= candidate)
                    .map(|(_, end)| *end)
            });
            match covered {
                None => return Some(addr_of(v6, candidate)),
                Some(end) => candidate = end.checked_add(1)?,
            }
        }
        None
    }
}

/// Blocks as sorted, disjoint (first, last) runs, touching ones merged.
fn merged_runs(blocks: impl Iterator<Item = Block>) -> Vec<(u128, u128)> {
    let mut spans: Vec<(u128, u128)> = blocks.map(|b| (b.start, b.end())).collect();
    spans.sort_unstable();
    let mut runs: Vec<(u128, u128)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match runs.last_mut() {
            Some((_, last)) if start <= last.saturating_add(1) => *last = (*last).max(end),
            _ => runs.push((start, end)),
        }
    }
    runs
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
