//! What keeps claims true to the stored ServiceEntries, as Kubernetes' IPAddress repair loop
//! does for ClusterIPs (KEP-1880):
//!
//! - every replica watches the claim objects, so that its free-address walks and its count of
//!   unstored claims see what other replicas claimed ([`watch_claims`]);
//! - one replica at a time, elected with a Lease ([`catalog::lease`]), repairs
//!   ([`Repair::once`]): it removes claims whose owner is not stored, or is stored without
//!   the claimed key, once they are older than the grace period; fills in the owner's uid
//!   where it was not known when the claim was made; and claims the keys of stored entries
//!   that hold none (entries older than the webhook). Two stored entries that want one key
//!   are reported, not settled: the older claim stands.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::claims::{ApiClaims, Claim, ClaimKey, Standing};
use crate::metrics::Metrics;

/// Follows the claim objects of one kind into the catalog, for ever.
pub async fn watch_claims(client: Client, catalog: Arc<Catalog>, addresses: bool) {
    let resource = if addresses {
        ClaimKey::Address([0, 0, 0, 0].into()).resource()
    } else {
        ClaimKey::Host(String::new()).resource()
    };
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut listing: Option<Vec<Claim>> = None;
    let mut events = watcher::watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing = Some(Vec::new()),
            Ok(Event::InitApply(object)) => {
                if let (Some(list), Some(claim)) = (listing.as_mut(), Claim::from_object(&object)) {
                    list.push(claim);
                }
            }
            Ok(Event::InitDone) => {
                catalog.replace_claims(addresses, listing.take().unwrap_or_default());
            }
            Ok(Event::Apply(object)) => {
                if let Some(claim) = Claim::from_object(&object) {
                    catalog.record_claim(claim);
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some(claim) = Claim::from_object(&object) {
                    catalog.forget_claim(&claim.key);
                }
            }
            Err(e) => {
                tracing::warn!(kind = %resource.kind, error = %e, "claims not watched; retrying");
            }
        }
    }
}

/// The repair of one replica.
pub struct Repair {
    pub claims: ApiClaims,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    /// Time between two repairs while leading.
    pub interval: Duration,
}

impl Repair {
    /// Repairs every `interval` while this replica leads, until `stop`.
    pub async fn run(&self, mut leading: watch::Receiver<bool>, mut stop: watch::Receiver<bool>) {
        loop {
            let lead = *leading.borrow_and_update();
            if lead && self.catalog.is_ready() {
                self.once().await;
            }
            let wait = if lead {
                self.interval
            } else {
                // Start as soon as leadership comes.
                Duration::from_secs(3600)
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = leading.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One repair over every claim and stored entry the catalog knows.
    pub async fn once(&self) {
        let now = SystemTime::now();
        let grace = self.claims.grace;
        for claim in self.catalog.claims_snapshot() {
            let standing = self.catalog.standing(&claim.owner, &claim.key);
            match standing {
                Standing::Holds => {
                    // Fill in the owner's uid, now that the owner is stored.
                    if claim.owner.uid.is_none() {
                        if let Some((owner, _)) = self
                            .catalog
                            .holders_snapshot_of(&claim.owner.key())
                            .filter(|(o, _)| o.uid.is_some())
                        {
                            let _ = self.claims.ensure(&claim.key, &owner).await;
                        }
                    }
                }
                Standing::Dropped | Standing::Deleted | Standing::Absent => {
                    let age = now.duration_since(claim.claimed_at).unwrap_or_default();
                    // A deleted owner's claims go at once; an absent one may be on its way.
                    let due = standing != Standing::Absent || age > grace;
                    if !due || claim.resource_version.is_empty() {
                        continue;
                    }
                    match self.claims.remove(&claim).await {
                        Ok(true) => {
                            self.metrics.claims_repaired.inc();
                            self.catalog.forget_claim(&claim.key);
                            tracing::info!(key = %claim.key, owner = %claim.owner, ?standing, "claim removed: its owner does not hold it");
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(key = %claim.key, error = %e, "claim not removed"),
                    }
                }
            }
        }
        for (owner, keys) in self.catalog.holders_snapshot() {
            for key in keys {
                match self.catalog.claim_of(&key) {
                    None => match self.claims.ensure(&key, &owner).await {
                        Ok(true) => {
                            self.metrics.claims_created_by_repair.inc();
                            tracing::info!(%key, %owner, "claim created for a stored entry that had none");
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(%key, error = %e, "claim not created"),
                    },
                    Some(claim) if !claim.owner.same(&owner) => {
                        if self.catalog.standing(&claim.owner, &key) == Standing::Holds {
                            self.metrics.claim_conflicts.inc();
                            tracing::warn!(%key, holder = %claim.owner, also = %owner, "two stored ServiceEntries want one claim; the holder keeps it");
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
}
