//! The cluster as the webhook sees it: the stored ServiceEntries (from files or the Kubernetes
//! API) and the claims of VIPs and hosts (from the API's claim objects, or in file mode held
//! in this process).
//!
//! Reviews read it under a shared lock, each for a bounded amount of work (the rules of one
//! entry, one index lookup per address); only updates take it exclusively. Nothing is
//! scanned per review: claims held in this process expire through a queue ordered by time,
//! and the count of claims whose owner is not stored is kept per namespace as claims and
//! entries come and go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use policy::{AddressIndex, Cluster, ObjectKey, Options, ServiceEntry};

use crate::claims::{Claim, ClaimKey, Judgement, Outcome, Owner, Standing};
use crate::review::AdmissionRequest;
use crate::verdict::{decide, Decision};

/// What one stored ServiceEntry holds, for judging claims.
#[derive(Debug, Clone, Default)]
struct Stored {
    uid: Option<String>,
    keys: HashSet<ClaimKey>,
}

#[derive(Debug, Clone)]
struct Held {
    claim: Claim,
    /// For a claim held in this process (file mode): when it lapses.
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    /// The stored entries' addresses and hosts, for the rules.
    stored: Cluster,
    /// The stored entries, by key.
    entries: HashMap<ObjectKey, Stored>,
    claims: HashMap<ClaimKey, Held>,
    /// Each owner's stored and claimed addresses together, for the walk to a free address:
    /// one index, so that its runs of taken addresses are maximal.
    occupied: AddressIndex,
    by_owner: HashMap<ObjectKey, Vec<ClaimKey>>,
    /// Claims per namespace whose owner is not stored, and each owner's part of that count.
    unstored: HashMap<String, usize>,
    counted: HashMap<ObjectKey, usize>,
    /// Claims held in this process, by when they lapse.
    expiry: BTreeMap<(Instant, u64), ClaimKey>,
    sequence: u64,
    /// Entries seen deleted (with their uid), oldest first, kept for a while: their claims
    /// are released at once rather than after the grace period.
    deleted: HashMap<ObjectKey, Option<String>>,
    deleted_order: std::collections::VecDeque<ObjectKey>,
}

/// Deleted entries remembered for releasing their claims.
const TOMBSTONES: usize = 65_536;

/// The keys an entry holds: its single-IP addresses and its `.global` hosts.
pub fn keys_of(se: &ServiceEntry, options: &Options) -> HashSet<ClaimKey> {
    let mut keys: HashSet<ClaimKey> = se
        .spec
        .addresses
        .iter()
        .filter_map(|a| policy::parse_address(a))
        .filter(|net| net.prefix_len() == net.max_prefix_len())
        .map(|net| ClaimKey::Address(net.addr()))
        .collect();
    keys.extend(
        policy::hosts::global_hosts(se, options)
            .into_iter()
            .map(ClaimKey::Host),
    );
    keys
}

impl State {
    fn standing(&self, owner: &Owner, key: &ClaimKey) -> Standing {
        let owner_key = owner.key();
        match self.entries.get(&owner_key) {
            Some(stored) if stored.keys.contains(key) => Standing::Holds,
            Some(_) => Standing::Dropped,
            None => match self.deleted.get(&owner_key) {
                // The same incarnation, or one whose uid the claim does not know.
                Some(uid) if owner.uid.is_none() || *uid == owner.uid => Standing::Deleted,
                _ => Standing::Absent,
            },
        }
    }

    fn tombstone(&mut self, key: ObjectKey, uid: Option<String>) {
        if self.deleted.insert(key.clone(), uid).is_none() {
            self.deleted_order.push_back(key);
        }
        while self.deleted_order.len() > TOMBSTONES {
            if let Some(old) = self.deleted_order.pop_front() {
                self.deleted.remove(&old);
            }
        }
    }

    /// Sets `owner`'s occupied addresses to its stored ones and its claimed ones.
    fn occupy(&mut self, owner: &ObjectKey) {
        let mut nets = self.stored.addresses.held_by(owner);
        nets.extend(
            self.by_owner
                .get(owner)
                .into_iter()
                .flatten()
                .filter_map(|key| match key {
                    ClaimKey::Address(ip) => Some(IpNet::from(*ip)),
                    ClaimKey::Host(_) => None,
                }),
        );
        self.occupied.replace(owner, &nets);
    }

    /// Recounts `owner`'s part of its namespace's unstored claims, and what it occupies.
    fn recount(&mut self, owner: &ObjectKey) {
        self.occupy(owner);
        let now = if self.entries.contains_key(owner) {
            0
        } else {
            self.by_owner.get(owner).map_or(0, Vec::len)
        };
        let before = if now == 0 {
            self.counted.remove(owner).unwrap_or(0)
        } else {
            self.counted.insert(owner.clone(), now).unwrap_or(0)
        };
        if now != before {
            let count = self.unstored.entry(owner.namespace.clone()).or_default();
            *count = (*count + now).saturating_sub(before);
            if *count == 0 {
                self.unstored.remove(&owner.namespace);
            }
        }
    }

    fn insert_claim(&mut self, claim: Claim, expires: Option<Instant>) {
        let key = claim.key.clone();
        self.remove_claim(&key);
        let owner = claim.owner.key();
        self.by_owner
            .entry(owner.clone())
            .or_default()
            .push(key.clone());
        if let Some(at) = expires {
            self.sequence += 1;
            self.expiry.insert((at, self.sequence), key.clone());
        }
        self.claims.insert(key, Held { claim, expires });
        self.recount(&owner);
    }

    fn remove_claim(&mut self, key: &ClaimKey) -> Option<Claim> {
        let held = self.claims.remove(key)?;
        let owner = held.claim.owner.key();
        if let Some(keys) = self.by_owner.get_mut(&owner) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
        self.recount(&owner);
        Some(held.claim)
    }

    /// Drops claims held in this process that lapsed by `now`: one step per lapsed claim.
    fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            let lapsed = self
                .claims
                .get(&key)
                .and_then(|h| h.expires)
                .is_some_and(|at| at <= now);
            if lapsed {
                self.remove_claim(&key);
            }
        }
    }

    /// Claims held in this process that the owner's stored version now holds are done: the
    /// stored entry holds them from here on.
    fn settle_local(&mut self, owner: &ObjectKey) {
        let settled: Vec<ClaimKey> = self
            .by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter(|key| {
                self.claims.get(*key).is_some_and(|h| h.expires.is_some())
                    && self
                        .entries
                        .get(owner)
                        .is_some_and(|stored| stored.keys.contains(*key))
            })
            .cloned()
            .collect();
        for key in settled {
            self.remove_claim(&key);
        }
    }

    fn store(&mut self, se: &ServiceEntry, options: &Options) {
        let key = se.key();
        if self.deleted.remove(&key).is_some() {
            self.deleted_order.retain(|k| *k != key);
        }
        self.stored.insert_entry(se, options);
        self.entries.insert(
            key.clone(),
            Stored {
                uid: se.metadata.uid.clone(),
                keys: keys_of(se, options),
            },
        );
        self.settle_local(&key);
        self.recount(&key);
    }

    fn unstore(&mut self, key: &ObjectKey) {
        self.stored.remove(key);
        if let Some(stored) = self.entries.remove(key) {
            self.tombstone(key.clone(), stored.uid);
        }
        self.recount(key);
    }
}

#[derive(Debug)]
pub struct Catalog {
    state: RwLock<State>,
    options: Options,
}

impl Catalog {
    pub fn new(options: Options) -> Self {
        Catalog {
            state: RwLock::new(State::default()),
            options,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the indexes half-updated in a way that
        // matters more than refusing every review, so keep serving.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether a source has delivered its first complete view.
    pub fn is_ready(&self) -> bool {
        self.read().loaded
    }

    /// Number of stored ServiceEntries.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of claims known.
    pub fn claims(&self) -> usize {
        self.read().claims.len()
    }

    /// Claims in `namespace` whose owner is not stored.
    pub fn unstored_claims(&self, namespace: &str) -> usize {
        self.read().unstored.get(namespace).copied().unwrap_or(0)
    }

    /// Replaces the stored view (a file reload, or a re-list).
    pub fn replace_all(&self, entries: &[ServiceEntry]) {
        let cluster = Cluster::build(entries, &self.options);
        let stored: HashMap<ObjectKey, Stored> = entries
            .iter()
            .map(|se| {
                (
                    se.key(),
                    Stored {
                        uid: se.metadata.uid.clone(),
                        keys: keys_of(se, &self.options),
                    },
                )
            })
            .collect();
        let mut state = self.write();
        let gone: Vec<(ObjectKey, Option<String>)> = state
            .entries
            .iter()
            .filter(|(key, _)| !stored.contains_key(*key))
            .map(|(key, s)| (key.clone(), s.uid.clone()))
            .collect();
        for (key, uid) in gone {
            state.tombstone(key, uid);
        }
        for key in stored.keys() {
            state.deleted.remove(key);
        }
        state.occupied = cluster.addresses.clone();
        state.stored = cluster;
        state.entries = stored;
        state.loaded = true;
        state.unstored.clear();
        state.counted.clear();
        let owners: Vec<ObjectKey> = state.by_owner.keys().cloned().collect();
        for owner in owners {
            state.settle_local(&owner);
            state.recount(&owner);
        }
    }

    /// One object added or modified (a watch event).
    pub fn upsert(&self, se: &ServiceEntry) {
        self.write().store(se, &self.options);
    }

    /// One object deleted (a watch event).
    pub fn remove(&self, key: &ObjectKey) {
        self.write().unstore(key);
    }

    /// Marks the catalog ready without entries (a source that found none).
    pub fn mark_loaded(&self) {
        self.write().loaded = true;
    }

    /// Decides a review with the rules, against the stored view (no claim is made here).
    pub fn decide(&self, request: &AdmissionRequest) -> Decision {
        let state = self.read();
        if !state.loaded && crate::verdict::is_service_entry(request) {
            return Decision::not_ready();
        }
        decide(request, &state.stored, &self.options)
    }

    /// Whether an entry of that key is stored.
    pub fn is_stored(&self, key: &ObjectKey) -> bool {
        self.read().entries.contains_key(key)
    }

    /// Where `owner` stands for `key` in the stored view.
    pub fn standing(&self, owner: &Owner, key: &ClaimKey) -> Standing {
        self.read().standing(owner, key)
    }

    /// A claim as the watch of the claims delivers it: what the API server has.
    pub fn record_claim(&self, claim: Claim) {
        self.write().insert_claim(claim, None);
    }

    /// A claim this replica wrote, read or is about to write: recorded unless the view holds
    /// the key for the same owner already (the watch may have brought a newer version).
    pub fn note_claim(&self, claim: Claim) {
        let mut state = self.write();
        let known = state
            .claims
            .get(&claim.key)
            .is_some_and(|h| h.claim.owner.same(&claim.owner));
        if !known {
            state.insert_claim(claim, None);
        }
    }

    /// Forgets a claim noted for `owner`, if the view still has it so.
    pub fn forget_noted(&self, key: &ClaimKey, owner: &Owner) {
        let mut state = self.write();
        if state
            .claims
            .get(key)
            .is_some_and(|h| h.claim.owner.same(owner) && h.claim.resource_version.is_empty())
        {
            state.remove_claim(key);
        }
    }

    /// A claim known to be gone from the API.
    pub fn forget_claim(&self, key: &ClaimKey) {
        self.write().remove_claim(key);
    }

    /// Replaces every claim known of one kind (a re-list of address or of host claims).
    pub fn replace_claims(&self, addresses: bool, claims: Vec<Claim>) {
        let mut state = self.write();
        let known: Vec<ClaimKey> = state
            .claims
            .keys()
            .filter(|k| matches!(k, ClaimKey::Address(_)) == addresses)
            .cloned()
            .collect();
        for key in known {
            state.remove_claim(&key);
        }
        for claim in claims {
            state.insert_claim(claim, None);
        }
    }

    /// The claim of `key`, if one is known.
    pub fn claim_of(&self, key: &ClaimKey) -> Option<Claim> {
        self.read().claims.get(key).map(|h| h.claim.clone())
    }

    /// File mode: claims `key` for `owner` in this process, until `ttl` passes without the
    /// owner being stored with it. Serialised with every other claim by the exclusive lock,
    /// which is held for one map lookup and insert.
    pub fn claim_local(
        &self,
        key: &ClaimKey,
        owner: &Owner,
        now: Instant,
        ttl: Duration,
    ) -> Outcome {
        let mut state = self.write();
        state.expire(now);
        if let Some(held) = state.claims.get(key) {
            let holder = held.claim.owner.clone();
            if holder.same(owner) {
                return Outcome::Claimed {
                    created: None,
                    known: None,
                };
            }
            // What is left after expiry is in its grace period.
            match state.standing(&holder, key) {
                Standing::Holds => return Outcome::Taken(Judgement::Held(holder)),
                Standing::Absent => return Outcome::Taken(Judgement::Pending(holder)),
                Standing::Dropped | Standing::Deleted => {}
            }
        }
        state.insert_claim(
            Claim {
                key: key.clone(),
                owner: owner.clone(),
                claimed_at: SystemTime::now(),
                resource_version: String::new(),
                uid: String::new(),
            },
            Some(now + ttl),
        );
        Outcome::Claimed {
            created: Some(String::new()),
            known: None,
        }
    }

    /// File mode: gives back a claim made for a review that was then denied.
    pub fn release_local(&self, key: &ClaimKey, owner: &Owner) {
        let mut state = self.write();
        if state
            .claims
            .get(key)
            .is_some_and(|h| h.claim.owner.same(owner) && h.expires.is_some())
        {
            state.remove_claim(key);
        }
    }

    /// The lowest address of `range` that no stored entry holds, no claim holds, and that is
    /// not in `exclude`.
    pub fn next_free(&self, range: IpNet, exclude: &[IpNet]) -> Option<IpAddr> {
        self.read().occupied.next_free(range, exclude)
    }

    /// A free address for a denial about `ip`: from the VIP range holding it, or else the
    /// first range with room, with the range.
    pub fn suggest(&self, ip: IpAddr, exclude: &[IpNet]) -> Option<(IpAddr, IpNet)> {
        let net = IpNet::from(ip);
        let ranges = &self.options.vip_ranges;
        let same_family = |r: &&IpNet| r.addr().is_ipv4() == ip.is_ipv4();
        let containing = ranges
            .iter()
            .filter(same_family)
            .filter(|r| r.contains(&net));
        let others = ranges
            .iter()
            .filter(same_family)
            .filter(|r| !r.contains(&net));
        containing
            .chain(others)
            .find_map(|range| self.next_free(*range, exclude).map(|free| (free, *range)))
    }

    /// Every claim known, for the repair.
    pub fn claims_snapshot(&self) -> Vec<Claim> {
        self.read()
            .claims
            .values()
            .map(|h| h.claim.clone())
            .collect()
    }

    /// Every stored entry's owner (with its uid) and the keys it holds, for the repair.
    pub fn holders_snapshot(&self) -> Vec<(Owner, Vec<ClaimKey>)> {
        self.read()
            .entries
            .iter()
            .filter(|(_, stored)| !stored.keys.is_empty())
            .map(|(key, stored)| {
                (
                    Owner {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        uid: stored.uid.clone(),
                    },
                    stored.keys.iter().cloned().collect(),
                )
            })
            .collect()
    }

    /// The stored entry of `key` as an owner with the keys it holds.
    pub fn holders_snapshot_of(&self, key: &ObjectKey) -> Option<(Owner, Vec<ClaimKey>)> {
        self.read().entries.get(key).map(|stored| {
            (
                Owner {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    uid: stored.uid.clone(),
                },
                stored.keys.iter().cloned().collect(),
            )
        })
    }

    /// The stored view's addresses and hosts (for `audit`).
    pub fn stored(&self) -> Cluster {
        self.read().stored.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Operation;
    use crate::verdict::fixtures::{object, request};

    fn entry(name: &str, address: &str) -> ServiceEntry {
        policy::document::decode(object(name, address, 15443)).unwrap()
    }

    fn owner(name: &str) -> Owner {
        Owner {
            namespace: "foo".into(),
            name: name.into(),
            uid: None,
        }
    }

    fn vip(ip: &str) -> ClaimKey {
        ClaimKey::Address(ip.parse().unwrap())
    }

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn a_second_local_claim_of_an_address_is_taken() {
        let catalog = Catalog::new(Options::default());
        catalog.mark_loaded();
        let now = Instant::now();
        assert!(matches!(
            catalog.claim_local(&vip("127.255.0.2"), &owner("a"), now, TTL),
            Outcome::Claimed { .. }
        ));
        assert_eq!(
            catalog.claim_local(&vip("127.255.0.2"), &owner("b"), now, TTL),
            Outcome::Taken(Judgement::Pending(owner("a")))
        );
        // The same owner again (a retry, an UPDATE) keeps it.
        assert!(matches!(
            catalog.claim_local(&vip("127.255.0.2"), &owner("a"), now, TTL),
            Outcome::Claimed { .. }
        ));
    }

    #[test]
    fn service_entries_are_denied_until_the_catalog_loads() {
        let catalog = Catalog::new(Options::default());
        let decision = catalog.decide(&request(
            Operation::Create,
            Some(object("a", "127.255.0.2", 15443)),
        ));
        assert!(!decision.verdict.allowed);
        assert_eq!(decision.verdict.code, 503);
    }

    #[test]
    fn a_local_claim_lapses_after_its_ttl() {
        let catalog = Catalog::new(Options::default());
        catalog.mark_loaded();
        let now = Instant::now();
        catalog.claim_local(&vip("127.255.0.2"), &owner("a"), now, TTL);
        assert_eq!(catalog.unstored_claims("foo"), 1);
        assert!(matches!(
            catalog.claim_local(
                &vip("127.255.0.2"),
                &owner("b"),
                now + Duration::from_secs(29),
                TTL
            ),
            Outcome::Taken(_)
        ));
        assert!(matches!(
            catalog.claim_local(
                &vip("127.255.0.2"),
                &owner("b"),
                now + Duration::from_secs(31),
                TTL
            ),
            Outcome::Claimed { .. }
        ));
    }

    #[test]
    fn a_local_claim_settles_when_its_owner_is_stored() {
        let catalog = Catalog::new(Options::default());
        catalog.mark_loaded();
        let now = Instant::now();
        catalog.claim_local(&vip("127.255.0.2"), &owner("a"), now, TTL);
        assert_eq!(catalog.claims(), 1);
        catalog.upsert(&entry("a", "127.255.0.2"));
        assert_eq!(catalog.claims(), 0);
        assert_eq!(catalog.unstored_claims("foo"), 0);
        // The stored entry holds the address now: another is denied by the rules.
        let decision = catalog.decide(&request(
            Operation::Create,
            Some(object("b", "127.255.0.2", 15443)),
        ));
        assert!(!decision.verdict.allowed);
        assert!(
            decision.verdict.message.contains("foo/a"),
            "{}",
            decision.verdict.message
        );
    }

    #[test]
    fn unstored_claims_are_counted_per_namespace_as_entries_come_and_go() {
        let catalog = Catalog::new(Options::default());
        catalog.mark_loaded();
        let claim = |name: &str, key: ClaimKey| Claim {
            key,
            owner: owner(name),
            claimed_at: SystemTime::now(),
            resource_version: "1".into(),
            uid: "u".into(),
        };
        catalog.record_claim(claim("a", vip("127.255.0.2")));
        catalog.record_claim(claim("a", ClaimKey::Host("a.bar.global".into())));
        catalog.record_claim(claim("b", vip("127.255.0.3")));
        assert_eq!(catalog.unstored_claims("foo"), 3);
        catalog.upsert(&entry("a", "127.255.0.2"));
        assert_eq!(catalog.unstored_claims("foo"), 1);
        catalog.remove(&ObjectKey::new("foo", "a"));
        assert_eq!(catalog.unstored_claims("foo"), 3);
        catalog.forget_claim(&vip("127.255.0.3"));
        assert_eq!(catalog.unstored_claims("foo"), 2);
        catalog.replace_all(&[entry("a", "127.255.0.2")]);
        assert_eq!(catalog.unstored_claims("foo"), 0);
    }

    #[test]
    fn a_deleted_owner_releases_its_claims_at_once() {
        let catalog = Catalog::new(Options::default());
        catalog.mark_loaded();
        let mut se = entry("a", "127.255.0.2");
        se.metadata.uid = Some("uid-a".into());
        catalog.upsert(&se);
        let key = vip("127.255.0.2");
        assert_eq!(catalog.standing(&owner("a"), &key), Standing::Holds);
        catalog.remove(&ObjectKey::new("foo", "a"));
        assert_eq!(catalog.standing(&owner("a"), &key), Standing::Deleted);
        let mut same = owner("a");
        same.uid = Some("uid-a".into());
        assert_eq!(catalog.standing(&same, &key), Standing::Deleted);
        // Another incarnation under the same name is on its way, not deleted.
        same.uid = Some("uid-b".into());
        assert_eq!(catalog.standing(&same, &key), Standing::Absent);
        // Stored again: no longer deleted.
        catalog.upsert(&se);
        assert_eq!(catalog.standing(&owner("a"), &key), Standing::Holds);
        catalog.replace_all(&[]);
        assert_eq!(catalog.standing(&owner("a"), &key), Standing::Deleted);
    }

    #[test]
    fn free_addresses_skip_stored_and_claimed_ones() {
        let catalog = Catalog::new(Options::default());
        catalog.replace_all(&[entry("a", "127.255.0.1")]);
        catalog.claim_local(&vip("127.255.0.2"), &owner("b"), Instant::now(), TTL);
        let range: IpNet = "127.255.0.0/16".parse().unwrap();
        assert_eq!(
            catalog.next_free(range, &[]),
            Some("127.255.0.3".parse().unwrap())
        );
    }

    #[test]
    fn readiness_follows_the_first_load() {
        let catalog = Catalog::new(Options::default());
        assert!(!catalog.is_ready());
        catalog.replace_all(&[]);
        assert!(catalog.is_ready());
    }
}
