//! Claims: a `.global` VIP or host held by one ServiceEntry, as an object in the API server so
//! that storage decides who wins, the way Kubernetes allocates ClusterIPs (KEP-1880: one
//! `IPAddress` object per IP). Any number of webhook replicas may claim at once: the API
//! server creates an object once, and an update guarded by its resourceVersion succeeds once.
//!
//! An `AddressClaim` is named after its address, a `HostClaim` after its host (both
//! cluster-scoped, group `globalmesh.io`, shipped in deploy/). Its spec names the owner's
//! namespace, name and (once known) uid, and when it was claimed. Creating one succeeds →
//! owned. `409 AlreadyExists` → it is read and judged ([`judge`]): the same owner (an
//! UPDATE, a retry, the mutating and then the validating review of one CREATE) is fine;
//! another owner that is stored with the key wins; one that is not stored and was claimed
//! longer ago than the grace period is an orphan, taken over by an update guarded by the
//! resourceVersion read. Claims are never owned through `ownerReferences`: Kubernetes does not
//! garbage-collect a cluster-scoped object owned by a namespaced one (Owners and Dependents),
//! so the repair loop ([`crate::repair`]) removes the claims of entries that are gone.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams, Preconditions};
use kube::{Api, Client};
use policy::ObjectKey;
use serde_json::{json, Value};

/// The group and version of globalmesh's claim kinds.
pub const GROUP: &str = "globalmesh.io";
pub const VERSION: &str = "v1alpha1";
/// Label with the owner's namespace, for counting and listing a namespace's claims.
pub const OWNER_NAMESPACE_LABEL: &str = "globalmesh.io/owner-namespace";
/// How long a claim whose owner is not stored is held (KEP-1880's repair waits as long).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// What a ServiceEntry claims: one of its VIPs, or one of its `.global` hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClaimKey {
    Address(IpAddr),
    /// Lowercase, without a trailing dot.
    Host(String),
}

impl ClaimKey {
    /// The claim object's name: the IPv4 address as it is (dotted decimal is a DNS
    /// subdomain), an IPv6 address as its eight groups of four hex digits joined by `-`, the
    /// host as it is (a `.global` host is lowercase DNS-1123 labels).
    pub fn object_name(&self) -> String {
        match self {
            ClaimKey::Address(IpAddr::V4(v4)) => v4.to_string(),
            ClaimKey::Address(IpAddr::V6(v6)) => v6
                .segments()
                .iter()
                .map(|s| format!("{s:04x}"))
                .collect::<Vec<_>>()
                .join("-"),
            ClaimKey::Host(host) => host.clone(),
        }
    }

    pub fn resource(&self) -> ApiResource {
        match self {
            ClaimKey::Address(_) => resource("AddressClaim", "addressclaims"),
            ClaimKey::Host(_) => resource("HostClaim", "hostclaims"),
        }
    }

    fn spec_field(&self) -> (&'static str, String) {
        match self {
            ClaimKey::Address(ip) => ("address", ip.to_string()),
            ClaimKey::Host(host) => ("host", host.clone()),
        }
    }
}

impl fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimKey::Address(ip) => write!(f, "address {ip}"),
            ClaimKey::Host(host) => write!(f, "host {host}"),
        }
    }
}

pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.to_string(),
        version: VERSION.to_string(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// The ServiceEntry a claim is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    /// Set once the owner is known to the API server (validating reviews carry it; a
    /// mutating review of a CREATE does not yet).
    pub uid: Option<String>,
}

impl Owner {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// Whether both name the same object. A ServiceEntry deleted and created again under the
    /// same name takes its claims over.
    pub fn same(&self, other: &Owner) -> bool {
        self.namespace == other.namespace && self.name == other.name
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A claim as stored in the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: ClaimKey,
    pub owner: Owner,
    /// When it was claimed or last taken over.
    pub claimed_at: SystemTime,
    pub resource_version: String,
    pub uid: String,
}

impl Claim {
    /// Reads a claim object; `None` for an object that is not one this webhook wrote.
    pub fn from_object(object: &DynamicObject) -> Option<Claim> {
        let spec = object.data.get("spec")?;
        let key = match (spec.get("address"), spec.get("host")) {
            (Some(address), None) => ClaimKey::Address(address.as_str()?.parse().ok()?),
            (None, Some(host)) => ClaimKey::Host(host.as_str()?.to_string()),
            _ => return None,
        };
        let owner = spec.get("owner")?;
        let text = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_string);
        let claimed_at = text(spec, "claimedAt")
            .or_else(|| {
                object
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map_or(SystemTime::UNIX_EPOCH, SystemTime::from);
        Some(Claim {
            key,
            owner: Owner {
                namespace: text(owner, "namespace")?,
                name: text(owner, "name")?,
                uid: text(owner, "uid").filter(|u| !u.is_empty()),
            },
            claimed_at,
            resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
            uid: object.metadata.uid.clone().unwrap_or_default(),
        })
    }
}

/// The claim object for `key` held by `owner`, claimed at `now`; `resource_version` for an
/// update guarded by it.
pub fn claim_object(
    key: &ClaimKey,
    owner: &Owner,
    now: SystemTime,
    resource_version: Option<&str>,
) -> Result<DynamicObject, serde_json::Error> {
    let (field, value) = key.spec_field();
    let resource = key.resource();
    let mut owner_json = serde_json::Map::new();
    owner_json.insert("namespace".into(), json!(owner.namespace));
    owner_json.insert("name".into(), json!(owner.name));
    if let Some(uid) = &owner.uid {
        owner_json.insert("uid".into(), json!(uid));
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(key.object_name()));
    metadata.insert(
        "labels".into(),
        json!({OWNER_NAMESPACE_LABEL: owner.namespace}),
    );
    if let Some(rv) = resource_version {
        metadata.insert("resourceVersion".into(), json!(rv));
    }
    let claimed_at = Timestamp::try_from(now).unwrap_or(Timestamp::UNIX_EPOCH);
    serde_json::from_value(json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "spec": {field: value, "owner": owner_json, "claimedAt": claimed_at.to_string()},
    }))
}

/// Where a claim's owner stands in the API server, as the webhook's view of the stored
/// ServiceEntries tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Stored, and declaring the claimed address or host.
    Holds,
    /// Stored without it: an UPDATE dropped it, so it is released.
    Dropped,
    /// Deleted (the webhook saw it go): its claims are released.
    Deleted,
    /// Not stored: on its way (a CREATE being admitted), or never to be (a denied or dry
    /// request, a replica killed between claiming and storing, a forged review).
    Absent,
}

/// What a claim means for someone who wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Held by the same owner: nothing to do.
    Mine,
    /// Held by a stored ServiceEntry.
    Held(Owner),
    /// Held by an owner not stored yet, within the grace period.
    Pending(Owner),
    /// Released or orphaned: may be taken over.
    Free,
}

/// The one rule of who may have a claimed key. Pure, so that every case is a unit test; the
/// webhook's reviews and the repair loop both follow it.
pub fn judge(
    claim: &Claim,
    wanted_by: &Owner,
    standing: Standing,
    now: SystemTime,
    grace: Duration,
) -> Judgement {
    if claim.owner.same(wanted_by) {
        return Judgement::Mine;
    }
    match standing {
        Standing::Holds => Judgement::Held(claim.owner.clone()),
        Standing::Dropped | Standing::Deleted => Judgement::Free,
        Standing::Absent => {
            let age = now.duration_since(claim.claimed_at).unwrap_or_default();
            if age > grace {
                Judgement::Free
            } else {
                Judgement::Pending(claim.owner.clone())
            }
        }
    }
}

/// What one claim attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Now held by the requester; `created` when this attempt wrote the claim (so that a
    /// review denied for another reason may give it back), with the written object's uid;
    /// `known` the claim as the API server has it now, where the attempt read or wrote it.
    Claimed {
        created: Option<String>,
        known: Option<Box<Claim>>,
    },
    /// Held by someone else.
    Taken(Judgement),
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the claim of {key} could not be written")]
    Api {
        key: ClaimKey,
        #[source]
        source: kube::Error,
    },
    #[error("the claim object of {key} cannot be encoded")]
    Encode {
        key: ClaimKey,
        #[source]
        source: serde_json::Error,
    },
    #[error("the claim of {0} kept changing under this replica; retry")]
    Contended(ClaimKey),
}

/// Claims in the Kubernetes API.
#[derive(Clone)]
pub struct ApiClaims {
    client: Client,
    pub grace: Duration,
}

/// How many times a claim is read and judged again after its object changed in between.
const ATTEMPTS: usize = 3;

impl ApiClaims {
    pub fn new(client: Client, grace: Duration) -> Self {
        ApiClaims { client, grace }
    }

    fn api(&self, key: &ClaimKey) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &key.resource())
    }

    /// Claims `key` for `owner`; `standing` tells where the current holder of an existing
    /// claim stands (the caller's view of the stored entries).
    pub async fn claim(
        &self,
        key: &ClaimKey,
        owner: &Owner,
        standing: impl Fn(&Owner) -> Standing,
    ) -> Result<Outcome, ClaimError> {
        let api = self.api(key);
        let api_error = |source| ClaimError::Api {
            key: key.clone(),
            source,
        };
        let encode = |source| ClaimError::Encode {
            key: key.clone(),
            source,
        };
        for _ in 0..ATTEMPTS {
            let object = claim_object(key, owner, SystemTime::now(), None).map_err(encode)?;
            match api.create(&PostParams::default(), &object).await {
                Ok(created) => {
                    return Ok(Outcome::Claimed {
                        known: Claim::from_object(&created).map(Box::new),
                        created: created.metadata.uid,
                    })
                }
                Err(e) if catalog::kubernetes::api_status(&e) == Some(409) => {}
                Err(e) => return Err(api_error(e)),
            }
            let Some(existing) = api.get_opt(&key.object_name()).await.map_err(api_error)? else {
                // Deleted in between: create again.
                continue;
            };
            let Some(claim) = Claim::from_object(&existing) else {
                // Not one of ours (written by hand?): only a person can settle it.
                return Ok(Outcome::Taken(Judgement::Held(Owner {
                    namespace: String::new(),
                    name: format!("(claim {} of unknown form)", key.object_name()),
                    uid: None,
                })));
            };
            match judge(
                &claim,
                owner,
                standing(&claim.owner),
                SystemTime::now(),
                self.grace,
            ) {
                Judgement::Mine => {
                    let mut known = Some(Box::new(claim.clone()));
                    if claim.owner.uid.is_none() && owner.uid.is_some() {
                        // The mutating review claimed before the uid was known; best effort.
                        let update = claim_object(
                            key,
                            owner,
                            claim.claimed_at,
                            Some(&claim.resource_version),
                        )
                        .map_err(encode)?;
                        if let Ok(written) = api
                            .replace(&key.object_name(), &PostParams::default(), &update)
                            .await
                        {
                            known = Claim::from_object(&written).map(Box::new);
                        }
                    }
                    return Ok(Outcome::Claimed {
                        created: None,
                        known,
                    });
                }
                Judgement::Free => {
                    let update =
                        claim_object(key, owner, SystemTime::now(), Some(&claim.resource_version))
                            .map_err(encode)?;
                    match api
                        .replace(&key.object_name(), &PostParams::default(), &update)
                        .await
                    {
                        Ok(taken) => {
                            tracing::info!(%key, from = %claim.owner, to = %owner, "claim taken over");
                            return Ok(Outcome::Claimed {
                                known: Claim::from_object(&taken).map(Box::new),
                                created: taken.metadata.uid,
                            });
                        }
                        // Changed since it was read: judge it again.
                        Err(e) if catalog::kubernetes::api_status(&e) == Some(409) => continue,
                        Err(e) => return Err(api_error(e)),
                    }
                }
                other => return Ok(Outcome::Taken(other)),
            }
        }
        Err(ClaimError::Contended(key.clone()))
    }

    /// What a claim of `key` by `owner` would come to, without writing (dry runs).
    pub async fn check(
        &self,
        key: &ClaimKey,
        owner: &Owner,
        standing: impl Fn(&Owner) -> Standing,
    ) -> Result<Outcome, ClaimError> {
        let existing = self
            .api(key)
            .get_opt(&key.object_name())
            .await
            .map_err(|source| ClaimError::Api {
                key: key.clone(),
                source,
            })?;
        let Some(claim) = existing.as_ref().and_then(Claim::from_object) else {
            return Ok(Outcome::Claimed {
                created: None,
                known: None,
            });
        };
        Ok(
            match judge(
                &claim,
                owner,
                standing(&claim.owner),
                SystemTime::now(),
                self.grace,
            ) {
                Judgement::Mine | Judgement::Free => Outcome::Claimed {
                    created: None,
                    known: None,
                },
                other => Outcome::Taken(other),
            },
        )
    }

    /// Gives back a claim this replica created, when the review that wanted it was denied for
    /// another reason. Best effort: a claim left behind is an orphan the repair removes.
    pub async fn release(&self, key: &ClaimKey, uid: &str) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = self.api(key).delete(&key.object_name(), &params).await {
            tracing::debug!(%key, error = %e, "claim not given back; the repair removes it");
        }
    }

    /// Deletes a claim if it is still the version judged (the repair's orphans).
    pub async fn remove(&self, claim: &Claim) -> Result<bool, kube::Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: None,
                resource_version: Some(claim.resource_version.clone()),
            }),
            ..DeleteParams::default()
        };
        match self
            .api(&claim.key)
            .delete(&claim.key.object_name(), &params)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(catalog::kubernetes::api_status(&e), Some(404 | 409)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes a claim for a stored owner that has none (entries older than the webhook), or
    /// fills in the owner's uid. Returns false when someone else's claim is there.
    pub async fn ensure(&self, key: &ClaimKey, owner: &Owner) -> Result<bool, ClaimError> {
        match self.claim(key, owner, |_| Standing::Holds).await? {
            Outcome::Claimed { .. } => Ok(true),
            Outcome::Taken(_) => Ok(false),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// What `audit --kubernetes` says of claims that disagree with the stored entries, one line
/// each: claims of entries not stored, claims the owner no longer declares, and keys of
/// stored entries that hold no claim or whose claim names another entry.
pub fn audit(
    entries: &[&policy::ServiceEntry],
    claims: &[Claim],
    options: &policy::Options,
) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let holders: HashMap<ObjectKey, HashSet<ClaimKey>> = entries
        .iter()
        .map(|se| (se.key(), crate::catalog::keys_of(se, options)))
        .collect();
    let by_key: HashMap<&ClaimKey, &Claim> = claims.iter().map(|c| (&c.key, c)).collect();
    let mut out = Vec::new();
    for claim in claims {
        match holders.get(&claim.owner.key()) {
            None => out.push(format!(
                "{}: claimed by {}, which is not stored",
                claim.key, claim.owner
            )),
            Some(keys) if !keys.contains(&claim.key) => out.push(format!(
                "{}: claimed by {}, which no longer declares it",
                claim.key, claim.owner
            )),
            Some(_) => {}
        }
    }
    let mut unclaimed: Vec<String> = Vec::new();
    for (owner, keys) in &holders {
        for key in keys {
            match by_key.get(key) {
                None => unclaimed.push(format!("{key}: held by {owner} without a claim")),
                Some(claim) if claim.owner.key() != *owner => unclaimed.push(format!(
                    "{key}: held by {owner}, claimed by {}",
                    claim.owner
                )),
                Some(_) => {}
            }
        }
    }
    unclaimed.sort();
    out.sort();
    out.extend(unclaimed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_names_claims_that_disagree_with_the_stored_entries() {
        let options = policy::Options::default();
        let se = |name: &str, address: &str| -> policy::ServiceEntry {
            serde_json::from_value(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                "metadata": {"name": name, "namespace": "foo"},
                "spec": {"hosts": [format!("{name}.foo.global")], "addresses": [address]}
            }))
            .unwrap()
        };
        let a = se("a", "127.255.0.2");
        let b = se("b", "127.255.0.3");
        let claim = |key: ClaimKey, name: &str| Claim {
            key,
            owner: owner(name),
            claimed_at: SystemTime::now(),
            resource_version: "1".into(),
            uid: "u".into(),
        };
        let claims = vec![
            claim(ClaimKey::Address("127.255.0.2".parse().unwrap()), "a"),
            claim(ClaimKey::Host("a.foo.global".into()), "a"),
            claim(ClaimKey::Address("127.255.0.9".parse().unwrap()), "gone"),
            claim(ClaimKey::Address("127.255.0.3".parse().unwrap()), "a"),
        ];
        let report = audit(&[&a, &b], &claims, &options);
        assert_eq!(
            report,
            vec![
                "address 127.255.0.3: claimed by foo/a, which no longer declares it",
                "address 127.255.0.9: claimed by foo/gone, which is not stored",
                "address 127.255.0.3: held by foo/b, claimed by foo/a",
                "host b.foo.global: held by foo/b without a claim",
            ]
        );
    }

    fn owner(name: &str) -> Owner {
        Owner {
            namespace: "foo".into(),
            name: name.into(),
            uid: None,
        }
    }

    fn claim(name: &str, age: Duration) -> Claim {
        Claim {
            key: ClaimKey::Address("127.255.0.2".parse().unwrap()),
            owner: owner(name),
            claimed_at: SystemTime::now() - age,
            resource_version: "7".into(),
            uid: "u".into(),
        }
    }

    #[test]
    fn names_are_dns_subdomains() {
        let v4 = ClaimKey::Address("127.255.0.2".parse().unwrap());
        assert_eq!(v4.object_name(), "127.255.0.2");
        let v6 = ClaimKey::Address("2001:db8::1".parse().unwrap());
        assert_eq!(v6.object_name(), "2001-0db8-0000-0000-0000-0000-0000-0001");
        assert!(policy::names::is_dns1123_subdomain(&v6.object_name()));
        let host = ClaimKey::Host("httpbin.bar.global".into());
        assert_eq!(host.object_name(), "httpbin.bar.global");
    }

    #[test]
    fn a_claim_object_reads_back() {
        let key = ClaimKey::Address("240.0.0.9".parse().unwrap());
        let mut o = owner("a");
        o.uid = Some("uid-1".into());
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200);
        let object = claim_object(&key, &o, at, Some("12")).unwrap();
        assert_eq!(object.metadata.name.as_deref(), Some("240.0.0.9"));
        assert_eq!(object.data["spec"]["claimedAt"], "2026-12-01T00:00:00Z");
        let read = Claim::from_object(&object).unwrap();
        assert_eq!(read.key, key);
        assert_eq!(read.owner, o);
        assert_eq!(read.claimed_at, at);
        assert_eq!(read.resource_version, "12");
    }

    #[test]
    fn the_same_owner_keeps_its_claim() {
        let c = claim("a", Duration::ZERO);
        let now = SystemTime::now();
        assert_eq!(
            judge(&c, &owner("a"), Standing::Absent, now, DEFAULT_GRACE),
            Judgement::Mine
        );
        let mut same = owner("a");
        same.uid = Some("later".into());
        assert_eq!(
            judge(&c, &same, Standing::Holds, now, DEFAULT_GRACE),
            Judgement::Mine
        );
    }

    #[test]
    fn a_stored_holder_wins_and_a_dropped_one_releases() {
        let c = claim("a", Duration::from_secs(3600));
        let now = SystemTime::now();
        assert_eq!(
            judge(&c, &owner("b"), Standing::Holds, now, DEFAULT_GRACE),
            Judgement::Held(owner("a"))
        );
        assert_eq!(
            judge(&c, &owner("b"), Standing::Dropped, now, DEFAULT_GRACE),
            Judgement::Free
        );
    }

    #[test]
    fn an_unstored_holder_keeps_it_for_the_grace_period_only() {
        let now = SystemTime::now();
        let young = claim("a", Duration::from_secs(10));
        assert_eq!(
            judge(&young, &owner("b"), Standing::Absent, now, DEFAULT_GRACE),
            Judgement::Pending(owner("a"))
        );
        let old = claim("a", Duration::from_secs(61));
        assert_eq!(
            judge(&old, &owner("b"), Standing::Absent, now, DEFAULT_GRACE),
            Judgement::Free
        );
    }
}
