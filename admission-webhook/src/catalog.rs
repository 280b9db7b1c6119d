//! The cluster's ServiceEntries as the webhook sees them, plus the addresses of objects it
//! admitted that have not shown up yet (reservations).
//!
//! Sources (files, or the Kubernetes API) feed the catalog through [`Catalog::replace_all`],
//! [`Catalog::upsert`] and [`Catalog::remove`]. Reviews are decided and claimed under one lock,
//! so of two CREATEs for the same address in quick succession only the first is admitted.
//! Reservations live in this process only: replicas do not share them (see the README).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use policy::{AddressIndex, ObjectKey, Options, ServiceEntry};

use crate::review::AdmissionRequest;
use crate::verdict::{decide, Decision};

/// How long an admitted object's addresses are held while it has not appeared in the catalog.
pub const RESERVATION_TTL: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Reservation {
    nets: Vec<IpNet>,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    /// What the source says is in the cluster.
    stored: AddressIndex,
    /// `stored` with reservations applied; reviews are checked against this.
    live: AddressIndex,
    reservations: HashMap<ObjectKey, Reservation>,
}

impl State {
    /// Puts `key` in `live` back to what the source says.
    fn restore(&mut self, key: &ObjectKey) {
        let stored = self.stored.held_by(key);
        self.live.replace(key, &stored);
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<ObjectKey> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.reservations.remove(&key);
            self.restore(&key);
        }
    }

    /// Drops the reservation of `key` once the source holds exactly the reserved addresses.
    fn settle(&mut self, key: &ObjectKey) {
        let Some(reservation) = self.reservations.get(key) else {
            return;
        };
        let mut stored = self.stored.held_by(key);
        let mut reserved = reservation.nets.clone();
        stored.sort();
        reserved.sort();
        reserved.dedup();
        if stored == reserved {
            self.reservations.remove(key);
        }
    }
}

#[derive(Debug)]
pub struct Catalog {
    state: Mutex<State>,
    ttl: Duration,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new(RESERVATION_TTL)
    }
}

impl Catalog {
    pub fn new(ttl: Duration) -> Self {
        Catalog {
            state: Mutex::new(State::default()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the indexes half-updated in a way that
        // matters more than refusing every review, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a source has delivered its first complete view.
    pub fn is_ready(&self) -> bool {
        self.lock().loaded
    }

    /// Number of ServiceEntries with addresses that the source holds.
    pub fn len(&self) -> usize {
        self.lock().stored.owners()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of reservations currently held.
    pub fn reservations(&self) -> usize {
        self.lock().reservations.len()
    }

    /// Replaces the whole view (a file reload, or a re-list).
    pub fn replace_all(&self, entries: &[ServiceEntry]) {
        let stored = AddressIndex::build(entries);
        let mut state = self.lock();
        state.stored = stored;
        state.live = state.stored.clone();
        state.loaded = true;
        let keys: Vec<ObjectKey> = state.reservations.keys().cloned().collect();
        for key in keys {
            state.settle(&key);
            if let Some(r) = state.reservations.get(&key) {
                let nets = r.nets.clone();
                state.live.replace(&key, &nets);
            }
        }
    }

    /// One object added or modified (a watch event).
    pub fn upsert(&self, se: &ServiceEntry) {
        let key = se.key();
        let mut state = self.lock();
        state.stored.insert_entry(se);
        state.settle(&key);
        if !state.reservations.contains_key(&key) {
            state.restore(&key);
        }
    }

    /// One object deleted (a watch event).
    pub fn remove(&self, key: &ObjectKey) {
        let mut state = self.lock();
        state.stored.remove(key);
        if !state.reservations.contains_key(key) {
            state.restore(key);
        }
    }

    /// Marks the catalog ready without entries (a source that found none).
    pub fn mark_loaded(&self) {
        self.lock().loaded = true;
    }

    /// Decides a review against the live view; an admitted CREATE or UPDATE that is not a dry
    /// run holds its addresses until the source shows the object or the TTL passes.
    pub fn review(&self, request: &AdmissionRequest, options: &Options, now: Instant) -> Decision {
        let mut state = self.lock();
        if !state.loaded && crate::verdict::is_service_entry(request) {
            return Decision::not_ready();
        }
        state.expire(now);
        let decision = decide(request, &state.live, options);
        if let Some((key, nets)) = &decision.claim {
            if request.dry_run != Some(true) {
                state.live.replace(key, nets);
                state.reservations.insert(
                    key.clone(),
                    Reservation {
                        nets: nets.clone(),
                        expires: now + self.ttl,
                    },
                );
                state.settle(key);
            }
        }
        decision
    }

    /// The stored view, without reservations.
    pub fn snapshot(&self) -> AddressIndex {
        self.lock().stored.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Operation;
    use crate::verdict::fixtures::{object, request};

    fn create(name: &str, address: &str, dry_run: bool) -> AdmissionRequest {
        let mut request = request(Operation::Create, Some(object(name, address, 15443)));
        request.dry_run = Some(dry_run);
        request
    }

    fn entry(name: &str, address: &str) -> ServiceEntry {
        policy::document::decode(object(name, address, 15443)).unwrap()
    }

    /// Whether a non-dry-run CREATE of `foo/<name>` claiming `address` is admitted at `now`.
    fn admits(catalog: &Catalog, name: &str, address: &str, now: Instant) -> bool {
        catalog
            .review(&create(name, address, false), &Options::default(), now)
            .verdict
            .allowed
    }

    #[test]
    fn second_create_for_the_same_address_is_denied() {
        let catalog = Catalog::default();
        catalog.mark_loaded();
        let now = Instant::now();
        assert!(admits(&catalog, "a", "127.255.0.2", now));
        let second = catalog.review(&create("b", "127.255.0.2", false), &Options::default(), now);
        assert!(!second.verdict.allowed);
        assert!(
            second.verdict.message.contains("foo/a"),
            "{}",
            second.verdict.message
        );
    }

    #[test]
    fn service_entries_are_denied_until_the_catalog_loads() {
        let catalog = Catalog::default();
        let decision = catalog.review(
            &create("a", "127.255.0.2", false),
            &Options::default(),
            Instant::now(),
        );
        assert!(!decision.verdict.allowed);
        assert_eq!(decision.verdict.code, 503);
        assert!(
            decision.verdict.message.contains("not loaded"),
            "{}",
            decision.verdict.message
        );
    }

    #[test]
    fn dry_run_claims_nothing() {
        let catalog = Catalog::default();
        catalog.mark_loaded();
        let now = Instant::now();
        let dry = catalog.review(&create("a", "127.255.0.2", true), &Options::default(), now);
        assert!(dry.verdict.allowed);
        assert_eq!(catalog.reservations(), 0);
        assert!(admits(&catalog, "b", "127.255.0.2", now));
    }

    #[test]
    fn reservation_expires_after_the_ttl() {
        let catalog = Catalog::new(Duration::from_secs(30));
        catalog.mark_loaded();
        let now = Instant::now();
        assert!(admits(&catalog, "a", "127.255.0.2", now));
        assert!(!admits(
            &catalog,
            "b",
            "127.255.0.2",
            now + Duration::from_secs(29)
        ));
        assert!(admits(
            &catalog,
            "b",
            "127.255.0.2",
            now + Duration::from_secs(31)
        ));
    }

    #[test]
    fn reservation_is_released_when_the_object_appears() {
        let catalog = Catalog::default();
        catalog.mark_loaded();
        let now = Instant::now();
        assert!(admits(&catalog, "a", "127.255.0.2", now));
        assert_eq!(catalog.reservations(), 1);
        catalog.upsert(&entry("a", "127.255.0.2"));
        assert_eq!(catalog.reservations(), 0);
        // The stored object still holds the address; once deleted, it is free.
        assert!(!admits(&catalog, "b", "127.255.0.2", now));
        catalog.remove(&ObjectKey::new("foo", "a"));
        assert!(admits(&catalog, "c", "127.255.0.2", now));
    }

    #[test]
    fn reload_keeps_reservations_not_yet_stored() {
        let catalog = Catalog::default();
        catalog.mark_loaded();
        let now = Instant::now();
        assert!(admits(&catalog, "a", "127.255.0.2", now));
        catalog.replace_all(&[entry("z", "127.255.0.9")]);
        assert_eq!(catalog.reservations(), 1);
        assert!(!admits(&catalog, "b", "127.255.0.2", now));
        catalog.replace_all(&[entry("a", "127.255.0.2")]);
        assert_eq!(catalog.reservations(), 0);
    }

    #[test]
    fn readiness_follows_the_first_load() {
        let catalog = Catalog::default();
        assert!(!catalog.is_ready());
        catalog.replace_all(&[]);
        assert!(catalog.is_ready());
    }
}
