//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
//! it: one replica at a time holds the Lease and renews it; the others watch it and take it
//! over once it has not been renewed for its duration. Every write is an update guarded by
//! the Lease's resourceVersion (or a create, when there is none), so of two replicas that try
//! at once the API server lets exactly one win.
//!
//! Expiry is judged by the time this replica *observed* the Lease change, not by the
//! `renewTime` written in it, so clocks that disagree between nodes do not matter (client-go
//! does the same). A leader that cannot renew within the Lease's duration steps down before
//! anyone else may take over: every replica sees at most one leader at a time, as long as no
//! replica's clock runs more than a renew period fast. On [`Elector::release`] (graceful
//! shutdown) the leader gives the Lease up so that another takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::kubernetes::api_status;

/// How a Lease is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity` (the pod name).
    pub identity: String,
    /// How long a Lease that is not renewed stays held (`leaseDurationSeconds`).
    pub duration: Duration,
    /// How often the holder renews and the others look (a third of the duration by default).
    pub retry: Duration,
}

impl LeaseSettings {
    /// Settings with client-go's proportions: renewed every third of the duration.
    pub fn new(namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        LeaseSettings {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            retry: duration / 3,
        }
    }
}

/// What the election loop last saw of the Lease.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Observed {
    holder: String,
    resource_version: String,
}

/// One replica's part in the election. [`Elector::run`] drives it; [`Elector::leading`] tells
/// who leads.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    leading: watch::Sender<bool>,
}

impl Elector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            leading: watch::channel(false).0,
        }
    }

    /// Whether this replica leads, now and as it changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    fn set_leading(&self, leading: bool) {
        self.leading.send_if_modified(|now| {
            let changed = *now != leading;
            if changed {
                tracing::info!(
                    lease = %self.settings.name,
                    identity = %self.settings.identity,
                    leading,
                    "leadership changed"
                );
            }
            *now = leading;
            changed
        });
    }

    /// Takes part in the election until the task is dropped or `stop` fires; then, if leading,
    /// gives the Lease up.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut observed = Observed::default();
        let mut observed_at = Instant::now();
        // When this replica last renewed successfully, while leading.
        let mut renewed_at: Option<Instant> = None;
        loop {
            match self
                .try_acquire_or_renew(&mut observed, &mut observed_at)
                .await
            {
                Ok(true) => {
                    renewed_at = Some(Instant::now());
                    self.set_leading(true);
                }
                Ok(false) => {
                    renewed_at = None;
                    self.set_leading(false);
                }
                Err(e) => {
                    tracing::warn!(lease = %self.settings.name, error = %crate::kubernetes::chain(&e), "lease not read or written");
                    // A leader that has not renewed for the Lease's duration minus a renew
                    // period steps down: by the time another may take over, it has.
                    let deadline = self.settings.duration.saturating_sub(self.settings.retry);
                    if renewed_at.is_some_and(|at| at.elapsed() >= deadline) {
                        renewed_at = None;
                        self.set_leading(false);
                    }
                }
            }
            let signal = tokio::select! {
                () = tokio::time::sleep(self.settings.retry) => None,
                stopped = stop.wait_for(|stop| *stop) => Some(stopped.is_ok()),
            };
            match signal {
                Some(true) => {
                    self.release().await;
                    return;
                }
                // No one can ask this replica to stop any more: keep the pace.
                Some(false) => tokio::time::sleep(self.settings.retry).await,
                None => {}
            }
        }
    }

    /// One round: the Lease read, then created, renewed or taken over when due. Returns
    /// whether this replica holds it now.
    async fn try_acquire_or_renew(
        &self,
        observed: &mut Observed,
        observed_at: &mut Instant,
    ) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let me = &self.settings.identity;
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another replica created it first.
                Err(e) if api_status(&e) == Some(409) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let current = Observed {
            holder: holder.clone(),
            resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
        };
        if current != *observed {
            *observed = current;
            *observed_at = Instant::now();
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.duration, Duration::from_secs);
        let held_by_other = !holder.is_empty() && holder != *me;
        if held_by_other && observed_at.elapsed() < duration {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (acquired, transitions) = if holder == *me {
            (spec.acquire_time.map_or(now, |t| t.0), transitions)
        } else {
            (now, transitions.saturating_add(1))
        };
        lease.spec = Some(self.spec(acquired, transitions, now));
        // Guarded by the resourceVersion just read: a replica that wrote since wins.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                observed.holder = me.clone();
                observed.resource_version = written.metadata.resource_version.unwrap_or_default();
                *observed_at = Instant::now();
                Ok(true)
            }
            Err(e) if api_status(&e) == Some(409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, transitions: i32, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: i32::try_from(self.settings.duration.as_secs()).ok(),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Gives the Lease up if this replica holds it: no holder, so that another takes it at
    /// its next look instead of waiting out the duration.
    pub async fn release(&self) {
        if !*self.leading.borrow() {
            return;
        }
        self.set_leading(false);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(lease = %self.settings.name, error = %crate::kubernetes::chain(&e), "lease not released; another replica takes over when it expires");
        }
    }
}
