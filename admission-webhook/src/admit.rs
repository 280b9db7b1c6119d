//! One review from start to answer: the rules ([`crate::verdict`], against the catalog under a
//! shared lock), then for an admitted `.global` ServiceEntry the claim of each of its VIPs and
//! hosts, and for a CREATE without addresses (the mutating webhook) the allocation of a VIP.
//!
//! Claims are made in the Kubernetes API when the webhook follows it ([`Claimer::Api`]), so
//! that any number of replicas agree; from files, in this process ([`Claimer::Local`]). A dry
//! run claims nothing: it only reads what a claim would meet. A review whose claims fail is
//! denied, and the claims it had made are given back.
//!
//! A caller the webhook cannot authenticate (no `--client-ca`) may cause claims too, since
//! that is how an API server without a client certificate calls; such claims lapse after the
//! grace period if their object never gets stored, and a namespace may hold at most
//! `max_unstored` of them at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use ipnet::IpNet;
use serde_json::json;

use crate::catalog::Catalog;
use crate::claims::{ApiClaims, Claim, ClaimError, ClaimKey, Judgement, Outcome, Owner};
use crate::review::{AdmissionRequest, Operation, Verdict};
use crate::verdict::{decode_object, is_service_entry, owner_of, Decision, Wanted};

/// Where claims are made.
#[derive(Clone)]
pub enum Claimer {
    /// In this process (the webhook reads files): held for `ttl` unless the owner is stored.
    Local { ttl: Duration },
    /// In the Kubernetes API.
    Api(ApiClaims),
}

/// How reviews are admitted.
pub struct Admitter {
    pub catalog: Arc<Catalog>,
    pub claimer: Claimer,
    /// Whether every caller presented a client certificate of `--client-ca`.
    pub authenticated: bool,
    /// Claims of unstored entries a namespace may hold when callers are not authenticated.
    pub max_unstored: usize,
    /// The longest all the claims of one review may take.
    pub claim_timeout: Duration,
    /// Whether the mutating webhook gives a VIP to entries created without addresses.
    pub allocate: bool,
}

/// Addresses tried per allocation before the review is denied.
const ALLOCATION_ATTEMPTS: usize = 32;

/// What the mutating webhook answers: a verdict, and a JSON patch when it allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub verdict: Verdict,
    pub patch: Option<Vec<u8>>,
    pub allocated: Option<IpAddr>,
}

impl Admitter {
    /// The validating review.
    pub async fn validate(&self, request: &AdmissionRequest) -> Decision {
        let decision = self.catalog.decide(request);
        let Some(wanted) = decision.wanted.clone() else {
            return decision;
        };
        if !decision.verdict.allowed || wanted.keys.is_empty() {
            return decision;
        }
        let dry_run = request.dry_run == Some(true);
        match tokio::time::timeout(self.claim_timeout, self.claim_all(&wanted, dry_run)).await {
            Ok(Ok(None)) => decision,
            Ok(Ok(Some(denied))) => denied,
            Ok(Err(e)) => claims_unavailable(&e.to_string()),
            Err(_) => claims_unavailable(&format!(
                "the claims were not settled within {:?}",
                self.claim_timeout
            )),
        }
    }

    /// Claims every key of `wanted`; the denial when one is held by someone else.
    async fn claim_all(
        &self,
        wanted: &Wanted,
        dry_run: bool,
    ) -> Result<Option<Decision>, ClaimError> {
        if let Some(denied) = self.over_the_cap(&wanted.owner, dry_run) {
            return Ok(Some(denied));
        }
        let mut created: Vec<(ClaimKey, String)> = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        let mut reasons: Vec<&'static str> = Vec::new();
        for (key, path) in &wanted.keys {
            let outcome = match self.claim(key, &wanted.owner, dry_run).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    self.give_back(&created, &wanted.owner).await;
                    return Err(e);
                }
            };
            match outcome {
                Outcome::Claimed {
                    created: Some(uid), ..
                } if !dry_run => {
                    created.push((key.clone(), uid));
                }
                Outcome::Claimed { .. } => {}
                Outcome::Taken(judgement) => {
                    reasons.push(match key {
                        ClaimKey::Address(_) => "duplicate-address",
                        ClaimKey::Host(_) => "duplicate-host",
                    });
                    taken.push(format!(
                        "{path}: {}",
                        self.taken_message(key, &judgement, &wanted.addresses)
                    ));
                }
            }
        }
        if taken.is_empty() {
            return Ok(None);
        }
        self.give_back(&created, &wanted.owner).await;
        reasons.sort_unstable();
        reasons.dedup();
        let plural = if taken.len() == 1 { "" } else { "s" };
        let mut message = format!(
            "ServiceEntry {} has {} violation{plural}:",
            wanted.owner,
            taken.len()
        );
        for line in &taken {
            message.push_str("\n- ");
            message.push_str(line);
        }
        Ok(Some(Decision {
            verdict: Verdict::deny(422, message),
            wanted: None,
            reasons,
        }))
    }

    /// The denial for an unauthenticated caller's namespace holding too many claims of
    /// entries that were never stored.
    fn over_the_cap(&self, owner: &Owner, dry_run: bool) -> Option<Decision> {
        if self.authenticated || dry_run {
            return None;
        }
        let stored = self.catalog.is_stored(&owner.key());
        let held = self.catalog.unstored_claims(&owner.namespace);
        (!stored && held >= self.max_unstored).then(|| {
            Decision::deny(
                429,
                "unstored-claims",
                format!(
                    "namespace {} already holds {held} claims of ServiceEntries that are not stored (the limit for callers without a client certificate is {}); they lapse once stored or after the grace period",
                    owner.namespace, self.max_unstored
                ),
            )
        })
    }

    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &Owner,
        dry_run: bool,
    ) -> Result<Outcome, ClaimError> {
        let catalog = &self.catalog;
        let standing = |holder: &Owner| catalog.standing(holder, key);
        match &self.claimer {
            Claimer::Local { ttl } => {
                if dry_run {
                    return Ok(match catalog.claim_of(key) {
                        Some(claim) if !claim.owner.same(owner) => {
                            match catalog.standing(&claim.owner, key) {
                                crate::claims::Standing::Holds => {
                                    Outcome::Taken(Judgement::Held(claim.owner))
                                }
                                crate::claims::Standing::Absent => {
                                    Outcome::Taken(Judgement::Pending(claim.owner))
                                }
                                crate::claims::Standing::Dropped
                                | crate::claims::Standing::Deleted => Outcome::Claimed {
                                    created: None,
                                    known: None,
                                },
                            }
                        }
                        _ => Outcome::Claimed {
                            created: None,
                            known: None,
                        },
                    });
                }
                Ok(catalog.claim_local(key, owner, Instant::now(), *ttl))
            }
            Claimer::Api(api) => {
                if dry_run {
                    return api.check(key, owner, standing).await;
                }
                // This owner's own recent claim (the mutating review of the same CREATE, a
                // retry) needs no round trip: nothing takes a claim from an owner within the
                // grace period but that owner's deletion.
                if let Some(known) = catalog.claim_of(key) {
                    let age = SystemTime::now()
                        .duration_since(known.claimed_at)
                        .unwrap_or_default();
                    if known.owner.same(owner) && age < api.grace / 2 {
                        return Ok(Outcome::Claimed {
                            created: None,
                            known: None,
                        });
                    }
                }
                let outcome = api.claim(key, owner, standing).await?;
                match &outcome {
                    Outcome::Claimed { known, created } => {
                        // Known at once, before the watch brings it: the next allocation skips
                        // it.
                        catalog.note_claim(known.as_deref().cloned().unwrap_or_else(|| Claim {
                            key: key.clone(),
                            owner: owner.clone(),
                            claimed_at: SystemTime::now(),
                            resource_version: String::new(),
                            uid: created.clone().unwrap_or_default(),
                        }));
                    }
                    Outcome::Taken(Judgement::Held(holder) | Judgement::Pending(holder)) => {
                        catalog.note_claim(Claim {
                            key: key.clone(),
                            owner: holder.clone(),
                            claimed_at: SystemTime::now(),
                            resource_version: String::new(),
                            uid: String::new(),
                        });
                    }
                    Outcome::Taken(_) => {}
                }
                Ok(outcome)
            }
        }
    }

    /// The claim of an address being allocated: like [`Admitter::claim`], but never answered
    /// from the view (it holds the address for this owner already, noted just before).
    async fn claim_in_api(&self, key: &ClaimKey, owner: &Owner) -> Result<Outcome, ClaimError> {
        match &self.claimer {
            Claimer::Local { ttl } => {
                self.catalog.forget_noted(key, owner);
                Ok(self.catalog.claim_local(key, owner, Instant::now(), *ttl))
            }
            Claimer::Api(api) => {
                let catalog = &self.catalog;
                let outcome = api
                    .claim(key, owner, |holder| catalog.standing(holder, key))
                    .await?;
                match &outcome {
                    Outcome::Claimed {
                        known: Some(known), ..
                    } => {
                        catalog.forget_noted(key, owner);
                        catalog.note_claim(known.as_ref().clone());
                    }
                    Outcome::Claimed { .. } => {}
                    Outcome::Taken(judgement) => {
                        catalog.forget_noted(key, owner);
                        if let Judgement::Held(holder) | Judgement::Pending(holder) = judgement {
                            catalog.note_claim(Claim {
                                key: key.clone(),
                                owner: holder.clone(),
                                claimed_at: SystemTime::now(),
                                resource_version: String::new(),
                                uid: String::new(),
                            });
                        }
                    }
                }
                Ok(outcome)
            }
        }
    }

    async fn give_back(&self, created: &[(ClaimKey, String)], owner: &Owner) {
        for (key, uid) in created {
            match &self.claimer {
                Claimer::Local { .. } => self.catalog.release_local(key, owner),
                Claimer::Api(api) => {
                    api.release(key, uid).await;
                    self.catalog.forget_claim(key);
                }
            }
        }
    }

    fn taken_message(&self, key: &ClaimKey, judgement: &Judgement, own: &[IpNet]) -> String {
        let (holder, how) = match judgement {
            Judgement::Held(holder) => (holder, "stored"),
            Judgement::Pending(holder) => (holder, "admitted and not stored yet"),
            Judgement::Mine | Judgement::Free => return format!("{key} is free"),
        };
        match key {
            ClaimKey::Address(ip) => {
                let free = match self.catalog.suggest(*ip, own) {
                    Some((free, range)) => {
                        format!("the next free address in {range} is {free}")
                    }
                    None => "no free address is left in the VIP ranges".to_string(),
                };
                format!(
                    "address {ip} is claimed by ServiceEntry {holder} ({how}); VIPs must be unique within a cluster; {free}"
                )
            }
            ClaimKey::Host(host) => format!(
                "host {host} is claimed by ServiceEntry {holder} ({how}); a .{} host belongs to one ServiceEntry",
                self.catalog.options().domain_suffix
            ),
        }
    }

    /// The mutating review: a `.global` ServiceEntry created without addresses gets the lowest
    /// free VIP of the configured ranges, claimed as the validating review claims.
    pub async fn mutate(&self, request: &AdmissionRequest) -> Mutation {
        let untouched = Mutation {
            verdict: Verdict::allow(),
            patch: None,
            allocated: None,
        };
        if !self.allocate || request.operation != Operation::Create || !is_service_entry(request) {
            return untouched;
        }
        // Whatever does not decode is the validating review's to deny.
        let Ok(se) = decode_object(request) else {
            return untouched;
        };
        let options = self.catalog.options();
        if !se.spec.addresses.is_empty() || !policy::rules::global::is_global(&se, options) {
            return untouched;
        }
        if !self.catalog.is_ready() {
            return Mutation {
                verdict: Decision::not_ready().verdict,
                ..untouched
            };
        }
        let dry_run = request.dry_run == Some(true);
        let owner = owner_of(&se);
        // With generateName the name is not known yet: the validating review claims.
        let claimable = !owner.name.is_empty() && !owner.name.ends_with('*');
        match tokio::time::timeout(
            self.claim_timeout,
            self.allocate(&owner, claimable && !dry_run),
        )
        .await
        {
            Ok(Ok(Some(ip))) => {
                let patch =
                    json!([{"op": "add", "path": "/spec/addresses", "value": [ip.to_string()]}]);
                Mutation {
                    verdict: Verdict::allow(),
                    patch: Some(patch.to_string().into_bytes()),
                    allocated: Some(ip),
                }
            }
            Ok(Ok(None)) => Mutation {
                verdict: Verdict::deny(
                    422,
                    format!(
                        "ServiceEntry {owner} has no addresses and no free VIP is left in {}",
                        ranges(options)
                    ),
                ),
                ..untouched
            },
            Ok(Err(e)) => Mutation {
                verdict: claims_unavailable(&e.to_string()).verdict,
                ..untouched
            },
            Err(_) => Mutation {
                verdict: claims_unavailable(&format!(
                    "no VIP was claimed within {:?}",
                    self.claim_timeout
                ))
                .verdict,
                ..untouched
            },
        }
    }

    /// The lowest free VIP, claimed for `owner` when `claim`; addresses found claimed by
    /// others are passed over.
    async fn allocate(&self, owner: &Owner, claim: bool) -> Result<Option<IpAddr>, ClaimError> {
        let mut passed: Vec<IpNet> = Vec::new();
        for _ in 0..ALLOCATION_ATTEMPTS {
            let free = self
                .catalog
                .options()
                .vip_ranges
                .iter()
                .find_map(|range| self.catalog.next_free(*range, &passed));
            let Some(ip) = free else {
                return Ok(None);
            };
            if !claim {
                return Ok(Some(ip));
            }
            let key = ClaimKey::Address(ip);
            // Held in the view while the API is asked, so that this replica's concurrent
            // allocations take other addresses.
            self.catalog.note_claim(Claim {
                key: key.clone(),
                owner: owner.clone(),
                claimed_at: SystemTime::now(),
                resource_version: String::new(),
                uid: String::new(),
            });
            match self.claim_in_api(&key, owner).await {
                Ok(Outcome::Claimed { .. }) => return Ok(Some(ip)),
                Ok(Outcome::Taken(_)) => passed.push(IpNet::from(ip)),
                Err(e) => {
                    self.catalog.forget_noted(&key, owner);
                    return Err(e);
                }
            }
        }
        Err(ClaimError::Contended(ClaimKey::Address(
            passed
                .last()
                .map_or(IpAddr::from([0, 0, 0, 0]), |n| n.addr()),
        )))
    }
}

fn ranges(options: &policy::Options) -> String {
    let parts: Vec<String> = options.vip_ranges.iter().map(IpNet::to_string).collect();
    parts.join(", ")
}

/// The denial when the claims cannot be made or checked: the API server is slow or refuses
/// the webhook's writes. The caller retries; nothing is admitted unchecked.
fn claims_unavailable(why: &str) -> Decision {
    Decision::deny(
        503,
        "claims-unavailable",
        format!(
            "the webhook could not claim this ServiceEntry's VIPs and hosts: {why}; retry shortly"
        ),
    )
}

/// The `patch` field of an AdmissionResponse: base64 of the JSON patch.
pub fn encode_patch(patch: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(patch)
}
